"""Arguments and checks shared by several commands."""
from __future__ import annotations

import argparse
import math


def _checked(text: str, cast, parse_error: str, ok, range_error: str):
    """``cast(text)`` if it parses and ``ok`` holds; otherwise one argparse error line.

    ``range_error`` is formatted with ``value`` (the parsed number) and ``text``.
    """
    try:
        v = cast(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{parse_error}, got {text!r}") from None
    if not ok(v):
        raise argparse.ArgumentTypeError(range_error.format(value=v, text=text))
    return v


def positive_int(text: str) -> int:
    """An integer >= 1 (argparse type)."""
    return _checked(text, int, "expected a positive integer", lambda v: v >= 1,
                    "expected a positive integer, got {value}")


def nonneg_int(text: str) -> int:
    """An integer >= 0 (argparse type)."""
    return _checked(text, int, "expected an integer >= 0", lambda v: v >= 0,
                    "expected an integer >= 0, got {value}")


def nonneg_float(text: str) -> float:
    """A number >= 0 (argparse type)."""
    return _checked(text, float, "expected a number", lambda v: v >= 0, "expected a number >= 0, got {text}")


def positive_float(text: str) -> float:
    """A finite number > 0 (learning rates)."""
    return _checked(text, float, "expected a number > 0", lambda v: v > 0 and math.isfinite(v),
                    "expected a finite number > 0, got {text}")


def seed_arg(text: str) -> int:
    """A random seed: an integer in 0 .. 2**32 - 1 (what NumPy and Lightning accept)."""
    return _checked(text, int, "expected an integer seed", lambda v: 0 <= v < 2**32,
                    "expected a seed in 0..%d, got {value}" % (2**32 - 1))


def max_steps_arg(text: str) -> int:
    """A positive number of training steps, or -1 (no limit)."""
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of steps, got {text!r}") from None
    if v == 0 or v < -1:
        raise argparse.ArgumentTypeError(f"expected a positive number of steps (or -1: no limit), got {v}")
    return v


#: what Lightning's ``precision=`` accepts
PRECISIONS = ("64", "32", "16", "bf16", "64-true", "32-true", "16-true", "bf16-true", "16-mixed", "bf16-mixed",
              "transformer-engine", "transformer-engine-float16")


def precision_arg(text: str) -> str:
    """One of :data:`PRECISIONS`."""
    if text not in PRECISIONS:
        raise argparse.ArgumentTypeError(f"expected one of {', '.join(PRECISIONS)}, got {text!r}")
    return text


def _cuda_count() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def accelerator_arg(text: str) -> str:
    """``auto``, ``cpu``, ``gpu`` / ``cuda`` (needs a CUDA GPU) or ``mps`` (needs Apple's MPS)."""
    text = text.lower()
    if text not in ("auto", "cpu", "gpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"expected auto, cpu, gpu, cuda or mps, got {text!r}")
    if text in ("gpu", "cuda") and _cuda_count() == 0:
        raise argparse.ArgumentTypeError(f"{text}: no CUDA GPU is available on this machine (use cpu or auto)")
    if text == "mps":
        import torch

        if not torch.backends.mps.is_available():
            raise argparse.ArgumentTypeError("mps: Apple's MPS is not available on this machine (use cpu or auto)")
    return text


def gpu_arg(text: str) -> str:
    """A GPU index or a comma list of them, each below the number of CUDA GPUs present."""
    try:
        ids = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a GPU index or a comma list of indices, got {text!r}") from None
    if not ids or any(i < 0 for i in ids):
        raise argparse.ArgumentTypeError(f"expected GPU indices >= 0, got {text!r}")
    n = _cuda_count()
    if max(ids) >= n:
        have = "no CUDA GPU" if n == 0 else f"{n} CUDA GPU(s) (indices 0..{n - 1})"
        raise argparse.ArgumentTypeError(f"{text}: this machine has {have}")
    return text


def strategy_arg(text: str) -> str:
    """``auto`` or a strategy name Lightning knows (``ddp``, ``ddp_spawn``, ``fsdp``, ...)."""
    if text == "auto":
        return text
    from lightning.pytorch.strategies import StrategyRegistry

    known = ["auto", *StrategyRegistry.available_strategies()]
    if text not in known:
        shown = ", ".join(k for k in known if "deepspeed" not in k and "_find_unused" not in k)
        raise argparse.ArgumentTypeError(f"unknown strategy {text!r}; known: {shown}")
    return text


def device_arg(text: str) -> str:
    """A torch device for inference: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``, checked to exist."""
    if text in ("auto", "cpu"):
        return text
    import torch

    try:
        dev = torch.device(text)
    except (RuntimeError, ValueError):
        raise argparse.ArgumentTypeError(f"not a device name: {text!r} (cpu, cuda, cuda:1, mps)") from None
    if dev.type == "cuda":
        n = _cuda_count()
        if n == 0:
            raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine")
        if dev.index is not None and dev.index >= n:
            raise argparse.ArgumentTypeError(f"{text}: this machine has {n} CUDA GPU(s) (indices 0..{n - 1})")
    elif dev.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: Apple's MPS is not available on this machine")
    elif dev.type not in ("cpu", "cuda", "mps"):
        raise argparse.ArgumentTypeError(f"unsupported device {text!r} (cpu, cuda, cuda:1, mps)")
    return text


def resolve_device(text: str | None) -> str:
    """A :func:`device_arg` value as a torch device string (``auto``: cuda when available, else cpu)."""
    if text in (None, "auto"):
        return "cuda" if _cuda_count() else "cpu"
    return text


def devices_arg(text: str):
    """Lightning's devices: 'auto', a count, or a comma list of indices."""
    if text == "auto":
        return text
    if "," in text:
        return [int(t) for t in text.split(",") if t.strip()]
    return int(text)


#: ``--num_workers`` of the inference commands (evaluate, evaluate localization, explain, compare)
NUM_WORKERS_HELP = ("processes that decode the images while the model runs (a torch DataLoader; default: 0, "
                    "decode in this process; try 2). Results and their order are the same for any N; "
                    "unreadable files are skipped and counted as with 0. Plain JPEG/PNG are decoded by "
                    "torchvision's decode_image (the same pixels as Pillow), the rest by Pillow")
#: ``--devices`` of evaluate, evaluate localization and compare
DEVICES_HELP = ("split the images over N CPU processes (torch.distributed, gloo): batch b goes to process "
                "b mod N, each image is scored once, and the scores are merged in batch order, so every "
                "number is the one of 1 process. Each process gets 1/N of the torch threads")


def add_num_workers(p, help: str = NUM_WORKERS_HELP) -> None:  # noqa: A002 - argparse's word
    """``--num_workers`` (an integer >= 0): data loader worker processes."""
    p.add_argument("--num_workers", "--num-workers", dest="num_workers", default=0, type=nonneg_int,
                   metavar="N", help=help)


def add_devices(p, note: str = " and reads its own images (with --num_workers each)") -> None:
    """``--devices N`` of the inference commands: CPU processes the images are sharded over."""
    p.add_argument("--devices", default=1, type=positive_int, metavar="N", help=f"{DEVICES_HELP}{note} (default: 1)")


def add_distributed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hardware (passed to Lightning)")
    g.add_argument("--gpu", default=None, type=gpu_arg,
                   help="the seed's flag: which GPU to use (e.g. 0); same as --accelerator gpu --devices 0,")
    g.add_argument("--accelerator", default="auto", type=accelerator_arg,
                   help="cpu, gpu, mps or auto (default: auto)")
    g.add_argument("--devices", default="auto", type=devices_arg,
                   help="number of devices or a comma list of indices (default: auto)")
    g.add_argument("--num_nodes", default=1, type=positive_int, help="nodes for multi-node training (default: 1)")
    g.add_argument("--strategy", default="auto", type=strategy_arg,
                   help="Lightning strategy, e.g. ddp, ddp_spawn, fsdp (default: auto)")
    add_num_workers(g, "data loader worker processes (default: 0)")
    g.add_argument("--precision", default=None, type=precision_arg,
                   help="Lightning precision, e.g. 16-mixed or bf16-mixed")


def distributed_kwargs(args) -> dict:
    accelerator, devices = args.accelerator, args.devices
    if args.gpu is not None:
        accelerator, devices = "gpu", [int(g) for g in str(args.gpu).split(",") if g.strip()]
    return {"accelerator": accelerator, "devices": devices, "num_nodes": args.num_nodes,
            "strategy": args.strategy, "precision": args.precision}


def command_group(subparsers, name: str, help: str, description: str, adders) -> argparse.ArgumentParser:  # noqa: A002
    """Add ``hrcam <name>`` with required sub-commands, one ``add(sub)`` function each."""
    parser = subparsers.add_parser(name, help=help, description=description)
    sub = parser.add_subparsers(dest=f"{name}_command", metavar="SUBCOMMAND")
    sub.required = True
    for add in adders:
        add(sub)
    return parser
