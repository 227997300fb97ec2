"""Running the demo: the stages in order (:func:`run_demo`), each reused when finished."""
from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

from hrcam.fileio import write_text
from hrcam.jsonio import json_safe
from hrcam.train.objectives import FaithfulnessWeights
from hrcam.viz.gallery import gallery_figure
from hrcam.workflows.demo.cache import _key, _load_examples, _log, _save_examples, _Stages
from hrcam.workflows.demo.config import DemoConfig
from hrcam.workflows.demo.extras import PRETRAINED_LABELS, _neighbours_tables, run_extras
from hrcam.workflows.demo.maps_table import BASELINES, GALLERY_COLUMNS, MAPS_VERSION, collect_maps, score_maps
from hrcam.workflows.demo.report import _best_maps, _compare_table, _kind_label, _write_report
from hrcam.workflows.demo.training import _train_full, _train_half


def run_demo(out="results/demo", data_dir="data/demo", config: DemoConfig | None = None,
             force: bool = False, progress: bool = True, extra_tables: list = ()) -> dict:
    """Run (or resume) the demo and return the ``metrics.json`` content. See the module docstring."""
    import torch

    cfg = config or DemoConfig()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        return _run(Path(out), Path(data_dir), cfg, force, progress, extra_tables)
    finally:
        torch.set_num_threads(threads)

