"""Distractor fragments in the demo data: the default set is unchanged, fragments stay out of the
ground truth, beside the target, in its colour, and are never whole digits."""
import hashlib
import json

import numpy as np
from scipy import ndimage

from hrcam.data import demo
from hrcam.data.demo import build_demo_dataset, demo_dataset_exists, make_sample

# sha256 over (relative path, bytes) of every PNG, annotations.json and demo_info.json of
# build_demo_dataset(size=32, train=20, test=10, seed=3), computed with the code on main before
# the distractor option existed (commit b09638c)
DEFAULT_DIGEST = "972c6db4aef6f507d234ed93342dcd642774d7464c4bf998a627fd6686f0d159"


def _digest(out):
    h = hashlib.sha256()
    for p in sorted(out.rglob("*")):
        rel = p.relative_to(out).as_posix()
        if p.is_file() and (rel in ("annotations.json", "demo_info.json") or rel.endswith(".png")):
            h.update(rel.encode())
            h.update(p.read_bytes())
    return h.hexdigest()


def test_default_output_is_byte_identical_to_before(tmp_path):
    out = build_demo_dataset(tmp_path / "d", size=32, train=20, test=10, seed=3, progress=False)
    assert _digest(out) == DEFAULT_DIGEST
    assert "distractors" not in json.loads((out / "demo_info.json").read_text())
    assert demo_dataset_exists(out, distractors=0) and not demo_dataset_exists(out, distractors=2)


def test_fragments_beside_the_target_in_its_colour():
    placed_total = 0
    for i in range(12):
        plain = make_sample(np.random.default_rng([5, i]), 37 * i, size=64)
        hard = make_sample(np.random.default_rng([5, i]), 37 * i, size=64, distractors=3)
        # the target and its ground truth are drawn first: unchanged by the option
        assert np.array_equal(plain.mask, hard.mask) and plain.box == hard.box and plain.label == hard.label
        assert plain.distractors == 0 and 0 <= hard.distractors <= 3
        placed_total += hard.distractors
        changed = (plain.image != hard.image).any(axis=2)
        assert changed.any() == (hard.distractors > 0)
        # nothing changes on the target's mask or next to it (fragments keep 1 px clear of its
        # whole soft footprint, alpha > 0, which contains the mask)
        near = ndimage.binary_dilation(plain.mask, iterations=1)
        assert not (changed & near).any()
        if hard.distractors:
            # full-alpha fragment pixels have exactly the target's colour (its most common pixel)
            colours, counts = np.unique(plain.image[plain.mask], axis=0, return_counts=True)
            target_colour = colours[counts.argmax()]
            assert (hard.image[changed] == target_colour).all(axis=1).any()
    assert placed_total >= 12  # most images get fragments at 64 px


def test_fragments_are_parts_of_other_digits():
    images, targets = demo._digits()
    rng = np.random.default_rng(0)
    for k in range(40):
        glyph = images[k]
        frag = demo._fragment(rng, glyph, 64, (0.4, 0.75))
        assert frag.ndim == 2 and (frag > 0.5).any()
        side = round(64 * 0.75)
        assert frag.size <= 0.62 * side * side  # a 30-60 % crop of the glyph's box, never all of it
    # the fragments of a "3" come from other classes: the helper draws from digits != label
    alpha = np.zeros((64, 64))
    alpha[20:40, 20:40] = 1.0
    only_threes = np.flatnonzero(targets == 3)
    extra, placed = demo._distractor_alpha(np.random.default_rng(1), alpha, 3, 2, only_threes, (0.4, 0.75))
    assert placed == 0 and not extra.any()  # no other class in the pool: nothing to draw


def test_build_records_the_option(tmp_path):
    out = build_demo_dataset(tmp_path / "d", size=32, train=10, test=10, seed=1, progress=False, distractors=2)
    info = json.loads((out / "demo_info.json").read_text())
    assert info["distractors"] == 2 and 0 < info["distractors_placed"] <= 2 * 20
    assert demo_dataset_exists(out, distractors=2) and not demo_dataset_exists(out, distractors=0)


def test_cli_distractors(tmp_path, capsys):
    from hrcam.cli import main

    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--size", "32", "--train", "10", "--test", "10",
                 "--distractors", "1", "--no-progress"]) == 0
    assert "1 distractor fragments per image" in capsys.readouterr().out
    assert json.loads((tmp_path / "d" / "demo_info.json").read_text())["distractors"] == 1
