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

    python benchmarks/bench_explainers.py --maps [--quick] [--size 224] [--batch 4] [--repeats 5] [--threads 1]

``--maps`` times the cost of the maps at the seed's scale instead (issue 14): the seed
architecture with 398 classes at 224 px, 1 thread, batch 4 (``--quick``: 64 px, 3 repetitions),
each row once per round, rounds interleaved, the median reported in ms/img and as a ratio to
LayerCAM on the model as loaded. Rows: the half forward (as before: NCHW under ``no_grad``;
and as HR-CAM now runs it: channels-last input, ``inference_mode``), the HR-CAM one-class
high-res map for the seed's decoder (``FullNet.from_half(half)``) and for the 'localize' recipe
(``upsampling="resize", anchor="bilinear"``, with its resize-convs fused and, for comparison,
run as written), LayerCAM and Grad-CAM on the model as loaded and on the model in channels-last,
and the all-class low + high-res maps (398 × 224 × 224 per image, into a reused buffer).
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time

import torch

from hrcam.explain import create
from hrcam.models.base import class_maps
from hrcam.models.hrcam.fcdensenet import ResizeUp
from hrcam.models.hrcam.nets import FullNet, HalfNet

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


def _map_rows(half: HalfNet, x: torch.Tensor) -> dict:
    """name → (callable, closer) for the ``--maps`` table; every callable maps the batch ``x``."""
    seed = FullNet.from_half(half).eval()
    localize = FullNet.from_half(half, upsampling="resize", anchor="bilinear").eval()
    seed_cl = copy.deepcopy(seed).to(memory_format=torch.channels_last)
    xc = x.contiguous(memory_format=torch.channels_last)
    rows, closers = {}, []

    def explainer(method, net):
        e = create(method, net)
        closers.append(e.close)
        return lambda: e(x)

    def half_nchw():
        with torch.no_grad():
            return seed.localization(x)

    def half_cl():
        with torch.inference_mode():
            return seed.localization(xc)

    def unfused(fn):
        def run():
            ResizeUp.fused = False
            try:
                return fn()
            finally:
                ResizeUp.fused = True
        return run

    buffers = {}

    def all_classes(net):
        def run():
            with torch.inference_mode():
                out = net.forward_maps(xc, high=True)
                f = out.high_features
                key = id(net)
                if key not in buffers:
                    buffers[key] = torch.empty(f.shape[0], net.num_classes, *f.shape[-2:])
                low = class_maps(net.low_weight, out.low_features)
                return low, class_maps(net.high_weight, f, out=buffers[key])
        return run

    rows["half forward (NCHW, no_grad; before)"] = half_nchw
    rows["half forward (channels-last, inference_mode)"] = half_cl
    def hrcam_before():  # the HR-CAM pass as it ran before: NCHW input under no_grad
        with torch.no_grad():
            out = seed.forward_maps(x, high=True)
            t = out.logits.argmax(1)
            return class_maps(seed.low_weight, out.low_features, t), class_maps(seed.high_weight, out.high_features, t)

    rows["hrcam one class, seed decoder (NCHW, no_grad; before)"] = hrcam_before
    rows["hrcam one class, seed decoder"] = explainer("hrcam", seed)
    rows["hrcam one class, localize"] = explainer("hrcam", localize)
    rows["hrcam one class, localize, resize-conv unfused"] = unfused(explainer("hrcam", localize))
    rows["layercam (model as loaded)"] = explainer("layercam", seed)
    rows["layercam (model channels-last)"] = explainer("layercam", seed_cl)
    rows["gradcam (model as loaded)"] = explainer("gradcam", seed)
    rows["gradcam (model channels-last)"] = explainer("gradcam", seed_cl)
    rows["all classes low+high, seed decoder"] = all_classes(seed)
    rows["all classes low+high, localize"] = all_classes(localize)
    return rows, closers


def map_costs(size: int, batch: int, repeats: int) -> dict[str, float]:
    """ms/img per row of the ``--maps`` table: median of ``repeats`` interleaved rounds."""
    torch.manual_seed(0)
    half = HalfNet(398).eval()
    x = torch.rand(batch, 3, size, size)
    rows, closers = _map_rows(half, x)
    try:
        for fn in rows.values():
            fn()  # warm-up
        times = {k: [] for k in rows}
        for _ in range(repeats):
            for k, fn in rows.items():
                t0 = time.perf_counter()
                fn()
                times[k].append(time.perf_counter() - t0)
    finally:
        for close in closers:
            close()
    return {k: 1000 * statistics.median(v) / batch for k, v in times.items()}


def print_map_costs(ms: dict[str, float]) -> None:
    ref = ms["layercam (model as loaded)"]
    ref_cl = ms["layercam (model channels-last)"]
    print(f"{'what':<56}{'ms/img':>9}{'/ layercam':>12}{'/ layercam CL':>15}")
    for k, v in ms.items():
        print(f"{k:<56}{v:>9.1f}{v / ref:>12.2f}{v / ref_cl:>15.2f}")
    for k in ("hrcam one class, seed decoder", "hrcam one class, localize"):
        verdict = "cheaper" if ms[k] < ref else "not cheaper"
        print(f"{k}: {verdict} than LayerCAM on the model as loaded ({ms[k] / ref:.2f}x), "
              f"{ms[k] / ref_cl:.2f}x LayerCAM on the channels-last model")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--size", type=int, default=None, help="image side, a multiple of 32 (default 64; --maps: 224)")
    p.add_argument("--batch", type=int, default=None, help="default 32 (--maps: 4)")
    p.add_argument("--repeats", type=int, default=None, help="default 3 (--maps: 5)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--methods", default=",".join(ALL))
    p.add_argument("--tiny", action="store_true", help="small FC-DenseNet instead of the seed's")
    p.add_argument("--channels_last", action="store_true", help="channels-last memory format")
    p.add_argument("--maps", action="store_true",
                   help="the cost of the maps at the seed's scale (issue 14; see above); defaults 224 px, "
                        "batch 4, 5 repetitions, 1 thread")
    p.add_argument("--quick", action="store_true", help="with --maps: 64 px, 3 repetitions")
    args = p.parse_args(argv)
    if args.maps:
        size = args.size or (64 if args.quick else 224)
        batch, repeats = args.batch or 4, args.repeats or (3 if args.quick else 5)
        torch.set_num_threads(args.threads or 1)
        print(f"maps at the seed's scale: 398 classes, {size}px, batch {batch}, CPU, "
              f"{torch.get_num_threads()} thread(s), median of {repeats} interleaved rounds")
        print_map_costs(map_costs(size, batch, repeats))
        return 0
    args.size, args.batch, args.repeats = args.size or 64, args.batch or 32, args.repeats or 3
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
