"""The post-processing pipeline of seed 001 §4 (DESIGN §4): low- + high-res CAM → refined CAM.

``pipeline_batch`` is the implementation (every step runs on the whole ``N×H×W`` stack);
``pipeline`` runs it with ``N = 1`` and drops the batch axis.
"""
from __future__ import annotations

import numpy as np

from hrcam.postprocessing.filters import (
    WORK_DTYPE,
    RowRanks,
    as_work,
    box_blur,
    count_per_row,
    normalize,
    ragged_percentiles,
    resize_bilinear,
    sobel_magnitude,
)
from hrcam.postprocessing.focal_points import local_focal_mask, masks_to_points, num_global_points
from hrcam.postprocessing.merge import apply_mask, merge_maps, percentage_mask, threshold_mask
from hrcam.postprocessing.params import validate_params
from hrcam.postprocessing.region_growing import fill_small_holes, region_grow

__all__ = ["pipeline", "pipeline_batch", "STEP_KEYS", "CHUNK"]

#: images processed together; a chunk's working set (about 2 MB per 224×224 image) stays in
#: cache, which measured about 30 % faster than running each step over all of N=64 at once.
CHUNK = 8

STEP_KEYS = (
    "blurred",
    "low",
    "low_resized",
    "edges",
    "roi",
    "bounds",
    "focal_points",
    "segmented",
    "full_segment",
    "merged",
    "result",
)


def _numpy(x, name: str) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    a = np.asarray(x)
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        raise ValueError(f"{name} must be a numeric array, got dtype {a.dtype}")
    if a.dtype.kind == "c":
        raise ValueError(f"{name} must be real-valued, got dtype {a.dtype}")
    return a


def _check_finite(a: np.ndarray, name: str) -> None:
    """NaN or ±inf anywhere makes the sum non-finite (one fast reduction, no temporary); a
    non-finite sum of finite values (overflow) is told apart by min and max."""
    if a.dtype.kind != "f" or not a.size:
        return
    with np.errstate(over="ignore", invalid="ignore"):
        if np.isfinite(a.sum()):
            return
    if not (np.isfinite(a.min()) and np.isfinite(a.max())):
        raise ValueError(f"{name} contains NaN or inf")


def _check_maps(maps, name: str, n: int) -> np.ndarray:
    a = _numpy(maps, name)
    if a.ndim != 3 or a.shape[0] != n:
        raise ValueError(f"{name} must be an array N×h×w with N={n}, got shape {a.shape}")
    if 0 in a.shape:
        raise ValueError(f"{name} must not be empty, got shape {a.shape}")
    with np.errstate(over="ignore"):
        a = as_work(a)
    _check_finite(a, name)  # after the float32 conversion, which turns |x| > 3.4e38 into inf
    return a


