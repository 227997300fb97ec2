"""The refined map of HR-CAM: the pipeline's ``merged`` output, guarded against non-finite maps."""
from __future__ import annotations

import numpy as np

from hrcam.postprocessing.steps import pipeline_batch

__all__ = ["refined_maps"]


def refined_maps(images, low, high, **params) -> np.ndarray:
    """``pipeline_batch(images, low, high, **params)["merged"]`` for N images at once.

    Args:
        images: N×H×W×C floats in [0, 1].
        low: N×h×w low-res CAMs.
        high: N×H×W high-res CAMs.
        **params: pipeline parameters (:func:`hrcam.postprocessing.validate_params`).

    Returns:
        N×H×W refined maps. The pipeline rejects NaN/inf, so an image whose low- or high-res map
        is not finite gets an all-NaN map (metrics count and exclude such maps) instead of
        failing the whole batch.
    """
    low, high = np.asarray(low), np.asarray(high)
    n = low.shape[0]
    ok = np.isfinite(low.reshape(n, -1)).all(1) & np.isfinite(high.reshape(n, -1)).all(1)
    if ok.all():
        return np.asarray(pipeline_batch(images, low, high, **params)["merged"])
    images = np.asarray(images)
    out = np.full((n, *images.shape[1:3]), np.nan, dtype=np.float32)
    if ok.any():
        merged = pipeline_batch(images[ok], low[ok], high[ok], **params)["merged"]
        out[ok] = np.asarray(merged, dtype=np.float32).reshape(-1, *images.shape[1:3])
    return out
