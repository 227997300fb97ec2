"""Same seed, same data, same flags: bit-identical weights on CPU, for every trainer (item 22)."""
from __future__ import annotations

import pytest
import torch
from tests.promises.conftest import MICRO, train_args

from hrcam.cli import main
from hrcam.weights import load_weights


def _same(a, b) -> bool:
    sa, _ = load_weights(a)
    sb, _ = load_weights(b)
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def _baseline(method, data, root, *extra):
    return ["train", method, "--data_dir", str(data), "--results_name", "r", "--epochs", "1", "--im_size", "32",
            "--batch_size", "4", "--no_progress", "--num_maps", "0", "--backbone", "resnet18",
            "--accelerator", "cpu", "--devices", "1", "--results_root", str(root / "results"),
            "--logs_root", str(root / "logs"), *extra]


def test_half_and_full_runs_are_bit_identical(data3, tmp_path):
    for run in ("a", "b"):
        assert main(train_args(data3, "half", tmp_path / run, "--seed", "7")) == 0
        full = train_args(data3, "full", tmp_path / run, "--seed", "7", "--half_weight_dir",
                          str(tmp_path / run / "results" / "half" / "last_weights.safetensors"))
        full[1] = "full"
        assert main(full) == 0
    for name in ("half", "full"):
        assert _same(*(tmp_path / r / "results" / name / "last_weights.safetensors" for r in "ab"))


@pytest.mark.parametrize("method", ["cam", "lcam", "casm"])
def test_baseline_runs_are_bit_identical(data3, tmp_path, method):
    extra = ["--extra_channels", "8"] if method == "cam" else []
    for run in ("a", "b"):
        assert main(_baseline(method, data3, tmp_path / run, *extra)) == 0
    assert _same(*(tmp_path / r / "results" / "r" / "last_weights.safetensors" for r in "ab"))


def test_decoder_runs_are_bit_identical(data3, tmp_path):
    for run in ("a", "b"):
        assert main(["train", "decoder", "--data_dir", str(data3), "--results_name", "r", "--backbone", "resnet18",
                     "--im_size", "32", "--batch_size", "4", "--epochs", "1", "--rank", "4", "--width", "4",
                     "--no_progress", "--accelerator", "cpu", "--devices", "1",
                     "--results_root", str(tmp_path / run / "results"),
                     "--logs_root", str(tmp_path / run / "logs")]) == 0
    assert _same(*(tmp_path / r / "results" / "r" / "last_weights.safetensors" for r in "ab"))


def test_evaluate_scores_each_image_once(tmp_path, data3, half_file):
    """Item 18: an undecodable test image is left out and counted, never replaced by a neighbour."""
    import json
    import shutil

    d = tmp_path / "d"
    shutil.copytree(data3, d)
    bad = sorted((d / "test" / "c1").iterdir())[0]
    bad.write_bytes(bad.read_bytes()[:80])  # a valid header, truncated pixels: fails only when decoded
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--data_dir", str(d), "--weights", str(half_file), "--out", str(out),
                 "--no_progress"]) == 0
    m = json.loads(out.read_text())
    assert (m["num_samples"], m["decode_failures"], m["skipped_files"]) == (5, 1, 1)


del MICRO
