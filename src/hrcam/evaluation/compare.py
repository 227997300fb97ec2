"""Compare explanation methods on one model and one set of images (``hrcam compare``).

:func:`compare_methods` runs every method batch by batch, times the explainer call alone (maps
only, no metric work), and scores the maps with every faithfulness metric
(:mod:`hrcam.metrics.faithfulness`) and, where ground truth is given, every localization metric
(:mod:`hrcam.metrics.localization`): the set-level PxAP, best-threshold IoU and MaxBoxAccV2
first, then the per-image means. One row per method; :func:`write_table` writes it as
Markdown, JSON and CSV.

Maps that are constant, all zero or non-finite are counted per reason (``excluded_*``) and left
out of *every* metric of that method (``scored`` = images that count).

Batch means are combined with image-count weights, so the numbers do not depend on the batch
size (up to float rounding).
"""
from __future__ import annotations

__all__ = ["LOCALIZATION_KEYS", "FAITHFULNESS_KEYS", "COUNT_KEYS", "COLUMN_NOTES", "compare_methods", "columns",
           "format_markdown", "format_csv", "write_table", "write_html"]


import contextlib
import csv
import io
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from hrcam.data.transforms import as_batch
from hrcam.explain.base import Explainer
from hrcam.explain.registry import create, parse_methods
from hrcam.fileio import write_text
from hrcam.jsonio import json_safe
from hrcam.metrics import faithfulness as faith
from hrcam.metrics.columns import COLUMN_NOTES, column_keys

LOCALIZATION_KEYS = column_keys("localization")
FAITHFULNESS_KEYS = column_keys("faithfulness")
COUNT_KEYS = ("images", "scored") + tuple(f"excluded_{r}" for r in faith.EXCLUSION_REASONS)


