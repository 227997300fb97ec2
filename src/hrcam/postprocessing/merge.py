"""Merging the segmentation with the low-res map, and cutting the image by the refined map
(DESIGN §4 steps 8–9). All functions take stacks (leading axis N)."""
from __future__ import annotations

import cv2
import numpy as np

from hrcam.postprocessing.filters import RowRanks, as_work, count_per_row, normalize

__all__ = ["merge_maps", "percentage_mask", "threshold_mask", "apply_mask"]


def merge_maps(
    full_segment: np.ndarray,
    low_resized: np.ndarray,
    merge_type: str = "blend",
    alpha: float = 0.5,
    low_range: tuple[np.ndarray, np.ndarray] | None = None,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """The refined map of each image, in [0, 1].

    With ``S`` the filled segmentation (0/1) and ``L = norm(low_resized)``:

    - ``blend``:    ``alpha · S + (1 − alpha) · L``;
    - ``multiply``: ``S · L``;
    - a map is *blank* when no value is > 0: if ``S`` is blank the result is ``L``, if the
      low-res map is blank it is ``S``, and if both are blank it is all zeros (the seed raised
      an error there; a defined output is more useful in a batch).

    ``low_range`` = per-map (min, max) of ``low_resized`` when already known; the result goes
    into ``out`` when given.
    """
    lo, hi = low_range if low_range is not None else (None, None)
    low_n = normalize(low_resized, lo, hi, out=out)
    if hi is None:
        hi = as_work(low_resized).max(axis=tuple(range(1, low_n.ndim)))
    seg = np.asarray(full_segment, dtype=bool)
    seg_blank = count_per_row(seg) == 0
    low_blank = ~(np.asarray(hi) > 0)
    plain_low = low_n[seg_blank] if seg_blank.any() else None
    merged = low_n  # reused in place
    if merge_type == "blend":
        a, b = as_work(alpha), as_work(1.0 - alpha)
        merged *= b
        merged += seg * a  # + a on the segment, + 0 elsewhere (np.add(where=) is 20× slower)
        if a + b > 1:  # float32 rounding of alpha and 1 − alpha could overshoot 1 by an ulp
            np.minimum(merged, 1.0, out=merged)
    elif merge_type == "multiply":
        merged *= seg
    else:
        raise ValueError(f"merge_type must be 'blend' or 'multiply', got {merge_type!r}")
    if plain_low is not None:
        merged[seg_blank] = plain_low
    merged[low_blank] = seg[low_blank]
    merged[seg_blank & low_blank] = 0.0
    return merged


def percentage_mask(merged: np.ndarray, percentage: float) -> np.ndarray:
    """Keep the ``k = round(percentage/100 · H·W)`` highest pixels of each refined map.

    Ties at the cut are broken in raster order; pixels at the map's minimum are never kept
    (they are not "high" — a constant map keeps nothing, as the threshold filter does).
    """
    k = int(round(percentage / 100.0 * merged[0].size))
    ranks = RowRanks(merged, top_ks=(k,))
    keep = ranks.top_k(k)
    cut = ranks.kth_largest(k)
    # a pixel at the minimum can only be kept where the k-th largest value is the minimum
    at_min = np.arange(len(merged)) if cut is None else np.flatnonzero(cut <= ranks.min)
    for i in at_min:
        keep[i] &= merged[i] > ranks.min[i]
    return keep


def threshold_mask(merged: np.ndarray, threshold: float) -> np.ndarray:
    """Keep the pixels where ``norm(merged) > threshold``."""
    return normalize(merged) > threshold


def apply_mask(images: np.ndarray, keep: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """The images (``N×H×W×C`` or ``N×H×W``) with every pixel outside ``keep`` set to zero (dtype kept).

    ``image · keep``: exact for finite images (x·1 = x, x·0 = ±0). The mask is repeated over
    the channels first (``cv2.merge``, 10× faster than ``np.repeat``), so the product runs over
    contiguous memory (2.5× faster than broadcasting a length-C inner axis)."""
    if images.ndim == keep.ndim:
        return np.multiply(images, keep, dtype=images.dtype, out=out)
    channels = images.shape[-1]
    k = np.empty(images.shape, np.uint8)
    for m, dst in zip(np.ascontiguousarray(keep, dtype=bool).view(np.uint8), k):
        cv2.merge([m] * channels, dst=dst)
    return np.multiply(images, k.view(bool), dtype=images.dtype, out=out)
