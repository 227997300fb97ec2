"""The one backbone adapter: its family table, key layouts, and the registry's extension point."""
import pytest
import torch
import torchvision
from torch import nn

from hrcam.models.backbones import (
    BACKBONE_FAMILIES,
    BackboneFamily,
    GlobalAvgPool,
    backbone_family,
    backbone_names,
    build_backbone,
    build_feature_backbone,
    register_family,
)


def test_backbone_net_keeps_its_stages_and_head_key_layout():
    # BackboneNet's keys, written out from torchvision's own resnet18 keys: files saved before
    # the adapter was merged (decoder weights hold ``backbone.stages.N.*``) must keep loading
    stage_of = {"conv1": 0, "bn1": 1, "layer1": 4, "layer2": 5, "layer3": 6, "layer4": 7}
    expected = []
    for key in torchvision.models.resnet18().state_dict():
        top, rest = key.split(".", 1)
        expected.append(f"head.{rest}" if top == "fc" else f"stages.{stage_of[top]}.{rest}")
    assert list(build_backbone("resnet18").state_dict()) == expected


def test_lite0_stem_blocks_and_head_are_stages():
    keys = list(build_backbone("efficientnet_lite0", pretrained=False).state_dict())
    assert keys[0] == "stages.0.0.weight" and "stages.0.1.running_mean" in keys  # _conv_stem, _bn0
    assert "stages.16.0._depthwise_conv.weight" not in keys and "stages.16._depthwise_conv.weight" in keys
    assert "stages.17.0.weight" in keys and keys[-2:] == ["head.weight", "head.bias"]  # _conv_head; _fc


# one small member per family; (channels, stride) written out from the architectures
CAM_FAMILIES = {
    "resnet18": (512, 32), "resnext50_32x4d": (2048, 32), "densenet121": (1024, 32),
    "efficientnet_b0": (1280, 32), "mobilenet_v2": (1280, 32), "mnasnet0_5": (1280, 32),
    "regnet_x_400mf": (400, 32), "shufflenet_v2_x0_5": (1024, 32), "efficientnet_lite0": (1280, 32),
}


@pytest.mark.parametrize("name", sorted(CAM_FAMILIES))
def test_every_cam_family_gives_its_feature_map_at_its_stride(name):
    channels, stride = CAM_FAMILIES[name]
    net = build_backbone(name, pretrained=False, num_classes=3)
    assert backbone_family(name).stride == stride and net.feature_channels == channels
    with torch.no_grad():
        a = net.features(torch.rand(1, 3, 64, 64))
    assert a.shape == (1, channels, 64 // stride, 64 // stride)


@pytest.mark.parametrize("name,after_pool,sizes", [
    ("vgg11", False, [64, 32, 16, 8, 4]), ("vgg11", True, [64, 32, 16, 8, 2]),
    ("resnet18", False, [16, 16, 8, 4, 2]), ("efficientnet_lite0", False, [16, 8, 4, 2]),
])
def test_baselines_taps_end_at_the_feature_map_at_its_stride(name, after_pool, sizes):
    bb = build_feature_backbone(name, num_classes=3, after_pool=after_pool).eval()
    with torch.no_grad():
        stages = bb.stages(torch.rand(1, 3, 64, 64))
    assert [s.shape[-1] for s in stages] == sizes and [s.shape[1] for s in stages] == bb.stage_channels
    assert sizes[-1] == 64 // bb.stride


def test_vgg_is_served_to_the_baselines_and_refused_for_hrcam():
    assert backbone_family("vgg16").key == "vgg" and "vgg16_bn" in backbone_names(baselines=True)
    assert "vgg16" not in backbone_names() and "resnet50" in backbone_names()
    with pytest.raises(ValueError, match="flattens"):
        build_backbone("vgg16")


def test_one_mismatch_message_for_both_paths(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pt")
    for build in (lambda: build_feature_backbone("resnet18", weights=tmp_path / "r18.pt", num_classes=7),
                  lambda: build_backbone("resnet34", backbone_weights=tmp_path / "r18.pt")):
        with pytest.raises(ValueError, match=r"backbone_weights do not fit resnet\d+: .*r18.pt does not fit"):
            build()


class _Tiny(nn.Module):
    def __init__(self, num_classes):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                                  nn.Conv2d(4, 6, 3, stride=2, padding=1))
        self.fc = nn.Linear(6, num_classes)


def test_a_registered_family_serves_both_paths(monkeypatch):
    # the extension point another library's models (e.g. ``timm:<name>``) go through
    monkeypatch.setattr("hrcam.models.backbones.BACKBONE_FAMILIES", list(BACKBONE_FAMILIES))
    register_family(BackboneFamily(
        "tiny", ("tiny:",), accepts=lambda n: n.startswith("tiny:"), build=lambda name, k: _Tiny(k),
        stages=("body.*",), classifier=(GlobalAvgPool, "fc"), head="fc", stride=4, taps=("body.2", "body.3")))
    net = build_backbone("tiny:x", num_classes=5)
    assert net.feature_channels == 6 and net.num_classes == 5
    assert net.features(torch.rand(1, 3, 16, 16)).shape == (1, 6, 4, 4)
    bb = build_feature_backbone("tiny:x", num_classes=5)
    assert bb.stage_channels == [4, 6] and bb.stride == 4
    with torch.no_grad():
        assert bb(torch.rand(2, 3, 16, 16)).shape == (2, 5)
    with pytest.raises(ValueError, match="unknown 'other'"):
        build_feature_backbone("other")
