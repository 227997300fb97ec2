"""Localization metrics of saliency maps against ground-truth masks and boxes (DESIGN §6).

Every function works on a whole batch at once (NumPy; torch tensors are accepted) and returns one
value per image. Where an image has no ground truth (empty mask / no box) its value is ``NaN``
(never a hit); :func:`summarize` averages with ``nanmean`` and reports how many images counted.

Conventions
-----------
- maps: ``N×H×W`` (any real values; maps at a lower resolution are bilinearly upsampled to the
  ground truth's size first, :func:`upsample_maps`). ``norm(a) = (a − min a)/(max a − min a)``
  per map; a constant map normalizes to zeros.
- boxes: ``[x0, y0, x1, y1]`` in pixels, x0/y0 inclusive, x1/y1 exclusive (width ``x1 − x0``).
  An empty prediction is the zero box ``[0, 0, 0, 0]`` (IoU 0 with anything).
- ground-truth region for the pointing games: the mask where given, else the union of the boxes.

Metrics
-------
- pointing game: hit ⇔ the map's maximum (first in raster order on ties) lies within
  ``tolerance`` pixels (Euclidean) of a ground-truth pixel. DESIGN §6 reports 0 px and
  15 px at 224, scaled with the image: :func:`pointing_tolerance` ``= 15 · S / 224``.
- energy pointing game: ``Σ_{p∈GT} norm(m)_p / Σ_p norm(m)_p``; a constant map counts as uniform
  (share = GT area / image area).
- map → box, CAM rule (Zhou et al.): keep ``norm(m) ≥ 0.2``, the bounding box of the largest
  8-connected component.
- map → box, CASM rule: ``a = mean(norm(m))``, keep the ``k = round(a · H · W)`` largest pixels
  (every pixel ≥ the k-th largest value), the bounding box of the largest 4-connected component.
- box accuracy: hit ⇔ ``max IoU`` with the ground-truth boxes ``≥ 0.5`` (CAM rule) or
  ``> 0.5`` (CASM rule). Localization error ``LE = 1 − hit``; ``OM = 1 − hit · correct`` with
  ``correct`` = the classification was right.
- mask IoU: ``|B ∩ G| / |B ∪ G|`` with ``B = norm(m) ≥ mask_threshold`` (default 0.5).

Set-level, threshold-free metrics (Choe et al., CVPR 2020, "Evaluating Weakly Supervised Object
Localization Methods Right") pool over the whole set and return one number: :func:`pxap` (pixel
average precision), :func:`best_threshold_iou` (mean mask IoU at the one threshold best for the
set, swept over 0, 0.01, …, 0.99) and :func:`max_box_acc_v2` (box accuracy from all components,
best threshold per IoU criterion 0.3 / 0.5 / 0.7, averaged). Each has an accumulator
(:class:`SetLocalizationAccumulator` holds all three) so evaluation can stream batches.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from hrcam.normalization import minmax_normalize

__all__ = [
    "MASK_THRESHOLD",
    "CAM_BOX_THRESHOLD",
    "as_maps",
    "upsample_maps",
    "normalize_maps",
    "pointing_tolerance",
    "boxes_to_masks",
    "pointing_game",
    "energy_pointing_game",
    "largest_component_boxes",
    "boxes_cam_rule",
    "casm_keep_masks",
    "boxes_casm_rule",
    "mask_boxes",
    "box_iou",
    "box_accuracy",
    "mask_iou",
    "localization_metrics",
    "summarize",
    "SET_THRESHOLDS",
    "BOX_IOU_THRESHOLDS",
    "PXAP_BINS",
    "SET_KEYS",
    "BestThreshold",
    "BoxAccV2",
    "pxap",
    "PxAPAccumulator",
    "best_threshold_iou",
    "BestIoUAccumulator",
    "component_boxes",
    "max_box_acc_v2",
    "BoxAccV2Accumulator",
    "SetLocalizationAccumulator",
]

MASK_THRESHOLD = 0.5
CAM_BOX_THRESHOLD = 0.2
_STRUCT4 = np.array([[0, 1, 0], [1, 1, 1], [0, 1, 0]], dtype=bool)
_STRUCT8 = np.ones((3, 3), dtype=bool)


def as_maps(maps) -> np.ndarray:
    """Maps as float64 NumPy ``N×H×W`` (a single ``H×W`` map becomes a batch of one)."""
    try:
        import torch

        if isinstance(maps, torch.Tensor):
            maps = maps.detach().cpu().double().numpy()
    except ImportError:  # pragma: no cover
        pass
    a = np.asarray(maps, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"maps must be N×H×W (or H×W), got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("maps contain NaN or inf")
    return a


def _as_masks(masks, shape: tuple[int, ...]) -> np.ndarray:
    try:
        import torch

        if isinstance(masks, torch.Tensor):
            masks = masks.detach().cpu().numpy()
    except ImportError:  # pragma: no cover
        pass
    m = np.asarray(masks).astype(bool)
    if m.ndim == 2:
        m = m[None]
    if m.shape != tuple(shape):
        raise ValueError(f"ground-truth masks must have shape {tuple(shape)}, got {m.shape}")
    return m


def upsample_maps(maps, size: tuple[int, int]) -> np.ndarray:
    """Bilinearly resize maps ``N×h×w`` to ``N×H×W`` (``align_corners=False``, like the models')."""
    a = as_maps(maps)
    if a.shape[1:] == tuple(size):
        return a
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(a)[:, None]
    return F.interpolate(t, size=tuple(size), mode="bilinear", align_corners=False)[:, 0].numpy()


def normalize_maps(maps) -> np.ndarray:
    """Per-map min-max normalization to [0, 1]; a constant map becomes all zeros (never NaN)."""
    return minmax_normalize(as_maps(maps))


def pointing_tolerance(image_size: int, pixels_at_224: float = 15.0) -> float:
    """The pointing-game tolerance scaled with the image: ``pixels_at_224 · image_size / 224``."""
    if image_size <= 0:
        raise ValueError(f"image_size must be positive, got {image_size}")
    return float(pixels_at_224) * float(image_size) / 224.0


def _box_array(boxes) -> np.ndarray:
    b = np.asarray(boxes if boxes is not None else [], dtype=np.float64).reshape(-1, 4)
    if (b[:, 2] < b[:, 0]).any() or (b[:, 3] < b[:, 1]).any():
        raise ValueError(f"boxes must be [x0, y0, x1, y1] with x1 >= x0 and y1 >= y0, got {b.tolist()}")
    return b


def boxes_to_masks(boxes: Sequence, size: tuple[int, int]) -> np.ndarray:
    """Union of each image's boxes as a mask ``N×H×W`` (``boxes[i]`` is a list of boxes)."""
    h, w = size
    out = np.zeros((len(boxes), h, w), dtype=bool)
    ys = np.arange(h)[:, None]
    xs = np.arange(w)[None, :]
    for i, image_boxes in enumerate(boxes):
        for x0, y0, x1, y1 in _box_array(image_boxes):
            out[i] |= (ys >= y0) & (ys < y1) & (xs >= x0) & (xs < x1)
    return out


def _regions(maps: np.ndarray, masks, boxes) -> np.ndarray:
    """The ground-truth region per image: the mask where given, else the union of boxes."""
    n, h, w = maps.shape
    region = np.zeros((n, h, w), dtype=bool)
    have_mask = np.zeros(n, dtype=bool)
    if masks is not None:
        if isinstance(masks, (list, tuple)):  # per-image masks, None where missing
            for i, m in enumerate(masks):
                if m is not None:
                    region[i] = _as_masks(m, (1, h, w))[0]
                    have_mask[i] = True
        else:
            region = _as_masks(masks, (n, h, w)).copy()
            have_mask[:] = True
    if boxes is not None:
        if len(boxes) != n:
            raise ValueError(f"boxes must hold one list per image ({n}), got {len(boxes)}")
        from_boxes = boxes_to_masks(boxes, (h, w))
        region[~have_mask] = from_boxes[~have_mask]
    return region


def pointing_game(maps, gt_masks, tolerance: float = 0.0) -> np.ndarray:
    """Pointing game (Zhang et al., "Top-down Neural Attention by Excitation Backprop", ECCV 2016).

    ``hit = 1[min_{p ∈ G} ‖argmax(m) − p‖ ≤ tolerance]`` per image: 1.0 where the map's maximum is
    within ``tolerance`` px of the ground truth ``G``, 0.0 where not, NaN where ``G`` is empty.
    Maps at lower resolution are upsampled (bilinear) first.

    Example:
        >>> m = np.zeros((1, 4, 4)); m[0, 0, 0] = 1
        >>> g = np.zeros((1, 4, 4), bool); g[0, 2:, 2:] = True
        >>> pointing_game(m, g).tolist(), pointing_game(m, g, tolerance=3).tolist()
        ([0.0], [1.0])

    Args:
        maps: ``N×h×w`` (or ``h×w``) maps, any resolution.
        gt_masks: ``N×H×W`` boolean ground-truth masks.
        tolerance: the distance in pixels that still counts as a hit.

    Raises:
        ValueError: a negative ``tolerance``, or maps and masks of different counts.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    gt = np.asarray(gt_masks).astype(bool)
    gt = gt[None] if gt.ndim == 2 else gt
    a = upsample_maps(maps, gt.shape[1:])
    gt = _as_masks(gt, a.shape)
    n, h, w = a.shape
    flat = a.reshape(n, -1).argmax(axis=1)
    py, px = np.divmod(flat, w)
    ys = np.arange(h)[None, :, None]
    xs = np.arange(w)[None, None, :]
    d2 = (ys - py[:, None, None]) ** 2 + (xs - px[:, None, None]) ** 2
    nearest = np.where(gt, d2, np.inf).min(axis=(1, 2))
    hit = (nearest <= tolerance**2 + 1e-9).astype(np.float64)
    hit[~gt.any(axis=(1, 2))] = np.nan
    return hit


def energy_pointing_game(maps, gt_masks) -> np.ndarray:
    """Energy-based pointing game (Wang et al., "Score-CAM", CVPR Workshops 2020).

    ``E = Σ_{p ∈ G} norm(m)(p) / Σ_p norm(m)(p)``: the share of the min-max normalized map's mass
    inside the ground truth ``G`` (an all-zero map counts as uniform, ``|G| / (H·W)``); NaN
    where ``G`` is empty.

    Example:
        >>> m = np.zeros((1, 2, 2)); m[0, 0] = [1.0, 0.5]; m[0, 1, 0] = 0.5
        >>> g = np.zeros((1, 2, 2), bool); g[0, 0, 0] = True
        >>> energy_pointing_game(m, g).tolist()
        [0.5]

    Args:
        maps: ``N×h×w`` (or ``h×w``) maps, upsampled to the masks' size.
        gt_masks: ``N×H×W`` boolean ground-truth masks.

    Raises:
        ValueError: maps and masks of different counts.
    """
    gt = np.asarray(gt_masks).astype(bool)
    gt = gt[None] if gt.ndim == 2 else gt
    m = normalize_maps(upsample_maps(maps, gt.shape[1:]))
    gt = _as_masks(gt, m.shape)
    total = m.sum(axis=(1, 2))
    inside = (m * gt).sum(axis=(1, 2))
    uniform = gt.mean(axis=(1, 2))
    share = np.where(total > 0, inside / np.where(total > 0, total, 1.0), uniform)
    share[~gt.any(axis=(1, 2))] = np.nan
    return share


def largest_component_boxes(keep: np.ndarray, connectivity: int = 4) -> np.ndarray:
    """Bounding box ``[x0, y0, x1, y1]`` (end-exclusive) of each image's largest connected
    component of ``keep`` (``N×H×W`` bool); ties → the component met first in raster order;
    nothing kept → ``[0, 0, 0, 0]``. One ``scipy.ndimage.label`` call labels the whole batch."""
    from scipy import ndimage

    if connectivity not in (4, 8):
        raise ValueError(f"connectivity must be 4 or 8, got {connectivity}")
    keep = np.asarray(keep, dtype=bool)
    n, h, w = keep.shape
    structure = np.zeros((3, 3, 3), dtype=bool)  # no links across the batch axis
    structure[1] = _STRUCT4 if connectivity == 4 else _STRUCT8
    labels, count = ndimage.label(keep, structure=structure)
    boxes = np.zeros((n, 4), dtype=np.int64)
    if count == 0:
        return boxes
    sizes = np.bincount(labels.ravel(), minlength=count + 1)
    owner = np.zeros(count + 1, dtype=np.int64)
    owner[labels.ravel()] = np.repeat(np.arange(n), h * w)
    # labels are numbered in raster order over the batch: for each image pick the largest, and
    # among equals the smallest label (lexsort: last key is primary)
    ids = np.arange(1, count + 1)
    order = np.lexsort((ids, -sizes[1:], owner[1:]))
    first = np.ones(len(order), dtype=bool)
    first[1:] = owner[1:][order][1:] != owner[1:][order][:-1]
    best = np.zeros(n, dtype=np.int64)
    best[owner[1:][order][first]] = ids[order][first]
    sel = labels == best[:, None, None]
    sel &= (best > 0)[:, None, None]
    rows = sel.any(axis=2)
    cols = sel.any(axis=1)
    has = rows.any(axis=1)
    boxes[:, 0] = cols.argmax(axis=1)
    boxes[:, 1] = rows.argmax(axis=1)
    boxes[:, 2] = w - cols[:, ::-1].argmax(axis=1)
    boxes[:, 3] = h - rows[:, ::-1].argmax(axis=1)
    boxes[~has] = 0
    return boxes


def boxes_cam_rule(maps, threshold: float = CAM_BOX_THRESHOLD) -> np.ndarray:
    """CAM paper rule: keep ``norm(m) ≥ threshold`` (0.2), largest 8-connected component's box."""
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    m = normalize_maps(maps)
    keep = (m >= threshold) & (m > 0)  # a constant (all-zero) map keeps nothing
    return largest_component_boxes(keep, connectivity=8)


def casm_keep_masks(maps) -> np.ndarray:
    """CASM binarization: keep the ``round(mean(norm(m)) · H · W)`` largest pixels of each map
    (every pixel ≥ the k-th largest value, so ties may keep a few more); k = 0 keeps nothing."""
    m = normalize_maps(maps)
    n, h, w = m.shape
    flat = m.reshape(n, -1)
    k = np.rint(flat.mean(axis=1) * h * w).astype(np.int64)
    ordered = -np.sort(-flat, axis=1)  # descending
    kth = ordered[np.arange(n), np.clip(k - 1, 0, h * w - 1)]
    keep = (flat >= kth[:, None]) & (k > 0)[:, None]
    return keep.reshape(n, h, w)


def boxes_casm_rule(maps) -> np.ndarray:
    """CASM rule: :func:`casm_keep_masks`, then the largest 4-connected component's box."""
    return largest_component_boxes(casm_keep_masks(maps), connectivity=4)


def box_iou(a, b) -> np.ndarray:
    """Intersection over union ``|a ∩ b| / |a ∪ b|`` of every box of ``a`` with every box of ``b``.

    Example:
        >>> box_iou([[0, 0, 2, 2]], [[1, 0, 3, 2], [5, 5, 6, 6]]).round(3).tolist()
        [[0.333, 0.0]]

    Args:
        a: ``P×4`` boxes ``(x0, y0, x1, y1)``, end-exclusive pixel coordinates.
        b: ``Q×4`` boxes, the same layout.

    Returns:
        ``P×Q`` IoUs (0 where both boxes are empty).
    """
    a = _box_array(a)
    b = _box_array(b)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)


