"""The contract every CAM-producing network in hrcam meets.

A CAM network classifies with global average pooling + one linear layer, so its class maps are
linear in a feature map ``A``:

    cam[c](i, j) = Σ_k W[c, k] · A[k, i, j]

(no bias, no softmax). HR-CAM networks expose two such pairs: ``(W_low, A_low)`` at the
classifier's resolution and ``(W_high, A_high)`` at input resolution. For the FC-DenseNet both
weights are the classifier's ``W``; a pretrained backbone with a rank-r head factorization uses
``W_high = U`` (K×r) instead.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn


@dataclass
class MapOutputs:
    """What one forward pass of a CAM network yields."""

    logits: torch.Tensor  #: N×K
    low_features: torch.Tensor  #: N×C_low×h×w (A_low)
    high_features: torch.Tensor | None = None  #: N×C_high×H×W (A_high), None for half networks


class CAMNetwork(nn.Module):
    """Base class: subclasses implement :meth:`forward_maps` and :attr:`low_weight`.

    This is the *interface* every CAM-producing network meets (HalfNet, FullNet, BackboneNet,
    DecoderNet, CAMNet). Not to be confused with
    :class:`~hrcam.models.baselines.camnet.CAMNet`, one *network*: the CAM baseline of Zhou et
    al. (a backbone with a 3×3 conv + GAP + linear head) that implements this interface.
    """

    #: True when :meth:`forward_maps` can return ``high_features``.
    has_high_res: bool = False

    def forward_maps(self, x: torch.Tensor, high: bool = False) -> MapOutputs:  # pragma: no cover
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_maps(x, high=False).logits

    @property
    def low_weight(self) -> torch.Tensor:  # pragma: no cover - abstract
        """``W`` (K×C_low) that turns ``A_low`` into class maps."""
        raise NotImplementedError

    @property
    def high_weight(self) -> torch.Tensor:
        """``W_high`` (K×C_high) that turns ``A_high`` into class maps (default: ``low_weight``)."""
        return self.low_weight

    @property
    def num_classes(self) -> int:
        return int(self.low_weight.shape[0])


def cpu_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` as a channels-last copy when it is a 4-D CPU tensor (else ``x`` itself).

    Convolutions and batch norms on the CPU run about 1.5x faster on NHWC input (measured: the
    FC-DenseNet's forward and EfficientNet-Lite0 at 224 px, 1.62x), with the same math to float
    tolerance; the model's own memory format is left alone (PyTorch picks the input's layout).
    """
    if x.device.type == "cpu" and x.dim() == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


def resolve_classes(classes, logits: torch.Tensor, name: str = "targets") -> torch.Tensor:
    """Classes as a LongTensor of N indices: None → each row's argmax; an int → the same class
    for every image; a sequence → one class per image. ``name`` is used in error messages."""
    n, k = logits.shape
    if classes is None:
        return logits.argmax(dim=1)
    raw = classes.detach().cpu().numpy() if isinstance(classes, torch.Tensor) else np.asarray(classes)
    if raw.dtype.kind not in "iu":
        if raw.dtype.kind == "f" and np.all(np.isfinite(raw)) and np.all(raw == np.round(raw)):
            raw = raw.astype(np.int64)
        else:
            raise ValueError(f"{name}: class indices must be integers, got {classes!r:.80}")
    t = torch.as_tensor(raw, dtype=torch.long, device=logits.device).reshape(-1)
    if t.numel() == 1:
        t = t.expand(n)
    if t.numel() != n:
        raise ValueError(f"{name}: got {t.numel()} classes for {n} images")
    if (t < 0).any() or (t >= k).any():
        raise ValueError(f"{name}: class index out of range 0..{k - 1}, got {t.tolist()}")
    return t.clone()


def class_maps(weight: torch.Tensor, features: torch.Tensor, classes=None, out: torch.Tensor | None = None
               ) -> torch.Tensor:
    """Class activation maps from one forward pass.

    ``weight`` K×C, ``features`` N×C×H×W. With ``classes=None`` returns all classes, N×K×H×W
    (one einsum, ``maps[n,c] = Σ_k W[c,k] A[n,k]``). With ``classes`` (a LongTensor of N class
    indices) returns N×H×W, the map of each image's own class, without computing the others.

    ``out`` (all classes only): a preallocated N×K×H×W buffer to write into. All-class
    high-res maps are large (N×398×224×224 floats is 640 MB at N=8); reusing one buffer across
    batches avoids paying the page faults of a fresh allocation every time.
    """
    n, c, h, w = features.shape
    flat = features.reshape(n, c, h * w)
    if classes is None:
        # one batched matmul (K×C)·(C×HW) per image; on CPU this is >2× faster than einsum,
        # which permutes and copies the feature maps first
        if out is not None:
            torch.matmul(weight, flat, out=out.view(n, weight.shape[0], h * w))
            return out
        return torch.matmul(weight, flat).reshape(n, weight.shape[0], h, w)
    classes = torch.as_tensor(classes, device=features.device, dtype=torch.long).reshape(-1)
    if classes.numel() == 1 and features.shape[0] != 1:
        classes = classes.expand(features.shape[0])
    if classes.numel() != features.shape[0]:
        raise ValueError(f"got {classes.numel()} classes for {features.shape[0]} images")
    if (classes < 0).any() or (classes >= weight.shape[0]).any():
        raise ValueError(f"class index out of range 0..{weight.shape[0] - 1}")
    return torch.bmm(weight[classes].unsqueeze(1), flat).reshape(n, h, w)
