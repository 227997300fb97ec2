"""JSON for result files: NaN and infinity become ``null``, NumPy scalars plain numbers."""
from __future__ import annotations

import math

import numpy as np

__all__ = ["json_safe"]


def json_safe(d):
    """A copy of ``d`` (dicts, lists, tuples, numbers) that :func:`json.dumps` writes as strict JSON.

    Non-finite floats become ``None``; NumPy floats and integers become Python numbers.

    Example:
        >>> json_safe({"iou": float("nan"), "n": np.int64(3), "xs": [1.5, float("inf")]})
        {'iou': None, 'n': 3, 'xs': [1.5, None]}
    """
    if isinstance(d, dict):
        return {k: json_safe(v) for k, v in d.items()}
    if isinstance(d, (list, tuple)):
        return [json_safe(v) for v in d]
    if isinstance(d, (np.floating, np.integer)):
        d = d.item()
    if isinstance(d, float) and not math.isfinite(d):
        return None
    return d
