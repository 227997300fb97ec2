"""Maps in TensorBoard while HR-CAM trains: watch the decoder learn.

:class:`MapLogger` is a Lightning callback. At the start of training it fixes ``count`` images
(spread evenly over the validation split, or over the training split read without augmentation
when there is none); every ``every`` epochs it computes their maps of the true class with the
network in eval mode (no gradients, no random draws, the modules' train/eval flags restored
after) and logs one strip of heat-map overlays per kind to the run's TensorBoard file::

    maps/images    the images (logged once, at the first logging)
    maps/low       low-res CAMs (bilinear to input size)
    maps/high      high-res CAMs           (FullModel only)
    maps/refined   the post-processing pipeline's merged maps (FullModel only)

Only rank zero logs. Cost, measured on this project's 2-core CPU box with 8 images: at 32 px
0.03–0.15 s per logging; at 224 px about 0.4–1.1 s for a HalfModel (one forward pass) and
2.2–2.5 s for a FullModel (forward pass + the post-processing pipeline for the refined maps).
That is one forward pass of 8 images plus the pipeline, once per epoch, so it does not grow with
the data set; ``--log_maps_every N`` spreads it out and 0 turns it off.
"""
from __future__ import annotations

import copy
import time

import lightning.pytorch as L
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["MapLogger", "fixed_images"]


def fixed_images(dataset, count: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` images of ``dataset`` spread evenly over it (N×C×H×W, labels), without augmentation."""
    if getattr(dataset, "transform", None) is not None:
        dataset = copy.copy(dataset)
        dataset.transform = None
    n = len(dataset)
    picks = np.unique(np.linspace(0, n - 1, min(count, n)).round().astype(int))
    items = [dataset[int(i)] for i in picks]
    return torch.stack([x for x, _ in items]), torch.as_tensor([int(y) for _, y in items])


def _strip(pictures: list[np.ndarray], gap: int = 2) -> np.ndarray:
    """H×W×3 pictures side by side with a white gap, as a 3×H×W' array for TensorBoard."""
    h = max(p.shape[0] for p in pictures)
    cols = []
    for i, p in enumerate(pictures):
        pad = np.ones((h, p.shape[1], 3))
        pad[: p.shape[0]] = p
        cols.append(pad)
        if i < len(pictures) - 1:
            cols.append(np.ones((h, gap, 3)))
    return np.concatenate(cols, axis=1).transpose(2, 0, 1).astype(np.float32)


class MapLogger(L.Callback):
    """Log the low-res, high-res and refined maps of ``count`` fixed images every ``every`` epochs."""

    def __init__(self, every: int = 1, count: int = 8):
        if every < 1 or count < 1:
            raise ValueError(f"every and count must be >= 1, got {every} and {count}")
        self.every, self.count = int(every), int(count)
        self.images = self.labels = None
        self.seconds: list[float] = []  #: wall time of each logging (for the cost in the docs)
        self._logged_images = False

    def on_fit_start(self, trainer, pl_module) -> None:  # noqa: D102 - Lightning's hook
        dm = trainer.datamodule
        dataset = getattr(dm, "val_set", None) or getattr(dm, "train_set", None)
        if dataset is not None and trainer.is_global_zero:
            self.images, self.labels = fixed_images(dataset, self.count)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102 - Lightning's hook
        if self.images is None or not trainer.is_global_zero or (trainer.current_epoch + 1) % self.every:
            return
        writer = getattr(trainer.logger, "experiment", None)
        if writer is None or not hasattr(writer, "add_image"):
            return
        t0 = time.perf_counter()
        step = trainer.global_step
        strips = self.strips(pl_module.net)
        if not self._logged_images:
            writer.add_image("maps/images", strips.pop("images"), step)
            self._logged_images = True
        else:
            strips.pop("images")
        for kind, strip in strips.items():
            writer.add_image(f"maps/{kind}", strip, step)
        self.seconds.append(time.perf_counter() - t0)

    def strips(self, net) -> dict[str, np.ndarray]:
        """``{"images", "low", ("high", "refined")}`` → 3×H×W' overlay strips of the fixed images."""
        from hrcam.explain.hrcam import high_low_maps
        from hrcam.models.base import class_maps
        from hrcam.viz.plotting import as_display_image, overlay

        modes = {m: m.training for m in net.modules()}
        device = next(net.parameters()).device
        x = self.images.to(device)
        try:
            net.eval()
            with torch.no_grad():
                if getattr(net, "has_high_res", False):
                    low, high, _, _ = high_low_maps(net, x, self.labels.to(device))
                else:
                    low = class_maps(net.low_weight, net.forward_maps(x).low_features, self.labels.to(device))
                    high = None
        finally:
            for m, mode in modes.items():
                m.training = mode
        pics = [as_display_image(im.permute(1, 2, 0).cpu().numpy()) for im in self.images]
        pics = [p if p.ndim == 3 else np.repeat(p[..., None], 3, axis=2) for p in pics]
        low_up = F.interpolate(low[:, None].float(), size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        maps = {"low": low_up.cpu().numpy()}
        if high is not None:
            from hrcam.postprocessing.refine import refined_maps

            maps["high"] = high.float().cpu().numpy()
            maps["refined"] = refined_maps(np.stack(pics), low.float().cpu().numpy(), maps["high"])
        out = {"images": _strip(pics)}
        for kind, m in maps.items():
            out[kind] = _strip([overlay(p, mi) for p, mi in zip(pics, m)])
        return out
