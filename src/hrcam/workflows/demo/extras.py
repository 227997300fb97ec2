"""Opt-in demo stages: the pretrained path and the baselines (CAM, L-CAM, CASM) on a subset of the demo data."""
from __future__ import annotations

import json
import time
from pathlib import Path

from hrcam.fileio import write_text
from hrcam.jsonio import json_safe
from hrcam.workflows.demo.cache import _key, _log, _Stages
from hrcam.workflows.demo.config import DemoConfig
from hrcam.workflows.side_process import SideProcess, free_cores

PRETRAINED_LABELS = {"low": "low-res CAM", "high": "high-res CAM", "refined": "refined"}


def run_extras(out: Path, data_dir: Path, cfg: DemoConfig, stages: _Stages, data_key: str,
               progress: bool) -> dict[str, dict]:
    """The opt-in extras ``cfg.extras`` asks for, each reused when finished: ``{name: record}``.

    Where a second core is free (this process's torch threads at most half the CPUs) and
    ``cfg.parallel_extras`` allows, one worker process (:class:`~hrcam.workflows.side_process.SideProcess`)
    takes the pretrained path, and then whichever baseline run is next whenever it is free, while
    this one trains the rest: the same runs and seeds, so the same records, in less wall time. Like any spawned process, it imports the calling script again:
    a script that calls :func:`~hrcam.workflows.demo.run_demo` with extras needs the usual
    ``if __name__ == "__main__":`` guard (the ``hrcam`` command has it), or ``parallel_extras=False``.
    """
    from concurrent.futures.process import BrokenProcessPool

    import torch

    records: dict[str, dict] = {}
    todo = [name for name in ("pretrained", "neighbours") if name in cfg.extras]
    side_ok = cfg.parallel_extras and 2 * torch.get_num_threads() <= free_cores()
    side = SideProcess(torch.get_num_threads()) if side_ok and todo else None
    try:
        pending = None
        if "pretrained" in todo:
            records["pretrained"], pending = _extra_pretrained(out, data_dir, cfg, stages, data_key, progress,
                                                               side)
        if "neighbours" in todo:
            records["neighbours"] = _extra_neighbours(out, data_dir, cfg, stages, data_key, progress, side)
        if pending is not None:
            records["pretrained"] = pending()
    except BrokenProcessPool as e:
        raise RuntimeError(
            "the demo extras' second process stopped before it finished (its traceback is above). If you "
            "call run_demo from a script, put the call under `if __name__ == \"__main__\":` (a spawned "
            "process imports the script again), or run with parallel_extras=False "
            "(hrcam demo run --no-parallel-extras)") from e
    finally:
        if side is not None:
            side.shutdown()
    return {name: records[name] for name in todo}


def _extra_pretrained(out: Path, data_dir: Path, cfg: DemoConfig, stages: _Stages, data_key: str,
                      progress: bool, side=None):
    """Stage ``extra_pretrained``: frozen Lite0 + linear head + decoder, scored like the demo maps.

    Returns ``(record, None)``, or with ``side`` and no finished stage ``(None, finish)``:
    it runs there, and ``finish()`` waits for it, records the stage and returns the record."""
    ps = cfg.extra_settings("pretrained")
    limit = ps["test_limit"] if ps["test_limit"] is not None else cfg.limit
    key = _key(data_key, ps, limit, cfg.seed)
    path = out / "extras" / "pretrained.json"
    cached = stages.cached_json("extra_pretrained", key, path, progress, "the pretrained-path evaluation")
    if cached is not None:
        return cached, None
    where = " (in a second process, without progress bars)" if side is not None else ""
    _log(f"extra 'pretrained': {ps['backbone']} frozen, linear head on the digits, decoder "
         f"{ps['decoder_steps']} steps, {ps['im_size']} px{where}", progress)
    t0 = time.perf_counter()

    def finish(record: dict) -> dict:
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(record, indent=1))
        stages.record("extra_pretrained", key, record.get("wall_s", time.perf_counter() - t0),
                      **{f"seconds_{k}": v for k, v in record["seconds"].items()})
        _log(f"extra 'pretrained' finished: accuracy {record['accuracy']:.3f}", progress and side is not None)
        return record

    if side is None:
        return finish(_pretrained_record(data_dir, ps, limit, cfg.seed, progress)), None
    future = side.submit(_pretrained_record, data_dir, ps, limit, cfg.seed, False)
    return None, lambda: finish(future.result())


