"""``hrcam train cam|lcam|casm``: parser, one-line errors, and 1-epoch runs on a tiny class-folder set."""
import argparse
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam.cli.train_baselines import register_train
from hrcam.errors import UserError
from hrcam.explain.registry import create
from hrcam.models.registry import load_network


def parser():
    p = argparse.ArgumentParser(prog="hrcam train")
    register_train(p.add_subparsers(dest="train_command"))
    return p


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("folders")
    rng = np.random.default_rng(0)
    for split, n in (("train", 4), ("test", 2)):
        for c in range(3):
            d = root / split / f"class{c}"
            d.mkdir(parents=True)
            for i in range(n):
                a = (rng.random((32, 32, 3)) * 80).astype(np.uint8)
                a[..., c] += 150  # the class shows in one colour channel
                Image.fromarray(a).save(d / f"{i}.png")
    return root


def common(tmp_path, data_dir, name):
    return ["--data_dir", str(data_dir), "--results_name", name, "--results_root", str(tmp_path / "results"),
            "--logs_root", str(tmp_path / "logs"), "--epochs", "1", "--batch_size", "4", "--im_size", "32",
            "--num_maps", "3", "--no_progress", "--accelerator", "cpu", "--backbone", "resnet18"]


def test_parser_defaults_are_the_seeds():
    p = parser()
    cam = p.parse_args(["cam", "--data_dir", "d", "--results_name", "r"])
    assert (cam.backbone, cam.lr, cam.beta1, cam.extra_channels) == ("vgg19", 1e-3, 0.5, 1024)
    lcam = p.parse_args(["lcam", "--data_dir", "d", "--results_name", "r"])
    assert (lcam.backbone, lcam.variant, lcam.loss, lcam.lr) == ("vgg16", "fm", "selected", 1e-4)
    casm = p.parse_args(["casm", "--data_dir", "d", "--results_name", "r"])
    assert (casm.backbone, casm.thinning, casm.pool_size, casm.lr, casm.lr_masker) == ("resnet50", "L1000", 30, 1e-3, 1e-3)
    with pytest.raises(SystemExit):
        p.parse_args(["casm", "--data_dir", "d", "--results_name", "r", "--thinning", "L10"])
    with pytest.raises(SystemExit):  # one weights source at a time
        p.parse_args(["cam", "--data_dir", "d", "--results_name", "r", "--pretrained", "--backbone_weights", "w"])
    # the convergence aids are off by default: the seeds' recipes
    assert (casm.warmup_epochs, casm.lambda_ramp_steps, lcam.optimizer, lcam.features_at) == (0, 0, "sgd", "last_conv")
    with pytest.raises(SystemExit):
        p.parse_args(["casm", "--data_dir", "d", "--results_name", "r", "--warmup_epochs", "-1"])


def test_user_errors(tmp_path, data_dir):
    p = parser()
    args = p.parse_args(["cam", *common(tmp_path, data_dir, "x"), "--backbone_weights", str(tmp_path / "none.pt")])
    with pytest.raises(UserError, match="no such file"):
        args.func(args)
    args = p.parse_args(["cam", *common(tmp_path, data_dir, "../x")])
    with pytest.raises(UserError, match=r"\.\."):
        args.func(args)
    args = p.parse_args(["cam", *common(tmp_path, data_dir, "x"), "--label", "3"])
    with pytest.raises(UserError, match="--label"):
        args.func(args)
    torch.save(torch.nn.Linear(2, 2).state_dict(), tmp_path / "linear.pt")
    args = p.parse_args(["casm", *common(tmp_path, data_dir, "x"), "--backbone_weights", str(tmp_path / "linear.pt")])
    with pytest.raises(UserError, match="do not fit resnet18"):
        args.func(args)
    args = p.parse_args(["lcam", *common(tmp_path, data_dir, "x"), "--features_at", "pool5"])
    with pytest.raises(UserError, match="pool5 needs a VGG"):
        args.func(args)


def check_run(tmp_path, name, kind, capsys):
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    results = tmp_path / "results" / name
    assert report["best"] == str(results / "best_weights.safetensors")
    net, meta = load_network(results)
    assert meta["hrcam_type"] == kind and meta["class_names"] == ["class0", "class1", "class2"]
    maps = np.load(results / "maps" / "maps.npz")["maps"]
    assert maps.shape == (3, 32, 32) and maps.min() >= 0 and maps.max() <= 1
    # one overlay and one raw array per image, named after the explained class
    assert len(list((results / "maps").glob("00[0-2]_class[0-2].png"))) == 3
    raw = sorted((results / "maps").glob("00[0-2]_class[0-2].npy"))
    assert len(raw) == 3 and np.array_equal(np.load(raw[0]), maps[0])
    return net


def test_train_cam_lcam_casm_end_to_end(tmp_path, data_dir, capsys):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    p = parser()
    args = p.parse_args(["cam", *common(tmp_path, data_dir, "cam/run1"), "--label", "1", "--log_every", "1",
                         "--extra_channels", "16"])
    assert args.func(args) == 0
    cam = check_run(tmp_path, "cam/run1", "camnet", capsys)
    events = EventAccumulator(str(tmp_path / "logs" / "cam" / "run1"), size_guidance={"images": 0})
    events.Reload()
    assert events.Tags()["images"] == ["cam/label_1"]
    assert [e.step for e in events.Images("cam/label_1")] == [1, 2, 3]  # 12 images / batch 4, every step

    # L-CAM-Img on the frozen CAM classifier just trained
    args = p.parse_args(["lcam", *common(tmp_path, data_dir, "lcam"), "--variant", "img",
                         "--classifier", str(tmp_path / "results" / "cam" / "run1")])
    assert args.func(args) == 0
    lcam = check_run(tmp_path, "lcam", "lcam", capsys)
    for k, v in cam.state_dict().items():  # the classifier stayed frozen
        assert torch.equal(lcam.classifier.state_dict()[k], v), k

    args = p.parse_args(["casm", *common(tmp_path, data_dir, "casm"), "--thinning", "L100", "--smf", "1"])
    assert args.func(args) == 0
    casm = check_run(tmp_path, "casm", "casm", capsys)
    with create("casm", tmp_path / "results" / "casm" / "best_weights.safetensors") as expl:
        maps, logits = expl(torch.rand(1, 3, 32, 32))
    assert maps.shape == (1, 32, 32) and logits.shape == (1, 3)
    assert casm.num_classes == 3
