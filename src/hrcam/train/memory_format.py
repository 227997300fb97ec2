"""Channels-last training: the Lightning hooks that put a module's ``net`` and its image batches in
channels-last (NHWC) memory format during fit.

Convolutions on CPU run faster on NHWC tensors (oneDNN's native layout) and compute the same math
to float tolerance. Measured here at 1 thread, batch 32: the FC-DenseNet HalfModel 1.58x
(``benchmarks/bench_train.py``), EfficientNet-Lite0 training at 96 px 1.65x and inference at
224 px 1.62x. Saved weights are written contiguous (:mod:`hrcam.weights`), so the files do not
depend on it.
"""
from __future__ import annotations

import torch

__all__ = ["ChannelsLastFit"]


class ChannelsLastFit:
    """Mixin for a LightningModule with a ``net``: channels-last during fit unless ``channels_last`` is off.

    Put it before ``LightningModule`` in the bases; a subclass that overrides ``on_fit_start`` or
    ``on_fit_end`` calls ``super()``'s.
    """

    #: model and batches in channels-last memory format during fit (``hrcam train ... --no_channels_last``
    #: turns it off)
    channels_last: bool = True

    def on_fit_start(self):
        if self.channels_last:
            self.net.to(memory_format=torch.channels_last)

    def on_fit_end(self):
        """Back to the default layout: after fit the network runs as it would have without this."""
        if self.channels_last:
            self.net.to(memory_format=torch.contiguous_format)

    def on_after_batch_transfer(self, batch, dataloader_idx):
        """The batch's images (a 4-D tensor, or the first item of a list / tuple) in channels-last."""
        if not self.channels_last:
            return batch
        if torch.is_tensor(batch) and batch.dim() == 4:
            return batch.contiguous(memory_format=torch.channels_last)
        if isinstance(batch, (list, tuple)) and batch and torch.is_tensor(batch[0]) and batch[0].dim() == 4:
            return [batch[0].contiguous(memory_format=torch.channels_last), *batch[1:]]
        return batch