def box_accuracy(pred_boxes, gt_boxes: Sequence, rule: str = "cam") -> np.ndarray:
    """Box accuracy: ``1[max_g IoU(pred, g) ≥ 0.5]`` per image (localization error = 1 − it).

    The ILSVRC localization criterion as CAM (Zhou et al., CVPR 2016) scores it (``rule='cam'``,
    ``IoU ≥ 0.5``) and as CASM (Zolna et al., "Classifier-agnostic saliency map extraction",
    CVIU 2020) does (``rule='casm'``, ``IoU > 0.5``); NaN for images without boxes.

    Example:
        >>> box_accuracy([[0, 0, 4, 4]], [[[0, 0, 4, 2]]]).tolist()   # IoU 0.5
        [1.0]
        >>> box_accuracy([[0, 0, 4, 4]], [[[0, 0, 4, 2]]], rule="casm").tolist()
        [0.0]

    Args:
        pred_boxes: ``N×4``, one predicted box per image.
        gt_boxes: one list of ground-truth boxes per image.
        rule: ``'cam'`` or ``'casm'``.

    Raises:
        ValueError: an unknown ``rule``, or not one list of boxes per image.
    """
    if rule not in ("cam", "casm"):
        raise ValueError(f"rule must be 'cam' or 'casm', got {rule!r}")
    pred = _box_array(pred_boxes)
    if len(gt_boxes) != len(pred):
        raise ValueError(f"gt_boxes must hold one list per image ({len(pred)}), got {len(gt_boxes)}")
    out = np.full(len(pred), np.nan)
    for i, boxes in enumerate(gt_boxes):
        g = _box_array(boxes)
        if len(g) == 0:
            continue
        best = box_iou(pred[i : i + 1], g).max()
        out[i] = float(best >= 0.5) if rule == "cam" else float(best > 0.5)
    return out


