"""The demo's headline table: every map of the same test images, scored threshold-free.

For the test split (or ``cfg.limit`` images, round-robin over the classes) and each image's
predicted class (or, with ``map_class="true"``, its true class, as Choe et al. score CAMs): the HR-CAM maps of every trained decoder (low-res CAM bilinearly upsampled,
high-res CAM, refined map), the baselines a sharper map must beat on the *same* classifier
(:data:`BASELINES`: LayerCAM, Grad-CAM, the guided-filter CAM), and two references that use no
class evidence (the centre prior; the colour distance from the image's median colour). Each is
scored with PxAP, best-threshold mask IoU and MaxBoxAccV2 (Choe et al., CVPR 2020).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hrcam.workflows.demo.config import MAP_CLASSES

#: explainers scored beside the HR-CAM maps, on the primary FullModel's (frozen, shared) classifier
BASELINES = ("layercam", "gradcam", "guided")
#: part of the headline table's cache key: bump it when the computation of a map changes
#: (2: the guided filter's colour guide)
MAPS_VERSION = 2
#: row labels
LABELS = {
    "low": "low-res CAM (bilinear)",
    "high": "high-res CAM",
    "refined": "refined (pipeline)",
    "guidedhigh": "high-res CAM + guided filter (edge-aware refined)",
    "layercam": "LayerCAM (S/4 encoder layer)",
    "gradcam": "Grad-CAM",
    "guided": "guided-filter CAM (image as guide)",
    "center": "centre prior (no image)",
    "colour": "colour distance (no model)",
}
#: the gallery's map columns: kind → header
GALLERY_COLUMNS = {"low": "low-res CAM", "high": "high-res CAM", "guidedhigh": "high-res + guided",
                   "refined": "refined", "layercam": "LayerCAM", "guided": "guided-filter CAM"}
#: the columns: key → header
COLUMNS = {"pxap": "PxAP", "best_iou": "best-threshold IoU", "maxboxacc_v2": "MaxBoxAccV2"}


def row_label(kind: str) -> str:
    """``high_reconstruction`` → ``high-res CAM [reconstruction]``."""
    base, _, objective = kind.partition("@")
    return LABELS.get(base, base) + (f" [{objective}]" if objective else "")


def score_maps(maps: dict[str, np.ndarray], masks: np.ndarray, boxes: list) -> dict[str, dict]:
    """``{kind: {"pxap", "best_iou", "best_iou_threshold", "maxboxacc_v2"}}`` of N×H×W maps per kind."""
    from hrcam.metrics.localization import best_threshold_iou, max_box_acc_v2, pxap

    rows = {}
    for kind, m in maps.items():
        iou, t = best_threshold_iou(m, masks)
        rows[kind] = {"pxap": float(pxap(m, masks)), "best_iou": float(iou), "best_iou_threshold": float(t),
                      "maxboxacc_v2": float(max_box_acc_v2(m, boxes).value)}
    return rows


def _batches(n: int, size: int):
    for start in range(0, n, size):
        yield slice(start, min(n, start + size))


def collect_maps(weights: dict[str, Path], data_dir: Path, size: int, limit: int | None, primary: str,
                 baselines=BASELINES, batch_size: int = 50, progress: bool = True, map_class: str = "predicted"):
    """Maps of every kind for the same test images.

    ``weights`` maps each decoder objective to its FullModel weights; ``primary``'s classifier
    (identical in all of them: the frozen HalfModel) gives the predictions; the maps explain them,
    or with ``map_class="true"`` each image's label.
    Returns ``(maps {kind: N×S×S}, images N×S×S×3, labels, predictions, masks, boxes)``; the
    kinds of a non-primary objective are suffixed ``@objective``.
    """
    import torch
    import torch.nn.functional as F
    from tqdm.auto import tqdm

    from hrcam.api.seed import compute_cams
    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.evaluation.localization import center_prior, colour_distance_map
    from hrcam.explain.registry import create
    from hrcam.models.registry import load_network
    from hrcam.postprocessing.guided import default_radius, guided_refine
    from hrcam.postprocessing.refine import refined_maps

    if map_class not in MAP_CLASSES:
        raise ValueError(f"map_class: expected one of {', '.join(MAP_CLASSES)}, got {map_class!r}")
    nets = {obj: load_network(path)[0] for obj, path in weights.items()}
    net = nets[primary]
    x, labels, paths, _ = load_split(data_dir, "test", size, 3, limit, net.num_classes)
    gt = load_ground_truth_for(data_dir, "test", paths, size)
    if gt is None:
        raise ValueError(f"no ground truth for the test split of {data_dir}")
    keep = [i for i, m in enumerate(gt["masks"]) if m is not None]
    x, labels = x[keep], labels[keep]
    masks = np.stack([gt["masks"][i] for i in keep])
    boxes = [gt["boxes"][i] for i in keep]
    maps: dict[str, list] = {}
    preds = []
    explainers = {name: create(name, net) for name in baselines}
    bar = tqdm(total=len(x), desc="maps", disable=not progress, leave=False)
    try:
        for sl in _batches(len(x), batch_size):
            xb = x[sl]
            with torch.no_grad():
                first = compute_cams(net, xb, classes=labels[sl] if map_class == "true" else None, high=True)
            preds.append(first.logits.argmax(dim=1))
            target = first.classes
            imgs = xb.permute(0, 2, 3, 1).numpy()
            for obj, n in nets.items():
                if obj == primary:
                    res = first
                else:
                    with torch.no_grad():
                        res = compute_cams(n, xb, classes=target, high=True)
                tag = "" if obj == primary else f"@{obj}"
                low = F.interpolate(res.low[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
                if obj == primary:
                    maps.setdefault("low", []).append(low.numpy())
                maps.setdefault("high" + tag, []).append(res.high.detach().numpy())
                maps.setdefault("refined" + tag, []).append(
                    np.asarray(refined_maps(imgs, res.low.detach().numpy(), res.high.detach().numpy())))
                radius = default_radius(size, res.low.shape[-1])
                maps.setdefault("guidedhigh" + tag, []).append(guided_refine(xb, res.high.detach(), radius).numpy())
            for name, explainer in explainers.items():
                out, _ = explainer(xb, targets=target)
                maps.setdefault(name, []).append(out.detach().numpy())
            bar.update(len(xb))
    finally:
        bar.close()
        for explainer in explainers.values():
            explainer.close()
    images = x.permute(0, 2, 3, 1).numpy()
    joined = {k: np.concatenate(v).astype(np.float32) for k, v in maps.items()}
    joined["center"] = np.broadcast_to(center_prior(size), (len(x), size, size)).astype(np.float32)
    joined["colour"] = np.asarray(colour_distance_map(x), dtype=np.float32)
    return joined, images, labels.numpy(), torch.cat(preds).numpy(), masks, boxes


def table_rows(scores: dict[str, dict]) -> list[list]:
    """Report rows ``[label, PxAP, best IoU, MaxBoxAccV2]``, best PxAP first, references last."""
    refs = ("center", "colour")
    order = sorted((k for k in scores if k not in refs), key=lambda k: -scores[k]["pxap"])
    order += [k for k in refs if k in scores]
    return [[row_label(k), *(scores[k][c] for c in COLUMNS)] for k in order]


def headline_table(payload: dict):
    """The report's leading :class:`~hrcam.viz.report.Table` from ``maps_table.json``'s content."""
    from hrcam.viz.report import Table

    scores = payload["scores"]
    gap = margins(scores)
    best = max(("high", "refined", "guidedhigh"), key=lambda k: scores[k]["pxap"] if k in scores else -1.0)
    lines = [f"{row_label(k)}: {gap['pxap'][k]:+.3f} PxAP, {gap['best_iou'][k]:+.3f} best IoU"
             for k in gap["pxap"]]
    explained = ("true class (Choe et al.'s protocol)" if payload.get("map_class") == "true"
                 else "predicted class")
    note = (f"{payload['count']} test images (classification accuracy {payload['accuracy']:.3f}), maps of the "
            f"{explained}, all on the same frozen classifier. PxAP: average precision of the min-max "
            "normalized map's pixels against the mask pixels, pooled over the set; best-threshold IoU: mean mask "
            "IoU at the one threshold (0.00, 0.01, …) best for the set; MaxBoxAccV2: box accuracy from every "
            "contour, best threshold, mean over IoU 30/50/70 % (Choe et al., CVPR 2020). The centre prior and "
            "the colour distance from the image's median colour use no class evidence: on this data the digit "
            "is one uniform colour, so the colour row shows how far a map gets without explaining anything. "
            f"Best HR-CAM map ({row_label(best)}, the best of high-res, refined and guided-filtered high-res, "
            "by PxAP) against the others: "
            + "; ".join(lines) + ".")
    return Table("Localization, threshold-free: every map on the same test images", ["map", *COLUMNS.values()],
                 table_rows(scores), note=note)


def margins(scores: dict[str, dict], best_of=("high", "refined", "guidedhigh"),
            against=("low", "layercam", "gradcam", "guided")):
    """How far the best HR-CAM map (the one of ``best_of`` with the highest PxAP) is above each of
    ``against``, in PxAP and in best-threshold IoU: ``{column: {kind: margin}}``."""
    best = max((k for k in best_of if k in scores), key=lambda k: scores[k]["pxap"])
    return {col: {k: scores[best][col] - scores[k][col] for k in against if k in scores}
            for col in ("pxap", "best_iou")}
