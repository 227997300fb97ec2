"""A per-image reference of the DESIGN §4 pipeline, written the obvious way.

One image at a time, with library calls where they exist: scikit-image ``sobel``,
``local_maxima``, ``skeletonize``, ``flood`` (one flood fill per seed) and
``remove_small_holes``; ``np.percentile``; stable ``argsort`` for the top-k choices. It shares
only ``resize_bilinear`` with hrcam (checked separately against PyTorch). Used by the tests and
by ``benchmarks/bench_pipeline.py`` as the oracle for the batched implementation.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, morphology, segmentation

from hrcam.postprocessing.filters import resize_bilinear, resize_nearest

F32 = np.float32


def norm(a):
    a = np.asarray(a, dtype=F32)
    rng = a.max() - a.min()
    return (a - a.min()) / rng if rng > 0 else np.zeros_like(a)


def top_k(values, k):
    """Mask of the k largest values (stable sort: ties go to the earlier raster position)."""
    flat = values.ravel()
    mask = np.zeros(flat.size, bool)
    mask[np.argsort(-flat, kind="stable")[:k]] = True
    return mask.reshape(values.shape)


def grow(edges, points, lower, upper):
    """One flood fill per seed on the band mask (4-connectivity)."""
    band = ((edges >= lower) & (edges <= upper)).astype(np.uint8)
    out = np.zeros(edges.shape, bool)
    for x, y in points:
        if band[y, x] and not out[y, x]:
            out |= segmentation.flood(band, (y, x), connectivity=1)
    return out


def reference_pipeline(img, low, high, roi_percentile=85, focal_scope="global", maxima_areas="small",
                       merge_type="blend", merge_alpha=0.5, filter_type="percentage",
                       filter_percentage=15, filter_threshold=0.6, grow_fn=grow):
    img = np.asarray(img)
    img = img[0] if img.ndim == 4 else img
    H, W = img.shape[:2]
    low = np.asarray(low, F32)
    blurred = ndi.uniform_filter(norm(high), size=5, mode="reflect")
    edges = norm(filters.sobel(blurred))
    low_resized = resize_bilinear(low[None], (H, W))[0]
    roi = low_resized > np.percentile(low_resized, roi_percentile)
    inside = edges[roi] if roi.any() else edges.ravel()
    lower, upper = np.percentile(inside, 25), np.percentile(inside, 75)
    if focal_scope == "global":
        seeds = top_k(low_resized, max(1, int(round(np.sqrt(H)))))
    else:
        cand = morphology.local_maxima(low).astype(bool)
        keep = np.zeros_like(cand)
        if cand.any():
            keep = cand & (low >= (low[cand].max() + low[cand].min()) / 2)
        seeds = resize_nearest(keep[None], (H, W))[0]
        if maxima_areas == "small" and seeds.any():
            seeds = morphology.skeletonize(seeds)
    ys, xs = np.nonzero(seeds)
    points = [(int(x), int(y)) for y, x in zip(ys, xs)]
    segmented = grow_fn(edges, points, lower, upper)
    full = morphology.remove_small_holes(segmented | (roi & (edges >= upper)), max_size=256)
    L = norm(low_resized)
    if not full.any() and not (low_resized > 0).any():
        merged = np.zeros((H, W), F32)
    elif not full.any():
        merged = L
    elif not (low_resized > 0).any():
        merged = full.astype(F32)
    elif merge_type == "blend":
        merged = np.minimum(F32(merge_alpha) * full + F32(1 - merge_alpha) * L, F32(1))
    else:
        merged = full * L
    if filter_type == "percentage":
        keep = top_k(merged, int(round(filter_percentage / 100 * merged.size))) & (merged > merged.min())
    else:
        keep = norm(merged) > filter_threshold
    result = np.where(keep[..., None] if img.ndim == 3 else keep, img, 0).astype(img.dtype)
    return {"blurred": blurred, "low": low, "low_resized": low_resized, "edges": edges, "roi": roi,
            "bounds": (float(lower), float(upper)), "focal_points": points, "segmented": segmented,
            "full_segment": full, "merged": merged.astype(F32), "result": result}
