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
"""
from __future__ import annotations

from collections.abc import Sequence

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
    """1.0 where the map's maximum is within ``tolerance`` px of the ground truth, 0.0 where not,
    NaN where the ground truth is empty. Maps at lower resolution are upsampled first."""
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
    """Share of the normalized map's mass inside the ground truth, NaN where it is empty."""
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
    """IoU of boxes ``a`` (``P×4``) and ``b`` (``Q×4``), end-exclusive pixel boxes → ``P×Q``."""
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
    """1.0 where the predicted box overlaps any ground-truth box of the image enough
    (``IoU ≥ 0.5`` for ``rule='cam'``, ``IoU > 0.5`` for ``rule='casm'``), NaN without boxes."""
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
    """IoU of ``norm(m) ≥ threshold`` with the ground-truth mask; NaN where the mask is empty."""
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
