"""``--num_workers``: explain and evaluate read through a DataLoader; the outputs, their order and the
bad-file counts do not depend on the number of workers."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam.api.seed import FullModel
from hrcam.cli import main
from hrcam.models.hrcam.nets import FullNet


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("datapath")
    torch.manual_seed(0)
    net = FullNet(num_classes=3, init_filters=8, growth_rate=4, layers_per_block=1, aux_channels=4)
    weights = root / "full.safetensors"
    FullModel.from_network(net, im_size=32, class_names=["a", "b", "c"]).save(weights)
    rng = np.random.default_rng(0)
    for c in "abc":
        d = root / "data" / "test" / c
        d.mkdir(parents=True)
        for i in range(3):
            a = rng.integers(0, 256, (36, 40, 3), dtype=np.uint8)
            Image.fromarray(a).save(d / f"{i}.{'jpg' if i % 2 else 'png'}", **({"quality": 85} if i % 2 else {}))
    bad = root / "data" / "test" / "b" / "1.jpg"
    bad.write_bytes(bad.read_bytes()[:700])  # a JPEG cut short: its header reads, its pixels do not
    return root, weights, bad


def test_explain_folder_same_outputs_with_workers(setup, capsys):
    root, weights, bad = setup
    outs = {}
    for w in (0, 2):
        out = root / f"explain{w}"
        with pytest.warns(UserWarning, match="skipping unreadable image .*1.jpg"):
            assert main(["explain", str(root / "data"), "--weights", str(weights), "--out", str(out),
                         "--batch_size", "4", "--num_workers", str(w), "--no_progress"]) == 0
        assert "explained 8 image(s) (1 unreadable skipped)" in capsys.readouterr().out
        with (out / "summary.csv").open() as fh:
            outs[w] = (list(csv.DictReader(fh)), out)
    rows0, out0 = outs[0]
    rows2, out2 = outs[2]
    assert [r["output"] for r in rows0] == ["a/0", "a/1", "a/2", "b/0", "b/2", "c/0", "c/1", "c/2"]
    assert rows0 == rows2
    for r in rows0:
        assert np.array_equal(np.load(out0 / f"{r['output']}_high.npy"), np.load(out2 / f"{r['output']}_high.npy"))


def test_explain_named_bad_file_is_a_one_line_error(setup, capsys):
    root, weights, bad = setup
    assert main(["explain", str(bad), "--weights", str(weights), "--out", str(root / "x"), "--num_workers", "1",
                 "--no_progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot read image" in err and len(err.strip().splitlines()) == 1


def test_evaluate_same_report_and_counts_with_workers(setup):
    root, weights, bad = setup
    reports = []
    for w in (0, 2):
        out = root / f"eval{w}.json"
        assert main(["evaluate", "--data_dir", str(root / "data"), "--weights", str(weights), "--batch_size", "4",
                     "--num_workers", str(w), "--out", str(out), "--no_progress"]) == 0
        reports.append(json.loads(out.read_text()))
    assert reports[0] == reports[1]
    assert reports[0]["decode_failures"] == 1 and reports[0]["failed_files"] == [str(bad)]
    assert reports[0]["num_samples"] == 8


def test_help_explains_the_options(capsys):
    for argv in (["evaluate"], ["evaluate", "localization"], ["compare"], ["explain"]):
        with pytest.raises(SystemExit):
            main([*argv, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--num_workers" in text and "decode" in text
        if argv != ["explain"]:
            assert "--devices" in text and "CPU processes" in text
