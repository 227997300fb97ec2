"""Shared tiny fixtures of the promise tests: 32 px data, micro networks, one short CLI run."""
from __future__ import annotations

import pytest
from tests.helpers import make_colour_dataset

from hrcam.cli import main

MICRO = ["--init_filters", "8", "--growth_rate", "4", "--layers_per_block", "1"]


def train_args(data, name, root, *extra) -> list[str]:
    """``hrcam train half`` with micro settings under ``root`` (results/ and logs/)."""
    return ["train", "half", "--data_dir", str(data), "--results_name", name, "--epochs", "1", "--im_size", "32",
            "--batch_size", "4", "--no_augment", "--no_progress", "--accelerator", "cpu", "--devices", "1",
            "--results_root", str(root / "results"), "--logs_root", str(root / "logs"), *MICRO, *extra]


@pytest.fixture(scope="session")
def data3(tmp_path_factory):
    """3 classes × 4 train / 2 test images of 32 px."""
    return make_colour_dataset(tmp_path_factory.mktemp("data3"), classes=3, per_class=(4, 2), size=32)


@pytest.fixture(scope="session")
def half_file(tmp_path_factory):
    """A micro HalfModel (3 classes, 32 px, random weights) saved as safetensors."""
    from hrcam.api.seed import HalfModel

    path = tmp_path_factory.mktemp("w") / "half.safetensors"
    HalfModel(num_classes=3, im_size=32, init_filters=8, growth_rate=4, layers_per_block=1).save(
        path, class_names=["c0", "c1", "c2"])
    return path


@pytest.fixture(scope="session")
def trained(data3, tmp_path_factory):
    """``(root, results folder)`` of one finished 1-epoch micro run named ``run``."""
    root = tmp_path_factory.mktemp("trained")
    assert main(train_args(data3, "run", root)) == 0
    return root, root / "results" / "run"
