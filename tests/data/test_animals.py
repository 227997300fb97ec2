"""The ImageNet Animals subset: synset selection, mapper, and the builder on a fake ImageNet tree."""
import os

import numpy as np
import pytest
from PIL import Image

from hrcam.data.animals import (
    ANIMAL_SYNSET_RANGE,
    DEFAULT_TEST_FRACTION,
    AnimalsMapper,
    build_animals_subset,
    is_animal_wnid,
    select_animal_wnids,
    split_class,
)
from hrcam.data.folders import ClassFolderDataset
from hrcam.errors import UserError

# three animal synsets (first, second, last of the range) and two that must be excluded
COUNTS = {"n01440764": 20, "n01443537": 4, "n02655020": 3, "n01439999": 3, "n04579432": 3}
WORDS = (
    "n01439999 made-up fish before the range\n"
    "n01440764 tench, Tinca tinca\n"
    "n01443537 goldfish, Carassius auratus\n"
    "n02655020 puffer, pufferfish, blowfish, globefish\n"
    "n04579432 whistle\n"
)


@pytest.fixture()
def imagenet(tmp_path):
    root = tmp_path / "imagenet"
    rng = np.random.default_rng(0)
    for wnid, n in COUNTS.items():
        d = root / "train" / wnid
        d.mkdir(parents=True)
        for i in range(n):
            Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(d / f"{wnid}_{i}.png")
    val = root / "val" / "n01443537"
    val.mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(val / "ILSVRC2012_val_1.png")
    Image.fromarray(np.ones((4, 4, 3), np.uint8)).save(val / "n01443537_0.png")  # name clash
    words = tmp_path / "synset_words.txt"
    words.write_text(WORDS)
    return root, words


def _listing(out):
    return {
        part: {w: sorted(p.name for p in (out / part / w).iterdir()) for w in sorted(os.listdir(out / part))}
        for part in ("train", "test")
    }


def test_constants_and_selection():
    assert ANIMAL_SYNSET_RANGE == ("n01440764", "n02655020")
    assert DEFAULT_TEST_FRACTION == pytest.approx(0.22352, abs=1e-5)
    assert is_animal_wnid("n01440764") and is_animal_wnid("n02655020")
    assert not is_animal_wnid("n01440763") and not is_animal_wnid("n02655021") and not is_animal_wnid("cat")
    rng = np.random.default_rng(1)
    inside = {f"n0{v}" for v in rng.integers(1440765, 2655020, size=600)}
    wnids = list(inside) + ["n01440764", "n02655020", "n04579432", "n00000001"]
    got = select_animal_wnids(wnids)
    assert len(got) == 398 and got == sorted(inside | {"n01440764"})[:398] and got[0] == "n01440764"


def test_mapper(tmp_path, imagenet):
    _, words = imagenet
    m = AnimalsMapper(words)
    assert m.wnids == ["n01440764", "n01443537", "n02655020"]  # the animal synsets, sorted
    assert m.name(0) == "tench" and m.name(2) == "puffer"
    assert m.wnid(1) == "n01443537" and m.description(1) == "goldfish, Carassius auratus"
    assert m.index("goldfish") == 1 and m.index("n02655020") == 2
    assert m.index("Blowfish") == 2  # any synonym, case-insensitive
    with pytest.raises(ValueError, match="unknown class"):
        m.index("whistle")
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        m.name(3)
    bare = AnimalsMapper(classes=["n02655020", "n01440764"])  # no names: the wnids
    assert bare.name(0) == "n02655020" and bare.index("n01440764") == 1
    forced = AnimalsMapper(words, classes=["n04579432", "n01440764"])
    assert forced.name(0) == "whistle" and forced.name(1) == "tench"
    with pytest.raises(ValueError, match="synset_words= or classes="):
        AnimalsMapper()


def test_split_class_is_seeded_and_sized():
    files = [f"f{i}" for i in range(20)]
    tr, te = split_class(files, "n01440764", 0.25, seed=0)
    assert len(te) == 5 and sorted(tr + te) == sorted(files) and not set(tr) & set(te)
    assert split_class(files, "n01440764", 0.25, seed=0) == (tr, te)
    assert split_class(files, "n01440764", 0.25, seed=1) != (tr, te)
    assert split_class(["a"], "n01440764", 0.5, 0) == (["a"], [])
    assert len(split_class(["a", "b"], "n01440764", 0.01, 0)[1]) == 1  # at least one test image
    assert len(split_class(["a", "b"], "n01440764", 0.99, 0)[0]) == 1  # at least one train image