def mask_iou(maps, gt_masks, threshold: float = MASK_THRESHOLD) -> np.ndarray:
    """Mask IoU: ``|B ∩ G| / |B ∪ G|`` with ``B = {p : norm(m)(p) ≥ threshold, m(p) > 0}``.

    The map is upsampled to the mask and min-max normalized; NaN where ``G`` is empty.

    Example:
        >>> m = np.zeros((1, 2, 2)); m[0, 0] = 1.0
        >>> g = np.zeros((1, 2, 2), bool); g[0, :, 0] = True
        >>> mask_iou(m, g).round(3).tolist()
        [0.333]

    Args:
        maps: ``N×h×w`` (or ``h×w``) maps.
        gt_masks: ``N×H×W`` boolean ground-truth masks.
        threshold: the binarization threshold on the normalized map.

    Raises:
        ValueError: a ``threshold`` outside [0, 1], or maps and masks of different counts.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    gt = np.asarray(gt_masks).astype(bool)
    gt = gt[None] if gt.ndim == 2 else gt
    m = normalize_maps(upsample_maps(maps, gt.shape[1:]))
    gt = _as_masks(gt, m.shape)
    pred = (m >= threshold) & (m > 0)
    inter = (pred & gt).sum(axis=(1, 2)).astype(np.float64)
    union = (pred | gt).sum(axis=(1, 2)).astype(np.float64)
    out = np.where(union > 0, inter / np.where(union > 0, union, 1.0), 0.0)
    out[~gt.any(axis=(1, 2))] = np.nan
    return out


def localization_metrics(
    maps,
    gt_masks=None,
    gt_boxes: Sequence | None = None,
    correct=None,
    image_size: int | None = None,
    tolerance_px: float | None = None,
    mask_threshold: float = MASK_THRESHOLD,
) -> dict[str, np.ndarray]:
    """All DESIGN §6 localization metrics, one value per image.

    ``gt_masks``: ``N×H×W`` bool array, or a list with one mask (or ``None``) per image.
    ``gt_boxes``: a list with one list of boxes per image (boxes derived from the masks when
    omitted). The maps are upsampled to the ground-truth size. ``correct`` (``N`` bools) adds
    the OM keys. ``tolerance_px`` defaults to :func:`pointing_tolerance` of the image size
    (``image_size`` defaults to the ground truth's larger side).

    Keys: ``pointing_game``, ``pointing_game_tol``, ``energy_pointing_game``, ``box_acc_cam``,
    ``box_acc_casm``, ``le_cam``, ``le_casm``, ``mask_iou`` (NaN without masks), and with
    ``correct``: ``om_cam``, ``om_casm``.
    """
    if gt_masks is None and gt_boxes is None:
        raise ValueError("give gt_masks or gt_boxes")
    if gt_masks is not None and not isinstance(gt_masks, (list, tuple)):
        size = np.asarray(gt_masks).shape[-2:]
    elif gt_masks is not None and any(m is not None for m in gt_masks):
        size = next(np.asarray(m).shape[-2:] for m in gt_masks if m is not None)
    elif image_size is not None:
        size = (image_size, image_size)
    else:
        raise ValueError("image_size is needed when only boxes are given")
    a = upsample_maps(maps, tuple(size))
    n = a.shape[0]
    region = _regions(a, gt_masks, gt_boxes)
    if gt_boxes is None:
        gt_boxes = [[b] if b[2] > b[0] else [] for b in mask_boxes(region)]
    have_mask = np.zeros(n, dtype=bool)
    masks = np.zeros_like(region)
    if isinstance(gt_masks, (list, tuple)):
        for i, m in enumerate(gt_masks):
            if m is not None:
                have_mask[i] = True
                masks[i] = region[i]
    elif gt_masks is not None:
        have_mask[:] = True
        masks = region
    if image_size is None:
        image_size = max(size)
    tol = pointing_tolerance(image_size) if tolerance_px is None else float(tolerance_px)
    out = {
        "pointing_game": pointing_game(a, region, 0.0),
        "pointing_game_tol": pointing_game(a, region, tol),
        "energy_pointing_game": energy_pointing_game(a, region),
        "box_acc_cam": box_accuracy(boxes_cam_rule(a), gt_boxes, "cam"),
        "box_acc_casm": box_accuracy(boxes_casm_rule(a), gt_boxes, "casm"),
    }
    iou = mask_iou(a, masks, mask_threshold)
    iou[~have_mask] = np.nan
    out["mask_iou"] = iou
    out["le_cam"] = 1.0 - out["box_acc_cam"]
    out["le_casm"] = 1.0 - out["box_acc_casm"]
    if correct is not None:
        c = np.asarray(correct, dtype=np.float64).reshape(-1)
        if c.shape[0] != n:
            raise ValueError(f"correct must hold {n} values, got {c.shape[0]}")
        out["om_cam"] = 1.0 - out["box_acc_cam"] * c
        out["om_casm"] = 1.0 - out["box_acc_casm"] * c
    return out


def mask_boxes(masks: np.ndarray) -> np.ndarray:
    """Tight box of *all* true pixels of each mask (``[0, 0, 0, 0]`` when empty)."""
    masks = np.asarray(masks, dtype=bool)
    n, h, w = masks.shape
    rows = masks.any(axis=2)
    cols = masks.any(axis=1)
    boxes = np.stack(
        [cols.argmax(1), rows.argmax(1), w - cols[:, ::-1].argmax(1), h - rows[:, ::-1].argmax(1)], 1
    )
    boxes[~rows.any(axis=1)] = 0
    return boxes


def summarize(per_image: dict[str, np.ndarray]) -> dict[str, float | int]:
    """Mean of each metric over the images where it is defined (``nanmean``), plus ``count``
    (images) and ``count_<key>`` where fewer images count for a key. Means of nothing are NaN."""
    out: dict[str, float | int] = {}
    n = 0
    for key, values in per_image.items():
        v = np.asarray(values, dtype=np.float64)
        n = max(n, v.size)
        valid = ~np.isnan(v)
        out[key] = float(v[valid].mean()) if valid.any() else float("nan")
        if valid.sum() != v.size:
            out[f"count_{key}"] = int(valid.sum())
    out["count"] = n
    return out


# -- threshold-free, set-level metrics (Choe et al., CVPR 2020) -----------------------------------
#: the threshold grid of the set-level metrics: 0, 0.01, …, 0.99 (Choe et al. sweep the same way);
#: ``k / 100`` rather than ``np.arange(0, 1, 0.01)``, whose 0.7 is 0.7000000000000001
SET_THRESHOLDS = np.arange(100) / 100.0
#: the IoU criteria δ of MaxBoxAccV2 (Choe et al.: 30, 50 and 70 %)
BOX_IOU_THRESHOLDS = (0.3, 0.5, 0.7)
#: bins of :class:`PxAPAccumulator` over [0, 1] (Choe et al. use 1000; more costs nothing)
PXAP_BINS = 10000


class BestThreshold(NamedTuple):
    """A set-level score at the one threshold best for the whole set."""

    value: float  #: the score (NaN when no image counted)
    threshold: float  #: the threshold that gave it (NaN when no image counted)


class BoxAccV2(NamedTuple):
    """MaxBoxAccV2: ``value`` = the mean over δ of ``per_iou[δ]``, each at its own best threshold."""

    value: float
    per_iou: dict  #: δ → best box accuracy over the thresholds
    thresholds: dict  #: δ → the threshold that gave it
    count: int  #: images with at least one ground-truth box


def _norm_pairs(maps, masks):
    """Yield ``(norm maps n×H×W, masks n×H×W bool)`` groups: maps upsampled bilinearly to their
    mask's size, then min-max normalized; images whose mask is ``None`` are left out."""
    a = as_maps(maps)
    if isinstance(masks, (list, tuple)):
        if len(masks) != a.shape[0]:
            raise ValueError(f"masks must hold one mask (or None) per map ({a.shape[0]}), got {len(masks)}")
        for i, m in enumerate(masks):
            if m is not None:
                m = np.asarray(m).astype(bool)
                yield normalize_maps(upsample_maps(a[i : i + 1], m.shape[-2:])), _as_masks(m, (1, *m.shape[-2:]))
        return
    m = np.asarray(masks).astype(bool)
    m = m[None] if m.ndim == 2 else m
    if m.ndim != 3 or m.shape[0] != a.shape[0]:
        raise ValueError(f"masks must be N×H×W with N = {a.shape[0]} maps, got shape {m.shape}")
    yield normalize_maps(upsample_maps(a, m.shape[1:])), m


def _ap_from_counts(pos: np.ndarray, neg: np.ndarray) -> float:
    """Average precision from positive / negative counts per score level (ascending levels).

    Each level is one threshold (tied scores enter together, as in scikit-learn):
    ``AP = Σ_k (R_k − R_{k+1}) · P_k`` over the levels from the highest down, with ``P_k`` and
    ``R_k`` the precision and recall of "score ≥ level k". NaN without positives.
    """
    tp = np.cumsum(pos[::-1].astype(np.float64))
    fp = np.cumsum(neg[::-1].astype(np.float64))
    total = tp[-1] if tp.size else 0.0
    if total <= 0:
        return float("nan")
    kept = tp + fp
    precision = np.where(kept > 0, tp / np.where(kept > 0, kept, 1.0), 0.0)
    recall = tp / total
    gain = np.diff(recall, prepend=0.0)
    return float(np.sum(gain * precision))


def pxap(maps, masks) -> float:
    """Pixel average precision (PxAP, Choe et al.) of the maps against the masks, pooled over the set.

    Each map is upsampled bilinearly to its mask's size and min-max normalized; every pixel of
    every image (with a mask) is then one score, and AP is computed over all of them at once,
    exactly as ``sklearn.metrics.average_precision_score(masks.ravel(), norm_maps.ravel())``
    (tied scores are one threshold). A constant map scores the positive fraction; NaN when no
    mask has a positive pixel. Holds every score in memory: stream with :class:`PxAPAccumulator`.

    Example:
        >>> round(pxap(np.array([[[0.9, 0.1], [0.8, 0.3]]]), np.array([[[1, 0], [0, 1]]])), 4)
        0.8333
    """
    scores, labels = [], []
    for m, g in _norm_pairs(maps, masks):
        scores.append(m.ravel())
        labels.append(g.ravel())
    if not scores:
        return float("nan")
    s = np.concatenate(scores)
    y = np.concatenate(labels)
    levels, inverse = np.unique(s, return_inverse=True)
    pos = np.bincount(inverse, weights=y, minlength=len(levels))
    neg = np.bincount(inverse, weights=~y, minlength=len(levels))
    return _ap_from_counts(pos, neg)


class PxAPAccumulator:
    """PxAP over a stream of batches: histograms of normalized pixel scores over ``bins`` equal
    bins of [0, 1] (a pixel scoring ``s`` falls in bin ``min(⌊s·bins⌋, bins − 1)``), for mask and
    background pixels apart; the AP treats each bin as one threshold (Choe et al.'s
    wsolevaluation does the same with 1000 bins). Within 1e-3 of :func:`pxap` with 1000 bins.

    Example:
        >>> acc = PxAPAccumulator()
        >>> for maps, masks in batches:  # doctest: +SKIP
        ...     acc.update(maps, masks)
        >>> acc.value()  # doctest: +SKIP
    """

    def __init__(self, bins: int = PXAP_BINS):
        if not isinstance(bins, (int, np.integer)) or isinstance(bins, bool) or bins < 1:
            raise ValueError(f"bins must be a positive integer, got {bins!r}")
        self.bins = int(bins)
        self.pos = np.zeros(self.bins, dtype=np.int64)
        self.neg = np.zeros(self.bins, dtype=np.int64)

    def update(self, maps, masks) -> None:
        """Add a batch: maps ``N×h×w`` and masks ``N×H×W`` (or a list with ``None`` entries)."""
        for m, g in _norm_pairs(maps, masks):
            idx = np.minimum((m * self.bins).astype(np.int64), self.bins - 1).ravel()
            g = g.ravel()
            self.pos += np.bincount(idx[g], minlength=self.bins)
            self.neg += np.bincount(idx[~g], minlength=self.bins)

    def value(self) -> float:
        """PxAP of everything added so far (NaN without positive pixels)."""
        return _ap_from_counts(self.pos, self.neg)


def _check_thresholds(thresholds) -> np.ndarray:
    t = np.asarray(thresholds, dtype=np.float64).reshape(-1)
    if t.size == 0 or not np.isfinite(t).all():
        raise ValueError("thresholds must be a non-empty list of finite numbers")
    return t


class BestIoUAccumulator:
    """Best-threshold mask IoU over a stream: for every threshold ``t`` the sum over images of
    ``IoU(norm(m) ≥ t, mask)``; images with an empty (or missing) mask do not count."""

    def __init__(self, thresholds=SET_THRESHOLDS):
        self.thresholds = _check_thresholds(thresholds)
        self.sums = np.zeros(len(self.thresholds))
        self.count = 0

    def update(self, maps, masks) -> None:
        """Add a batch: maps ``N×h×w`` and masks ``N×H×W`` (or a list with ``None`` entries)."""
        for m, g in _norm_pairs(maps, masks):
            for mi, gi in zip(m, g):
                n_gt = int(gi.sum())
                if n_gt == 0:
                    continue
                # pixels ≥ t, all and inside the mask, by binary search on the sorted scores
                every = np.sort(mi.ravel())
                inside = np.sort(mi[gi])
                kept = every.size - np.searchsorted(every, self.thresholds, side="left")
                inter = inside.size - np.searchsorted(inside, self.thresholds, side="left")
                union = kept + n_gt - inter
                self.sums += inter / union
                self.count += 1

    def curve(self) -> np.ndarray:
        """Mean IoU over the images at every threshold (NaN when none counted)."""
        return self.sums / self.count if self.count else np.full(len(self.thresholds), np.nan)

    def result(self) -> BestThreshold:
        """The best mean IoU and its threshold (the lowest one on ties)."""
        if not self.count:
            return BestThreshold(float("nan"), float("nan"))
        curve = self.curve()
        k = int(np.argmax(curve))
        return BestThreshold(float(curve[k]), float(self.thresholds[k]))


def best_threshold_iou(maps, masks, thresholds=SET_THRESHOLDS) -> BestThreshold:
    """Mean over images of the IoU of ``norm(m) ≥ t`` with the mask, at the single ``t`` of
    ``thresholds`` that is best for the whole set (the lowest such ``t`` on ties).

    Maps are upsampled bilinearly to the mask size and min-max normalized (a constant map is all
    zeros: everything is kept at ``t = 0``, nothing above). Images with an empty or missing mask
    do not count; without any, the result is ``(NaN, NaN)``.

    Example:
        >>> best_threshold_iou(maps, masks)  # doctest: +SKIP
        BestThreshold(value=0.41, threshold=0.35)
    """
    acc = BestIoUAccumulator(thresholds)
    acc.update(maps, masks)
    return acc.result()


def component_boxes(keep: np.ndarray) -> np.ndarray:
    """Boxes ``[x0, y0, x1, y1]`` (end-exclusive) of every 8-connected component of one ``H×W``
    bool image (``K×4``, ``K = 0`` when nothing is kept), from OpenCV's connected components."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(keep, dtype=np.uint8), connectivity=8)
    s = stats[1:count, :4].astype(np.int64)  # label 0 is the background
    return np.stack([s[:, 0], s[:, 1], s[:, 0] + s[:, 2], s[:, 1] + s[:, 3]], axis=1)


def _best_component_iou(keep: np.ndarray, gt: np.ndarray) -> float:
    """The best IoU of any 8-connected component's box of ``keep`` with any of the ``gt`` boxes
    (:func:`component_boxes` and :func:`box_iou` in one step, without their per-call checks)."""
    import cv2

    count, _, stats, _ = cv2.connectedComponentsWithStats(np.ascontiguousarray(keep, dtype=np.uint8), connectivity=8)
    if count <= 1:
        return 0.0
    s = stats[1:count, :4].astype(np.float64)
    x0, y0, w, h = s[:, 0:1], s[:, 1:2], s[:, 2:3], s[:, 3:4]
    iw = np.clip(np.minimum(x0 + w, gt[:, 2]) - np.maximum(x0, gt[:, 0]), 0, None)
    ih = np.clip(np.minimum(y0 + h, gt[:, 3]) - np.maximum(y0, gt[:, 1]), 0, None)
    inter = iw * ih
    union = w * h + (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1]) - inter
    return float(np.max(inter / union))


class BoxAccV2Accumulator:
    """MaxBoxAccV2 over a stream: hits per (threshold, δ) summed over the images with boxes."""

    def __init__(self, iou_thresholds=BOX_IOU_THRESHOLDS, thresholds=SET_THRESHOLDS):
        self.thresholds = _check_thresholds(thresholds)
        self.iou_thresholds = _check_thresholds(iou_thresholds)
        if ((self.iou_thresholds <= 0) | (self.iou_thresholds > 1)).any():
            raise ValueError(f"iou_thresholds must lie in (0, 1], got {self.iou_thresholds.tolist()}")
        self.hits = np.zeros((len(self.thresholds), len(self.iou_thresholds)), dtype=np.int64)
        self.count = 0

    def update(self, maps, boxes: Sequence, size: tuple[int, int] | None = None) -> None:
        """Add a batch: maps ``N×h×w`` (upsampled to ``size`` = (H, W) when given, i.e. the
        frame the boxes are in) and ``boxes``, one list of ``[x0, y0, x1, y1]`` per image."""
        a = as_maps(maps)
        if len(boxes) != a.shape[0]:
            raise ValueError(f"boxes must hold one list per map ({a.shape[0]}), got {len(boxes)}")
        if size is not None:
            a = upsample_maps(a, tuple(size))
        m = normalize_maps(a)
        for mi, image_boxes in zip(m, boxes):
            gt = _box_array(image_boxes)
            if len(gt) == 0:
                continue
            self.count += 1
            # superlevel sets are nested, so two thresholds keeping as many pixels keep the same
            # pixels: their components (and best IoU) are computed once
            values = np.sort(mi, axis=None)
            kept = values.size - np.searchsorted(values, self.thresholds, side="left")
            last, best = -1, 0.0
            for k, t in enumerate(self.thresholds):
                if kept[k] == 0:
                    continue
                if kept[k] != last:
                    last, best = kept[k], _best_component_iou(mi >= t, gt)
                self.hits[k] += best >= self.iou_thresholds

    def result(self) -> BoxAccV2:
        """Accuracy per δ at its best threshold, and their mean."""
        if not self.count:
            nan = float("nan")
            return BoxAccV2(nan, {float(d): nan for d in self.iou_thresholds},
                            {float(d): nan for d in self.iou_thresholds}, 0)
        acc = self.hits / self.count
        best = acc.argmax(axis=0)
        per = {float(d): float(acc[best[j], j]) for j, d in enumerate(self.iou_thresholds)}
        at = {float(d): float(self.thresholds[best[j]]) for j, d in enumerate(self.iou_thresholds)}
        return BoxAccV2(float(np.mean(list(per.values()))), per, at, self.count)


def max_box_acc_v2(maps, boxes: Sequence, iou_thresholds=BOX_IOU_THRESHOLDS, thresholds=SET_THRESHOLDS,
                   size: tuple[int, int] | None = None) -> BoxAccV2:
    """MaxBoxAccV2 (Choe et al.): box accuracy at the best threshold, per IoU criterion δ, averaged.

    For each threshold ``t``, every 8-connected component of ``norm(m) ≥ t`` gives one box; an
    image is a hit at δ when any of its boxes has IoU ≥ δ with any ground-truth box. The
    accuracy over the images (those with at least one box) is maximized over ``t`` separately
    for each δ, and the maxima are averaged over δ. ``size`` = (H, W) upsamples the maps to the
    boxes' frame first. (Choe et al. take the boxes of OpenCV contours; outer contours and
    8-connected components are the same regions.)

    Example:
        >>> max_box_acc_v2(maps, [[[3, 2, 7, 5]]] * len(maps)).value  # doctest: +SKIP
    """
    acc = BoxAccV2Accumulator(iou_thresholds, thresholds)
    acc.update(maps, boxes, size)
    return acc.result()


class SetLocalizationAccumulator:
    """PxAP, best-threshold IoU and MaxBoxAccV2 together over a stream of batches.

    ``update(maps, masks=None, boxes=None)``: masks feed PxAP and the IoU, boxes (one list per
    image; derived from the masks' tight boxes when omitted) feed MaxBoxAccV2, at the masks'
    size (or ``size``). :meth:`result` gives the keys of :data:`SET_KEYS` plus
    ``best_iou_threshold``, ``max_box_acc_v2@<δ·100>`` and their thresholds.
    """

    def __init__(self, thresholds=SET_THRESHOLDS, iou_thresholds=BOX_IOU_THRESHOLDS, bins: int = PXAP_BINS):
        self.pxap = PxAPAccumulator(bins)
        self.iou = BestIoUAccumulator(thresholds)
        self.box = BoxAccV2Accumulator(iou_thresholds, thresholds)

    def update(self, maps, masks=None, boxes: Sequence | None = None, size: tuple[int, int] | None = None) -> None:
        """Add one batch (see the class docstring)."""
        if masks is None and boxes is None:
            raise ValueError("give masks or boxes")
        a = as_maps(maps)
        if masks is not None:
            self.pxap.update(a, masks)
            self.iou.update(a, masks)
            if size is None:
                shapes = [np.asarray(m).shape[-2:] for m in masks if m is not None] \
                    if isinstance(masks, (list, tuple)) else [np.asarray(masks).shape[-2:]]
                size = tuple(shapes[0]) if shapes else None
        if boxes is None:
            if isinstance(masks, (list, tuple)):
                boxes = [[] if m is None else [b for b in mask_boxes(np.asarray(m, bool)[None]).tolist() if b[2] > b[0]]
                         for m in masks]
            else:
                mm = np.asarray(masks, bool)
                boxes = [[b] if b[2] > b[0] else [] for b in mask_boxes(mm[None] if mm.ndim == 2 else mm).tolist()]
        self.box.update(a, boxes, size)

    def result(self) -> dict[str, float]:
        """``{pxap, best_iou, best_iou_threshold, max_box_acc_v2, max_box_acc_v2@30, …}``."""
        iou = self.iou.result()
        box = self.box.result()
        out = {"pxap": self.pxap.value(), "best_iou": iou.value, "best_iou_threshold": iou.threshold,
               "max_box_acc_v2": box.value}
        for d, v in box.per_iou.items():
            out[f"max_box_acc_v2@{round(d * 100)}"] = v
            out[f"max_box_acc_v2@{round(d * 100)}_threshold"] = box.thresholds[d]
        return out


#: the headline keys of the set-level metrics, in table order
SET_KEYS = ("pxap", "best_iou", "max_box_acc_v2")
