"""Opt-in demo stages: the pretrained path and the baselines (CAM, L-CAM, CASM) on a subset of the demo data."""
from __future__ import annotations

import json
import time
from pathlib import Path

from hrcam.jsonio import json_safe
from hrcam.workflows.demo.cache import _key, _log, _Stages
from hrcam.workflows.demo.config import DemoConfig
from hrcam.workflows.demo.report import COMPARE_COLUMNS

PRETRAINED_LABELS = {"low": "low-res CAM", "high": "high-res CAM", "refined": "refined"}

NEIGHBOUR_NAMES = {"camnet": "CAM (Zhou et al., camnet)", "lcam": "L-CAM-Fm", "casm": "CASM"}

def _extra_pretrained(out: Path, data_dir: Path, cfg: DemoConfig, stages: _Stages, data_key: str,
                      progress: bool) -> dict:
    """Stage ``extra_pretrained``: frozen Lite0 + linear head + decoder, scored like the demo maps."""
    from hrcam.metrics.classification import classification_metrics
    from hrcam.workflows.pretrained_demo import fit_pretrained_digits, score_pretrained

    ps = cfg.extra_settings("pretrained")
    limit = ps["test_limit"] if ps["test_limit"] is not None else cfg.limit
    key = _key(data_key, ps, limit, cfg.seed)
    path = out / "extras" / "pretrained.json"
    cached = stages.cached_json("extra_pretrained", key, path, progress, "the pretrained-path evaluation")
    if cached is not None:
        return cached
    _log(f"extra 'pretrained': {ps['backbone']} frozen, linear head on the digits, decoder "
         f"{ps['decoder_steps']} steps, {ps['im_size']} px", progress)
    t0 = time.perf_counter()
    fit = {k: v for k, v in ps.items() if k != "test_limit"}
    net, info = fit_pretrained_digits(data_dir, seed=cfg.seed, progress=progress, **fit)
    t1 = time.perf_counter()
    res = score_pretrained(net, data_dir, ps["im_size"], limit=limit, progress=progress)
    backbone = getattr(net, "backbone", net)
    cls = classification_metrics(res.labels, res.logits, backbone.num_classes, backbone.class_names)
    seconds = {"linear_head": info["seconds_head"],
               "decoder": (info["decoder"] or {}).get("seconds", 0.0),
               "score": round(time.perf_counter() - t1, 2)}
    record = {"settings": ps, "summary": json_safe(res.summary), "count": len(res.paths),
              "accuracy": cls["top1"], "top5": cls["top5"], "info": json_safe(info), "seconds": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    stages.record("extra_pretrained", key, time.perf_counter() - t0, **{f"seconds_{k}": v for k, v in seconds.items()})
    return record

def _subset_data(data_dir: Path, dest: Path, train: int, test: int) -> Path:
    """A copy of ``train`` / ``test`` images spread over each split (so over the classes), same
    relative paths, with their ground truth (``annotations.json`` entries and mask files)."""
    import shutil

    from hrcam.data.folders import ClassFolderDataset, dataset_classes
    from hrcam.evaluation.localization import select_indices

    if dest.exists():
        shutil.rmtree(dest)
    annotations = json.loads((data_dir / "annotations.json").read_text())
    kept = {}
    classes = dataset_classes(data_dir)
    for split, n in (("train", train), ("test", test)):
        ds = ClassFolderDataset(data_dir / split, 8, 3, classes=classes)
        for i in select_indices(len(ds), n):
            rel = Path(ds.samples[int(i)][0]).resolve().relative_to(data_dir.resolve()).as_posix()
            files = [rel]
            if rel in annotations:
                kept[rel] = annotations[rel]
                files += [annotations[rel]["mask"]] if annotations[rel].get("mask") else []
            for f in files:
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(data_dir / f, dest / f)
    (dest / "annotations.json").write_text(json.dumps(kept))
    return dest

def _extra_neighbours(out: Path, data_dir: Path, cfg: DemoConfig, stages: _Stages, data_key: str,
                      progress: bool) -> dict:
    """Stage ``extra_neighbours``: CAM, L-CAM and CASM on a subset of the demo data, scored with
    ``hrcam compare``'s metrics on the subset's test images."""
    from hrcam.workflows.baselines_demo import neighbour_rows, train_neighbours

    nb = cfg.extra_settings("neighbours")
    key = _key(data_key, nb, cfg.seed)
    path = out / "extras" / "neighbours.json"
    cached = stages.cached_json("extra_neighbours", key, path, progress, "CAM / L-CAM / CASM")
    if cached is not None:
        return cached
    _log(f"extra 'neighbours': CAM, L-CAM, CASM on {nb['backbone']}, {nb['train']} train / {nb['test']} "
         f"test images, {nb['im_size']} px, {nb['epochs']} epochs", progress)
    t0 = time.perf_counter()
    sub = _subset_data(data_dir, out / "extras" / "neighbours_data", nb["train"], nb["test"])
    seconds: dict = {}
    train_kw = {k: v for k, v in nb.items() if k not in ("train", "test", "score_batch")}
    weights = train_neighbours(sub, out / "extras" / "neighbours", seed=cfg.seed, progress=progress,
                               seconds=seconds, **train_kw)
    t1 = time.perf_counter()
    rows = neighbour_rows(weights, sub, batch_size=nb["score_batch"], progress=progress)
    seconds["score"] = round(time.perf_counter() - t1, 2)
    record = {"settings": nb, "rows": json_safe(rows), "seconds": seconds}
    path.write_text(json.dumps(record, indent=1))
    stages.record("extra_neighbours", key, time.perf_counter() - t0, **{f"seconds_{k}": v for k, v in seconds.items()})
    return record

def _neighbours_table(record: dict):
    from hrcam.viz.report import table_from_records

    nb, sec = record["settings"], record["seconds"]
    rows = {NEIGHBOUR_NAMES.get(r["method"], r["method"]): r for r in record["rows"]}
    times = ", ".join(f"{k} {v:.0f} s" for k, v in sec.items())
    return table_from_records(
        f"CAM / L-CAM / CASM trained on the demo data ({nb['train']} train / {nb['test']} test images)",
        rows, [("clean_top1", "classifier acc."), *COMPARE_COLUMNS], "method",
        note=(f"Small settings: {nb['backbone']}{' (offline ImageNet weights)' if nb['pretrained'] else ''}, "
              f"{nb['im_size']} px, batch {nb['batch_size']}, {nb['epochs']} epochs, CAM extra conv "
              f"{nb['extra_channels']} channels, L-CAM-Fm on the trained CAM classifier (lr {nb['lcam_lr']}), "
              f"CASM thinning {nb['thinning']}. Wall time: {times}. Each method explains its own "
              "classifier, so these rows are not on the FullModel above; same columns as the "
              "comparison table."))