def _pretrained_record(data_dir: Path, ps: dict, limit: int | None, seed: int, progress: bool) -> dict:
    """Fit and score the pretrained path (settings ``ps``); the JSON record of the stage."""
    from hrcam.metrics.classification import classification_metrics
    from hrcam.workflows.pretrained_demo import fit_pretrained_digits, score_pretrained

    t0 = time.perf_counter()
    fit = {k: v for k, v in ps.items() if k != "test_limit"}
    net, info = fit_pretrained_digits(data_dir, seed=seed, progress=progress, **fit)
    t1 = time.perf_counter()
    res = score_pretrained(net, data_dir, ps["im_size"], limit=limit, progress=progress)
    backbone = getattr(net, "backbone", net)
    cls = classification_metrics(res.labels, res.logits, backbone.num_classes, backbone.class_names)
    seconds = {"linear_head": info["seconds_head"],
               "decoder": (info["decoder"] or {}).get("seconds", 0.0),
               "score": round(time.perf_counter() - t1, 2)}
    return json_safe({"settings": ps, "summary": res.summary, "count": len(res.paths),
                      "accuracy": cls["top1"], "top5": cls["top5"], "info": info, "seconds": seconds,
                      "wall_s": round(time.perf_counter() - t0, 2)})

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
    write_text((dest / "annotations.json"), json.dumps(kept))
    return dest

def _extra_neighbours(out: Path, data_dir: Path, cfg: DemoConfig, stages: _Stages, data_key: str,
                      progress: bool, side=None) -> dict:
    """Stage ``extra_neighbours``: CAM, L-CAM-Fm/-Img and CASM (per thinning strategy) on a subset of the
    demo data, and each paper's headline comparison on the subset's test images."""
    from hrcam.workflows.baselines_demo import split_accuracy, train_neighbours, verdicts

    nb = cfg.extra_settings("neighbours")
    key = _key(data_key, nb, cfg.seed)
    path = out / "extras" / "neighbours.json"
    cached = stages.cached_json("extra_neighbours", key, path, progress, "CAM / L-CAM / CASM")
    if cached is not None and "tables" in cached and "accuracy" in cached:
        return cached
    _log(f"extra 'baselines': CAM, L-CAM, CASM {'/'.join(nb['thinnings'])} on {nb['backbone']}, {nb['train']} "
         f"train / {nb['test']} test images, {nb['im_size']} px", progress)
    t0 = time.perf_counter()
    sub = _subset_data(data_dir, out / "extras" / "neighbours_data", nb["train"], nb["test"])
    seconds: dict = {}
    train_kw = {k: v for k, v in nb.items() if k not in ("train", "test", "score_batch")}
    weights = train_neighbours(sub, out / "extras" / "neighbours", seed=cfg.seed, progress=progress,
                               seconds=seconds, side=side, **train_kw)
    t1 = time.perf_counter()
    tables = _score_tables(weights, sub, nb["score_batch"], side)
    accuracy = split_accuracy(weights, data_dir)
    _add_split_accuracy(tables, accuracy)
    seconds["score"] = round(time.perf_counter() - t1, 2)
    record = {"settings": nb, "tables": json_safe(tables), "verdicts": verdicts(tables), "accuracy": accuracy,
              "seconds": seconds, "wall_s": round(time.perf_counter() - t0, 2), "two_processes": side is not None}
    write_text(path, json.dumps(record, indent=1))
    stages.record("extra_neighbours", key, time.perf_counter() - t0, **{f"seconds_{k}": v for k, v in seconds.items()})
    return record

def _score_tables(weights: dict, data_dir: Path, batch_size: int, side=None) -> dict:
    """:func:`~hrcam.workflows.baselines_demo.baseline_tables` of ``weights``; with an idle ``side``
    process, the CAM and L-CAM tables (one classifier) are scored there beside the CASM tables here."""
    from hrcam.workflows.baselines_demo import baseline_tables

    one_classifier = {k: v for k, v in weights.items() if not k.startswith("casm_")}
    if side is None or not side.idle() or "cam" not in one_classifier:
        return baseline_tables(weights, data_dir, batch_size=batch_size)
    future = side.submit(baseline_tables, one_classifier, data_dir, batch_size=batch_size)
    casm = baseline_tables({k: v for k, v in weights.items() if k.startswith("casm_")}, data_dir,
                           batch_size=batch_size)
    tables = future.result()
    tables["casm"] = casm["casm"]
    return tables


def _add_split_accuracy(tables: dict, accuracy: dict) -> None:
    """Each row's ``test_top1``: the accuracy on the whole test split of the classifier it explains
    (CAM's for the CAM and L-CAM tables, each CASM run's own)."""
    for name in ("cam", "lcam"):
        for row in tables.get(name, {}).values():
            if "cam" in accuracy:
                row["test_top1"] = accuracy["cam"]["top1"]
    for label, row in tables.get("casm", {}).items():
        run = "casm_" + label.removeprefix("CASM ")
        if run in accuracy:
            row["test_top1"] = accuracy[run]["top1"]


