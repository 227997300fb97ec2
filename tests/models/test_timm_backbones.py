"""timm's CNNs through the one backbone adapter (``timm:<name>``), on random-initialized models.

Skipped where timm is not installed (``pip install 'hrcam[timm]'``; ``make test`` installs it
with the dev extra), except the test of the one-line error when it is missing.
"""
from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from hrcam.errors import UserError
from hrcam.models import timm_backbones
from hrcam.models.backbones import backbone_family, build_backbone, build_feature_backbone
from hrcam.models.base import class_maps

NAMES = ["resnet18", "efficientnet_b0", "regnetx_002"]  # plain fc, conv_head + classifier, ClassifierHead


@pytest.fixture(scope="module")
def timm():
    return pytest.importorskip("timm")


def _original(timm, name, classes):
    torch.manual_seed(1)
    return timm.create_model(name, pretrained=False, num_classes=classes).eval()


def _normalized(timm_model, x):
    cfg = timm_model.pretrained_cfg
    return (x - torch.tensor(cfg["mean"]).view(1, 3, 1, 1)) / torch.tensor(cfg["std"]).view(1, 3, 1, 1)


@pytest.mark.parametrize("name", NAMES)
def test_hrcam_path_stages_and_head_reproduce_the_original_logits(timm, name):
    original = _original(timm, name, 4)
    torch.manual_seed(0)
    net = build_backbone(f"timm:{name}", num_classes=4)
    # the adapter's stages and head are the original modules in their order: copy ours into theirs
    ours, theirs = list(net.state_dict().values()), list(original.state_dict().values())
    assert len(ours) == len(theirs)
    with torch.no_grad():
        for t, v in zip(theirs, ours):
            t.copy_(v)  # fails on a shape mismatch, i.e. when the order differs
        x = torch.rand(2, 3, 64, 64)
        expected = original(_normalized(original, x))
        out = net.forward_maps(x)
        cams = class_maps(net.low_weight, out.low_features)
    assert torch.allclose(out.logits, expected, atol=1e-5, rtol=1e-4)
    # CAM is exact: each class map's spatial mean plus the bias is that class's logit
    assert torch.allclose(cams.mean(dim=(2, 3)) + net.head.bias, expected, atol=1e-5, rtol=1e-4)
    assert out.low_features.shape[1] == original.num_features and out.low_features.shape[-1] == 64 // 32


@pytest.mark.parametrize("name", NAMES)
def test_baselines_path_keeps_the_original_model_and_its_feature_stages(timm, name):
    bb = build_feature_backbone(f"timm:{name}", num_classes=4).eval()
    original = _original(timm, name, 4)
    original.load_state_dict(bb.net.state_dict())  # timm's own key layout
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        stages = bb.stages(x)
        expected = original(_normalized(original, x))
        assert torch.allclose(bb(x), expected, atol=1e-5, rtol=1e-4)
        assert torch.allclose(bb.features(x), original.forward_features(_normalized(original, x)), atol=1e-5)
    # the taps are the feature_info stages that features_only returns, then A
    info = {f["module"]: f for f in original.feature_info}
    assert [s.shape[1] for s in stages] == bb.stage_channels
    for tap, s in zip(backbone_family(f"timm:{name}").taps, stages):
        if tap in info:
            assert s.shape[-1] == 64 // info[tap]["reduction"] and s.shape[1] == info[tap]["num_chs"]
    assert stages[-1].shape[1] == original.num_features and bb.stride == 32


def test_weights_from_a_local_file(timm, tmp_path):
    from safetensors.torch import save_file

    original = _original(timm, "resnet18", 3)
    save_file(original.state_dict(), str(tmp_path / "r18.safetensors"))
    torch.save(original.state_dict(), tmp_path / "r18.pt")
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        expected = original(_normalized(original, x))
        net = build_backbone("timm:resnet18", backbone_weights=tmp_path / "r18.safetensors")
        bb = build_feature_backbone("timm:resnet18", weights=tmp_path / "r18.pt").eval()
        assert net.num_classes == 3 and bb.num_classes == 3  # read from the file's head
        assert torch.allclose(net.forward_maps(x).logits, expected, atol=1e-5, rtol=1e-4)
        assert torch.allclose(bb(x), expected, atol=1e-5, rtol=1e-4)
    torch.save(timm.create_model("resnet34", num_classes=3).state_dict(), tmp_path / "r34.pt")
    with pytest.raises(ValueError, match=r"backbone_weights do not fit timm:resnet18: .*r34.pt"):
        build_backbone("timm:resnet18", backbone_weights=tmp_path / "r34.pt")


def test_models_without_a_gap_linear_head_or_unknown_are_refused_with_the_reason(timm):
    for build in (build_backbone, build_feature_backbone):
        with pytest.raises(ValueError, match=r"not a global-pooling \+ linear CNN .*Conv2d \(conv_head\)"):
            build("timm:mobilenetv3_small_050")
        with pytest.raises(ValueError, match="timm has no model 'no_such_net'"):
            build("timm:no_such_net")


def test_a_missing_timm_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "timm", None)  # import timm raises ImportError
    timm_backbones.timm_layout.cache_clear()
    try:
        with pytest.raises(UserError, match=r"pip install 'hrcam\[timm\]'"):
            build_feature_backbone("timm:resnet18")
    finally:
        timm_backbones.timm_layout.cache_clear()


def test_cli_names_the_extra_when_timm_is_missing(tmp_path):
    from helpers import make_colour_dataset

    data = make_colour_dataset(tmp_path / "data", classes=2, per_class=(2, 1), size=32)
    code = ("import sys; sys.modules['timm'] = None; from hrcam.cli import main; "
            f"sys.exit(main(['train', 'cam', '--data_dir', {str(data)!r}, '--results_name', 'x', "
            f"'--results_root', {str(tmp_path / 'r')!r}, '--logs_root', {str(tmp_path / 'l')!r}, "
            "'--backbone', 'timm:resnet18', '--accelerator', 'cpu']))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 2, r.stderr
    assert r.stderr.strip().count("\n") == 0 and "pip install 'hrcam[timm]'" in r.stderr
    assert r.stderr.startswith("hrcam: error: ")