def pipeline_batch(imgs, lows, highs, **params) -> dict:
    """Run the pipeline on N images at once.

    Parameters
    ----------
    imgs : ``N×H×W×C`` (or ``N×H×W`` grayscale) images, uint8 or float in [0, 1].
    lows : ``N×h×w`` low-res CAMs (any size; resized bilinearly to H×W).
    highs : ``N×H×W`` high-res CAMs.
    **params : see :func:`hrcam.postprocessing.params.validate_params` (the seed's parameters and
        defaults: ``roi_percentile=85, focal_scope='global', maxima_areas='small',
        merge_type='blend', merge_alpha=0.5, filter_type='percentage', filter_percentage=15,
        filter_threshold=0.6``).

    Steps (``norm`` = per-map min-max, constant → 0; ``pct`` = NumPy linear percentile):

    1. ``blurred = box5(norm(high))`` (5×5 mean, reflect border);
    2. ``edges = norm(sobel(blurred))`` (scikit-image Sobel magnitude);
    3. ``low_resized = bilinear(low → H×W)``; ``roi = low_resized > pct(low_resized, roi_percentile)``;
    4. ``bounds = (pct(edges[roi], 25), pct(edges[roi], 75))`` (over all of ``edges`` if the ROI is empty);
    5. focal points: ``global`` = the round(√H) largest pixels of ``low_resized``; ``local`` =
       thresholded local maxima of ``low``, nearest-resized (skeletonized for ``maxima_areas='small'``);
    6. ``segmented`` = pixels 4-connected to a focal point through ``lower ≤ edges ≤ upper``;
    7. ``full_segment`` = holes of ≤ 256 px filled in ``segmented ∪ (roi ∧ edges ≥ upper)``;
    8. ``merged`` (the refined CAM) = ``blend``/``multiply`` of ``full_segment`` and ``norm(low_resized)``;
    9. ``result`` = the image with all pixels zeroed except the kept ones (``percentage``: the
       ``filter_percentage`` % highest of ``merged``; ``threshold``: ``norm(merged) > filter_threshold``).

    Returns
    -------
    dict with the keys of :data:`STEP_KEYS`, each with a leading N axis: float32 maps
    ``blurred, low, low_resized, edges, merged`` (the work is done in float32, the CAMs' dtype);
    bool masks ``roi, segmented, full_segment``; ``bounds`` as an ``N×2`` array of
    (lower, upper); ``focal_points`` as a list (one per image) of ``(x, y)`` tuples; ``result``
    with the images' shape and dtype.

    Every step treats each image on its own (image ``n``'s outputs depend only on input ``n``,
    bit for bit, whatever N is); internally the batch is processed in chunks of :data:`CHUNK`
    images, each chunk step by step on the stacked arrays. Tie and corner-case rules: top-k
    choices break ties in raster order; an empty ROI takes the bounds over the whole edge map;
    the percentage filter never keeps pixels at the refined map's minimum; both maps blank →
    ``merged`` is all zeros (see :mod:`hrcam.postprocessing.merge`).
    """
    p = validate_params(**params)
    imgs = _numpy(imgs, "imgs")
    if imgs.ndim not in (3, 4):
        raise ValueError(f"imgs must be N×H×W×C or N×H×W, got shape {imgs.shape}")
    if 0 in imgs.shape:
        raise ValueError(f"imgs must not be empty, got shape {imgs.shape}")
    _check_finite(imgs, "imgs")
    n, H, W = imgs.shape[:3]
    highs = _check_maps(highs, "highs", n)
    if highs.shape[1:] != (H, W):
        raise ValueError(f"high-res maps must have the images' size {H}×{W}, got {highs.shape[1]}×{highs.shape[2]}")
    lows = _check_maps(lows, "lows", n)
    out = _allocate(imgs, lows)
    for start in range(0, n, CHUNK):
        part = slice(start, start + CHUNK)
        views = {key: value[part] for key, value in out.items() if isinstance(value, np.ndarray)}
        _refine(imgs[part], lows[part], highs[part], p, views)
        out["focal_points"].extend(views["focal_points"])
    return out


def _allocate(imgs: np.ndarray, lows: np.ndarray) -> dict:
    """The output arrays of :func:`pipeline_batch`, in :data:`STEP_KEYS` order; every chunk
    writes into its slice of them (no per-chunk results to copy)."""
    n, H, W = imgs.shape[:3]
    maps = lambda dtype=WORK_DTYPE: np.empty((n, H, W), dtype)  # noqa: E731
    out = {
        "blurred": maps(),
        "low": lows.copy(),
        "low_resized": maps(),
        "edges": maps(),
        "roi": maps(bool),
        "bounds": np.empty((n, 2), np.float64),
        "focal_points": [],
        "segmented": maps(bool),
        "full_segment": maps(bool),
        "merged": maps(),
        "result": np.empty_like(imgs),
    }
    assert tuple(out) == STEP_KEYS
    return out


