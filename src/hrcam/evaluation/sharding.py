"""One evaluation over N CPU processes (``--devices N``), with the same numbers as one process.

The rule, shared by ``evaluate``, ``evaluate localization`` and ``compare``:

1. The images are cut into batches *before* anything runs: batch ``b`` holds positions
   ``b·B … b·B + B − 1`` of the image list (the last batch may be short).
2. Rank ``r`` of ``N`` takes the batches ``r, r + N, r + 2N, …`` (:func:`shard`; the batch-level
   version of ``DistributedSampler``'s interleaving, without padding, so no image is repeated).
3. Every rank computes one *record* per batch (per-image scores, logits, failures, ...) and, for
   the threshold-free metrics, one :class:`MergeableSetAccumulator` per map, whose state is
   integers only.
4. ``torch.distributed`` (gloo) gathers the ranks' results to rank 0 (``gather_object``); the
   caller folds the records in batch order and adds the accumulator states.

A one-process run goes through the very same fold, so each image is scored exactly once, in the
same batch as with one process, and the table is the one-process table: batch means are folded in
the same order, integer counts are added, and the IoU sums of the best-threshold IoU are exact
integers (:class:`ExactIoUAccumulator`), so their total does not depend on how the images were
split. On CPU the per-batch numbers themselves are the same on every rank for the same batch and
thread count (each rank gets ``threads // N`` threads, at least one).

:func:`run_sharded` starts the ranks with ``torch.multiprocessing.start_processes`` (forkserver
where available, else spawn); the inputs go to
each rank through a private temporary folder (a common part, written once, and a per-rank part),
and errors come back as values (a :class:`~hrcam.errors.UserError` in any rank is raised again
here with its message), so no rank waits for one that has failed.
"""
from __future__ import annotations

import pickle
import shutil
import tempfile
import traceback
from datetime import timedelta
from pathlib import Path
from typing import Callable

import numpy as np

from hrcam.errors import UserError
from hrcam.metrics.localization import SET_THRESHOLDS, BestIoUAccumulator, SetLocalizationAccumulator
from hrcam.metrics.localization import as_maps as _as_maps

__all__ = ["ExactIoUAccumulator", "MergeableSetAccumulator", "batch_ranges", "shard", "rank_positions",
           "run_sharded", "check_devices"]

#: a rank that waits this long for the others gives up (gloo's timeout)
TIMEOUT_S = 6 * 3600
_BITS = 42  # an IoU value v (a quotient of pixel counts below 2**32) is an integer multiple of 2**-84


def batch_ranges(n: int, batch_size: int) -> list[range]:
    """The position ranges of the ``ceil(n / batch_size)`` batches of ``n`` images."""
    return [range(s, min(s + batch_size, n)) for s in range(0, n, batch_size)]


def shard(num_batches: int, rank: int, world: int) -> list[int]:
    """The batches of rank ``rank`` out of ``world``: ``rank, rank + world, …``."""
    if not 0 <= rank < world:
        raise ValueError(f"rank must be in 0..{world - 1}, got {rank}")
    return list(range(rank, num_batches, world))


def rank_positions(n: int, batch_size: int, batches: list[int]) -> list[int]:
    """The image positions of ``batches``, in order. Cut again into ``batch_size`` pieces they give
    exactly those batches: every batch but the very last one is full, and the last one comes last."""
    ranges = batch_ranges(n, batch_size)
    return [p for b in batches for p in ranges[b]]


