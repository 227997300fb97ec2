"""Benchmark of the post-processing pipeline (DESIGN §4): ms per image at 224×224, one thread.

Rows, all on the same N images:

- ``pipeline_batch``: hrcam's batched fast path, N images in one call;
- ``pipeline`` loop: hrcam's single-image API called N times (``pipeline_batch`` with N = 1);
- reference (scikit-image flood): a per-image implementation written the obvious way
  (``tests/_pipeline_reference.py``: skimage ``sobel``/``flood``/``remove_small_holes`` per image,
  one flood fill per seed);
- reference (SimpleITK): the same with SimpleITK's ``ConnectedThreshold`` for the region growing,
  as the seed's original code did (row skipped when SimpleITK is not installed; it is not a
  dependency of hrcam).

Every row's refined maps and masks are compared with ``pipeline_batch``'s. Times are ms per
image, CPU time of this process (``time.process_time``: fair on a shared machine) and wall time,
and the last column is how many times more CPU the row needs than ``pipeline_batch``. OpenCV,
NumPy and BLAS are held to one thread. Usage:

    python benchmarks/bench_pipeline.py [--n 64] [--size 224] [--repeats 3] [--dtype float32]
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # one core, before NumPy starts its thread pools

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from _pipeline_reference import reference_pipeline  # noqa: E402
from hrcam.postprocessing import pipeline, pipeline_batch  # noqa: E402

COMPARED = ("roi", "segmented", "full_segment", "merged", "result")


def make_inputs(n: int, size: int, seed: int = 0, dtype: str = "float32"):
    """Smooth random CAMs like a network's: high-res maps with blobs, low-res at size/16;
    RGB images as float32 in [0, 1] or uint8."""
    rng = np.random.default_rng(seed)
    imgs = rng.random((n, size, size, 3), dtype=np.float32)
    if dtype == "uint8":
        imgs = (imgs * 255).astype(np.uint8)
    highs = ndi.gaussian_filter(rng.standard_normal((n, size, size)), (0, size / 40, size / 40))
    lows = ndi.gaussian_filter(rng.standard_normal((n, size // 16, size // 16)), (0, 1, 1))
    return imgs, lows.astype(np.float32), highs.astype(np.float32)


def sitk_grow():
    try:
        import SimpleITK as sitk
    except ImportError:
        return None

    def grow(edges, points, lower, upper):
        if not points:
            return np.zeros(edges.shape, bool)
        seg = sitk.ConnectedThreshold(sitk.GetImageFromArray(edges), seedList=points,
                                      lower=float(lower), upper=float(upper), replaceValue=1)
        return sitk.GetArrayFromImage(seg).astype(bool)

    return grow


def best_of(repeats: int, fn):
    """``((wall seconds, CPU seconds), result)``, each the best of ``repeats`` runs. CPU time
    (this process) is the fairer figure on a shared machine, where other jobs stretch wall time."""
    walls, cpus, out = [], [], None
    for _ in range(repeats):
        w, c = time.perf_counter(), time.process_time()
        out = fn()
        cpus.append(time.process_time() - c)
        walls.append(time.perf_counter() - w)
    return (min(walls), min(cpus)), out


def disagreement(batch: dict, per_image: list[dict]) -> str:
    bad = 0
    for i, steps in enumerate(per_image):
        for key in COMPARED:
            bad += int(np.count_nonzero(np.asarray(steps[key]) != batch[key][i]))
        if steps["focal_points"] != batch["focal_points"][i]:
            bad += 1
    return "identical" if bad == 0 else f"{bad} values differ"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--reference_n", type=int, default=16,
                    help="images timed for the (slow) reference rows (default: 16)")
    ap.add_argument("--focal_scope", default="global", choices=("global", "local"))
    ap.add_argument("--dtype", default="float32", choices=("float32", "uint8"), help="image dtype")
    args = ap.parse_args(argv)
    params = {"focal_scope": args.focal_scope}
    cv2.setNumThreads(1)

    imgs, lows, highs = make_inputs(args.n, args.size, dtype=args.dtype)
    pipeline_batch(imgs[:2], lows[:2], highs[:2], **params)  # warm-up (imports, allocator)

    rows = []
    t, batch = best_of(args.repeats, lambda: pipeline_batch(imgs, lows, highs, **params))
    rows.append((f"pipeline_batch (N={args.n})", (t[0] / args.n, t[1] / args.n), "-"))
    t, singles = best_of(args.repeats, lambda: [pipeline(imgs[i], lows[i], highs[i], **params)
                                                for i in range(args.n)])
    rows.append(("pipeline, one image at a time", (t[0] / args.n, t[1] / args.n), disagreement(batch, singles)))

    m = min(args.reference_n, args.n)
    ref = lambda grow=None: [reference_pipeline(imgs[i], lows[i], highs[i], **params,  # noqa: E731
                                                **({"grow_fn": grow} if grow else {})) for i in range(m)]
    sub = {k: v[:m] for k, v in batch.items()}
    t, out = best_of(1, ref)
    rows.append((f"reference, skimage flood per seed (N={m})", (t[0] / m, t[1] / m), disagreement(sub, out)))
    grow = sitk_grow()
    if grow is None:
        rows.append(("reference, SimpleITK ConnectedThreshold", None, "skipped: SimpleITK not installed"))
    else:
        t, out = best_of(1, lambda: ref(grow))
        rows.append((f"reference, SimpleITK ConnectedThreshold (N={m})", (t[0] / m, t[1] / m),
                     disagreement(sub, out)))

    fast = rows[0][1]
    print(f"post-processing pipeline, {args.size}×{args.size} {args.dtype} images, "
          f"focal_scope={args.focal_scope}, one thread, best of {args.repeats} (hrcam rows), ms per image")
    print(f"{'implementation':48s} {'wall':>7s} {'CPU':>7s} {'CPU ÷ batch':>11s}  outputs vs pipeline_batch")
    for name, sec, agree in rows:
        if sec is None:
            print(f"{name:48s} {'-':>7s} {'-':>7s} {'-':>11s}  {agree}")
        else:
            print(f"{name:48s} {sec[0] * 1e3:7.2f} {sec[1] * 1e3:7.2f} {sec[1] / fast[1]:11.1f}  {agree}")
    sitk = rows[-1][1]
    if sitk is not None:
        print(f"pipeline_batch vs the SimpleITK reference: {sitk[1] / fast[1]:.1f}× less CPU time, "
              f"{sitk[0] / fast[0]:.1f}× less wall time")
    return 0


if __name__ == "__main__":
    sys.exit(main())