class _Mean:
    """Image-count-weighted running means of a dict of batch means (NaN batches skipped)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}

    def add(self, values: dict, n: int) -> None:
        for key, v in values.items():
            if key in ("n", "excluded") or n == 0 or v is None or (isinstance(v, float) and math.isnan(v)):
                self.sums.setdefault(key, 0.0)
                self.counts.setdefault(key, 0)
                continue
            self.sums[key] = self.sums.get(key, 0.0) + float(v) * n
            self.counts[key] = self.counts.get(key, 0) + n

    def result(self) -> dict:
        return {k: (self.sums[k] / self.counts[k] if self.counts[k] else float("nan")) for k in self.sums}


def _ground_truth_slice(gt, idx: list[int]):
    if gt is None:
        return None, None
    masks = gt.get("masks")
    boxes = gt.get("boxes")
    if masks is not None:
        masks = [None if masks[i] is None else np.asarray(masks[i], dtype=bool) for i in idx]
        if all(m is None for m in masks):
            masks = None
    if boxes is not None:
        boxes = [list(np.asarray(boxes[i], dtype=np.float64).reshape(-1, 4)) for i in idx]
    return masks, boxes


def _check_ground_truth(gt, n: int) -> None:
    if gt is None:
        return
    if not isinstance(gt, dict) or not ({"masks", "boxes"} & set(gt)):
        raise ValueError("ground_truth: expected a dict with 'masks' and/or 'boxes' (one entry per image)")
    for key in ("masks", "boxes"):
        if gt.get(key) is not None and len(gt[key]) != n:
            raise ValueError(f"ground_truth: {len(gt[key])} {key} for {n} images")


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def compare_methods(
    model,
    images,
    labels=None,
    methods=("cam", "hrcam", "refined", "gradcam", "gradcampp", "scorecam"),
    ground_truth: dict | None = None,
    *,
    batch_size: int = 32,
    explainer_kwargs: dict | None = None,
    progress: bool = False,
    steps: int = 20,
    threshold: float = 0.5,
    removal: str = "zero",
    examples: dict | None = None,
    examples_count: int = 8,
    devices: int = 1,
) -> list[dict]:
    """One row (dict) per method with counts, ``ms_per_image``, localization and faithfulness.

    ``model``: a CAM network (or any model the chosen explainers accept), put in eval mode for
    the run and restored after. ``images``: N images in any form :func:`as_batch` accepts (in
    [0, 1]). ``labels``: N true classes (used for masked accuracies and OM; without them the
    predictions stand in and OM is left out). ``methods``: names or a comma string (see
    :func:`hrcam.explain.available`); a list may also hold ready-made :class:`Explainer` objects
    (of the same model; the caller keeps ownership and closes them), reported under their
    ``name``. ``ground_truth``: ``{"masks": [N masks H×W or None],
    "boxes": [N lists of [x0, y0, x1, y1]]}`` at the input resolution, or None (localization
    columns left out). ``explainer_kwargs``: ``{method: {kwarg: value}}`` for the factories.
    ``examples``: a dict to fill with the maps of the first ``examples_count`` images, for a
    gallery: ``{"maps": {method: k×H×W array}, "pred": k predicted classes}``. ``removal``:
    what deletion/insertion put in place of removed pixels (``zero``, ``mean`` or ``inpaint``,
    :func:`hrcam.metrics.faithfulness.deletion_insertion`).

    ``devices``: CPU processes the batches are sharded over (:mod:`hrcam.evaluation.sharding`;
    method names only, built in every process). Every column but ``ms_per_image`` is the one of
    one process; ``ms_per_image`` is then the explainer time summed over the processes, per image.
    """
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
    from hrcam.evaluation.sharding import batch_ranges, check_devices, run_sharded, shard

    devices = check_devices(devices)
    specs = _method_specs(methods)
    x, _ = as_batch(images)
    n = x.shape[0]
    if n == 0:
        raise ValueError("images: no images given")
    if labels is not None:
        labels = torch.as_tensor(np.asarray(labels), dtype=torch.long).reshape(-1)
        if labels.numel() != n:
            raise ValueError(f"labels: {labels.numel()} labels for {n} images")
    _check_ground_truth(ground_truth, n)
    explainer_kwargs = explainer_kwargs or {}
    num_batches = len(batch_ranges(n, batch_size))
    world = min(devices, num_batches)
    kept_count = examples_count if examples is not None else 0
    if removal not in faith.REMOVAL_BASELINES:
        raise ValueError(f"removal: expected one of {', '.join(faith.REMOVAL_BASELINES)}, got {removal!r}")
    settings = {"batch_size": batch_size, "steps": steps, "threshold": threshold, "removal": removal,
                "kept_count": kept_count, "progress": progress}
    if world > 1:
        given = [name for name, obj in specs if obj is not None]
        if given:
            raise ValueError(f"methods: ready-made explainer objects ({', '.join(given)}) run in this process "
                             "only; give method names with devices > 1")
        common = {"model": model, "methods": [name for name, _ in specs], "explainer_kwargs": explainer_kwargs,
                  **settings}
        parts = []
        for r in range(world):
            mine = shard(num_batches, r, world)
            pos = [p for bt in mine for p in batch_ranges(n, batch_size)[bt]]
            parts.append({"batches": mine, "x": x[pos], "labels": None if labels is None else labels[pos],
                          "gt": _ground_truth_subset(ground_truth, pos)})
        results = run_sharded(_compare_shard, common, parts)
    was_training = model.training
    model.eval()
    rows = []
    try:
        for name, given in specs:
            if world > 1:
                records = sorted((rec for res in results for rec in res[name][0]), key=lambda rec: rec["batch"])
                set_level = results[0][name][1]
                for res in results[1:]:
                    set_level.merge(res[name][1])
            else:
                if given is not None:
                    ctx = contextlib.nullcontext(given)
                else:
                    ctx = create(name, model, **explainer_kwargs.get(name, {}))
                records, set_level = _method_batches(model, name, ctx, x, labels, ground_truth,
                                                     list(range(num_batches)), **settings)
            rows.append(_fold_row(name, n, records, set_level, labels is not None, ground_truth is not None))
            if examples is not None:
                kept = [rec["kept"] for rec in records if rec["kept"] is not None]
                if kept:
                    examples.setdefault("maps", {})[name] = np.concatenate([m for m, _ in kept])
                    examples.setdefault("pred", np.concatenate([p for _, p in kept]))
    finally:
        model.train(was_training)
    return rows


def _ground_truth_subset(gt, positions: list[int]):
    """``gt`` restricted to ``positions`` (same form), or None."""
    if gt is None:
        return None
    return {key: (None if gt.get(key) is None else [gt[key][p] for p in positions]) for key in ("masks", "boxes")
            if key in gt}


def _compare_shard(common: dict, part: dict, rank: int) -> dict:
    """One rank of a sharded comparison: ``{method: (records, set-level accumulator)}`` for its batches."""
    model = common["model"]
    model.eval()
    settings = {k: common[k] for k in ("batch_size", "steps", "threshold", "removal", "kept_count")}
    out = {}
    for name in common["methods"]:
        ctx = create(name, model, **common["explainer_kwargs"].get(name, {}))
        out[name] = _method_batches(model, name, ctx, part["x"], part["labels"], part["gt"], part["batches"],
                                    progress=common["progress"] and rank == 0, **settings)
    return out


def _method_specs(methods) -> list[tuple[str, Explainer | None]]:
    if isinstance(methods, str):
        return [(n, None) for n in parse_methods(methods)]
    specs: list[tuple[str, Explainer | None]] = []
    for m in methods:
        if isinstance(m, Explainer):
            specs.append((m.name, m))
        else:
            specs += [(n, None) for n in parse_methods([m])]
    if not specs:
        raise ValueError("methods: no method given")
    names = [n for n, _ in specs]
    if len(set(names)) != len(names):
        raise ValueError(f"methods: duplicate names in {names}")
    return specs


def _method_batches(model, name, ctx, x, labels, gt, batches, *, batch_size, progress, steps, threshold,
                    removal: str = "zero", kept_count: int = 0):
    """Run one method on ``batches`` (global batch numbers) whose images are ``x``, in order.

    ``x`` (and ``labels``, ``gt``) hold exactly those batches' images, one after the other (all
    images when ``batches`` is every batch). Returns one record per batch and the set-level
    accumulator of the scored maps.
    """
    from hrcam.evaluation.sharding import MergeableSetAccumulator
    from hrcam.metrics import localization as loc

    records = []
    set_level = MergeableSetAccumulator()  # PxAP, best-threshold IoU, MaxBoxAccV2 pool the set
    steps_iter = list(enumerate(batches))
    if progress:
        from tqdm.auto import tqdm

        steps_iter = tqdm(steps_iter, desc=f"compare {name}", unit="batch")
    with ctx as explainer:
        device = explainer.device
        # one untimed warm-up call so lazy imports and allocator start-up are not billed to a method
        explainer.explain(x[: min(2, x.shape[0])])
        for j, b in steps_iter:
            lo, start = j * batch_size, b * batch_size  # position here, and in the whole set
            xb = x[lo : lo + batch_size].to(device)
            _sync(device)
            t0 = time.perf_counter()
            exp = explainer.explain(xb)
            _sync(device)
            rec = {"batch": b, "seconds": time.perf_counter() - t0, "kept": None, "loc": None}
            if start < kept_count:  # gallery maps: the first images, untimed
                rec["kept"] = (exp.maps[: kept_count - start].detach().cpu().numpy(),
                               exp.logits[: kept_count - start].argmax(1).cpu().numpy())
            reasons = faith.exclusion_reasons(exp.raw)
            rec["reasons"] = reasons
            yb = labels[lo : lo + batch_size] if labels is not None else None
            rec["faith"] = faith.faithfulness(model, xb, exp.raw, labels=yb, classes=exp.targets.cpu(),
                                              batch_size=batch_size, steps=steps, threshold=threshold,
                                              baseline=removal)
            if gt is not None:
                valid = [i for i, r in enumerate(reasons) if r is None]
                if valid:
                    masks, boxes = _ground_truth_slice(gt, [lo + i for i in valid])
                    correct = None
                    if yb is not None:
                        correct = (exp.logits.argmax(1).cpu() == yb).numpy()[valid]
                    per = loc.localization_metrics(exp.maps[valid].cpu().numpy(), gt_masks=masks, gt_boxes=boxes,
                                                   correct=correct, image_size=int(max(x.shape[-2:])))
                    rec["loc"] = {key: np.asarray(values, dtype=np.float64) for key, values in per.items()}
                    if masks is not None or boxes is not None:
                        set_level.update(exp.maps[valid].cpu().numpy(), masks, boxes, size=tuple(x.shape[-2:]))
            records.append(rec)
    return records, set_level


def _fold_row(name: str, n: int, records: list[dict], set_level, has_labels: bool, has_gt: bool) -> dict:
    """The table row of one method from its batch records, folded in batch order."""
    from hrcam.metrics import localization as loc

    seconds = 0.0
    reasons_all: list = []
    faith_mean = _Mean()
    loc_parts: dict[str, list] = {}
    for rec in records:
        seconds += rec["seconds"]
        reasons_all += rec["reasons"]
        faith_mean.add(rec["faith"], rec["faith"]["n"])
        if rec["loc"] is not None:
            for key, values in rec["loc"].items():
                loc_parts.setdefault(key, []).append(values)
    counts = faith.count_excluded(reasons_all)
    row: dict = {"method": name, "images": n, "scored": n - sum(counts.values())}
    row.update({f"excluded_{r}": c for r, c in counts.items()})
    row["ms_per_image"] = 1000.0 * seconds / n
    if has_gt:
        summary = loc.summarize({k: np.concatenate(v) for k, v in loc_parts.items()}) if loc_parts else {}
        summary.update(set_level.result())
        for key in LOCALIZATION_KEYS:
            if not (key.startswith("om_") and not has_labels):
                row[key] = summary.get(key, float("nan"))
    means = faith_mean.result()
    for key in FAITHFULNESS_KEYS:
        row[key] = means.get(key, float("nan"))
    return row


# -- output ----------------------------------------------------------------------------------------
def columns(rows: list[dict]) -> list[str]:
    """Column order: method, counts, time, localization, faithfulness (only columns some row has)."""
    order = ["method", *COUNT_KEYS, "ms_per_image", *LOCALIZATION_KEYS, *FAITHFULNESS_KEYS]
    present = set().union(*(r.keys() for r in rows)) if rows else set()
    extra = sorted(present - set(order))
    return [c for c in order if c in present] + extra


def _fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:.4g}"
    return str(v)


def format_markdown(rows: list[dict], notes: bool = True) -> str:
    """A GitHub-flavoured Markdown table, methods as rows (and a short legend)."""
    cols = columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(_fmt(r.get(c, "")) for c in cols) + " |")
    if notes:
        lines.append("")
        lines += [f"- **{k}**: {v}" for k, v in COLUMN_NOTES.items()]
        if not any(k in cols for k in LOCALIZATION_KEYS):
            lines.append("- localization columns are left out: no ground truth was given")
    return "\n".join(lines) + "\n"


def format_csv(rows: list[dict]) -> str:
    """The rows as CSV, one column per :func:`columns` entry."""
    cols = columns(rows)
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=cols, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({c: r.get(c, "") for c in cols})
    return buf.getvalue()


def write_table(rows: list[dict], out_dir, name: str = "compare", meta: dict | None = None) -> dict[str, Path]:
    """Write ``<name>.md``, ``<name>.json`` (NaN → null) and ``<name>.csv`` into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"md": out / f"{name}.md", "json": out / f"{name}.json", "csv": out / f"{name}.csv"}
    write_text(paths["md"], format_markdown(rows))
    payload = {"columns": columns(rows), "rows": json_safe(rows)}
    if meta:
        payload["meta"] = meta
    write_text(paths["json"], json.dumps(payload, indent=2))
    write_text(paths["csv"], format_csv(rows))
    return paths


