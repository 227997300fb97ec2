"""Small shared test utilities (tiny synthetic class-folder datasets)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

TINY_ARCH = {"init_filters": 8, "growth_rate": 4, "layers_per_block": 2}


def make_colour_dataset(root: Path, classes: int = 3, per_class: tuple[int, int] = (8, 4), size: int = 32,
                        seed: int = 0) -> Path:
    """``root/{train,test}/c<k>/<i>.png``: noise images whose class is the brightest channel."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for c in range(classes):
            d = root / split / f"c{c}"
            d.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                a = (rng.random((size, size, 3)) * 60).astype(np.uint8)
                a[..., c % 3] += 150
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def train_casm_twice(tmp_path: Path, **casm_kwargs):
    """Two seeded one-process CASM runs on the same tiny colour set: ``(state dicts, last report)``.

    ``casm_kwargs`` go to :func:`hrcam.train.recipes.train_casm` (``epochs`` to the run settings).
    """
    from hrcam.train.recipes import FolderData, RunSettings, train_casm
    from hrcam.weights import load_weights

    epochs = casm_kwargs.pop("epochs", 1)
    data = FolderData(make_colour_dataset(tmp_path / "d", per_class=(4, 2)), im_size=32, batch_size=6, augment=False)
    states, report = [], None
    for i in range(2):
        run = RunSettings(f"r{i}", epochs=epochs, results_root=tmp_path / "res", logs_root=tmp_path / "logs",
                          progress=False, num_maps=0, seed=5)
        report = train_casm(data, run, backbone="resnet18", **casm_kwargs)
        states.append(load_weights(report["last"])[0])
    return states, report
