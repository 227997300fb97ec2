"""HR-CAM training logs the maps of 8 fixed images to TensorBoard under maps/ (MapLogger)."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from helpers import make_colour_dataset
from hrcam.train.map_logging import fixed_images
from hrcam.train.recipes import FolderData, RunSettings, train_full, train_half

ARCH = {"init_filters": 8, "growth_rate": 4, "layers_per_block": 1}
SIZE = 32


def _events(logs):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(logs), size_guidance={"images": 0})
    acc.Reload()
    return acc


def _run(root, name, every, epochs=2):
    return RunSettings(name, epochs=epochs, results_root=root / "results", logs_root=root / "logs", progress=False,
                       log_maps_every=every, distributed={"accelerator": "cpu", "devices": 1})


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    root = tmp_path_factory.mktemp("maps")
    data = make_colour_dataset(root / "data", classes=3, per_class=(6, 4), size=SIZE)
    half = train_half(FolderData(data, im_size=SIZE, batch_size=6), _run(root, "half", 1), arch=ARCH)
    full = train_full(FolderData(data, im_size=SIZE, batch_size=6), _run(root, "full", 2, epochs=2), half["last"],
                      arch=ARCH)
    return root, data, half, full


def test_half_and_full_runs_log_maps_of_eight_images(trained):
    root, _, half, full = trained
    h = _events(root / "logs/half")
    assert sorted(t for t in h.Tags()["images"]) == ["maps/images", "maps/low"]
    assert len(h.Images("maps/low")) == 2 and len(h.Images("maps/images")) == 1  # every epoch; images once
    f = _events(root / "logs/full")
    assert sorted(f.Tags()["images"]) == ["maps/high", "maps/images", "maps/low", "maps/refined"]
    assert [len(f.Images(f"maps/{k}")) for k in ("low", "high", "refined")] == [1, 1, 1]  # every 2nd of 2 epochs
    # 3 classes x 4 test images = 12, of which 8 spread evenly, side by side with 2-px gaps
    for event in (h.Images("maps/low")[0], f.Images("maps/refined")[0]):
        assert (event.height, event.width) == (SIZE, 8 * SIZE + 7 * 2)
    assert [e.step for e in h.Images("maps/low")] == sorted({e.step for e in h.Images("maps/low")})


def test_logging_maps_changes_no_weight(trained):
    root, data, half, _ = trained
    quiet = train_half(FolderData(data, im_size=SIZE, batch_size=6), _run(root, "half_off", 0), arch=ARCH)
    assert _events(root / "logs/half_off").Tags()["images"] == []  # log_maps_every 0: no maps
    a, b = load_file(half["last"]), load_file(quiet["last"])
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_fixed_images_are_spread_and_not_augmented():
    class Data:
        def __init__(self):
            self.transform = lambda x: x + 100.0  # an "augmentation" that must not be applied

        def __len__(self):
            return 20

        def __getitem__(self, i):
            x = torch.full((3, 2, 2), float(i))
            return (self.transform(x) if self.transform else x), i % 4

    ds = Data()
    x, y = fixed_images(ds, 8)
    assert x[:, 0, 0, 0].tolist() == [0.0, 3.0, 5.0, 8.0, 11.0, 14.0, 16.0, 19.0]
    assert y.tolist() == [0, 3, 1, 0, 3, 2, 0, 3]
    assert ds.transform is not None  # the dataset itself is untouched
    x, _ = fixed_images(ds, 50)
    assert x.shape[0] == 20 and np.unique(x[:, 0, 0, 0].numpy()).size == 20