def _run(out: Path, data_dir: Path, cfg: DemoConfig, force: bool, progress: bool, extra_tables) -> dict:
    from hrcam.data.demo import FORMAT_VERSION, build_demo_dataset, demo_dataset_exists
    from hrcam.evaluation.localization import MAP_LABELS, evaluate_localization, select_indices
    from hrcam.metrics.classification import classification_metrics
    from hrcam.metrics.localization import pointing_tolerance

    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out, force)
    start = time.perf_counter()

    # 1. data -------------------------------------------------------------------------------
    # (the default set keeps its old key: no distractors)
    data_key = _key(cfg.size, cfg.train, cfg.test, cfg.seed, FORMAT_VERSION, *([cfg.distractors] * bool(cfg.distractors)))
    t0 = time.perf_counter()
    if not demo_dataset_exists(data_dir, cfg.size, cfg.train, cfg.test, cfg.seed, distractors=cfg.distractors):
        _log(f"building the demo data in {data_dir}", progress)
        build_demo_dataset(data_dir, size=cfg.size, train=cfg.train, test=cfg.test, seed=cfg.seed,
                           distractors=cfg.distractors, progress=progress)
        stages.record("data", data_key, time.perf_counter() - t0, path=str(data_dir))
    else:
        _log(f"reusing the demo data in {data_dir}", progress)
        if "data" not in stages.done:
            stages.record("data", data_key, 0.0, path=str(data_dir), reused=True)

    # 2. HalfModel --------------------------------------------------------------------------
    half_key = _key(data_key, cfg.net_arch, cfg.batch_size, cfg.half_epochs, cfg.augment,
                    cfg.half_settle_epochs, cfg.settle_batch_factor)
    half_weights = out / "half" / ("settled" if cfg.half_settle_epochs > 0 else "") / "last_weights.safetensors"
    if not stages.fresh("train_half", half_key, [half_weights]):
        _log(f"training the HalfModel ({cfg.half_epochs} epochs)", progress)
        t0 = time.perf_counter()
        half_weights = _train_half(cfg, data_dir, out, progress)
        stages.record("train_half", half_key, time.perf_counter() - t0, weights=str(half_weights))
    else:
        _log("reusing the trained HalfModel", progress)

    # 3.–4. FullModel per objective, evaluation ----------------------------------------------
    from hrcam.api.seed import load_model

    results: dict[str, dict] = {}
    classification = None
    for obj in cfg.objectives:
        # the objective's default weights and fill are part of the key: a change of them retrains
        full_key = _key(half_key, obj, cfg.epochs_of(obj), cfg.consistency_weight, cfg.recipe_of(obj),
                        *([asdict(FaithfulnessWeights())] * (obj in ("faithfulness", "smoothness"))))
        weights = out / f"full_{obj}" / "last_weights.safetensors"
        if not stages.fresh(f"train_full_{obj}", full_key, [weights]):
            _log(f"training the FullModel decoder, objective '{obj}' ({cfg.epochs_of(obj)} epochs)", progress)
            t0 = time.perf_counter()
            weights = _train_full(cfg, data_dir, out, half_weights, obj, progress)
            stages.record(f"train_full_{obj}", full_key, time.perf_counter() - t0, weights=str(weights))
        else:
            _log(f"reusing the FullModel trained with '{obj}'", progress)

        eval_key = _key(full_key, cfg.limit, cfg.gallery)
        eval_json = out / "evaluation" / f"{obj}.json"
        examples_path = out / "evaluation" / f"{obj}_examples.npz"
        if not stages.fresh(f"evaluate_{obj}", eval_key, [eval_json, examples_path]):
            _log(f"evaluating maps of the '{obj}' FullModel on the test split", progress)
            t0 = time.perf_counter()
            model = load_model(weights)
            res = evaluate_localization(model, data_dir, "test", limit=cfg.limit, progress=progress,
                                        keep_examples=cfg.gallery)
            cls = classification_metrics(res.labels, res.logits, model.num_classes, model.class_names)
            record = {"summary": json_safe(res.summary), "classification": json_safe(cls),
                      "count": len(res.paths)}
            eval_json.parent.mkdir(parents=True, exist_ok=True)
            write_text(eval_json, json.dumps(record, indent=1))
            _save_examples(examples_path, res.examples)
            stages.record(f"evaluate_{obj}", eval_key, time.perf_counter() - t0)
        else:
            _log(f"reusing the evaluation of the '{obj}' FullModel", progress)
            record = json.loads(eval_json.read_text())
        results[obj] = record
        classification = classification or record["classification"]

    # 4b. every map and baseline on the same test images, threshold-free (the headline table) ---
    primary = cfg.objectives[0]
    table_key = _key(*(stages.done[f"train_full_{o}"]["key"] for o in cfg.objectives), cfg.limit, cfg.gallery,
                     BASELINES, MAPS_VERSION, *([cfg.map_class] * (cfg.map_class != "predicted")))
    table_json = out / "evaluation" / "maps_table.json"
    table_examples = out / "evaluation" / "maps_examples.npz"
    if not stages.fresh("maps_table", table_key, [table_json, table_examples]):
        _log("scoring every map and baseline on the test split (PxAP, best IoU, MaxBoxAccV2)", progress)
        t0 = time.perf_counter()
        weights = {o: out / f"full_{o}" / "last_weights.safetensors" for o in cfg.objectives}
        all_maps, images, labels, preds, masks, boxes = collect_maps(weights, data_dir, cfg.size, cfg.limit,
                                                                     primary, progress=progress,
                                                                     map_class=cfg.map_class)
        scores = score_maps(all_maps, masks, boxes)
        write_text(table_json, json.dumps(json_safe({"scores": scores, "count": int(len(labels)),
                                                    "accuracy": float((labels == preds).mean()),
                                                    "map_class": cfg.map_class}), indent=1))
        pick = select_indices(len(labels), cfg.gallery)
        _save_examples(table_examples, {"image": images[pick], "label": labels[pick].tolist(),
                                        "pred": preds[pick].tolist(), "mask": [masks[i] for i in pick],
                                        "boxes": [boxes[i] for i in pick],
                                        **{k: all_maps[k][pick] for k in GALLERY_COLUMNS}})
        stages.record("maps_table", table_key, time.perf_counter() - t0)
    else:
        _log("reusing the scores of every map", progress)
    maps_table = json.loads(table_json.read_text())

    # 5. explanation methods side by side (hrcam compare) on the primary FullModel ------------
    compare_table = None
    if cfg.compare_methods and cfg.compare_limit > 0:
        primary_key = stages.done[f"train_full_{primary}"]["key"]
        cmp_key = _key(primary_key, cfg.compare_methods, cfg.compare_limit)
        cmp_json = out / "compare" / "compare.json"
        if not stages.fresh("compare", cmp_key, [cmp_json]):
            _log(f"comparing explanation methods ({', '.join(cfg.compare_methods)}) on "
                 f"{cfg.compare_limit} test images", progress)
            t0 = time.perf_counter()
            _compare(out, data_dir, cfg, out / f"full_{primary}" / "last_weights.safetensors", progress)
            stages.record("compare", cmp_key, time.perf_counter() - t0)
        else:
            _log("reusing the method comparison", progress)
        compare_table = _compare_table(json.loads(cmp_json.read_text()), cfg)

    # 5b. opt-in extras ----------------------------------------------------------------------
    extras = run_extras(out, data_dir, cfg, stages, data_key, progress)

    # 6. figures and report --------------------------------------------------------------------
    t0 = time.perf_counter()
    figures = []
    gallery_figure(_load_examples(table_examples), out / "gallery.png", n=cfg.gallery,
                   title=f"decoder objective: {primary}", columns=GALLERY_COLUMNS)
    figures.append((primary, "gallery.png"))
    for obj in cfg.objectives:
        ex = _load_examples(out / "evaluation" / f"{obj}_examples.npz")
        if obj != primary:
            gallery_figure(ex, out / f"gallery_{obj}.png", n=cfg.gallery, title=f"decoder objective: {obj}")
            figures.append((obj, f"gallery_{obj}.png"))
        else:
            from hrcam.viz.plotting import pipeline_figure

            pipeline_figure(ex["image"][0], ex["low"][0], ex["high"][0], save=out / "pipeline.png")

    maps: dict[str, dict] = {}
    for obj in cfg.objectives:
        for kind, summary in results[obj]["summary"].items():
            if kind in ("low", "center"):
                maps.setdefault(kind, summary)
            else:
                maps[kind if obj == primary else f"{kind}_{obj}"] = summary
    labels = {k: _kind_label(k, MAP_LABELS) for k in maps}
    if "pretrained" in extras:
        size = extras["pretrained"]["settings"]["im_size"]
        for kind in ("low", "high", "refined"):
            if kind in extras["pretrained"]["summary"]:
                maps[f"lite0_{kind}"] = extras["pretrained"]["summary"][kind]
                labels[f"lite0_{kind}"] = f"Lite0 {PRETRAINED_LABELS[kind]} ({size} px)"
    wall = {name: stages.seconds(name) for name in stages.done  # extras of earlier runs: only if asked for
            if not name.startswith("extra_") or name[len("extra_"):] in cfg.extras}
    wall["figures_report"] = round(time.perf_counter() - t0, 2)
    metrics = {
        "classification": {"accuracy": classification["top1"], "top5": classification["top5"],
                           "macro_f1": classification["macro"]["f1"],
                           "num_samples": classification["num_samples"]},
        "threshold_free": maps_table,
        "maps": maps,
        "map_labels": labels,
        "primary_objective": primary,
        "pointing_tolerance_px": pointing_tolerance(cfg.size),
        "config": cfg.to_json(),
        "wall_time_s": wall,
    }
    metrics["best_map"] = _best_maps({k: v for k, v in maps.items() if not k.startswith("lite0_")})
    if extras:
        metrics["extras"] = {name: {k: v for k, v in rec.items() if k != "summary"} for name, rec in extras.items()}
    stage_total = sum(v for v in wall.values() if math.isfinite(v))
    wall["all_stages"] = round(stage_total, 2)
    wall["this_run"] = round(time.perf_counter() - start, 2)
    write_text((out / "metrics.json"), json.dumps(json_safe(metrics), indent=1))
    extra = ([compare_table] if compare_table is not None else [])
    if "neighbours" in extras:
        extra += _neighbours_tables(extras["neighbours"])
    extra += list(extra_tables)
    from hrcam.viz.html_report import gallery_from_examples

    html_gallery = gallery_from_examples(_load_examples(table_examples), GALLERY_COLUMNS, n=cfg.gallery)
    _write_report(out, cfg, metrics, classification, figures, extra, gallery=html_gallery)
    _log(f"wrote {out / 'report.md'}, {out / 'report.html'} and {out / 'metrics.json'}", progress)
    return metrics

def _compare(out: Path, data_dir: Path, cfg: DemoConfig, weights: Path, progress: bool) -> None:
    """``hrcam compare`` on ``cfg.compare_limit`` test images (round-robin over the classes)."""

    from hrcam.api.seed import load_model
    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.evaluation.compare import compare_methods, write_table

    model = load_model(weights)
    x, labels, paths, _ = load_split(data_dir, "test", cfg.size, 3, cfg.compare_limit, model.num_classes)
    gt = load_ground_truth_for(data_dir, "test", paths, cfg.size)
    rows = compare_methods(model.net, x, labels, cfg.compare_methods, ground_truth=gt, progress=progress)
    write_table(rows, out / "compare", meta={"images": len(labels), "weights": str(weights)})
