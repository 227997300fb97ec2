"""What the benchmarks that score maps on a trained demo model share: its flags and its test split.

Run as scripts (``python benchmarks/bench_x.py``), they import this module from their own folder.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch

DEMO_WEIGHTS = "results/demo/full_faithfulness/last_weights.safetensors"


class TestSplit(NamedTuple):
    net: torch.nn.Module  #: the loaded network, in eval mode
    size: int  #: image side the network was trained at
    images: torch.Tensor  #: N×C×S×S in [0, 1]
    labels: list  #: N true classes
    masks: np.ndarray  #: N×S×S bool, the exact object masks


def add_demo_model_args(p, weights_help: str, test: int = 200) -> None:
    """``--data``, ``--weights``, ``--test``, ``--steps`` (deletion / insertion) and ``--threads``."""
    p.add_argument("--data", default="data/demo", help="dataset with exact masks (default: data/demo)")
    p.add_argument("--weights", default=DEMO_WEIGHTS, help=weights_help)
    p.add_argument("--test", type=int, default=test, help=f"test images scored, spread over the split (default: {test})")
    p.add_argument("--steps", type=int, default=20, help="deletion / insertion steps (default: 20)")
    p.add_argument("--threads", type=int, default=2)


def missing_inputs(args) -> str | None:
    """The line to print (and exit 0 on) when the weights or the dataset's masks are not there."""
    if Path(args.weights).is_file() and (Path(args.data) / "annotations.json").is_file():
        return None
    return (f"skipped: needs weights and a dataset with masks ({args.weights}, {args.data}); "
            "run `make demo` first or pass --weights and --data")


def load_test_split(args) -> TestSplit:
    """The network of ``--weights`` and ``--test`` images of the test split of ``--data``, with masks."""
    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.models.registry import load_network

    torch.set_num_threads(args.threads)
    net, meta = load_network(args.weights)
    net.eval()
    size = int(meta.get("im_size", 64))
    images, labels, paths, _ = load_split(args.data, "test", size, int(meta.get("in_channels", 3)), args.test,
                                          net.num_classes)
    masks = np.asarray(load_ground_truth_for(args.data, "test", paths, size)["masks"]).astype(bool)
    return TestSplit(net, size, images, labels, masks)
