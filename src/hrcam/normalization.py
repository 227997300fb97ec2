"""Per-map min-max normalization, the one copy every layer uses (explainers, metrics, pictures)."""
from __future__ import annotations

import numpy as np
import torch

__all__ = ["minmax_normalize"]


def minmax_normalize(maps):
    """Scale each map of an N×… stack to [0, 1]: ``(m − min m) / (max m − min m)``.

    A constant map becomes all zeros (never a division by zero). A map holding NaN has a NaN
    span and becomes all zeros too; callers that must see such maps check finiteness first.
    Works on torch tensors (result: a tensor) and NumPy arrays (result: an array).

    Example:
        >>> minmax_normalize(np.array([[[1.0, 3.0]], [[2.0, 2.0]]])).tolist()
        [[[0.0, 1.0]], [[0.0, 0.0]]]
    """
    if isinstance(maps, torch.Tensor):
        flat = maps.reshape(maps.shape[0], -1)
        lo = flat.amin(dim=1, keepdim=True)
        span = flat.amax(dim=1, keepdim=True) - lo
        safe = torch.where(span > 0, span, torch.ones_like(span))
        return torch.where(span > 0, (flat - lo) / safe, torch.zeros_like(flat)).reshape(maps.shape)
    a = np.asarray(maps)
    flat = a.reshape(a.shape[0], -1)
    lo = flat.min(axis=1, keepdims=True)
    span = flat.max(axis=1, keepdims=True) - lo
    return np.where(span > 0, (flat - lo) / np.where(span > 0, span, 1.0), 0.0).reshape(a.shape)
