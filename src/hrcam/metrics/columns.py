"""The metric columns of every table hrcam writes, declared once: key, label, group.

A new metric is one function (in :mod:`.localization` or :mod:`.faithfulness`) plus one
:class:`Column` here; ``hrcam compare``, ``hrcam evaluate localization`` and the demo report
read their columns from this list.

    from hrcam.metrics.columns import column_keys, label_pairs, SUMMARY_LOCALIZATION
    column_keys("localization")            # ('pxap', 'best_iou', 'max_box_acc_v2', 'pointing_game', ...)
    label_pairs(SUMMARY_LOCALIZATION)      # [('pointing_game', 'pointing game'), ...]
"""
from __future__ import annotations

from dataclasses import dataclass

from hrcam.metrics.faithfulness import AD_IC_LEVELS

__all__ = ["Column", "COLUMNS", "COLUMN_NOTES", "SET_LOCALIZATION", "SUMMARY_LOCALIZATION", "column_keys",
           "label_pairs"]

@dataclass(frozen=True)
class Column:
    """One metric column: ``key`` in result rows, ``label`` in tables, ``group`` it belongs to;
    ``level`` says whether it is a mean of per-image values (``"image"``) or one number for the
    whole set (``"set"``: PxAP, best-threshold IoU, MaxBoxAccV2)."""

    key: str
    label: str
    group: str
    level: str = "image"


COLUMNS: tuple[Column, ...] = (
    # threshold-free, set-level (Choe et al., CVPR 2020): they lead the localization tables
    Column("pxap", "PxAP", "localization", "set"),
    Column("best_iou", "best-threshold IoU", "localization", "set"),
    Column("max_box_acc_v2", "MaxBoxAccV2", "localization", "set"),
    Column("pointing_game", "pointing game", "localization"),
    Column("pointing_game_tol", "pointing game (±tol)", "localization"),
    Column("energy_pointing_game", "energy PG", "localization"),
    Column("box_acc_cam", "box acc. (CAM rule)", "localization"),
    Column("box_acc_casm", "box acc. (CASM rule)", "localization"),
    Column("le_cam", "LE (CAM rule)", "localization"),
    Column("le_casm", "LE (CASM rule)", "localization"),
    Column("om_cam", "OM (CAM rule)", "localization"),
    Column("om_casm", "OM (CASM rule)", "localization"),
    Column("mask_iou", "mask IoU", "localization"),
    *(Column(f"{m}@{q:g}", f"{m}@{q:g}", "faithfulness") for q in AD_IC_LEVELS for m in ("AD", "IC")),
    *(Column(f"{v}_{s}", f"{v} {s}", "faithfulness")
      for v in ("masked_in", "masked_out", "inpainted") for s in ("top1", "top5", "entropy")),
    Column("deletion_auc", "deletion AUC", "faithfulness"),
    Column("insertion_auc", "insertion AUC", "faithfulness"),
)

#: what each column (or family of columns) means, written under Markdown tables
COLUMN_NOTES = {
    "ms_per_image": "explainer time per image (maps only), milliseconds",
    "AD@q / IC@q": "Average Drop (%, lower is better) / Increase in Confidence (%, higher) with the lowest q of the map zeroed",
    "masked_in/out, inpainted": "top-1/top-5 accuracy (fraction) and mean entropy (nats) of b·x, (1−b)·x, Telea-inpainted x; b = norm(map) ≥ 0.5",
    "deletion_auc / insertion_auc": "AUC of p(class) as the top-ranked pixels are removed / inserted (20 steps; removed = zeroed unless the run says otherwise; lower / higher is better)",
    "PxAP / best-threshold IoU / MaxBoxAccV2": "set-level, threshold-free (Choe et al., CVPR 2020): pixel average precision pooled over all images; mean mask IoU at the one threshold (0, 0.01, …, 0.99) best for the set; box accuracy from every component, best threshold per IoU 0.3/0.5/0.7, averaged",
    "localization": "pointing game (0 px and 15 px@224), energy pointing game, box accuracy and LE/OM (CAM and CASM box rules), mask IoU",
}

#: the set-level localization columns (they lead ``hrcam evaluate localization``'s table)
SET_LOCALIZATION = tuple(c.key for c in COLUMNS if c.level == "set")
#: the per-image localization columns of the demo report and ``hrcam evaluate localization``
SUMMARY_LOCALIZATION = ("pointing_game", "pointing_game_tol", "energy_pointing_game", "box_acc_cam", "box_acc_casm",
                        "mask_iou", "om_cam")


def column_keys(group: str) -> tuple[str, ...]:
    """The keys of one group (``"localization"`` or ``"faithfulness"``), in table order."""
    return tuple(c.key for c in COLUMNS if c.group == group)


def label_pairs(keys) -> list[tuple[str, str]]:
    """``[(key, label), …]`` for ``keys`` (the form the report tables take)."""
    labels = {c.key: c.label for c in COLUMNS}
    return [(k, labels[k]) for k in keys]
