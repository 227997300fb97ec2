"""Training throughput and peak memory of the HR-CAM models, eager against each optimization.

    python benchmarks/bench_train.py [--device cpu|cuda] [--threads 2] [--batch 16] [--sizes 64,224]
                                     [--kinds half,full] [--variants eager,channels-last,...] [--steps N]
                                     [--quick] [--repeat R]

One training step is what ``hrcam train half|full`` runs: the seed's architecture, 398 classes,
forward, loss (cross-entropy, or the reconstruction MSE on the frozen classifier) + L2 1e-4,
backward, Adadelta step; img/s = batch / median step time after one warm-up step. With ``--repeat R`` every variant runs R
times, the rounds interleaved, and the table gives the medians (and the img/s range).

Variants (each runs in a fresh subprocess, so peak memory is that variant's own):

    eager          the code as it was: NCHW tensors, dense blocks that ``torch.cat`` their input,
                   transitions that keep their inner maps, 4 KiB pages
    channels-last  + model and batch in channels-last memory format
    mem-efficient  + dense blocks writing into one shared feature buffer and transitions that
                   recompute their inner maps in the backward pass, at every size (NCHW)
    huge-pages     eager, with PyTorch's large CPU tensors on transparent huge pages
                   (``THP_MEM_ALLOC_ENABLE=1``, which the ``hrcam`` command sets): fewer page faults
    tcmalloc       eager, with gperftools' tcmalloc preloaded (``LD_PRELOAD``, as the ``hrcam``
                   command does where it is installed): freed maps are reused, not mapped afresh
    default        channels-last + huge pages + tcmalloc (where installed) + memory-efficient where
                   the maps are large (``"auto"``: outputs of 32 MiB or more): what ``hrcam train``
                   does now
    bf16-mixed     default, under ``torch.autocast`` bf16 (Lightning's ``--precision bf16-mixed``)
    compile        channels-last + huge pages through ``torch.compile`` (``--compile``), with the
                   concatenating blocks (the compiler fuses and recomputes on its own; the
                   hand-written recomputation would break its graph); compile time not counted

Peak memory is the process's peak RSS on CPU (``ru_maxrss``; includes PyTorch itself, ~0.4 GB)
and ``torch.cuda.max_memory_allocated`` on CUDA. Ratios are against ``eager`` of the same run.
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import resource
import statistics
import subprocess
import sys
import time

from hrcam.allocator import active, reexec_command

VARIANTS = ("eager", "channels-last", "mem-efficient", "huge-pages", "tcmalloc", "default", "bf16-mixed",
            "compile")
#: variants run with ``THP_MEM_ALLOC_ENABLE=1``, as the ``hrcam`` command runs
HUGE_PAGES = ("huge-pages", "default", "bf16-mixed", "compile")
#: variants run with tcmalloc preloaded where it is installed, as the ``hrcam`` command runs
TCMALLOC = ("tcmalloc", "default", "bf16-mixed", "compile")


def _worker(kind: str, size: int, variant: str, args) -> dict:
    import torch
    import torch.nn.functional as F

    from hrcam.models.hrcam import fcdensenet
    from hrcam.models.hrcam.nets import HalfNet
    from hrcam.train.modules import FullModule, HalfModule, l2_penalty

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    classes = 398
    if kind == "half":
        module = HalfModule(classes, 3, size)
    else:
        module = FullModule(HalfNet(classes).state_dict(), classes, 3, size)
    net = module.net.to(device).train()
    channels_last = variant in ("channels-last", "default", "bf16-mixed", "compile")
    if hasattr(fcdensenet, "set_memory_efficient"):  # absent before the shared-buffer blocks
        fcdensenet.set_memory_efficient(net, {"mem-efficient": True, "default": "auto", "bf16-mixed": "auto"}
                                        .get(variant, False))
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    opt = module.configure_optimizers()["optimizer"]
    x = torch.rand(args.batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, classes, (args.batch,), device=device)
    amp = variant == "bf16-mixed"
    if kind == "half":
        def loss_fn(inp):
            return F.cross_entropy(net(inp), y)
    elif len(inspect.signature(module._losses).parameters) == 1:  # before the decoder objectives took labels
        def loss_fn(inp):
            return module._losses(inp)[1]
    else:
        def loss_fn(inp):
            return module._losses(inp, y)[1]
    if variant == "compile":
        loss_fn = torch.compile(loss_fn)

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss = loss_fn(x) + 1e-4 * l2_penalty(net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize()

    t0 = time.perf_counter()
    step()  # warm-up (and compilation)
    warm = time.perf_counter() - t0
    times = []
    for _ in range(args.steps):
        t0 = time.perf_counter()
        step()
        times.append(time.perf_counter() - t0)
    if device.type == "cuda":
        peak = torch.cuda.max_memory_allocated() / 1e9
    else:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6  # KiB on Linux → GB
    return {"img_s": args.batch / statistics.median(times), "peak_gb": peak, "warmup_s": warm,
            "allocator": active()}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", help="cpu or cuda (default: cpu)")
    p.add_argument("--threads", type=int, default=2, help="torch threads (default: 2)")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--sizes", default="64,224")
    p.add_argument("--kinds", default="half,full")
    p.add_argument("--variants", default=",".join(VARIANTS))
    p.add_argument("--steps", type=int, default=None, help="timed steps (default: 5 at 64 px, 3 at 224)")
    p.add_argument("--quick", action="store_true", help="64 px only, 2 timed steps, no compile")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of all variants, interleaved; the table gives medians (default: 1)")
    p.add_argument("--worker", nargs=3, metavar=("KIND", "SIZE", "VARIANT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        kind, size, variant = args.worker
        print(json.dumps(_worker(kind, int(size), variant, args)))
        return 0
    sizes = [64] if args.quick else [int(s) for s in args.sizes.split(",")]
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    bad = [v for v in variants if v not in VARIANTS]
    if bad:
        p.error(f"unknown variant(s) {', '.join(bad)}; choose from {', '.join(VARIANTS)}")
    if args.quick:
        variants = [v for v in variants if v != "compile"]
    mem = "peak CUDA GB" if args.device.startswith("cuda") else "peak RSS GB"
    print(f"{args.device}, {args.threads} thread(s), batch {args.batch}, 398 classes, seed architecture, Adadelta")
    print(f"{'model':<6}{'size':>5}  {'variant':<14}{'img/s':>8}{'× eager':>9}{mem:>14}{'× eager':>9}")
    for size in sizes:
        steps = args.steps or (2 if args.quick else (5 if size < 128 else 3))
        for kind in [k.strip() for k in args.kinds.split(",") if k.strip()]:
            runs = {v: [] for v in variants}
            for _ in range(args.repeat):  # rounds of every variant, interleaved: load drifts hit all alike
                for variant in variants:
                    r = _run_worker(kind, size, variant, steps, args)
                    if isinstance(r, str):
                        print(f"{kind:<6}{size:>5}  {variant:<14}  failed: {r}", flush=True)
                    else:
                        runs[variant].append(r)
            base = next((runs[v] for v in variants if runs[v]), None)
            for variant in variants:
                if not runs[variant]:
                    continue
                img_s = statistics.median(r["img_s"] for r in runs[variant])
                peak = statistics.median(r["peak_gb"] for r in runs[variant])
                b_img = statistics.median(r["img_s"] for r in base)
                b_peak = statistics.median(r["peak_gb"] for r in base)
                spread = ""
                if len(runs[variant]) > 1:
                    spread = f"   (img/s {min(r['img_s'] for r in runs[variant]):.2f}–" \
                             f"{max(r['img_s'] for r in runs[variant]):.2f})"
                alloc = f"   [{runs[variant][0]['allocator']}]" if variant in TCMALLOC else ""
                print(f"{kind:<6}{size:>5}  {variant:<14}{img_s:>8.2f}{img_s / b_img:>9.2f}"
                      f"{peak:>14.2f}{peak / b_peak:>9.2f}{spread}{alloc}", flush=True)
    return 0


def _run_worker(kind: str, size: int, variant: str, steps: int, args) -> dict | str:
    """One variant in a fresh process: its result, or the last line of its error."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, str(size), variant,
           "--device", args.device, "--threads", str(args.threads), "--batch", str(args.batch),
           "--steps", str(steps)]
    env = {k: v for k, v in os.environ.items() if k not in ("THP_MEM_ALLOC_ENABLE", "LD_PRELOAD")}
    if variant in HUGE_PAGES:
        env["THP_MEM_ALLOC_ENABLE"] = "1"
    if variant in TCMALLOC:
        plan = reexec_command(cmd, environ=env)  # the hrcam command's own rule (None: not installed)
        if plan is None and variant == "tcmalloc":
            return "tcmalloc is not installed (Debian/Ubuntu: libtcmalloc-minimal4)"
        env = plan[1] if plan else env
    res = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if res.returncode != 0:
        return (res.stderr.strip().splitlines() or ["?"])[-1]
    return json.loads(res.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    raise SystemExit(main())