#: the columns of each comparison table: (key, header)
BASELINE_COLUMNS = {
    "cam": [("clean_top1", "classifier acc."), ("test_top1", "acc., whole test split"), ("pxap", "PxAP"), ("best_iou", "best-threshold IoU"),
            ("maxboxacc_v2", "MaxBoxAccV2"), ("mask_iou", "mask IoU"), ("pointing_game", "pointing game"),
            ("box_acc_cam", "box acc. (CAM rule)")],
    "lcam": [(f"{m}@{q}", f"{m} {k} kept") for q, k in (("0", "100 %"), ("0.5", "50 %"), ("0.85", "15 %"))
             for m in ("AD", "IC")] + [("pxap", "PxAP")],
    "casm": [("clean_top1", "classifier acc."), ("test_top1", "acc., whole test split"), ("le_casm", "LE (CASM rule)"), ("box_acc_casm", "box acc. (CASM rule)"),
             ("pxap", "PxAP"), ("mask_iou", "mask IoU"), ("mask_area", "mean mask"), ("masked_in_top1", "masked-in acc."),
             ("masked_out_top1", "masked-out acc."), ("inpainted_top1", "inpainted acc.")],
}
BASELINE_TITLES = {
    "cam": "CAM (Zhou et al.): GAP-CAM against the centre prior and Grad-CAM on the same network",
    "lcam": "L-CAM: L-CAM-Img / L-CAM-Fm against Grad-CAM, Grad-CAM++, Score-CAM on the same frozen classifier",
    "casm": "CASM: classifier-dependent (F) against classifier-agnostic (L, L100) masks",
}


#: how the report names CASM's fill of the masked-out pixels
_FILL_TEXT = {"zero": "black (the paper's x ⊙ (1 − m))", "random": "one random colour per image (not the paper's black, "
              "which cannot hide a dark digit)"}


def _neighbours_tables(record: dict) -> list:
    """The three comparison tables of the baselines extra, each with its verdict and the settings."""
    from hrcam.viz.report import table_from_records

    nb, sec = record["settings"], record["seconds"]
    times = ", ".join(f"{k} {v:.0f} s" for k, v in sec.items())
    if record.get("two_processes"):
        times = f"{record['wall_s']:.0f} s in all, in two processes (so the runs overlap): {times}"
    setting = (f"{nb['backbone']}{' (offline ImageNet weights)' if nb['pretrained'] else ''}, {nb['im_size']} px, "
               f"{nb['train']} train / {nb['test']} test images, batch {nb['batch_size']}. Wall time: {times}.")
    n_all = next(iter(record.get("accuracy", {}).values()), {}).get("images")
    if n_all:
        setting += (f" Classifier acc.: on the table's {nb['test']} test images; acc., whole test split: on all "
                    f"{n_all} test images of the demo data (no maps needed).")
    notes = {
        "cam": f"CAM: {nb['epochs']} epochs, Adam lr {nb['cam_lr']} ({nb.get('cam_lr_schedule', 'constant')}), extra conv {nb['extra_channels']} channels; "
               "Grad-CAM at the backbone's last maps (at CAM's own layer it is ReLU(CAM)).",
        "lcam": f"L-CAM on the CAM network above (frozen): {nb['lcam_epochs']} epoch(s), {nb['lcam_optimizer']} "
                f"lr {nb['lcam_lr']}; every method at the layer L-CAM reads; AD lower / IC higher is better.",
        "casm": f"CASM: classifier started from the CAM network above (F: frozen), {nb['casm_epochs']} epoch(s) of at "
                f"most {nb['casm_batches']} batches, {nb['casm_warmup_epochs']} of them classifier warm-up, classifier "
                f"SGD lr {nb['casm_lr']}, masked-out pixels filled with "
                f"{_FILL_TEXT.get(nb.get('casm_fill', 'zero'), nb.get('casm_fill'))}; each explains its own "
                "classifier; LE lower, masked-out accuracy lower "
                "and masked-in / inpainted higher mean the mask holds the evidence.",
    }
    tables = []
    for name, rows in (record.get("tables") or {}).items():
        if not rows:
            continue
        verdict = (record.get("verdicts") or {}).get(name, "")
        tables.append(table_from_records(BASELINE_TITLES[name], rows, BASELINE_COLUMNS[name], "method",
                                         note=f"{verdict} {notes[name]} {setting}".strip()))
    return tables
