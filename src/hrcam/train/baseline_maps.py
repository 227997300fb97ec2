"""Pictures and arrays of maps made during and after training the neighbouring methods.

- :func:`heatmap_overlay`: an image (3×H×W in [0, 1]) blended with a jet-coloured map, the
  form logged to TensorBoard;
- :func:`save_maps`: run an explainer on a few images and write, per image, the overlay
  (``NNN_<class>.png``) and the raw map at input resolution (``NNN_<class>.npy``, float32 in
  [0, 1]), plus ``maps.npz`` holding all maps, targets and logits.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

__all__ = ["heatmap_overlay", "save_maps"]


def heatmap_overlay(image: torch.Tensor, heat: torch.Tensor, alpha: float = 0.5) -> torch.Tensor:
    """``(1 − alpha) · image + alpha · jet(heat)`` as a 3×H×W tensor (the TensorBoard form).

    ``image`` is C×H×W in [0, 1] (1 or 3 channels), ``heat`` H×W in [0, 1]; the blend is
    :func:`hrcam.viz.plotting.overlay`.
    """
    from hrcam.viz.plotting import overlay

    if image.ndim != 3 or heat.ndim != 2 or tuple(image.shape[-2:]) != tuple(heat.shape):
        raise ValueError(f"expected image C×H×W and heat H×W of the same size, got {tuple(image.shape)} and {tuple(heat.shape)}")
    img = image.detach().float().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    blended = overlay(img.permute(1, 2, 0).numpy(), heat.detach().float().cpu().clamp(0, 1).numpy(), alpha)
    return torch.from_numpy(blended).permute(2, 0, 1).float()


def save_maps(explainer, images: torch.Tensor, out_dir, targets=None, class_names=None) -> Path:
    """Explain ``images`` (N×C×H×W in [0,1]) and write overlays + raw arrays into ``out_dir``."""
    from hrcam.viz.plotting import save_image

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    expl = explainer.explain(images, targets)
    maps, logits, classes = expl.maps, expl.logits, expl.targets
    maps, logits, classes = maps.cpu(), logits.cpu(), classes.cpu()
    for i in range(images.shape[0]):
        c = int(classes[i])
        label = class_names[c] if class_names and c < len(class_names) else str(c)
        safe = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in label)
        stem = f"{i:03d}_{safe}"
        np.save(out / f"{stem}.npy", maps[i].numpy().astype(np.float32))
        overlay = heatmap_overlay(images[i].cpu(), maps[i]).permute(1, 2, 0).numpy()
        save_image(out / f"{stem}.png", np.clip(overlay, 0, 1))
    np.savez_compressed(out / "maps.npz", maps=maps.numpy().astype(np.float32), targets=classes.numpy(),
                        logits=logits.numpy())
    return out