# -- exact, mergeable set-level accumulators ------------------------------------------------------
class ExactIoUAccumulator(BestIoUAccumulator):
    """:class:`~hrcam.metrics.localization.BestIoUAccumulator` with its per-threshold sums of IoU
    kept as exact integers, so that adding images in any order or in any split gives the same sums.

    Each image's IoU at each threshold is computed by ``BestIoUAccumulator`` itself (a float64
    quotient of two pixel counts). With fewer than 2**32 pixels per mask such a value is an
    integer multiple of 2**-84, so ``v · 2**84`` is summed exactly as an integer. The mean curve is
    that exact sum divided by the count, rounded once (Python's integer division is correctly
    rounded). Same interface: ``update(maps, masks)``, ``count``, ``curve()``, ``result()``.
    """

    def __init__(self, thresholds=SET_THRESHOLDS):
        self.thresholds = BestIoUAccumulator(thresholds).thresholds
        self.total = [0] * len(self.thresholds)  # Σ v · 2**84 per threshold, Python integers
        self.count = 0

    def update(self, maps, masks) -> None:
        """Add a batch: maps ``N×h×w`` and masks ``N×H×W`` (or a list with ``None`` entries)."""
        a = _as_maps(maps)
        if isinstance(masks, (list, tuple)):
            items = list(masks)
        else:
            m = np.asarray(masks)
            items = list(m[None] if m.ndim == 2 else m)
        if len(items) != a.shape[0]:
            raise ValueError(f"masks must hold one mask (or None) per map ({a.shape[0]}), got {len(items)}")
        values = []
        for i, mask in enumerate(items):
            if mask is None:
                continue
            one = BestIoUAccumulator(self.thresholds)
            one.update(a[i : i + 1], [mask])
            if one.count:
                values.append(one.sums)  # 0 + IoU: this image's IoU at every threshold
        if values:
            self._add(np.stack(values))

    def _add(self, v: np.ndarray) -> None:
        scaled = v * 2.0**_BITS
        hi = np.floor(scaled)
        lo = (scaled - hi) * 2.0**_BITS
        if not np.array_equal(lo, np.floor(lo)):
            raise ValueError("IoU values are not exact quotients of pixel counts below 2**32")
        his, los = hi.astype(np.int64).sum(axis=0), lo.astype(np.int64).sum(axis=0)
        self.total = [t + (int(h) << _BITS) + int(lo_) for t, h, lo_ in zip(self.total, his, los)]
        self.count += v.shape[0]

    def merge(self, other: ExactIoUAccumulator) -> None:
        """Add another accumulator's images (same thresholds)."""
        if not np.array_equal(self.thresholds, other.thresholds):
            raise ValueError("cannot merge IoU accumulators with different thresholds")
        self.total = [a + b for a, b in zip(self.total, other.total)]
        self.count += other.count

    @property
    def sums(self) -> np.ndarray:
        """The sums of IoU per threshold, rounded once to float64."""
        return np.array([t / (1 << (2 * _BITS)) for t in self.total], dtype=np.float64)

    def curve(self) -> np.ndarray:
        """Mean IoU over the images at every threshold (NaN when none counted)."""
        if not self.count:
            return np.full(len(self.thresholds), np.nan)
        return np.array([t / (self.count << (2 * _BITS)) for t in self.total], dtype=np.float64)


class MergeableSetAccumulator(SetLocalizationAccumulator):
    """:class:`~hrcam.metrics.localization.SetLocalizationAccumulator` (PxAP, best-threshold IoU,
    MaxBoxAccV2) whose state is integers only, so that :meth:`merge` is exact: the PxAP histograms
    and the box hits are counts already, and the IoU sums are kept by :class:`ExactIoUAccumulator`."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.iou = ExactIoUAccumulator(self.iou.thresholds)

    def merge(self, other: MergeableSetAccumulator) -> None:
        """Add another accumulator's images (same settings)."""
        if self.pxap.bins != other.pxap.bins or not np.array_equal(self.box.thresholds, other.box.thresholds) \
                or not np.array_equal(self.box.iou_thresholds, other.box.iou_thresholds):
            raise ValueError("cannot merge set-level accumulators with different settings")
        self.pxap.pos += other.pxap.pos
        self.pxap.neg += other.pxap.neg
        self.iou.merge(other.iou)
        self.box.hits += other.box.hits
        self.box.count += other.box.count


