"""The demo's pages: ``report.md`` with the localization, comparison and extras tables and the verdict."""
from __future__ import annotations

from pathlib import Path

from hrcam.metrics.columns import SUMMARY_LOCALIZATION, label_pairs
from hrcam.workflows.demo.config import DemoConfig
from hrcam.workflows.demo.maps_table import headline_table


def _masking_game(objective: str) -> str:
    """``", mask low, fill blur"`` for the objectives that play the masking game, else ``""``."""
    if objective != "faithfulness":
        return ""
    from hrcam.train.objectives import FaithfulnessWeights

    w = FaithfulnessWeights()
    return f", mask {w.scale}, fill {w.fill}"

#: ``(key, label)`` of the localization columns in the report (declared in :mod:`hrcam.metrics.columns`)
METRIC_COLUMNS = label_pairs(SUMMARY_LOCALIZATION)

COMPARE_COLUMNS = [("ms_per_image", "ms / image"), ("pointing_game", "pointing game"),
                   ("energy_pointing_game", "energy PG"), ("box_acc_cam", "box acc. (CAM)"),
                   ("mask_iou", "mask IoU"), ("AD@0", "AD@0 ↓"), ("IC@0", "IC@0 ↑"),
                   ("deletion_auc", "deletion AUC ↓"), ("insertion_auc", "insertion AUC ↑")]

def _compare_table(payload: dict, cfg: DemoConfig):
    from hrcam.viz.report import table_from_records

    records = {row.get("method", f"method {i}"): row for i, row in enumerate(payload["rows"])}
    return table_from_records(
        f"Explanation methods on the same FullModel ({payload.get('meta', {}).get('images', '?')} test images)",
        records, COMPARE_COLUMNS, "method",
        note=("From `hrcam compare` (all columns in compare/compare.md, .json, .csv). AD/IC in %, "
              "with the map applied in image space; deletion/insertion: 20 steps."))

def _kind_label(kind: str, labels: dict) -> str:
    base, _, obj = kind.partition("_")
    return labels.get(base, base) + (f" [{obj}]" if obj else "")

def _beats(a, b, lower_is_better: bool) -> bool:
    if a is None or b is None:
        return False
    return a < b if lower_is_better else a > b

def _best_maps(maps: dict) -> dict:
    """For each metric, the map kind with the highest mean (lowest for OM/LE); the centre prior
    is a reference and does not compete."""
    best = {}
    for key, _ in METRIC_COLUMNS:
        lower = key.startswith(("om_", "le_"))
        scored = [(v[key], k) for k, v in maps.items()
                  if k not in ("center", "colour") and isinstance(v.get(key), (int, float)) and v.get(key) is not None]
        if scored:
            best[key] = (min if lower else max)(scored)[1]
    return best

