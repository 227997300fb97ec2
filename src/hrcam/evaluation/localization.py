"""Localization evaluation of an HR-CAM model on a data set with ground truth (DESIGN §6).

For every annotated image of a split: one forward pass gives the predicted class, its low-res CAM
and (full models) its high-res CAM; the post-processing pipeline turns them into the refined map
(``pipeline_batch(...)['merged']``). Each kind of map is scored with
:func:`hrcam.metrics.localization.localization_metrics` against the image's ground truth at
the model input size (boxes and masks go through the same resize as the image).

Map kinds: ``low`` (low-res CAM, bilinearly upsampled by the metrics), ``high`` (high-res CAM)
and ``refined``; plus two references that use no model: ``center`` — a fixed centred Gaussian
(σ = S/4) that looks at no image — so the numbers can be read against what "always point at the
middle" scores, and ``colour`` — each pixel's RGB distance from the image's median colour
(:func:`colour_distance_map`), which finds a uniformly coloured object on a textured background
without any class evidence.

Each kind gets the set-level, threshold-free metrics (PxAP, best-threshold IoU, MaxBoxAccV2;
:class:`~hrcam.metrics.localization.SetLocalizationAccumulator`, streamed over the batches, in
its exactly mergeable form) and the means of the per-image ones. Images are read through a
``DataLoader`` (``num_workers``) and the batches may be sharded over ``devices`` CPU processes
(:mod:`hrcam.evaluation.sharding`) with the same result.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from hrcam.data.loader import image_batches
from hrcam.errors import UserError
from hrcam.evaluation.sharding import (
    MergeableSetAccumulator,
    batch_ranges,
    check_devices,
    rank_positions,
    run_sharded,
    shard,
)
from hrcam.metrics.localization import localization_metrics, summarize
from hrcam.models.base import cpu_channels_last

__all__ = ["MAP_KINDS", "MAP_LABELS", "REFERENCE_KINDS", "LocalizationResult", "center_prior",
           "colour_distance_map", "evaluate_localization", "select_indices"]

MAP_KINDS = ("low", "high", "refined", "center", "colour")
#: kinds that use no model (references to read the others against)
REFERENCE_KINDS = ("center", "colour")
MAP_LABELS = {
    "low": "low-res CAM",
    "high": "high-res CAM",
    "refined": "refined (pipeline)",
    "center": "centre prior (reference)",
    "colour": "colour distance (no model)",
}


@dataclass
class LocalizationResult:
    """Per-image and mean metrics of each map kind, plus the classification of the same images."""

    paths: list[str]
    labels: np.ndarray
    predictions: np.ndarray
    logits: np.ndarray  #: N×K
    per_image: dict[str, dict[str, np.ndarray]]
    summary: dict[str, dict[str, float]]
    image_size: int
    examples: dict = field(default_factory=dict)  # images spread over the split: image, maps, mask, boxes
    failed_files: list[str] = field(default_factory=list)  #: chosen images that failed to decode (left out)
    skipped_at_scan: int = 0  #: files of the split that are not images (skipped when it was scanned)

    @property
    def accuracy(self) -> float:
        return float((self.labels == self.predictions).mean()) if len(self.labels) else float("nan")

    def to_json(self) -> dict:
        return {
            "count": len(self.paths),
            "image_size": self.image_size,
            "classification_accuracy": self.accuracy,
            "decode_failures": len(self.failed_files),
            "skipped_at_scan": self.skipped_at_scan,
            "maps": {kind: self.summary[kind] for kind in self.summary},
        }


def center_prior(size: int, sigma_fraction: float = 0.25) -> np.ndarray:
    """A centred isotropic Gaussian ``exp(−r² / 2σ²)``, ``σ = sigma_fraction · size``."""
    c = (size - 1) / 2.0
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - c) ** 2 + (xx - c) ** 2) / (2.0 * (sigma_fraction * size) ** 2))


def colour_distance_map(images) -> np.ndarray:
    """Per-pixel Euclidean RGB distance from the image's median colour, ``N×H×W`` (no model).

    ``images``: ``N×C×H×W`` (torch or NumPy, channels first as the models take them). The
    median colour is the per-channel median over the image's pixels:
    ``d(p) = ‖x(p) − median_q x(q)‖₂``. On the demo digits (one uniform colour on a texture) this
    alone localizes the digit; a map has to beat it through class evidence.

    Example:
        >>> x = np.zeros((1, 3, 4, 4)); x[0, :, 1, 1] = [0.3, 0.4, 0.0]
        >>> float(colour_distance_map(x)[0, 1, 1])
        0.5
    """
    if isinstance(images, torch.Tensor):
        images = images.detach().cpu().double().numpy()
    x = np.asarray(images, dtype=np.float64)
    if x.ndim != 4:
        raise ValueError(f"images must be N×C×H×W, got shape {x.shape}")
    median = np.median(x.reshape(x.shape[0], x.shape[1], -1), axis=2)
    return np.sqrt(((x - median[:, :, None, None]) ** 2).sum(axis=1))


def select_indices(total: int, limit: int | None) -> np.ndarray:
    """``limit`` indices spread evenly over ``0..total-1`` (all when ``limit`` is None or larger)."""
    if limit is None or limit >= total:
        return np.arange(total)
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    return np.unique(np.linspace(0, total - 1, limit).round().astype(np.int64))


def evaluate_localization(model, data_dir, split: str = "test", limit: int | None = None,
                          batch_size: int = 32, pipeline_params: dict | None = None,
                          progress: bool = True, keep_examples: int = 16,
                          ground_truth: dict | None = None, num_workers: int = 0,
                          devices: int = 1) -> LocalizationResult:
    """Score the low-res, high-res (full models) and refined maps of ``model`` on ``data_dir``.

    ``model`` is a :class:`hrcam.api.seed.HalfModel` or :class:`hrcam.api.seed.FullModel` (a HalfModel
    gives only ``low`` and the references ``center`` and ``colour``). Only images with ground truth count (see
    :func:`hrcam.data.annotations.load_ground_truth`); ``limit`` keeps that many of them, taken
    round-robin over the classes (:func:`hrcam.data.splits.round_robin`, the subset rule of every
    command). Maps are for the predicted class.

    ``num_workers``: decoding processes (per rank). ``devices``: CPU processes the batches are
    sharded over (:mod:`hrcam.evaluation.sharding`); the result is the one of one process. A file
    that fails to decode is left out and counted (``failed_files``).
    """
    from hrcam.data.annotations import load_ground_truth
    from hrcam.data.folders import ClassFolderDataset, dataset_classes
    from hrcam.data.splits import round_robin

    devices = check_devices(devices)
    data_dir = Path(data_dir)
    gt = ground_truth if ground_truth is not None else load_ground_truth(data_dir, split)
    classes = dataset_classes(data_dir)
    size = int(model.im_size)
    config = getattr(model.net, "config", None)  # pretrained backbones (no config) take RGB
    channels = int(config.in_channels) if config is not None else 3
    dataset = ClassFolderDataset(data_dir / split, size, channels, classes=classes)
    rel_paths = [Path(p).resolve().relative_to(data_dir.resolve()).as_posix() for p, _ in dataset.samples]
    annotated = [i for i, rel in enumerate(rel_paths) if rel in gt]
    if not annotated:
        raise ValueError(f"none of the images in {data_dir / split} has ground truth")
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    # the one subset rule (the comparison table's, too); without a limit, every annotated image
    # in folder order, as before
    chosen = annotated if limit is None else [
        annotated[j] for j in round_robin([dataset.samples[i][1] for i in annotated])[:limit]]
    has_high = bool(getattr(model.net, "has_high_res", False))
    kinds = ["low", "high", "refined", "center", "colour"] if has_high else ["low", "center", "colour"]
    # examples for figures: spread over the chosen images (so over the classes, too)
    example_at = set(select_indices(len(chosen), keep_examples).tolist()) if keep_examples > 0 else set()
    common = {"model": model, "size": size, "channels": channels, "kinds": kinds, "has_high": has_high,
              "params": dict(pipeline_params or {}), "batch_size": batch_size, "num_workers": num_workers,
              "progress": progress, "example_at": example_at,
              "paths": [dataset.samples[i][0] for i in chosen], "labels": [dataset.samples[i][1] for i in chosen],
              "rel": [rel_paths[i] for i in chosen], "gt": [gt[rel_paths[i]] for i in chosen]}
    num_batches = len(batch_ranges(len(chosen), batch_size))
    world = min(devices, num_batches)
    results = run_sharded(_localize, common, [shard(num_batches, r, world) for r in range(world)])

    # the fold, in batch order (the same for one process and for N)
    set_level = {k: MergeableSetAccumulator() for k in kinds}
    for res in results:
        for k in kinds:
            set_level[k].merge(res["set"][k])
    records = sorted((rec for res in results for rec in res["records"]), key=lambda rec: rec["batch"])
    per_image: dict[str, dict[str, list]] = {k: {} for k in kinds}
    labels, preds, paths, logits, failed = [], [], [], [], []
    examples: dict[str, list] = {"image": [], "mask": [], "boxes": [], "label": [], "pred": [],
                                 **{k: [] for k in kinds}}
    for rec in records:
        failed += [common["paths"][k] for k, _ in rec["failed"]]
        if not rec["positions"]:
            continue
        for kind in kinds:
            for key, values in rec["per_image"][kind].items():
                per_image[kind].setdefault(key, []).append(values)
        labels += rec["labels"]
        preds += rec["preds"]
        logits.append(rec["logits"])
        paths += [common["rel"][k] for k in rec["positions"]]
        for key, values in rec["examples"].items():
            examples[key] += values
    if not labels:
        raise UserError(f"none of the {len(chosen)} annotated images in {data_dir / split} could be decoded")
    merged = {k: {key: np.concatenate(v) for key, v in d.items()} for k, d in per_image.items()}
    return LocalizationResult(
        paths=paths,
        labels=np.asarray(labels),
        predictions=np.asarray(preds),
        logits=np.concatenate(logits),
        per_image=merged,
        summary={k: {**set_level[k].result(), **summarize(v)} for k, v in merged.items()},
        image_size=size,
        examples=examples,
        failed_files=failed,
        skipped_at_scan=dataset.skipped,
    )


def _localize(common: dict, batches: list[int], rank: int) -> dict:
    """One rank: a record per batch of ``batches`` and the set-level accumulators of its images."""
    from tqdm.auto import tqdm

    from hrcam.api.seed import compute_cams

    model, size, kinds, has_high = common["model"], common["size"], common["kinds"], common["has_high"]
    n, bsize = len(common["paths"]), common["batch_size"]
    prior = center_prior(size)
    set_level = {k: MergeableSetAccumulator() for k in kinds}
    device = next(model.net.parameters()).device
    loader = image_batches(common["paths"], size, common["channels"], bsize, common["num_workers"],
                           positions=rank_positions(n, bsize, batches))
    records = []
    bar = tqdm(total=sum(len(r) for r in (batch_ranges(n, bsize)[b] for b in batches)), desc="localization",
               disable=not common["progress"] or rank > 0, leave=False)
    for b, batch in zip(batches, loader, strict=True):
        rec = {"batch": b, "failed": batch.failed, "positions": batch.indices}
        records.append(rec)
        bar.update(len(batch.indices) + len(batch.failed))
        if batch.images is None:
            continue
        idx = batch.indices
        x = batch.images.to(device)
        y = [common["labels"][k] for k in idx]
        # on the CPU the pass reads a channels-last copy: faster convolutions, same math to float tolerance
        res = compute_cams(model.net, cpu_channels_last(x), high=has_high)
        pred = res.classes.cpu().numpy()
        maps = {"low": res.low.cpu().numpy(), "center": np.broadcast_to(prior, (len(idx), size, size)),
                "colour": colour_distance_map(x)}
        if has_high:
            maps["high"] = res.high.cpu().numpy()
            from hrcam.postprocessing.refine import refined_maps

            imgs = x.permute(0, 2, 3, 1).cpu().numpy()
            maps["refined"] = refined_maps(imgs, maps["low"], maps["high"], **common["params"])
        masks, boxes = [], []
        for k in idx:
            bx, m = common["gt"][k].at_size((size, size))
            boxes.append(bx.tolist())
            masks.append(m)
        correct = pred == np.asarray(y)
        rec["per_image"] = {}
        for kind in kinds:
            rec["per_image"][kind] = localization_metrics(maps[kind], gt_masks=masks, gt_boxes=boxes,
                                                          correct=correct, image_size=size)
            set_level[kind].update(maps[kind], masks, boxes, size=(size, size))
        rec.update(labels=y, preds=pred.tolist(), logits=res.logits.cpu().numpy())
        examples: dict[str, list] = {}
        take = [j for j, k in enumerate(idx) if k in common["example_at"]]
        if take:
            images = x.permute(0, 2, 3, 1).cpu().numpy()
            examples = {"image": [images[j] for j in take], "mask": [masks[j] for j in take],
                        "boxes": [boxes[j] for j in take], "label": [y[j] for j in take],
                        "pred": [int(pred[j]) for j in take],
                        **{kind: [np.asarray(maps[kind][j], dtype=np.float32) for j in take] for kind in kinds}}
        rec["examples"] = examples
    bar.close()
    return {"records": records, "set": set_level}