def write_html(rows: list[dict], out_dir, images, labels=None, ground_truth: dict | None = None,
               examples: dict | None = None, meta: dict | None = None, class_names=None,
               name: str = "report") -> Path:
    """``<name>.html`` in ``out_dir``: the comparison table (sortable) and, from ``examples``
    (filled by :func:`compare_methods`), a gallery: one row per image, one column per method,
    ground truth last, with class, prediction and per-image scores (one offline file)."""
    from hrcam.viz.html_report import gallery_from_examples, write_html_report

    cols = columns(rows)
    table = {"title": f"Explanation methods ({rows[0]['images'] if rows else 0} images)", "columns": cols,
             "rows": [[r.get(c) for c in cols] for r in rows]}
    blocks = [table, "\n".join(f"- **{k}**: {v}" for k, v in COLUMN_NOTES.items())]
    if not any(k in cols for k in LOCALIZATION_KEYS):
        blocks.append("Localization columns are left out: no ground truth was given.")
    notes = [", ".join(f"{k}: {v}" for k, v in meta.items())] if meta else []
    gallery = None
    if examples and examples.get("maps"):
        k = len(examples["pred"])
        x, _ = as_batch(images)
        pics = x[:k].detach().cpu().float().permute(0, 2, 3, 1).numpy()
        pics = np.repeat(pics, 3, axis=3) if pics.shape[3] == 1 else pics
        masks, boxes = _ground_truth_slice(ground_truth, list(range(k)))
        truth = np.asarray(labels)[:k] if labels is not None else examples["pred"]
        data = {"image": pics, "label": truth, "pred": examples["pred"], "mask": masks or [None] * k,
                "boxes": boxes or [[] for _ in range(k)], **examples["maps"]}
        gallery = gallery_from_examples(data, {m: m for m in examples["maps"]}, class_names=class_names)
    return write_html_report(Path(out_dir) / f"{name}.html", title="hrcam compare", tables=blocks, notes=notes,
                             gallery=gallery)
