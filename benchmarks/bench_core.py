"""Core benchmark (issue: HR-CAM core).

1. All-class CAMs of a batch vs a plain forward pass of the same model, timed side by side
   (interleaved repeats, median): target ratio ≤ 1.10.
2. Training throughput (img/s) of the half and full models at 64 and 224 px on this CPU.

Usage: python benchmarks/bench_core.py [--threads N] [--batch B] [--repeats R] [--quick] [--no-thp]

Like the ``hrcam`` command, the script allocates large tensors on transparent huge pages
(``THP_MEM_ALLOC_ENABLE=1``, read by PyTorch before its first allocation); ``--no-thp`` measures
without them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

if "--no-thp" not in sys.argv:
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

from hrcam.models.base import class_maps  # noqa: E402
from hrcam.models.hrcam.nets import FullNet, HalfNet  # noqa: E402
from hrcam.train.modules import FullModule, HalfModule, l2_penalty  # noqa: E402


def _time(fn, repeats):
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


@torch.no_grad()
def cam_overhead(net, x, repeats):
    net.eval()
    high = isinstance(net, FullNet)

    def forward():
        # the plain forward pass: everything the network computes (for the full model, A_high too)
        return net.forward_all(x) if high else net(x)

    def all_cams():
        out = net.forward_maps(x, high=high)
        low = class_maps(net.low_weight, out.low_features)
        hi = class_maps(net.high_weight, out.high_features) if high else None
        return low, hi

    buf = {}

    def all_cams_reused():
        out = net.forward_maps(x, high=high)
        low = class_maps(net.low_weight, out.low_features)
        hi = None
        if high:
            f = out.high_features
            if "high" not in buf:
                buf["high"] = torch.empty(f.shape[0], net.num_classes, *f.shape[-2:])
            hi = class_maps(net.high_weight, f, out=buf["high"])
        return low, hi

    forward(), all_cams(), all_cams_reused()  # warm-up
    fwd, cam, reused = [], [], []
    for _ in range(repeats):  # interleave so machine noise hits all alike
        fwd += _time(forward, 1)
        cam += _time(all_cams, 1)
        reused += _time(all_cams_reused, 1)
    return statistics.median(fwd), statistics.median(cam), statistics.median(reused)


def train_throughput(kind, size, batch, steps, classes=398):
    torch.manual_seed(0)
    if kind == "half":
        module = HalfModule(classes, 3, size)
    else:
        module = FullModule(HalfNet(classes).state_dict(), classes, 3, size)
    opt = module.configure_optimizers()["optimizer"]
    net = module.net.train()
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, classes, (batch,))

    def step():
        if kind == "half":
            loss = torch.nn.functional.cross_entropy(net(x), y)
        else:
            loss = module._losses(x)[1]
        loss = loss + 1e-4 * l2_penalty(net)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    times = _time(step, steps)
    return batch / statistics.median(times)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--quick", action="store_true", help="smaller sizes, fewer repeats")
    ap.add_argument("--no-thp", action="store_true", help="no transparent huge pages for large tensors")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    sizes = [64] if args.quick else [64, 224]
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch}, 398 classes, "
          f"THP_MEM_ALLOC_ENABLE={os.environ.get('THP_MEM_ALLOC_ENABLE', '0')}")
    print("\n1) all-class CAMs vs plain forward (median of interleaved repeats)")
    print(f"{'model':<6}{'size':>6}{'forward ms':>12}{'all CAMs ms':>13}{'ratio':>8}{'reused buf ms':>15}{'ratio':>8}")
    for size in sizes:
        for cls in (HalfNet, FullNet):
            net = cls(398)
            x = torch.rand(args.batch, 3, size, size)
            f, c, r = cam_overhead(net, x, args.repeats if size < 224 else max(3, args.repeats // 2))
            print(f"{cls.__name__[:4].lower():<6}{size:>6}{f * 1e3:>12.1f}{c * 1e3:>13.1f}{c / f:>8.3f}"
                  f"{r * 1e3:>15.1f}{r / f:>8.3f}")
    print("\n2) training throughput (img/s, median step)")
    print(f"{'model':<6}{'size':>6}{'img/s':>10}")
    for size in sizes:
        for kind in ("half", "full"):
            ips = train_throughput(kind, size, args.batch, 3 if size >= 224 else 5)
            print(f"{kind:<6}{size:>6}{ips:>10.1f}")


if __name__ == "__main__":
    main()
