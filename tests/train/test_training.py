"""Training: the loss goes down, frozen tensors stay frozen, exports reload, the CLI fails cleanly."""
import json
import subprocess
import sys

import numpy as np
import pytest
import torch
from tests.helpers import TINY_ARCH, make_colour_dataset

from hrcam.api.seed import FullModel, HalfModel
from hrcam.cli import main
from hrcam.train.datamodule import FolderDataModule
from hrcam.train.modules import FullModule, HalfModule, consistency_loss, l2_penalty
from hrcam.train.runner import fit


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_colour_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def trained_half(data, tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    dm = FolderDataModule(data, im_size=32, batch_size=6, augment=False)
    module = HalfModule(dm.num_classes, 3, 32, TINY_ARCH, dm.classes)
    out = fit(module, dm, "half/run1", epochs=2, results_root=root / "results", logs_root=root / "logs",
              progress=False, accelerator="cpu", devices=1)
    return root, out, dm


def test_half_training_steps_lower_the_loss(data):
    torch.manual_seed(0)
    dm = FolderDataModule(data, im_size=32, batch_size=24, augment=False)
    module = HalfModule(dm.num_classes, 3, 32, TINY_ARCH)
    opt = module.configure_optimizers()["optimizer"]
    x, y = next(iter(dm.train_dataloader()))
    losses = []
    for _ in range(6):
        loss = torch.nn.functional.cross_entropy(module.net(x), y) + 1e-4 * l2_penalty(module.net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] * 0.9


def test_fit_writes_seed_layout_and_weights_reload(trained_half, data):
    root, out, dm = trained_half
    res = root / "results" / "half" / "run1"
    assert out["best"] == res / "best_weights.safetensors" and out["best"].is_file()
    assert (res / "last_weights.safetensors").is_file()
    assert (res / "checkpoints" / "last.ckpt").is_file()
    assert list((root / "logs" / "half" / "run1").glob("events.out.tfevents.*"))
    hm = HalfModel(weights=out["last"])
    assert hm.num_classes == 3 and hm.im_size == 32 and hm.class_names == ["c0", "c1", "c2"]
    # the exported last weights are the module's final weights: same predictions
    x, _ = next(iter(dm.val_dataloader()))
    with torch.no_grad():
        expected = out["trainer"].lightning_module.net.eval()(x).argmax(1).numpy()
    np.testing.assert_array_equal(hm.predict(x), expected)


def test_full_training_keeps_frozen_tensors_and_matches_half(trained_half, data, tmp_path):
    root, out, dm = trained_half
    half = HalfModel(weights=out["best"])
    module = FullModule(half.net.state_dict(), 3, 3, 32, TINY_ARCH, objective="consistency")
    before = {k: v.clone() for k, v in module.net.localization.state_dict().items()}
    fit(module, dm, "full/run1", epochs=1, results_root=tmp_path / "r", logs_root=tmp_path / "l",
        progress=False, monitor="train_loss", mode="min", accelerator="cpu", devices=1)
    after = module.net.localization.state_dict()
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert changed == []  # weights and BN running statistics alike
    fm = FullModel(weights=tmp_path / "r" / "full" / "run1" / "last_weights.safetensors")
    x, _ = next(iter(dm.val_dataloader()))
    high, low, _ = fm.generate_cams(x)
    np.testing.assert_array_equal(low, half.cam(x))
    np.testing.assert_array_equal(fm.predict(x), half.predict(x))
    # the expansion network did train
    fresh = FullModule(half.net.state_dict(), 3, 3, 32, TINY_ARCH)
    assert not torch.equal(fresh.net.final_up[0].weight, fm.net.final_up[0].weight)


def test_consistency_loss_is_the_pooled_difference_by_hand():
    w = torch.tensor([[1.0, 0.0], [0.5, -1.0]])
    a_low = torch.zeros(1, 2, 1, 1)
    a_high = torch.zeros(1, 2, 2, 2)
    a_high[0, 0] = torch.tensor([[1.0, 3.0], [0.0, 0.0]])  # pooled: 1.0
    a_high[0, 1] = 2.0  # pooled: 2.0
    # class 0: 1·1 + 0·2 = 1 → 1² ; class 1: 0.5·1 − 1·2 = −1.5 → 2.25 ; mean = 1.625
    assert consistency_loss(w, a_low, a_high).item() == pytest.approx(1.625)


def _run(argv, capsys):
    code = main(argv)
    err = capsys.readouterr().err
    return code, err


def test_cli_misuse_gives_one_line_and_exit_2(data, tmp_path, capsys, trained_half):
    root, out, _ = trained_half
    with pytest.raises(SystemExit) as e:
        main(["train", "half", "--results_name", "x"])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "--data_dir" in err and len(err.splitlines()) == 1
    with pytest.raises(SystemExit) as e:
        main(["train", "full", "--data_dir", str(data), "--results_name", "x"])
    assert e.value.code == 2 and "--half_weight_dir" in capsys.readouterr().err

    empty = tmp_path / "empty"
    (empty / "train").mkdir(parents=True)
    common = ["--results_name", "x", "--results_root", str(tmp_path / "r"), "--logs_root", str(tmp_path / "l")]
    cases = [
        (["train", "half", "--data_dir", str(tmp_path / "nope")], "not found"),
        (["train", "half", "--data_dir", str(empty)], "no class folders"),
        (["train", "half", "--data_dir", str(tmp_path)], "no train/"),
        (["train", "full", "--data_dir", str(data), "--half_weight_dir", str(tmp_path / "w.safetensors")], "not found"),
        (["train", "half", "--data_dir", str(data), "--num_classes", "5"], "does not match"),
    ]
    for argv, needle in cases:
        code, err = _run(argv + common, capsys)
        assert code == 2, argv
        assert needle in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err, err

    # weights whose class count differs from the data
    other = make_colour_dataset(tmp_path / "five", classes=5, per_class=(2, 1))
    code, err = _run(["train", "full", "--data_dir", str(other), "--half_weight_dir", str(out["best"]),
                      "--im_size", "32"] + common, capsys)
    assert code == 2 and "3 classes" in err and "5 class folders" in err
    code, err = _run(["train", "half", "--data_dir", str(data), "--results_name", "../escape"], capsys)
    assert code == 2 and ".." in err


def test_cli_train_resume_and_evaluate(data, tmp_path, capsys):
    common = ["--data_dir", str(data), "--im_size", "32", "--batch_size", "8", "--results_root", str(tmp_path / "r"),
              "--logs_root", str(tmp_path / "l"), "--no_progress", "--init_filters", "8", "--growth_rate", "4",
              "--layers_per_block", "2", "--accelerator", "cpu", "--devices", "1"]
    from hrcam.weights import load_weights

    last = tmp_path / "r" / "h" / "last_weights.safetensors"
    assert main(["train", "half", "--results_name", "h", "--epochs", "1"] + common) == 0
    first, _ = load_weights(last)
    # resuming a finished 1-epoch run with --epochs 1 trains nothing (a fresh run with another
    # seed would give other weights)
    assert main(["train", "half", "--results_name", "h", "--epochs", "1", "--resume", "--seed", "5"] + common) == 0
    same, _ = load_weights(last)
    assert all(torch.equal(first[k], same[k]) for k in first)
    assert main(["train", "half", "--results_name", "h", "--epochs", "2", "--resume"] + common) == 0
    ckpt = torch.load(tmp_path / "r" / "h" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 2 * 3  # 24 images / batch 8 = 3 steps per epoch, two epochs in all
    more, _ = load_weights(last)
    assert not torch.equal(first["fc.weight"], more["fc.weight"])
    capsys.readouterr()
    weights = tmp_path / "r" / "h" / "best_weights.safetensors"
    out_json = tmp_path / "eval.json"
    assert main(["evaluate", "--data_dir", str(data), "--type", "half", "--weights", str(weights),
                 "--out", str(out_json), "--no_progress"]) == 0
    report = json.loads(out_json.read_text())
    assert report["num_samples"] == 12 and 0 <= report["top1"] <= 1
    assert len(report["confusion_matrix"]) == 3 and sum(map(sum, report["confusion_matrix"])) == 12
    assert "top-1 accuracy" in capsys.readouterr().out


def test_console_script_help_runs():
    r = subprocess.run([sys.executable, "-m", "hrcam.cli", "train", "full", "--help"], capture_output=True, text=True)
    assert r.returncode == 0 and "--objective" in r.stdout and "consistency" in r.stdout
