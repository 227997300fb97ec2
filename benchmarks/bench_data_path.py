"""Folder inference, old data path against new (issue 14, part 3): ``hrcam explain DIR`` on JPEG photos.

    python benchmarks/bench_data_path.py [--images 200] [--size 224] [--workers 2] [--repeats 5]
                                         [--arch micro|tiny|seed] [--batch_size 8] [--threads N]
                                         [--format png,npy] [--tmp DIR] [--photo_size P]

Writes ``--images`` synthetic photos (deterministic: smooth colour fields, edges and sensor-like
noise, JPEG quality 90, ``--size`` px square, or ``--photo_size`` px, then resized to ``--size``
when read) into a temporary folder, saves a randomly
initialised FullModel at that size with the repo's own ``FullModel.save`` (``--arch tiny``: a
small FC-DenseNet, init_filters 16, growth 8, 2 layers per block; ``micro``: the tests' one,
8 / 4 / 1; ``seed``: the seed's), and runs the real ``hrcam explain DIR --weights W --out O``
(by default an overlay PNG and the raw maps per image; ``--format`` as explain's) in this
process, alternately with

- **old**: ``load_image`` as it was before (:func:`load_image_before`: PIL, then a torch permuted
  copy), one file after the other in the main process (``--num_workers 0``), which is what
  ``explain`` did;
- **new, 0 workers**: plain JPEG/PNG through ``torchvision.io.decode_image``, the C×H×W copy in
  NumPy, still in the main process;
- **new, ``--workers`` workers**: the same in DataLoader processes (``--num_workers 2``),

``--repeats`` rounds each (interleaved, after one untimed warm-up of each), and prints the
median and the best images/s of each (the best is the least disturbed by other jobs on a shared
machine) and the ratios to old; the maps written must be identical. Photos and
outputs go to ``--tmp`` (default ``/dev/shm``, a RAM disk: ``explain`` fsyncs each of the 3 files
it writes per image, and on a shared disk that latency, not the data path, sets the pace). It also times
``load_image`` alone (one process, the same files, median of 5 interleaved passes): before, PIL
now and decode_image, ms per image. Torch threads: the machine's
default unless ``--threads``.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import os
import statistics
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np


def make_photos(folder: Path, count: int, size: int, seed: int = 0) -> list[Path]:
    """``count`` JPEG "photos" of ``size``² px: per image a random smooth colour field (a few
    low-frequency waves), a few hard-edged shapes, and Gaussian noise; the same seed, the same bytes."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size] / size
    paths = []
    for i in range(count):
        img = np.zeros((size, size, 3))
        for c in range(3):
            for _ in range(3):
                fx, fy, ph = rng.uniform(0.5, 6.0), rng.uniform(0.5, 6.0), rng.uniform(0, 2 * np.pi)
                img[..., c] += rng.uniform(20, 50) * np.sin(2 * np.pi * (fx * xx + fy * yy) + ph)
        img += rng.uniform(60, 190, size=3)
        for _ in range(3):  # shapes with hard edges: discs and rectangles in a random colour
            cx, cy, r = rng.uniform(0.1, 0.9), rng.uniform(0.1, 0.9), rng.uniform(0.05, 0.25)
            shape = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2 if rng.random() < 0.5 else \
                (abs(xx - cx) < r) & (abs(yy - cy) < r / 2)
            img[shape] = rng.uniform(0, 255, size=3)
        img += rng.normal(0, 6, img.shape)
        path = folder / f"photo_{i:04d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    return paths


def save_model(path: Path, size: int, arch: str) -> Path:
    """A randomly initialised FullModel (10 classes) at ``size`` px, saved by ``FullModel.save``."""
    import torch

    from hrcam.api.seed import FullModel
    from hrcam.models.hrcam.nets import FullNet

    torch.manual_seed(0)
    kw = {"seed": {}, "tiny": {"init_filters": 16, "growth_rate": 8, "layers_per_block": 2},
          "micro": {"init_filters": 8, "growth_rate": 4, "layers_per_block": 1, "aux_channels": 4}}[arch]
    FullModel.from_network(FullNet(num_classes=10, **kw), im_size=size).save(path)
    return path


def load_image_before(path, im_size=None, channels: int = 3, decoder: str = "pil"):
    """``load_image`` as it was before this change: PIL (the same decoding as today's
    ``decode_array``), then the old torch permuted copy (which costs 1-15 ms per 224 px image
    with several torch threads on a busy machine)."""
    import torch

    from hrcam.data.folders import decode_array

    arr = decode_array(path, channels, "pil")
    t = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).contiguous()
    if im_size is not None and tuple(t.shape[1:]) != (im_size, im_size):
        t = torch.nn.functional.interpolate(
            t[None], size=(im_size, im_size), mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0.0, 1.0)
    return t


