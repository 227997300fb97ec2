"""``hrcam explain`` end to end on a tiny full/half model and tiny images."""
from __future__ import annotations

import csv

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam.api.seed import FullModel, HalfModel, load_model
from hrcam.cli import main
from hrcam.models.hrcam.nets import FullNet, HalfNet

ARCH = dict(init_filters=8, growth_rate=4, layers_per_block=1, aux_channels=4)
NAMES = ["cat", "dog", "fox"]


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("w")
    half = HalfNet(3, 3, **ARCH)
    full = FullNet.from_half(half)
    FullModel.from_network(full, im_size=32, class_names=NAMES).save(root / "full.safetensors")
    HalfModel.from_network(half, im_size=32, class_names=NAMES).save(root / "half.safetensors")
    return root


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    d = tmp_path / "imgs"
    (d / "sub").mkdir(parents=True)
    Image.fromarray(rng.integers(0, 256, (40, 40, 3), dtype=np.uint8)).save(d / "a.png")
    Image.fromarray(rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)).save(d / "sub" / "b.jpg")
    (d / "notes.txt").write_text("not an image")
    return d


def _run(capsys, *argv):
    code = main(["explain", *map(str, argv), "--no_progress"])
    return code, capsys.readouterr()


def test_full_model_refine_figure_all_formats(weights, images, tmp_path, capsys):
    out = tmp_path / "out"
    code, cap = _run(capsys, images, "--weights", weights / "full.safetensors", "--out", out,
                     "--refine", "--figure", "--format", "png,npy,mat")
    assert code == 0, cap.err
    for stem in ("a", "sub/b"):  # output names mirror the paths under the input folder
        for suffix in ("_overlay.png", "_refined_overlay.png", "_pipeline.png", "_low.npy",
                       "_high.npy", "_refined.npy", ".mat"):
            assert (out / f"{stem}{suffix}").is_file(), stem + suffix
        low, high = np.load(out / f"{stem}_low.npy"), np.load(out / f"{stem}_high.npy")
        assert low.shape == (2, 2) and high.shape == (32, 32)  # S/16 and S at im_size 32
        refined = np.load(out / f"{stem}_refined.npy")
        assert refined.shape == (32, 32) and 0 <= refined.min() and refined.max() <= 1
        from scipy.io import loadmat

        mat = loadmat(out / f"{stem}.mat")
        np.testing.assert_allclose(mat["high"], high, rtol=1e-6)
        assert Image.open(out / f"{stem}_overlay.png").size == (32, 32)

    with (out / "summary.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["output"] for r in rows] == ["a", "sub/b"]
    # the summary agrees with the model run independently through the seed API
    model = load_model(weights / "full.safetensors")
    from hrcam.data.folders import load_image

    for row, path in zip(rows, [images / "a.png", images / "sub" / "b.jpg"]):
        x = load_image(path, 32)[None]
        high, low, probs = model.generate_cams(x)
        pred = int(np.argmax(probs[0]))
        assert int(row["predicted_class"]) == pred and row["predicted_name"] == NAMES[pred]
        assert float(row["probability"]) == pytest.approx(float(probs[0, pred]), abs=1e-5)
        np.testing.assert_allclose(np.load(tmp_path / "out" / f"{row['output']}_low.npy"), low[0], rtol=1e-5, atol=1e-6)


def test_half_model_with_class_name_writes_low_maps_only(weights, images, tmp_path, capsys):
    out = tmp_path / "o"
    code, cap = _run(capsys, images / "a.png", "--weights", weights / "half.safetensors", "--out", out,
                     "--class", "fox")
    assert code == 0, cap.err
    assert sorted(p.name for p in out.iterdir()) == ["a_low.npy", "a_overlay.png", "summary.csv"]
    with (out / "summary.csv").open() as fh:
        assert next(csv.DictReader(fh))["explained_class"] == "2"


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--class", "zebra"], "--class 'zebra'"),
        (["--class", "7"], "0..2"),
        (["--refine", "--type", "half"], "--refine and --figure need a full model"),
        (["--im_size", "40"], "multiple of 32"),
        (["--roi_percentile", "100"], "roi_percentile must be a number in \\(0, 100\\)"),
    ],
)
def test_bad_options_are_one_line_user_errors(weights, images, tmp_path, capsys, extra, match):
    import re

    code, cap = _run(capsys, images, "--weights", weights / "full.safetensors", "--out", tmp_path / "x", *extra)
    assert code == 2
    assert re.search(match, cap.err) and "Traceback" not in cap.err and len(cap.err.strip().splitlines()) == 1


def test_bad_paths_are_user_errors(weights, images, tmp_path, capsys):
    code, cap = _run(capsys, tmp_path / "missing.png", "--weights", weights / "full.safetensors")
    assert code == 2 and "no such file or folder" in cap.err
    code, cap = _run(capsys, images, "--weights", tmp_path / "nope.safetensors", "--out", tmp_path / "x")
    assert code == 2 and "not found" in cap.err
    empty = tmp_path / "empty"
    empty.mkdir()
    code, cap = _run(capsys, empty, "--weights", weights / "full.safetensors")
    assert code == 2 and "no image files" in cap.err
    code, cap = _run(capsys, images / "notes.txt", "--weights", weights / "full.safetensors", "--out", tmp_path / "x")
    assert code == 2 and "cannot read image" in cap.err


def test_bad_format_is_rejected_by_the_parser(weights, images, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["explain", str(images), "--weights", str(weights / "full.safetensors"), "--format", "png,gif"])
    assert exc.value.code == 2 and "png, npy, mat" in capsys.readouterr().err
