"""torchvision backbones for CAM / L-CAM / CASM: stage shapes, weight files, normalization."""
import pytest
import torch
import torchvision

from hrcam.models.baselines.feature_backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TorchvisionBackbone,
    build_feature_backbone,
    read_state_dict,
)


def test_resnet18_stages_features_and_head_shapes():
    bb = build_feature_backbone("resnet18", num_classes=3).eval()
    x = torch.rand(2, 3, 64, 64)
    stages = bb.stages(x)
    # stem (conv stride 2 + max-pool) S/4, layer1 S/4, layer2 S/8, layer3 S/16, layer4 S/32
    assert [tuple(s.shape[1:]) for s in stages] == [(64, 16, 16), (64, 16, 16), (128, 8, 8), (256, 4, 4), (512, 2, 2)]
    assert bb.stage_channels == [64, 64, 128, 256, 512] and bb.out_channels == 512
    assert torch.equal(bb.features(x), stages[-1])
    with torch.no_grad():
        assert torch.allclose(bb(x), bb.net(bb.prepare(x)), atol=1e-5)  # head = the torchvision forward
    assert bb(x).shape == (2, 3)


def test_resnet50_one_small_forward():
    bb = build_feature_backbone("resnet50", num_classes=4).eval()
    assert bb.stage_channels == [64, 256, 512, 1024, 2048]
    with torch.no_grad():
        assert bb(torch.rand(2, 3, 32, 32)).shape == (2, 4)


def test_vgg16_without_classifier_is_conv_only_and_keeps_torchvision_keys():
    bb = build_feature_backbone("vgg16", with_classifier=False)
    keys = set(bb.net.state_dict())
    assert not any(k.startswith("classifier") for k in keys)
    # VGG-16 has 13 convs; the last one (conv5_3) is features.28 in torchvision's numbering
    assert "features.28.weight" in keys and len([k for k in keys if k.endswith("weight")]) == 13
    x = torch.rand(1, 3, 32, 32)
    stages = bb.stages(x)
    assert [tuple(s.shape[1:]) for s in stages] == [(64, 32, 32), (128, 16, 16), (256, 8, 8), (512, 4, 4), (512, 2, 2)]
    # features: after conv5_3's ReLU (before pool5) = S/16
    assert bb.features(x).shape == (1, 512, 2, 2)
    with pytest.raises(ValueError, match="without its classifier"):
        bb.head(bb.features(x))


def test_normalization_and_grey_input():
    bb = build_feature_backbone("resnet18", num_classes=2).eval()
    x = torch.rand(1, 3, 32, 32)
    mean = torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)
    raw = TorchvisionBackbone("resnet18", num_classes=2, normalize=False).eval()
    raw.net.load_state_dict(bb.net.state_dict())
    with torch.no_grad():
        assert torch.allclose(bb(x), raw((x - mean) / std), atol=1e-5)
        grey = torch.rand(1, 1, 32, 32)
        assert torch.allclose(bb(grey), bb(grey.repeat(1, 3, 1, 1)))


@pytest.mark.parametrize("fmt", ["safetensors", "pt", "nested"])
def test_weights_file_round_trip(tmp_path, fmt):
    from safetensors.torch import save_file

    src = torchvision.models.resnet18(num_classes=5)
    state = src.state_dict()
    if fmt == "safetensors":
        path = tmp_path / "w.safetensors"
        save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    elif fmt == "pt":
        path = tmp_path / "w.pt"
        torch.save(state, path)
    else:  # a training checkpoint: weights under "state_dict", DataParallel "module." prefix
        path = tmp_path / "ckpt.pth"
        torch.save({"epoch": 3, "state_dict": {f"module.{k}": v for k, v in state.items()}}, path)
    bb = build_feature_backbone("resnet18", weights=path)
    assert bb.num_classes == 5  # read from the file's fc layer
    for k, v in state.items():
        assert torch.equal(bb.net.state_dict()[k], v), k


def test_weights_errors(tmp_path):
    torch.save(torchvision.models.resnet18(num_classes=3).state_dict(), tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="missing"):
        build_feature_backbone("resnet34", weights=tmp_path / "r18.pt")
    with pytest.raises(ValueError, match="shape mismatch.*fc.weight"):
        build_feature_backbone("resnet18", weights=tmp_path / "r18.pt", num_classes=7)
    with pytest.raises(ValueError, match="file not found"):
        read_state_dict(tmp_path / "absent.pt")
    torch.save({"not": "tensors", "n": 3}, tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="state dict of tensors"):
        read_state_dict(tmp_path / "junk.pt")
    with pytest.raises(ValueError, match="either pretrained"):
        build_feature_backbone("resnet18", weights=tmp_path / "r18.pt", pretrained=True)
    with pytest.raises(ValueError, match="unknown 'resnet7'"):
        build_feature_backbone("resnet7")


def test_reset_head_keeps_body_and_reinitializes_classifier(tmp_path):
    src = torchvision.models.resnet18(num_classes=10)
    torch.save(src.state_dict(), tmp_path / "w.pt")
    bb = build_feature_backbone("resnet18", weights=tmp_path / "w.pt", num_classes=3, reset_head=True)
    assert bb.net.fc.weight.shape == (3, 512)
    assert torch.equal(bb.net.layer4[1].conv2.weight, src.layer4[1].conv2.weight)


def test_pretrained_goes_through_torchvisions_weight_enum(monkeypatch):
    # the real path downloads; here the enum's DEFAULT entry serves a local state dict instead
    state = torchvision.models.resnet18().state_dict()
    calls = []

    class FakeWeights:
        def get_state_dict(self, **kw):
            calls.append(kw)
            return state

    class FakeEnum:
        DEFAULT = FakeWeights()

    monkeypatch.setattr(torchvision.models, "get_model_weights", lambda name: calls.append(name) or FakeEnum)
    bb = build_feature_backbone("resnet18", pretrained=True)
    assert calls[0] == "resnet18" and bb.num_classes == 1000
    assert torch.equal(bb.net.conv1.weight, state["conv1.weight"])


def test_efficientnet_lite0_joins_the_interface_with_offline_weights():
    from hrcam.models.pretrained.efficientnet_lite import load_lite0_state_dict

    bb = build_feature_backbone("efficientnet_lite0", pretrained=True, num_classes=3, reset_head=True).eval()
    x = torch.rand(1, 3, 64, 64)
    stages = bb.stages(x)
    assert [tuple(s.shape[1:]) for s in stages] == [(24, 16, 16), (40, 8, 8), (112, 4, 4), (1280, 2, 2)]
    assert bb.stage_channels == [24, 40, 112, 1280] and bb(x).shape == (1, 3)
    assert torch.equal(bb.net._conv_head.weight, load_lite0_state_dict()["_conv_head.weight"])
