"""Bad input reaches a CLI user as one line ``...: error: ...`` and exit code 2, never a traceback."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from tests.promises.conftest import MICRO, train_args

from hrcam.cli import main
from hrcam.errors import UserError


def _one_line(capsys, *words) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    err = [e for e in err if not e.startswith("hrcam: warning:")]
    assert len(err) == 1, err
    assert "Traceback" not in err[0]
    for w in words:
        assert w in err[0], err[0]
    return err[0]


# -- item 7: zero-byte weights --------------------------------------------------------------------
def test_zero_byte_weights_give_one_line(tmp_path, data3, capsys):
    from hrcam.api.seed import load_model

    empty = tmp_path / "w.pt"
    empty.touch()
    with pytest.raises(UserError, match="empty"):
        load_model(empty)
    assert main(["evaluate", "--data_dir", str(data3), "--weights", str(empty), "--no_progress"]) == 2
    _one_line(capsys, "empty")
    img = next((data3 / "test" / "c0").iterdir())
    assert main(["explain", str(img), "--weights", str(empty), "--out", str(tmp_path / "o")]) == 2
    _one_line(capsys, "empty")


# -- item 8: bad --resume checkpoints --------------------------------------------------------------
@pytest.mark.parametrize("content", ["empty", "random", "truncated", "pickle"])
def test_bad_resume_checkpoint_gives_one_line(trained, data3, tmp_path, capsys, content):
    root = tmp_path / "copy"
    shutil.copytree(trained[0], root)
    last = root / "results" / "run" / "checkpoints" / "last.ckpt"
    if content == "empty":
        content = b""
    elif content == "random":
        content = np.random.default_rng(1).bytes(64)
    elif content == "truncated":
        content = last.read_bytes()[:200]
    elif content == "pickle":
        class Evil:
            def __reduce__(self):
                return (os.system, (f"touch {tmp_path / 'pwned'}",))
        torch.save({"state_dict": Evil()}, last)
        content = last.read_bytes()
    last.write_bytes(content)
    assert main(train_args(data3, "run", root, "--resume", "--epochs", "2")) == 2
    _one_line(capsys, "resume")
    assert not (tmp_path / "pwned").exists()


def test_resume_with_other_data_says_what_does_not_match(trained, tmp_path, capsys):
    from tests.helpers import make_colour_dataset

    root = tmp_path / "copy"
    shutil.copytree(trained[0], root)
    two = make_colour_dataset(tmp_path / "two", classes=2, per_class=(4, 2), size=32)
    assert main(train_args(two, "run", root, "--resume", "--epochs", "2")) == 2
    _one_line(capsys, "does not match", "fc.weight")


# -- items 9 and 19: train decoder and bad images ---------------------------------------------------
def test_decoder_data_skips_non_images_and_bombs_and_counts_decode_failures(tmp_path, monkeypatch, capsys):
    import PIL.Image

    from hrcam.train.decoder import ImagesDataModule

    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(3):
        Image.fromarray(np.full((16, 16, 3), 40 * i, np.uint8)).save(root / f"ok{i}.png")
    Image.fromarray(np.zeros((64, 64, 3), np.uint8)).save(root / "bomb.png")
    (root / "notes.png").write_text("not an image")
    monkeypatch.setattr(PIL.Image, "MAX_IMAGE_PIXELS", 1500)  # 64² > 2 × 1500: a "bomb"; 16² is fine
    dm = ImagesDataModule(root, im_size=32, batch_size=2, augment=False)
    assert len(dm.train_set) == 3 and len(dm.skipped_files) == 2
    assert "skipped 2 file(s)" in capsys.readouterr().out
    (root / "ok1.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")  # fails to decode after the scan
    with pytest.warns(RuntimeWarning, match="could not decode"):
        x, _ = dm.train_set[1]
    assert x.shape == (3, 32, 32) and dm.train_set.decode_failures == 1


def test_decoder_on_a_folder_of_non_images_is_one_line(tmp_path, capsys):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.png").write_text("text")
    rc = main(["train", "decoder", "--data_dir", str(tmp_path / "d"), "--results_name", "x", "--backbone", "resnet18",
               "--results_root", str(tmp_path / "r"), "--logs_root", str(tmp_path / "l"), "--no_progress"])
    assert rc == 2
    _one_line(capsys, "no images")


# -- item 10: pass-through options are checked at parse time ----------------------------------------
@pytest.mark.parametrize("flags", [["--lr", "-1"], ["--lr", "nan"], ["--precision", "bogus"], ["--strategy", "bogus"],
                                   ["--num_workers", "-1"], ["--gpu", "abc"], ["--seed", "-5"]])
def test_bad_pass_through_options_are_one_line(tmp_path, data3, capsys, flags):
    with pytest.raises(SystemExit) as e:
        main(train_args(data3, "x", tmp_path, *flags))
    assert e.value.code == 2
    _one_line(capsys, flags[0])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
@pytest.mark.parametrize("argv", [["train", "half", "--accelerator", "gpu"], ["explain", "x.png", "--device", "cuda:0"]])
def test_gpu_options_without_a_gpu_are_one_line(tmp_path, data3, half_file, capsys, argv):
    extra = ["--data_dir", str(data3), "--results_name", "x"] if argv[0] == "train" else ["--weights", str(half_file)]
    with pytest.raises(SystemExit) as e:
        main([*argv, *extra])
    assert e.value.code == 2
    _one_line(capsys, argv[2])


def test_explain_bogus_device_is_one_line(half_file, capsys):
    with pytest.raises(SystemExit) as e:
        main(["explain", "x.png", "--weights", str(half_file), "--device", "bogus"])
    assert e.value.code == 2
    _one_line(capsys, "--device", "bogus")


# -- item 11: bad output paths ----------------------------------------------------------------------
def test_explain_and_data_demo_out_an_existing_file(tmp_path, data3, half_file, capsys):
    afile = tmp_path / "afile"
    afile.write_text("x")
    img = next((data3 / "test" / "c0").iterdir())
    assert main(["explain", str(img), "--weights", str(half_file), "--out", str(afile)]) == 2
    _one_line(capsys, "not a folder")
    assert main(["data", "demo", "--out", str(afile), "--size", "32", "--train", "10", "--test", "10"]) == 2
    _one_line(capsys, "not a folder")


@pytest.mark.parametrize("name", [".", "./", "n" * 300, "afile/run"])
def test_bad_results_names_are_one_line(tmp_path, data3, capsys, name):
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "afile").write_text("x")
    assert main(train_args(data3, name, tmp_path)) == 2
    _one_line(capsys, "results_name")


# -- item 12: divergence stops the run; NaN weights warn ------------------------------------------
def test_divergent_training_stops_with_one_line(tmp_path, data3, capsys):
    from hrcam.train.modules import HalfModule

    step = HalfModule.training_step

    def nan_step(self, batch, i):
        loss = step(self, batch, i)
        return loss * float("nan") if self.current_epoch == 1 else loss

    HalfModule.training_step = nan_step
    try:
        rc = main(train_args(data3, "div", tmp_path, "--epochs", "2"))
    finally:
        HalfModule.training_step = step
    assert rc == 2
    _one_line(capsys, "diverged", "--lr")
    from hrcam.weights import load_weights

    state, _ = load_weights(tmp_path / "results" / "div" / "last_weights.safetensors")
    assert all(bool(torch.isfinite(v).all()) for v in state.values() if v.is_floating_point())


def test_loading_nan_weights_warns(tmp_path):
    from hrcam.weights import load_weights, save_weights

    path = save_weights(tmp_path / "nan.safetensors", {"w": torch.tensor([1.0, float("nan")])})
    with pytest.warns(RuntimeWarning, match="NaN"):
        load_weights(path)


# -- item 13: non-UTF-8 file names -----------------------------------------------------------------
def test_explain_handles_a_non_utf8_file_name(tmp_path, half_file):
    folder = tmp_path / "imgs"
    folder.mkdir()
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(folder / "fine.png")
    odd = os.path.join(os.fsencode(folder), b"caf\xe9.png")
    Image.fromarray(np.full((32, 32, 3), 30, np.uint8)).save(os.fsdecode(odd))
    out = tmp_path / "out"
    assert main(["explain", str(folder), "--weights", str(half_file), "--out", str(out), "--no_progress",
                 "--format", "npy"]) == 0
    rows = (out / "summary.csv").read_text(encoding="utf-8").splitlines()[1:]
    assert len(rows) == 2 and any("\\xe9" in r for r in rows)


# -- item 14 and the misleading messages about ground truth -----------------------------------------
def test_annotation_naming_a_missing_mask_is_one_line(tmp_path, data3, capsys):
    from hrcam.data.annotations import load_ground_truth

    d = tmp_path / "d"
    shutil.copytree(data3, d)
    img = sorted((d / "test" / "c0").iterdir())[0].relative_to(d).as_posix()
    (d / "annotations.json").write_text(json.dumps({img: {"label": 0, "boxes": [[0, 0, 4, 4]],
                                                          "mask": "masks/none.png"}}))
    with pytest.raises(ValueError, match="masks/none.png"):
        load_ground_truth(d)
    with pytest.raises(ValueError, match="--annotations: no such folder"):
        load_ground_truth(data3, annotations_dir=tmp_path / "missing")


# -- item 15: --channels 1 with RGB half weights ----------------------------------------------------
def test_full_with_one_channel_on_rgb_half_weights_is_one_line(tmp_path, data3, half_file, capsys):
    argv = train_args(data3, "full", tmp_path, "--channels", "1", "--half_weight_dir", str(half_file))
    argv[1] = "full"
    assert main(argv) == 2
    _one_line(capsys, "--channels")


# -- item 21: --max_steps 0 ------------------------------------------------------------------------
def test_decoder_max_steps_zero_is_refused(tmp_path, capsys):
    with pytest.raises(SystemExit) as e:
        main(["train", "decoder", "--data_dir", str(tmp_path), "--results_name", "x", "--max_steps", "0"])
    assert e.value.code == 2
    _one_line(capsys, "--max_steps")


# -- item 23: a pickle as --backbone_weights --------------------------------------------------------
def test_pickled_backbone_weights_give_one_line_without_torchs_advice(tmp_path, data3, capsys):
    class Evil:
        def __reduce__(self):
            return (os.system, ("true",))

    bad = tmp_path / "bb.pt"
    torch.save({"x": Evil()}, bad)
    rc = main(["train", "cam", "--data_dir", str(data3), "--results_name", "c", "--backbone", "resnet18",
               "--backbone_weights", str(bad), "--results_root", str(tmp_path / "r"), "--logs_root",
               str(tmp_path / "l"), "--no_progress", "--im_size", "32"])
    assert rc == 2
    line = _one_line(capsys, "pickled")
    assert "weights_only" not in line


# -- the smaller ones --------------------------------------------------------------------------------
def test_unknown_option_before_an_optional_subcommand_is_named(capsys):
    with pytest.raises(SystemExit):
        main(["evaluate", "--im_size", "32"])
    _one_line(capsys, "unrecognized arguments: --im_size 32")


def test_ctrl_c_exits_130_with_a_resume_hint(tmp_path, data3, capsys):
    from hrcam.train.modules import HalfModule

    step = HalfModule.training_step

    def interrupted(self, batch, i):
        raise KeyboardInterrupt

    HalfModule.training_step = interrupted
    try:
        rc = main(train_args(data3, "int", tmp_path))
    finally:
        HalfModule.training_step = step
    assert rc == 130
    assert "hrcam: interrupted; resume with --resume" in capsys.readouterr().err


def test_train_says_how_many_files_it_skipped(tmp_path, data3, capsys):
    d = tmp_path / "d"
    shutil.copytree(data3, d)
    (d / "train" / "c0" / "notes.txt").write_text("x")
    assert main(train_args(d, "s", tmp_path)) == 0
    assert "skipped 1 train file(s)" in capsys.readouterr().out


def test_messages_say_what_is_wrong(tmp_path, capsys):
    from hrcam.data.layout import dataset_classes, find_split

    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(UserError, match="is a file"):
        find_split(afile, "train")
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "classes.txt").write_text("\n")
    with pytest.raises(UserError, match="lists no classes"):
        dataset_classes(tmp_path / "d")


def test_weights_without_metadata_take_their_class_count(tmp_path):
    from hrcam.api.seed import HalfModel
    from hrcam.models.hrcam.nets import HalfNet

    net = HalfNet(5, 3, init_filters=8, growth_rate=4, layers_per_block=1)
    torch.save(net.state_dict(), tmp_path / "plain.pt")
    assert HalfModel(weights=tmp_path / "plain.pt", im_size=32, init_filters=8, growth_rate=4,
                     layers_per_block=1).num_classes == 5
    with pytest.raises(UserError) as e:  # a mismatch names the tensors, not just "Error(s) in loading"
        HalfModel(weights=tmp_path / "plain.pt", im_size=32, init_filters=8, growth_rate=8, layers_per_block=1)
    assert "size mismatch" in str(e.value) or "Missing" in str(e.value)


def test_api_refuses_0_255_floats_wrong_channels_and_fractional_classes(half_file):
    from hrcam.api.seed import HalfModel

    hm = HalfModel(weights=half_file)
    x = np.random.default_rng(0).random((32, 32, 3)).astype(np.float32)
    with pytest.raises(ValueError, match="divide by 255"):
        hm.predict(x * 255)  # item 17
    with pytest.raises(ValueError, match="RGBA"):
        hm.predict(np.zeros((32, 32, 4), np.uint8))
    with pytest.raises(ValueError, match="grayscale"):
        hm.predict(np.zeros((1, 32, 32, 1), np.uint8))
    with pytest.raises(ValueError, match="integers"):
        hm.cam(x, custom_class=2.5)
    assert hm.cam(x, custom_class=2.0).shape == hm.cam(x, custom_class=2).shape


del MICRO
