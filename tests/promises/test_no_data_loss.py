"""Nothing is lost: user data, good checkpoints and finished runs survive bad commands and full disks."""
from __future__ import annotations

import errno
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from tests.promises.conftest import train_args

from hrcam.cli import main
from hrcam.errors import UserError


def _copy_run(trained, tmp_path) -> Path:
    root, _ = trained
    shutil.copytree(root, tmp_path / "copy")
    return tmp_path / "copy"


# -- item 1: data demo / demo run never delete a user's folder ------------------------------------
def _users_folder(tmp_path) -> Path:
    mine = tmp_path / "D" / "train" / "cat" / "mine.png"
    mine.parent.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mine)
    return mine


def test_data_demo_refuses_a_folder_it_did_not_write(tmp_path, capsys):
    mine = _users_folder(tmp_path)
    rc = main(["data", "demo", "--out", str(tmp_path / "D"), "--size", "32", "--train", "10", "--test", "10",
               "--no-progress"])
    assert rc == 2 and mine.is_file()
    assert "--overwrite" in capsys.readouterr().err


def test_demo_run_refuses_a_users_data_folder(tmp_path):
    mine = _users_folder(tmp_path)
    rc = main(["demo", "run", "--data", str(tmp_path / "D"), "--out", str(tmp_path / "out"), "--size", "32",
               "--train", "10", "--test", "10", "--no-progress"])
    assert rc == 2 and mine.is_file()


def test_rebuilding_the_demo_set_keeps_files_a_user_added(tmp_path):
    from hrcam.data.demo import build_demo_dataset

    out = build_demo_dataset(tmp_path / "D", size=32, train=10, test=10, progress=False)
    mine = out / "train" / "3" / "mine.png"
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(mine)
    build_demo_dataset(out, size=32, train=10, test=10, seed=1, progress=False)
    assert mine.is_file()
    assert (out / "train" / "3" / "00003.png").is_file()


