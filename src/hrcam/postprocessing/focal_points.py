"""Focal points: the seeds of the region growing, taken from the low-res map (DESIGN §4 step 5).

Both scopes return a boolean seed mask ``N×H×W`` (at image resolution); :func:`mask_to_points`
turns a mask into the seed's list of ``(x, y)`` tuples.
"""
from __future__ import annotations

import numpy as np

from hrcam.postprocessing.filters import resize_nearest, stack_nonzero, top_k_mask

__all__ = ["global_focal_mask", "local_focal_mask", "mask_to_points", "masks_to_points", "num_global_points"]


def num_global_points(height: int) -> int:
    """``n = round(√H)`` focal points for the global scope (15 at 224)."""
    return max(1, int(round(float(np.sqrt(height)))))


def global_focal_mask(low_resized: np.ndarray) -> np.ndarray:
    """The ``n = round(√H)`` pixels of each resized low-res map with the largest values.

    ``low_resized`` is ``N×H×W``; ties at the cut are broken in raster order.
    """
    return top_k_mask(low_resized, num_global_points(low_resized.shape[1]))


def local_focal_mask(low: np.ndarray, shape: tuple[int, int], maxima_areas: str = "small") -> np.ndarray:
    """Local maxima of each low-res map ``N×h×w``, as a seed mask at image size ``shape``.

    1. candidates = ``skimage.morphology.local_maxima(low)`` (plateaus count as one maximum);
    2. keep candidates with value ≥ (max + min)/2 of the candidates' values (so the strongest
       maximum is always kept; a map without maxima, e.g. a constant one, has no focal points);
    3. nearest-resize the mask to ``shape``; with ``maxima_areas='small'`` skeletonize it so each
       blown-up block shrinks to a thin set of pixels.
    """
    from skimage.morphology import local_maxima, skeletonize

    low = np.asarray(low)
    keep = np.zeros(low.shape, dtype=bool)
    for i, a in enumerate(low):
        cand = local_maxima(a).astype(bool) if a.size > 1 else np.zeros(a.shape, bool)
        if not cand.any():
            continue
        values = a[cand]
        threshold = (values.max() + values.min()) / 2.0
        keep[i] = cand & (a >= threshold)
    mask = resize_nearest(keep, shape)
    if maxima_areas == "small":
        mask = np.stack([skeletonize(m) if m.any() else m for m in mask])
    return mask.astype(bool, copy=False)


def mask_to_points(mask: np.ndarray) -> list[tuple[int, int]]:
    """The ``(x, y)`` coordinates (column, row) of the pixels set in a 2-D mask, in raster order."""
    ys, xs = np.nonzero(mask)
    return list(zip(xs.tolist(), ys.tolist()))


def masks_to_points(masks: np.ndarray) -> list[list[tuple[int, int]]]:
    """:func:`mask_to_points` of every mask of an ``N×H×W`` stack (one ``nonzero`` pass)."""
    ns, ys, xs = stack_nonzero(masks)
    points = list(zip(xs.tolist(), ys.tolist()))
    edges = np.searchsorted(ns, np.arange(masks.shape[0] + 1))
    return [points[a:b] for a, b in zip(edges[:-1], edges[1:])]
