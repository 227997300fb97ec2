"""The "digits on textures" demo generator (DESIGN §7)."""
import json

import numpy as np
import pytest
from PIL import Image

from hrcam.data.demo import (
    build_demo_dataset,
    demo_dataset_exists,
    load_digit_pools,
    make_sample,
)


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo") / "d"
    build_demo_dataset(out, size=32, train=20, test=10, seed=3, progress=False)
    return out


def test_layout_and_annotations(built):
    ann = json.loads((built / "annotations.json").read_text())
    assert len(ann) == 30
    train = [k for k in ann if k.startswith("train/")]
    test = [k for k in ann if k.startswith("test/")]
    assert len(train) == 20 and len(test) == 10
    # every class folder exists in both splits (classes cycle with the sample index)
    assert sorted(p.name for p in (built / "train").iterdir()) == [str(d) for d in range(10)]
    assert sorted(p.name for p in (built / "test").iterdir()) == [str(d) for d in range(10)]
    for rel, entry in ann.items():
        split, digit, name = rel.split("/")
        assert entry["label"] == int(digit)
        img = np.asarray(Image.open(built / rel))
        assert img.shape == (32, 32, 3) and img.dtype == np.uint8
        mask = np.asarray(Image.open(built / entry["mask"])) > 127
        assert entry["mask"] == f"masks/{split}/{digit}/{name}"
        assert mask.shape == (32, 32) and mask.any()
        # the box is the tight, exclusive-end bounding box of the mask, computed independently
        rows = np.where(mask.any(axis=1))[0]
        cols = np.where(mask.any(axis=0))[0]
        assert entry["boxes"] == [[cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]]
    assert demo_dataset_exists(built, size=32, train=20, test=10, seed=3)
    assert not demo_dataset_exists(built, size=64)


def test_same_seed_gives_identical_bytes(built, tmp_path):
    again = build_demo_dataset(tmp_path / "again", size=32, train=20, test=10, seed=3, progress=False)
    files = _files(built)
    assert files == _files(again)
    for rel in files:
        assert (built / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = build_demo_dataset(tmp_path / "other", size=32, train=20, test=10, seed=4, progress=False)
    assert (built / "train/0/00000.png").read_bytes() != (other / "train/0/00000.png").read_bytes()


def test_digit_pools_disjoint_and_stratified():
    pools = load_digit_pools(seed=0)
    assert not set(pools["train"]) & set(pools["test"])
    assert len(pools["train"]) + len(pools["test"]) == 1797
    from sklearn.datasets import load_digits

    targets = load_digits().target
    assert sorted(set(targets[pools["test"]])) == list(range(10))


def test_digit_visible_and_within_scale():
    luma = np.array([0.299, 0.587, 0.114])
    sides = []
    for i in range(20):
        s = make_sample(np.random.default_rng(i), digit_index=i * 37, size=64)
        img = s.image.astype(float) / 255
        # the digit's mean luminance differs from the ring of background around it
        inner = img[s.mask] @ luma
        x0, y0, x1, y1 = s.box
        box = np.zeros_like(s.mask)
        box[y0:y1, x0:x1] = True
        around = img[box & ~s.mask] @ luma
        assert abs(inner.mean() - around.mean()) > 0.1
        sides.append(max(x1 - x0, y1 - y0) / 64)
    # glyphs are scaled to 40–75 % of the side (the 8×8 digits have a margin, slant adds a bit)
    assert 0.3 < float(np.mean(sides)) < 0.8


@pytest.mark.parametrize("kwargs", [dict(size=8), dict(train=0), dict(test=-1), dict(size=32.5)])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        build_demo_dataset(tmp_path / "x", **{"progress": False, **kwargs})
