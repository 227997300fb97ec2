"""A normal training run prints no third-party tips or deprecation warnings, ends with our own
summary line, and ``hrcam --verbose`` shows everything."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from helpers import make_colour_dataset

NOISE = ("Tip:", "litlogger", "LeafSpec", "_pytree", "deprecated", "Deprecat", "GPU available", "TPU available",
         "Trainer.fit` stopped", "across ranks is zero", "Warning")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("quiet") / "data", classes=2, per_class=(4, 2), size=32)


def _train(tmp_path, data, *flags):
    cmd = [sys.executable, "-m", "hrcam.cli", *flags, "train", "half", "--data_dir", str(data),
           "--results_name", "q", "--results_root", str(tmp_path / "results"), "--logs_root", str(tmp_path / "logs"),
           "--epochs", "1", "--im_size", "32", "--batch_size", "4", "--init_filters", "8", "--growth_rate", "4",
           "--layers_per_block", "1", "--no_progress", "--accelerator", "cpu"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "default"}
    env.pop("HRCAM_VERBOSE", None)
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert r.returncode == 0, r.stderr
    return r


def test_a_normal_run_is_quiet_and_says_where_things_went(tmp_path, data):
    r = _train(tmp_path, data)
    noise = [line for line in (r.stdout + r.stderr).splitlines() if any(n in line for n in NOISE)]
    assert noise == []
    assert r.stderr.strip() == ""
    lines = r.stdout.strip().splitlines()
    assert len(lines) == 1
    summary = json.loads(lines[0])
    assert summary == {"best": str(tmp_path / "results/q/best_weights.safetensors"),
                       "last": str(tmp_path / "results/q/last_weights.safetensors"),
                       "logs": str(tmp_path / "logs/q")}
    assert list((tmp_path / "logs/q").glob("events.out.tfevents.*"))


def test_verbose_shows_what_is_hidden(tmp_path, data):
    r = _train(tmp_path, data, "--verbose")
    assert "Tip:" in r.stderr and "GPU available" in r.stderr  # Lightning's own lines are back
    assert json.loads(r.stdout.strip().splitlines()[-1])["logs"] == str(tmp_path / "logs/q")
