"""Classification evaluation of a trained model on a class-folder split (``hrcam evaluate``).

Images are read through :func:`hrcam.data.loader.image_batches` (``num_workers`` decoding
processes) and may be sharded over ``devices`` CPU processes (:mod:`hrcam.evaluation.sharding`);
either way the logits of every batch are folded in batch order, so the report is the same.
"""
from __future__ import annotations

import numpy as np
import torch
from tqdm.auto import tqdm

from hrcam.data.folders import ClassFolderDataset, dataset_classes, find_split
from hrcam.data.loader import image_batches
from hrcam.errors import UserError
from hrcam.evaluation.sharding import batch_ranges, check_devices, rank_positions, run_sharded, shard
from hrcam.metrics.classification import ClassificationAccumulator


def evaluate_classification(model, data_dir, split: str = "test", batch_size: int = 32, limit: int | None = None,
                            num_workers: int = 0, progress: bool = True, devices: int = 1) -> dict:
    """Top-1/top-5, macro/micro P/R/F1, per-class report and confusion matrix of ``model``
    (a :class:`~hrcam.api.seed.HalfModel`/:class:`~hrcam.api.seed.FullModel`) on ``data_dir/split``.

    ``limit``: only the first N images (in class-then-file order). ``num_workers``: decoding
    processes per rank. ``devices``: CPU processes the batches are sharded over (same result as
    one). An image that fails to decode is left out and counted (``decode_failures``,
    ``failed_files``; ``skipped_files`` adds the non-images skipped at scan time).
    """
    devices = check_devices(devices)
    split_dir = find_split(data_dir, split)
    classes = dataset_classes(data_dir)
    if len(classes) != model.num_classes:
        raise UserError(f"the model has {model.num_classes} classes but {data_dir} has {len(classes)}")
    channels = model.net.config.in_channels if hasattr(model.net, "config") else 3
    ds = ClassFolderDataset(split_dir, model.im_size, channels, classes=classes)
    n = min(limit, len(ds)) if limit is not None else len(ds)
    samples = ds.samples[:n]
    common = {"model": model, "paths": [p for p, _ in samples], "labels": [y for _, y in samples],
              "im_size": model.im_size, "channels": channels, "batch_size": batch_size,
              "num_workers": num_workers, "progress": progress, "desc": f"evaluating {split}"}
    num_batches = len(batch_ranges(n, batch_size))
    world = min(devices, num_batches)
    results = run_sharded(_classify, common, [shard(num_batches, r, world) for r in range(world)])
    records = sorted((rec for res in results for rec in res), key=lambda rec: rec["batch"])
    acc = ClassificationAccumulator(len(classes), classes)
    failed: list[str] = []
    for rec in records:  # batch order: the fold of one process
        failed += [common["paths"][k] for k, _ in rec["failed"]]
        if rec["logits"] is not None:
            acc.update(np.asarray(rec["labels"]), rec["logits"])
    if len(failed) == n:
        raise UserError(f"none of the {n} images in {split_dir} could be decoded")
    out = acc.compute()
    out["skipped_files"] = ds.skipped + len(failed)  # not images at scan time + failed to decode
    out["skipped_at_scan"] = ds.skipped
    out["decode_failures"] = len(failed)
    out["failed_files"] = failed
    return out


def _classify(common: dict, batches: list[int], rank: int) -> list[dict]:
    """One rank: ``{"batch", "failed", "labels", "logits"}`` for each of ``batches``."""
    model = common["model"]
    net = model.net.eval()
    n, size = len(common["paths"]), common["batch_size"]
    loader = image_batches(common["paths"], common["im_size"], common["channels"], size, common["num_workers"],
                           positions=rank_positions(n, size, batches))
    records = []
    bar = tqdm(total=len(batches), desc=common["desc"], unit="batch", disable=not common["progress"] or rank > 0)
    with torch.no_grad():
        for b, batch in zip(batches, loader, strict=True):
            logits = None
            if batch.images is not None:
                logits = net(batch.images.to(model.device)).cpu().numpy()
            records.append({"batch": b, "failed": batch.failed, "labels": [common["labels"][k] for k in batch.indices],
                            "logits": logits})
            bar.update(1)
    bar.close()
    return records