def _refine(imgs: np.ndarray, lows: np.ndarray, highs: np.ndarray, p, out: dict) -> None:
    """All pipeline steps for one chunk of checked inputs (see :func:`pipeline_batch`), written
    into ``out`` (the chunk's slices of the output arrays); sets ``out["focal_points"]``."""
    n, H, W = imgs.shape[:3]

    # High-res branch
    blur, max_hole = p.pixel_constants(H, W)
    blurred = box_blur(normalize(highs), size=blur, out=out["blurred"])
    edges = normalize(sobel_magnitude(blurred, out=out["edges"]), out=out["edges"])

    # Low-res branch: one partial sort gives the ROI percentile, the global focal points and
    # the min/max used to normalize the low-res map in the merge.
    low_resized = resize_bilinear(lows, (H, W), out=out["low_resized"])
    n_points = num_global_points(H)
    ranks = RowRanks(low_resized, percentiles=(p.roi_percentile,), top_ks=(n_points,))
    roi = np.greater(low_resized, ranks.percentile(p.roi_percentile)[:, None, None], out=out["roi"])

    counts = count_per_row(roi)
    empty = counts == 0  # e.g. a constant low-res map: take the bounds over the whole edge map
    roi_for_bounds = (roi | empty[:, None, None]) if empty.any() else roi
    bounds = out["bounds"]
    bounds[...] = ragged_percentiles(edges[roi_for_bounds], np.where(empty, H * W, counts), (25, 75))
    lower, upper = bounds[:, 0], bounds[:, 1]

    if p.focal_scope == "global":
        seeds = ranks.top_k(n_points)
    else:
        seeds = local_focal_mask(lows, (H, W), p.maxima_areas)

    segmented = region_grow(edges, seeds, lower, upper, out=out["segmented"])
    grown = edges >= upper.astype(edges.dtype)[:, None, None]
    grown &= roi
    grown |= segmented  # segmented ∪ (roi ∧ edges ≥ upper)
    full_segment = fill_small_holes(grown, max_size=max_hole, out=out["full_segment"])

    merged = merge_maps(
        full_segment, low_resized, p.merge_type, p.merge_alpha, low_range=(ranks.min, ranks.max),
        out=out["merged"],
    )
    if p.filter_type == "percentage":
        keep = percentage_mask(merged, p.filter_percentage)
    else:
        keep = threshold_mask(merged, p.filter_threshold)
    apply_mask(imgs, keep, out=out["result"])
    out["focal_points"] = masks_to_points(seeds)


def _single(x, name: str, image: bool = False) -> np.ndarray:
    """Add the batch axis to one image (H×W×C, 1×H×W×C, H×W) or one map (h×w, 1×h×w)."""
    a = _numpy(x, name)
    if image:
        if a.ndim == 4 and a.shape[0] == 1:
            return a
        if a.ndim in (2, 3):
            return a[None]
        raise ValueError(f"{name} must be H×W×C, 1×H×W×C or H×W, got shape {a.shape}")
    if a.ndim == 3 and a.shape[0] == 1:
        return a
    if a.ndim == 2:
        return a[None]
    raise ValueError(f"{name} must be a single map h×w (or 1×h×w), got shape {a.shape}")


def pipeline(img, low, high, **params) -> dict:
    """The seed's ``postprocessing.pipeline(img, low, high)`` for one image.

    ``img``: H×W×3 (or 1×H×W×3, or H×W), uint8 or float; ``low``: h×w; ``high``: H×W.
    Same steps and parameters as :func:`pipeline_batch` (which it calls with N = 1); the
    returned maps have no batch axis, ``bounds`` is a ``(lower, upper)`` tuple of floats,
    ``focal_points`` a list of ``(x, y)`` tuples and ``result`` an H×W×C (or H×W) image.
    """
    steps = pipeline_batch(
        _single(img, "img", image=True), _single(low, "low"), _single(high, "high"), **params
    )
    out = {k: v[0] for k, v in steps.items()}
    out["bounds"] = (float(out["bounds"][0]), float(out["bounds"][1]))
    return out
