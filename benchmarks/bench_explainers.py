"""Images per second of each explanation method on the same model (CPU, batch 32).

    python benchmarks/bench_explainers.py [--size 64] [--batch 32] [--repeats 3] [--threads N]
                                          [--methods cam,hrcam,refined,gradcam,gradcampp,scorecam]
                                          [--tiny] [--channels_last]

The model is a FullNet with the seed's architecture (random weights: speed does not depend on
them) at ``--size`` px; ``--tiny`` uses a small FC-DenseNet instead. Each method gets one
untimed warm-up call, then the best of ``--repeats`` interleaved rounds on the same batch is reported
(img/s = batch / seconds). Grad-CAM is timed twice: as hrcam runs it (parameters frozen for the
call, so the backward pass skips weight gradients) and as the grad-cam package ships
("gradcam-pkg": parameter gradients computed). The last lines print HR-CAM high-res vs Grad-CAM
(target ≥ 2×). ``--channels_last`` puts model and input in channels-last memory format (about
2× faster convolutions on CPU for every method).
"""
from __future__ import annotations

import argparse
import time

import torch

from hrcam.explain import create
from hrcam.models.hrcam.nets import FullNet

ALL = ("cam", "hrcam", "refined", "gradcam", "gradcampp", "scorecam")


def make(method: str, net):
    kwargs = {}
    if method == "gradcam-pkg":
        method, kwargs = "gradcam", {"freeze_parameters": False}
    return create(method, net, **kwargs)


def bench(methods: list[str], net, x, repeats: int) -> dict[str, float]:
    """img/s per method: best of ``repeats`` rounds, methods interleaved within each round so a
    change in machine load hits every method alike."""
    explainers = {m: make(m, net) for m in methods}
    try:
        for e in explainers.values():
            e(x[:2])  # warm-up (lazy imports, allocator)
        best = {m: float("inf") for m in methods}
        for _ in range(repeats):
            for m, e in explainers.items():
                t0 = time.perf_counter()
                e(x)
                best[m] = min(best[m], time.perf_counter() - t0)
    finally:
        for e in explainers.values():
            e.close()
    return {m: x.shape[0] / best[m] for m in methods}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=64, help="image side, a multiple of 32 (default 64)")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--methods", default=",".join(ALL))
    p.add_argument("--tiny", action="store_true", help="small FC-DenseNet instead of the seed's")
    p.add_argument("--channels_last", action="store_true", help="channels-last memory format")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    arch = dict(init_filters=8, growth_rate=4, layers_per_block=1, aux_channels=4) if args.tiny else {}
    net = FullNet(num_classes=10, **arch).eval()
    x = torch.rand(args.batch, 3, args.size, args.size)
    if args.channels_last:
        net = net.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    print(f"FullNet ({'tiny' if args.tiny else 'seed architecture'}), {args.size}px, batch {args.batch}, "
          f"CPU, {torch.get_num_threads()} thread(s), best of {args.repeats}"
          f"{', channels-last' if args.channels_last else ''}")
    rates = {}
    methods = [s.strip() for s in args.methods.split(",") if s.strip()]
    if "gradcam" in methods:
        methods.insert(methods.index("gradcam") + 1, "gradcam-pkg")
    rates = bench(methods, net, x, args.repeats)
    for m in methods:
        print(f"{m:>11}: {rates[m]:9.1f} img/s  ({1000 / rates[m]:8.2f} ms/img)")
    for ref in ("gradcam", "gradcam-pkg"):
        if "hrcam" in rates and ref in rates:
            ratio = rates["hrcam"] / rates[ref]
            print(f"HR-CAM high-res vs {ref}: {ratio:.2f}x ({'meets' if ratio >= 2 else 'below'} the 2x target)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
