"""Turning user input into model input, and the seed's training augmentation."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["as_batch", "to_numpy_image", "seed_augmentation"]


def as_batch(x, channels: int | None = None) -> tuple[torch.Tensor, bool]:
    """Convert images to a float32 tensor ``N×C×H×W`` with values in [0, 1].

    Accepted forms (the seed passes NumPy channels-last arrays; PyTorch users pass tensors):

    - NumPy ``N×H×W×C`` or ``H×W×C`` (channels last), or ``H×W`` (grayscale);
    - torch ``N×C×H×W`` or ``C×H×W`` (channels first);
    - uint8 (0..255) or float in [0, 1] (float with values above 1 is refused: pass uint8 or
      divide by 255).

    Returns ``(batch, single)`` where ``single`` is True when one image was given without a batch
    axis *or* as a batch of one in the seed's ``1×H×W×C`` form — callers then return 2-D maps.
    ``channels`` (if given) is checked against the input.
    """
    single = False
    if isinstance(x, torch.Tensor):
        t = x.detach()
        if t.ndim == 2:
            t = t[None, None]
            single = True
        elif t.ndim == 3:
            t = t[None]
            single = True
        elif t.ndim != 4:
            raise ValueError(f"expected an image tensor C×H×W or N×C×H×W, got shape {tuple(x.shape)}")
    else:
        a = np.asarray(x)
        if a.dtype == object:
            raise ValueError("expected a numeric image array")
        if a.ndim == 2:
            a = a[None, :, :, None]
            single = True
        elif a.ndim == 3:
            a = a[None]
            single = True
        elif a.ndim == 4:
            single = a.shape[0] == 1
        else:
            raise ValueError(f"expected an image array H×W×C or N×H×W×C, got shape {a.shape}")
        t = torch.from_numpy(np.ascontiguousarray(a)).permute(0, 3, 1, 2)
    if t.dtype == torch.uint8:
        t = t.float().div_(255.0)
    elif t.dtype == torch.bool:
        t = t.float()
    elif not torch.is_floating_point(t):
        raise ValueError(f"expected uint8 or float images, got {t.dtype}")
    else:
        t = t.float()
    if channels is not None and t.shape[1] != channels:
        kind = {1: "grayscale", 3: "RGB", 4: "RGBA"}.get(int(t.shape[1]), f"{t.shape[1]}-channel")
        raise ValueError(f"expected images with {channels} channels, got {kind} images with {t.shape[1]} "
                         f"(shape {tuple(t.shape)}, read as N×C×H×W; convert them, e.g. PIL's .convert"
                         f"({'RGB' if channels == 3 else 'L'!r}))")
    if not torch.isfinite(t).all():
        raise ValueError("images contain NaN or inf")
    if t.numel() and float(t.max()) > 1.0 + 1e-4:
        raise ValueError(f"float images must be in [0, 1], got values up to {float(t.max()):g}: pass uint8 "
                         "images or divide by 255")
    return t.contiguous(), single


def to_numpy_image(x) -> np.ndarray:
    """One image (any form :func:`as_batch` accepts, a batch of one included) as float H×W×C in [0,1]."""
    t, _ = as_batch(x)
    if t.shape[0] != 1:
        raise ValueError(f"expected one image, got a batch of {t.shape[0]}")
    return t[0].permute(1, 2, 0).cpu().numpy()


def seed_augmentation(fill: float = 0.0):
    """The seed's training augmentation (DESIGN §3), on tensors in [0, 1].

    With probability 0.5 an affine transform (scale 0.9–1.1, translate ±20 %, rotate ±180°,
    shear ±5°, fill 0), then a horizontal flip with probability 0.5.
    """
    from torchvision.transforms import v2

    # torchvision's RandomAffine scales both axes together; the seed (imgaug) scales per axis.
    # The difference is within ±10 % aspect change and does not change what the model learns.
    affine = v2.RandomAffine(
        degrees=180, translate=(0.2, 0.2), scale=(0.9, 1.1), shear=(-5, 5, -5, 5), fill=fill
    )
    return v2.Compose([v2.RandomApply([affine], p=0.5), v2.RandomHorizontalFlip(p=0.5)])