@contextlib.contextmanager
def old_data_path():
    """``explain`` as it read images before: every file through the old ``load_image`` (PIL) in the
    main process, batch by batch (its argv says ``--num_workers 0``)."""
    import hrcam.data.loader as loader

    original = loader.load_image
    loader.load_image = load_image_before
    try:
        yield
    finally:
        loader.load_image = original


def run_explain(folder: Path, weights: Path, out: Path, workers: int, batch_size: int, fmt: str = "png,npy") -> float:
    """Seconds of one ``hrcam explain`` run (its output folder removed first)."""
    import shutil
    import warnings

    from hrcam.cli import main

    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")
        code = main(["explain", str(folder), "--weights", str(weights), "--out", str(out), "--batch_size",
                     str(batch_size), "--num_workers", str(workers), "--format", fmt, "--no_progress"])
    seconds = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"hrcam explain failed with exit code {code}")
    return seconds


def decode_only(paths: list[Path], size: int, rounds: int = 5) -> dict[str, float]:
    """Median ms per image of ``load_image`` on the files (one process, interleaved rounds): as it
    was before, with PIL now, and with decode_image (``decoder="auto"``)."""
    from hrcam.data.folders import load_image

    fns = {"before": load_image_before, "pil": partial(load_image, decoder="pil"),
           "auto": partial(load_image, decoder="auto")}
    times: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for p in paths:
                fn(p, size, 3)
            times[name].append((time.perf_counter() - t0) / len(paths) * 1000)
    return {k: statistics.median(v) for k, v in times.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--images", type=int, default=200)
    ap.add_argument("--size", type=int, default=224, help="the model's input size (default: 224)")
    ap.add_argument("--photo_size", type=int, default=None,
                    help="side of the photos (default: --size; larger ones are resized to --size on reading)")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--arch", choices=("micro", "tiny", "seed"), default="tiny")
    ap.add_argument("--format", default="png,npy", help="explain's --format (default: png,npy)")
    ap.add_argument("--batch_size", type=int, default=8)
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--tmp", default="/dev/shm" if os.path.isdir("/dev/shm") else None,
                    help="folder for the photos and explain's outputs (default: /dev/shm, a RAM disk, when "
                         "present: explain fsyncs every file it writes, and disk latency would swamp the data "
                         "path; give a disk folder to time that too)")
    args = ap.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="hrcam-bench-data-", dir=args.tmp) as tmp:
        tmp = Path(tmp)
        photos = tmp / "photos"
        photos.mkdir()
        paths = make_photos(photos, args.images, args.photo_size or args.size)
        weights = save_model(tmp / "model.safetensors", args.size, args.arch)
        print(f"{args.images} JPEG photos at {args.photo_size or args.size} px, model input {args.size} px, "
              f"FullModel ({args.arch}, random weights), "
              f"batch {args.batch_size}, --format {args.format}, {torch.get_num_threads()} torch threads, "
              f"{len(os.sched_getaffinity(0))} CPUs, files in {tmp}")
        dec = decode_only(paths, args.size)
        print(f"decoding alone (load_image, one process): before {dec['before']:.2f} ms/img, PIL now "
              f"{dec['pil']:.2f}, decode_image {dec['auto']:.2f} ms/img")

        variants = {
            "old: PIL, --num_workers 0 (before)": (True, 0),
            "new: decode_image, --num_workers 0": (False, 0),
            f"new: decode_image, --num_workers {args.workers}": (False, args.workers),
        }

        def run(name: str) -> float:
            before, workers = variants[name]
            with old_data_path() if before else contextlib.nullcontext():
                return run_explain(photos, weights, tmp / f"out{list(variants).index(name)}", workers,
                                   args.batch_size, args.format)

        for name in variants:  # warm-up: imports, allocator, page cache
            run(name)
        times: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.repeats):  # interleaved rounds
            for name in variants:
                times[name].append(run(name))
        if "npy" in args.format:  # every path wrote the same maps
            for k in range(1, len(variants)):
                for name in ("photo_0000_high.npy", f"photo_{args.images - 1:04d}_high.npy"):
                    assert np.array_equal(np.load(tmp / "out0" / name), np.load(tmp / f"out{k}" / name)), name
        median = {k: args.images / statistics.median(v) for k, v in times.items()}
        best = {k: args.images / min(v) for k, v in times.items()}
        first = next(iter(median))
        print(f"| data path | images/s, median of {args.repeats} | × old | images/s, best | × old | runs (s) |")
        print("|---|---:|---:|---:|---:|---|")
        for name in median:
            print(f"| {name} | {median[name]:.1f} | {median[name] / median[first]:.2f} | {best[name]:.1f} | "
                  f"{best[name] / best[first]:.2f} | {', '.join(f'{t:.2f}' for t in times[name])} |")
        last = list(median)[-1]
        print(f"new ({args.workers} workers) / old: {median[last] / median[first]:.2f}x (median), "
              f"{best[last] / best[first]:.2f}x (best)")


if __name__ == "__main__":
    main()