def _write_report(out: Path, cfg: DemoConfig, metrics: dict, classification: dict, figures, extra_tables,
                  gallery: dict | None = None):
    from hrcam.viz.html_report import write_report_html
    from hrcam.viz.report import Figure, Table, table_from_records, write_report

    maps = metrics["maps"]
    records = {metrics["map_labels"][k]: v for k, v in maps.items()}
    loc = table_from_records(
        "Localization at fixed thresholds (mean over images)", records, METRIC_COLUMNS, "map",
        note=(f"{maps[next(iter(maps))].get('count', '?')} test images, maps of the predicted class, "
              f"{cfg.size}×{cfg.size} px. Pointing-game tolerance ±{metrics['pointing_tolerance_px']:.1f} px "
              "(15 px at 224, scaled). Box accuracy: IoU ≥ 0.5 (CAM rule: ≥ 20 % of max, largest "
              "8-connected component) / IoU > 0.5 (CASM rule: mean-fraction of pixels, largest "
              "4-connected component). Mask IoU: normalized map ≥ 0.5. OM = 1 − box hit · correct "
              "(lower is better). The centre prior is a fixed Gaussian that ignores the image."
              + (" Lite0 rows: scored at their own input size (ground truth resized with the image, "
                 "tolerance scaled the same way); see below." if any(k.startswith("lite0_") for k in maps)
                 else "")),
    )
    best = metrics["best_map"]
    wins = []
    for kind in [k for k in maps if k not in ("low", "center", "colour") and not k.startswith("lite0_")]:
        better = [h for key, h in METRIC_COLUMNS
                  if _beats(maps[kind].get(key), maps["low"].get(key), key.startswith(("om_", "le_")))]
        wins.append(f"{metrics['map_labels'][kind]} beats the low-res CAM on {len(better)} of "
                    f"{len(METRIC_COLUMNS)} metrics" + (f" ({', '.join(better)})" if better else ""))
    verdict = ", ".join(f"{dict(METRIC_COLUMNS)[k]}: **{metrics['map_labels'][v]}**" for k, v in best.items())
    cls = Table("Classification (test split)", ["metric", "value"], [
        ["top-1 accuracy", classification["top1"]],
        [f"top-{classification.get('top_k', 5)} accuracy", classification["top5"]],
        ["macro F1", classification["macro"]["f1"]],
        ["images", classification["num_samples"]],
    ])
    wall = Table("Wall time per stage (seconds)", ["stage", "seconds"],
                 [[k, v] for k, v in metrics["wall_time_s"].items()], digits=1,
                 note=("Stages reused from an earlier run keep the time they took then; `all_stages` "
                       "is their sum, `this_run` the wall time of the run that wrote this report."))
    arch = ", ".join(f"{k}={v}" for k, v in cfg.net_arch.items())
    blocks = [
        ("The seed's workflow on the built-in *digits on textures* data (real handwritten digits "
         "from scikit-learn on scikit-image texture photos; exact masks and boxes): train the "
         "HalfModel, then the FullModel's decoder on the frozen classifier, classify the test "
         "split, compute low-res CAMs, high-res CAMs and refined maps, and score them.\n\n"
         f"Preset: {cfg.size}×{cfg.size} px, {cfg.train} train / {cfg.test} test images, "
         f"FC-DenseNet of DESIGN §3 with {arch}, batch {cfg.batch_size}, "
         f"{cfg.half_epochs} HalfModel epochs (+{cfg.half_settle_epochs} at batch "
         f"{cfg.batch_size * cfg.settle_batch_factor}), FullModel decoders "
         + ", ".join(f"'{o}' ({cfg.epochs_of(o)} epochs, {cfg.recipe_of(o)['upsampling']} upsampling, "
                     f"anchor {cfg.recipe_of(o)['anchor']}{_masking_game(o)})" for o in cfg.objectives)
         + f" (plain rows use '{metrics['primary_objective']}'), "
         "augmentation off, last-epoch weights."),
        headline_table(metrics["threshold_free"]),
        cls,
        loc,
        f"Best map per metric (centre prior excluded): {verdict}.\n\n" + ";\n".join(wins) + ".\n",
        *([_pretrained_text(metrics)] if "pretrained" in metrics.get("extras", {}) else []),
        wall,
    ]
    for obj, path in figures:
        extra = ", LayerCAM, guided-filter CAM" if path == "gallery.png" else ""
        blocks.append(Figure(path, f"Test images, decoder objective '{obj}': image (true → predicted "
                                   f"class), low-res CAM, high-res CAM, refined map{extra}, ground truth "
                                   "(mask, box in red)."))
    blocks.append(Figure("pipeline.png", "The post-processing pipeline on the first test image."))
    title = "hrcam demo: HR-CAM on digits on textures"
    write_report(out / "report.md", title, blocks, list(extra_tables))
    # report.html: the same blocks (sortable tables, figures embedded) and the per-image gallery
    write_report_html(out / "report.html", title, blocks, list(extra_tables), gallery=gallery)

def _pretrained_text(metrics: dict) -> str:
    """The paragraph under the localization table that explains the Lite0 rows."""
    rec = metrics["extras"]["pretrained"]
    ps, info, sec = rec["settings"], rec["info"], rec["seconds"]
    maps = metrics["maps"]
    lower = [k for k in ("lite0_high", "lite0_refined") if k in maps]
    wins = []
    for kind in lower:
        better = [h for key, h in METRIC_COLUMNS
                  if _beats(maps[kind].get(key), maps["lite0_low"].get(key), key.startswith(("om_", "le_")))]
        wins.append(f"{metrics['map_labels'][kind]} beats the Lite0 low-res CAM on {len(better)} of "
                    f"{len(METRIC_COLUMNS)} metrics")
    dec = info.get("decoder") or {}
    return (f"**Lite0 rows** (pretrained path, not FC-DenseNet): {ps['backbone']} with its offline "
            f"ImageNet weights, frozen; only the linear head fitted on {info['train_images']} training "
            f"digits ({ps['head_epochs']} epochs on cached features) at {ps['im_size']} px "
            f"(low-res maps {ps['im_size'] // 32}×{ps['im_size'] // 32}); then the rank-{dec.get('rank', '–')} decoder, "
            f"'{ps['objective']}' objective, {ps['decoder_steps']} steps of batch {ps['decoder_batch']} "
            f"at {ps['train_size']} px. Test accuracy of this classifier: {rec['accuracy']:.3f} on "
            f"{rec['count']} images. Wall time: linear head {sec['linear_head']:.0f} s, decoder "
            f"{sec['decoder']:.0f} s, scoring {sec['score']:.0f} s. "
            + ("; ".join(wins) + "." if wins else "") + "\n")
