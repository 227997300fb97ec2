"""``image_batches``: the inference DataLoader; bad files are dropped and counted exactly, with or
without workers, and the order is the input order."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam.data.folders import load_image
from hrcam.data.loader import image_batches


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """12 files: JPEG and PNG images of several sizes and modes, and 3 bad ones at known places."""
    root = tmp_path_factory.mktemp("loader")
    rng = np.random.default_rng(0)
    paths, bad = [], {2, 7, 8}
    for k in range(12):
        if k in bad:
            p = root / f"{k:02d}.jpg"
            p.write_bytes(b"\xff\xd8\xff" + bytes(rng.integers(0, 256, 50, dtype=np.uint8)))  # a broken JPEG
        else:
            a = rng.integers(0, 256, (20 + k, 30, 3), dtype=np.uint8)
            im = Image.fromarray(a).convert(("RGB", "L", "RGBA")[k % 3])
            p = root / f"{k:02d}.{'png' if k % 2 else 'jpg'}"
            im.convert("RGB" if p.suffix == ".jpg" and im.mode == "RGBA" else im.mode).save(p)
        paths.append(p)
    return paths, bad


def _collect(loader):
    out = []
    for b in loader:
        out.append((b.indices, None if b.images is None else b.images.clone(), [k for k, _ in b.failed]))
    return out


@pytest.mark.parametrize("workers", [0, 2])
def test_bad_files_dropped_and_counted_in_order(files, workers):
    paths, bad = files
    got = _collect(image_batches(paths, 16, 3, batch_size=4, num_workers=workers))
    # batches are cut before decoding: positions 0-3, 4-7, 8-11, the bad ones listed apart
    assert [i for i, _, _ in got] == [[0, 1, 3], [4, 5, 6], [9, 10, 11]]
    assert [f for _, _, f in got] == [[2], [7], [8]]
    assert sum(len(f) for _, _, f in got) == len(bad)
    for indices, images, _ in got:
        assert images.shape == (len(indices), 3, 16, 16)
        for k, x in zip(indices, images):
            assert torch.equal(x, load_image(paths[k], 16, 3))  # the PIL path's pixels


def test_workers_give_the_same_batches_as_none(files):
    paths, _ = files
    a = _collect(image_batches(paths, 8, 1, batch_size=3, num_workers=0, positions=[11, 0, 7, 5, 8, 1]))
    b = _collect(image_batches(paths, 8, 1, batch_size=3, num_workers=2, positions=[11, 0, 7, 5, 8, 1]))
    assert [(i, f) for i, _, f in a] == [(i, f) for i, _, f in b] == [([11, 0], [7]), ([5, 1], [8])]
    assert all(torch.equal(x, y) for (_, x, _), (_, y, _) in zip(a, b))


def test_a_batch_of_bad_files_has_no_images_and_messages(files):
    paths, _ = files
    (batch,) = list(image_batches(paths, 8, 3, batch_size=2, positions=[7, 8]))
    assert batch.indices == [] and batch.images is None
    assert [k for k, _ in batch.failed] == [7, 8] and all(isinstance(m, str) and m for _, m in batch.failed)


def test_bad_arguments(files):
    paths, _ = files
    with pytest.raises(ValueError, match="num_workers"):
        image_batches(paths, 8, num_workers=-1)
    with pytest.raises(ValueError, match="batch_size"):
        image_batches(paths, 8, batch_size=0)


def test_load_split_skips_counts_and_refills_the_limit(tmp_path):
    """compare's loader: a bad file is counted and the next image in round-robin order takes its
    place, whatever the number of workers."""
    from hrcam.data.splits import load_split

    rng = np.random.default_rng(0)
    for c in range(2):
        d = tmp_path / "test" / f"c{c}"
        d.mkdir(parents=True)
        for i in range(3):
            Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(d / f"{i}.png")
    good = (tmp_path / "test" / "c0" / "0.png").read_bytes()
    (tmp_path / "test" / "c0" / "0.png").write_bytes(good[: len(good) // 2])  # passes the header check
    (tmp_path / "test" / "c1" / "notes.txt").write_text("not an image")  # skipped at scan time
    results = [load_split(tmp_path, "test", 8, 3, limit=3, num_classes=2, num_workers=w, batch_size=2)
               for w in (0, 2)]
    for x, y, paths, skipped in results:
        assert skipped == 2 and x.shape == (3, 3, 8, 8)
        assert paths == ["test/c1/0.png", "test/c0/1.png", "test/c1/1.png"] and y.tolist() == [1, 0, 1]
    assert torch.equal(results[0][0], results[1][0])