def test_build_subset(tmp_path, imagenet):
    src, words = imagenet
    out = tmp_path / "animals"
    with pytest.warns(UserWarning, match="3 of the 398"):
        summary = build_animals_subset(src, out, synsets_file=words, seed=0, progress=False)
    assert summary["classes"] == ["n01440764", "n01443537", "n02655020"]
    listing = _listing(out)
    assert sorted(listing["train"]) == sorted(listing["test"]) == summary["classes"]
    # class sizes: 20 (train only), 4 + 2 val, 3 -> test = round(n * 0.2235) kept in [1, n-1]
    expected_test = {"n01440764": 4, "n01443537": 1, "n02655020": 1}
    for wnid, n_test in expected_test.items():
        assert len(listing["test"][wnid]) == n_test
    all_gold = listing["train"]["n01443537"] + listing["test"]["n01443537"]
    assert sorted(all_gold) == sorted(
        [f"n01443537_{i}.png" for i in range(4)] + ["ILSVRC2012_val_1.png", "val_n01443537_0.png"]
    )
    tench = listing["train"]["n01440764"] + listing["test"]["n01440764"]
    assert sorted(tench) == sorted(f"n01440764_{i}.png" for i in range(20))
    assert summary["num_train"] == 29 - 6 and summary["num_test"] == 6
    link = out / "train" / "n02655020" / listing["train"]["n02655020"][0]
    assert link.is_symlink() and os.path.samefile(link, src / "train" / "n02655020" / link.name)
    lines = (out / "classes.txt").read_text().splitlines()
    assert lines == [
        "n01440764 tench, Tinca tinca",
        "n01443537 goldfish, Carassius auratus",
        "n02655020 puffer, pufferfish, blowfish, globefish",
    ]
    assert (out / "split.json").is_file()
    ds = ClassFolderDataset(out / "test", im_size=8)
    assert len(ds) == 6 and ds.classes == summary["classes"]
    assert AnimalsMapper(classes=out).name(2) == "puffer"

    # same seed -> same split; another seed -> another split; safety against overwriting
    with pytest.warns(UserWarning):
        build_animals_subset(src, tmp_path / "again", seed=0, progress=False, mode="copy")
    assert _listing(tmp_path / "again") == listing
    assert not (tmp_path / "again" / "test" / "n01440764" / listing["test"]["n01440764"][0]).is_symlink()
    with pytest.raises(UserError, match="not empty"):
        build_animals_subset(src, out, seed=1, progress=False)
    (out / "keep.me").write_text("mine")
    with pytest.warns(UserWarning):
        build_animals_subset(src, out, seed=1, progress=False, overwrite=True)
    assert _listing(out) != listing and (out / "keep.me").read_text() == "mine"


def test_build_hardlink_and_defaults(tmp_path, imagenet):
    src, _ = imagenet
    out = tmp_path / "hard"
    with pytest.warns(UserWarning):
        summary = build_animals_subset(src, out, test_fraction=0.5, mode="hardlink", progress=False)
    assert summary["classes"] == ["n01440764", "n01443537", "n02655020"]  # out-of-range excluded
    assert (out / "classes.txt").read_text().split() == summary["classes"]
    f = next((out / "test" / "n01440764").iterdir())
    assert os.stat(f).st_ino == os.stat(src / "train" / "n01440764" / f.name).st_ino
    assert len(list((out / "test" / "n01440764").iterdir())) == 10


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": 0}, "test_fraction"),
        ({"mode": "move"}, "mode"),
    ],
)
def test_build_rejects_bad_options(tmp_path, imagenet, kwargs, match):
    src, _ = imagenet
    with pytest.raises(UserError, match=match):
        build_animals_subset(src, tmp_path / "o", progress=False, **kwargs)


def test_build_rejects_bad_paths(tmp_path, imagenet):
    src, _ = imagenet
    with pytest.raises(UserError, match="not found"):
        build_animals_subset(tmp_path / "none", tmp_path / "o", progress=False)
    with pytest.raises(UserError, match="outside"):
        build_animals_subset(src, src / "subset", progress=False)
    other = tmp_path / "other"
    (other / "train" / "n09999999").mkdir(parents=True)
    with pytest.raises(UserError, match="no animal synset"):
        build_animals_subset(other, tmp_path / "o", progress=False)
    bad_words = tmp_path / "w.txt"
    bad_words.write_text("n04579432 whistle\n")
    with pytest.raises(UserError, match="no animal synsets"):
        build_animals_subset(src, tmp_path / "o", synsets_file=bad_words, progress=False)


def test_flat_val_folder_is_ignored_with_warning(tmp_path, imagenet):
    src, _ = imagenet
    Image.fromarray(np.zeros((2, 2, 3), np.uint8)).save(src / "val" / "ILSVRC2012_val_9.png")
    with pytest.warns(UserWarning) as record:
        summary = build_animals_subset(src, tmp_path / "o", progress=False)
    assert any("flat ImageNet val" in str(w.message) for w in record)
    assert summary["num_train"] + summary["num_test"] == 20 + 6 + 3
