"""Two-process DDP on CPU (gloo): both ranks end with equal weights, and they did train."""
import os
import subprocess
import sys
from pathlib import Path

import torch
from tests.helpers import make_colour_dataset

from hrcam.weights import load_weights

ROOT = Path(__file__).resolve().parents[2]


def test_two_process_ddp_ranks_end_equal(tmp_path):
    data = make_colour_dataset(tmp_path / "data", per_class=(8, 2))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    r = subprocess.run([sys.executable, str(ROOT / "tests" / "_ddp_worker.py"), str(data), str(tmp_path / "out")],
                       capture_output=True, text=True, timeout=300, env=env, cwd=str(tmp_path))
    assert r.returncode == 0, r.stderr[-3000:]
    w0, m0 = load_weights(tmp_path / "out" / "rank0.safetensors")
    w1, m1 = load_weights(tmp_path / "out" / "rank1.safetensors")
    assert m0["world_size"] == 2 and m1["world_size"] == 2
    assert m0["global_step"] == 3
    assert w0.keys() == w1.keys()
    # parameters are all-reduced: identical on both ranks (BN running stats are per-rank, so only
    # parameters are compared)
    params = [k for k in w0 if "running_" not in k and "num_batches_tracked" not in k]
    assert all(torch.equal(w0[k], w1[k]) for k in params)
    exported, _ = load_weights(tmp_path / "out" / "results" / "ddp" / "last_weights.safetensors")
    assert torch.equal(exported["fc.weight"], w0["fc.weight"])