# -- item 2: a full disk never destroys a good checkpoint ----------------------------------------
def _enospc_part_way(real):
    """A writer that writes a few bytes, then fails like a full disk."""
    def write(obj, f, *a, **kw):
        with open(f, "wb") as fh:
            fh.write(b"PK\x03\x04 partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    return write


def test_checkpoint_on_a_full_disk_keeps_the_old_one(tmp_path, monkeypatch):
    from hrcam.train.runner import AtomicCheckpointIO

    io, path = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.ones(3)}, "epoch": 1}, path)
    monkeypatch.setattr(torch, "save", _enospc_part_way(torch.save))
    with pytest.raises(UserError, match="no space left"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(3)}, "epoch": 2}, path)
    monkeypatch.undo()
    old = torch.load(path, weights_only=True)
    assert old["epoch"] == 1 and torch.equal(old["state_dict"]["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind


def test_weights_export_on_a_full_disk_keeps_the_old_file(tmp_path, monkeypatch):
    import safetensors.torch

    from hrcam.weights import load_weights, save_weights

    path = save_weights(tmp_path / "w.safetensors", {"w": torch.ones(2)}, {"hrcam_type": "half"})

    def full(tensors, filename, metadata=None):
        Path(filename).write_bytes(b"\x00" * 5)
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(safetensors.torch, "save_file", full)
    with pytest.raises(UserError, match="no space left"):
        save_weights(path, {"w": torch.zeros(2)})
    monkeypatch.undo()
    assert torch.equal(load_weights(path)[0]["w"], torch.ones(2))


def test_resume_onto_a_full_disk_exits_2_and_the_old_checkpoint_still_resumes(trained, data3, tmp_path,
                                                                             monkeypatch, capsys):
    root = _copy_run(trained, tmp_path)
    last = root / "results" / "run" / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    monkeypatch.setattr(torch, "save", _enospc_part_way(torch.save))
    rc = main(train_args(data3, "run", root, "--resume", "--epochs", "2"))
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and len(err) == 1 and "no space left" in err[0]
    assert last.read_bytes() == before
    monkeypatch.undo()
    assert main(train_args(data3, "run", root, "--resume", "--epochs", "2")) == 0


# -- item 3: a finished run is never replaced silently; one run per folder at a time ---------------
def test_rerun_without_resume_is_refused(trained, data3, tmp_path, capsys):
    root = _copy_run(trained, tmp_path)
    weights = root / "results" / "run" / "last_weights.safetensors"
    before = weights.read_bytes()
    assert main(train_args(data3, "run", root)) == 2
    err = capsys.readouterr().err
    assert "--resume" in err and "--overwrite" in err
    assert weights.read_bytes() == before
    assert len(list((root / "logs" / "run").glob("events.out.tfevents.*"))) == 1
    assert main(train_args(data3, "run", root, "--overwrite")) == 0
    assert len(list((root / "logs" / "run").glob("events.out.tfevents.*"))) == 1


def test_a_second_training_on_the_same_run_is_refused(data3, tmp_path, capsys):
    from hrcam.train.runner import _RunLock

    with _RunLock(tmp_path / "results" / "busy", "busy"):
        assert main(train_args(data3, "busy", tmp_path)) == 2
    assert "another training" in capsys.readouterr().err


# -- item 4: last.ckpt after every epoch; kill -9 + resume = the uninterrupted run -----------------
_KILLER = """
import os, signal, sys
from hrcam.train import modules
step = modules.HalfModule.training_step
def killing_step(self, batch, i):
    if self.current_epoch == 1 and i == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return step(self, batch, i)
modules.HalfModule.training_step = killing_step
from hrcam.cli import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_kill_during_epoch_2_then_resume_gives_the_uninterrupted_weights(data3, tmp_path):
    from hrcam.weights import load_weights

    args = lambda root, *extra: train_args(data3, "r", root, "--epochs", "3", "--seed", "3", *extra)  # noqa: E731
    assert main(args(tmp_path / "a")) == 0
    script = tmp_path / "killer.py"
    script.write_text(_KILLER)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run([sys.executable, str(script), *args(tmp_path / "b")], env=env, capture_output=True,
                          timeout=120)
    assert proc.returncode == -signal.SIGKILL
    ckpt = torch.load(tmp_path / "b" / "results" / "r" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 0  # written after epoch 1 although val_acc may not have improved
    assert main(args(tmp_path / "b", "--resume")) == 0
    a, _ = load_weights(tmp_path / "a" / "results" / "r" / "last_weights.safetensors")
    b, _ = load_weights(tmp_path / "b" / "results" / "r" / "last_weights.safetensors")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_last_checkpoint_is_written_every_epoch_not_only_on_improvement(tmp_path, data3):
    from hrcam.train.modules import HalfModule
    from hrcam.train.recipes import FolderData
    from hrcam.train.runner import fit

    class Flat(HalfModule):  # val_acc never improves after epoch 1
        def validation_step(self, batch, i):
            self.log("val_acc", 0.5, on_epoch=True, batch_size=len(batch[0]))

    dm = FolderData(data3, im_size=32, batch_size=4, augment=False).datamodule(0)
    module = Flat(3, 3, 32, {"init_filters": 8, "growth_rate": 4, "layers_per_block": 1}, dm.classes)
    out = fit(module, dm, "flat", epochs=2, results_root=tmp_path / "r", logs_root=tmp_path / "l", progress=False,
              accelerator="cpu", devices=1)
    ckpt = torch.load(out["best"].parent / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["epoch"] == 1  # refreshed after epoch 2, with no improvement


# -- item 5: explain gives every input its own outputs ---------------------------------------------
def test_explain_output_names_are_unique_for_colliding_inputs():
    from hrcam.cli.explain import _unique_names

    names = _unique_names([Path("a/img.png"), Path("b/img.png"), Path("c/img_2.png")])
    assert len(set(names)) == 3
    names = _unique_names([Path("d/x.png"), Path("d/x.jpg"), Path("d/x_2.png"), Path("d/x.png")])
    assert len(set(names)) == 4


def test_explain_writes_one_output_set_per_input(tmp_path, half_file):
    for folder, name in (("a", "img"), ("b", "img"), ("c", "img_2")):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.full((32, 32, 3), 60, np.uint8)).save(tmp_path / folder / f"{name}.png")
    out = tmp_path / "out"
    rc = main(["explain", str(tmp_path / "a" / "img.png"), str(tmp_path / "b" / "img.png"),
               str(tmp_path / "c" / "img_2.png"), "--weights", str(half_file), "--out", str(out), "--no_progress",
               "--format", "npy"])
    assert rc == 0
    assert len(list(out.rglob("*_low.npy"))) == 3
    rows = (out / "summary.csv").read_text().splitlines()[1:]
    assert len({r.split(",")[1] for r in rows}) == 3


# -- item 6: results_name never leads out of results/ ----------------------------------------------
def test_results_name_through_a_symlink_out_of_results_is_refused(tmp_path, data3, capsys):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (tmp_path / "results").mkdir()
    os.symlink(elsewhere, tmp_path / "results" / "x")
    assert main(train_args(data3, "x/run", tmp_path)) == 2
    assert "symlink" in capsys.readouterr().err
    assert list(elsewhere.iterdir()) == []


# -- item 11: evaluate checks its output before the work, and writes atomically --------------------
def test_evaluate_refuses_an_unwritable_out_before_the_work(tmp_path, data3, half_file, capsys, monkeypatch):
    import hrcam.evaluation.classification as ev

    monkeypatch.setattr(ev, "evaluate_classification", lambda *a, **k: pytest.fail("worked before checking"))
    rc = main(["evaluate", "--data_dir", str(data3), "--weights", str(half_file), "--out", "/proc/nope/v.json",
               "--no_progress"])
    assert rc == 2 and "--out" in capsys.readouterr().err
