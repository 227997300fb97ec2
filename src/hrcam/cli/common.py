"""Arguments and checks shared by several commands."""
from __future__ import annotations

import argparse


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {v}")
    return v


def nonneg_float(text: str) -> float:
    try:
        v = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not v >= 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text}")
    return v


def devices_arg(text: str):
    """Lightning's devices: 'auto', a count, or a comma list of indices."""
    if text == "auto":
        return text
    if "," in text:
        return [int(t) for t in text.split(",") if t.strip()]
    return int(text)


def add_distributed_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("hardware (passed to Lightning)")
    g.add_argument("--gpu", default=None,
                   help="the seed's flag: which GPU to use (e.g. 0); same as --accelerator gpu --devices 0,")
    g.add_argument("--accelerator", default="auto", help="cpu, gpu, mps or auto (default: auto)")
    g.add_argument("--devices", default="auto", type=devices_arg,
                   help="number of devices or a comma list of indices (default: auto)")
    g.add_argument("--num_nodes", default=1, type=positive_int, help="nodes for multi-node training (default: 1)")
    g.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp, ddp_spawn, fsdp (default: auto)")
    g.add_argument("--num_workers", default=0, type=int, help="data loader worker processes (default: 0)")
    g.add_argument("--precision", default=None, help="Lightning precision, e.g. 16-mixed or bf16-mixed")


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
