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