# -- running the ranks ---------------------------------------------------------------------------
def _dump(obj, path: Path) -> None:
    with open(path, "wb") as fh:
        pickle.dump(obj, fh, protocol=pickle.HIGHEST_PROTOCOL)


def _load(path: Path):
    with open(path, "rb") as fh:  # written by this run into its own private folder
        return pickle.load(fh)  # noqa: S301


def _rank_main(rank: int, world: int, folder: str, task: Callable, threads: int) -> None:
    """One rank: read its inputs, run ``task``, and take part in the gather whatever happened."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(threads)
    folder_p = Path(folder)
    dist.init_process_group("gloo", init_method=f"file://{folder_p / 'rendezvous'}", rank=rank,
                            world_size=world, timeout=timedelta(seconds=TIMEOUT_S))
    try:
        try:
            result = ("ok", task(_load(folder_p / "common.pkl"), _load(folder_p / f"part{rank}.pkl"), rank))
        except UserError as err:
            result = ("user", str(err))
        except Exception:  # noqa: BLE001 - sent to the parent, which raises it
            result = ("error", traceback.format_exc())
        gathered = [None] * world if rank == 0 else None
        dist.gather_object(result, gathered, dst=0)
        if rank == 0:
            _dump(gathered, folder_p / "gathered.pkl")
    finally:
        dist.destroy_process_group()


def _start_method(task: Callable) -> str:
    """``forkserver`` where there is one (ranks fork from a clean server process that has imported
    torch, the decoders and ``task``'s module once, so after the first call a rank starts in
    milliseconds), else ``spawn``. Never plain ``fork``: the parent may hold OpenMP threads."""
    import multiprocessing

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return "spawn"
    # only the first call's list counts (the server then lives as long as this process)
    multiprocessing.get_context("forkserver").set_forkserver_preload(
        ["torch", "torchvision.io", "PIL.Image", "hrcam.data.loader", "hrcam.api.seed", __name__,
         "hrcam.evaluation.classification", "hrcam.evaluation.localization", "hrcam.evaluation.compare",
         task.__module__])
    return "forkserver"


def run_sharded(task: Callable, common, parts: list, threads: int | None = None) -> list:
    """``[task(common, parts[r], r) for r in ranks]``, with one process per rank when there are
    several parts (gloo), in this process for one.

    ``task`` must be a module-level function (the ranks import it); ``common`` and ``parts`` are
    pickled (tensors by value). ``threads``: torch threads per rank (default: this process's
    threads divided by the number of ranks, at least 1). A :class:`UserError` raised in a rank is
    raised here with its message; another error becomes a ``RuntimeError`` with the rank's
    traceback.
    """
    world = len(parts)
    if world < 1:
        raise ValueError("run_sharded needs at least one part")
    if world == 1:
        return [task(common, parts[0], 0)]
    import torch
    import torch.multiprocessing as mp

    threads = max(1, torch.get_num_threads() // world) if threads is None else int(threads)
    folder = tempfile.mkdtemp(prefix="hrcam-shards-")
    try:
        _dump(common, Path(folder) / "common.pkl")
        for r, part in enumerate(parts):
            _dump(part, Path(folder) / f"part{r}.pkl")
        mp.start_processes(_rank_main, args=(world, folder, task, threads), nprocs=world, join=True,
                           start_method=_start_method(task))
        gathered = _load(Path(folder) / "gathered.pkl")
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    results = []
    for r, (status, value) in enumerate(gathered):
        if status == "user":
            raise UserError(value)
        if status != "ok":
            raise RuntimeError(f"rank {r} of {world} failed:\n{value}")
        results.append(value)
    return results


def check_devices(devices) -> int:
    """``devices`` (the number of CPU processes) as an int, or a ValueError."""
    if isinstance(devices, bool) or not isinstance(devices, (int, np.integer)) or devices < 1:
        raise ValueError(f"devices must be a positive integer (CPU processes), got {devices!r}")
    return int(devices)
