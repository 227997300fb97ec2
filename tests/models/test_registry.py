"""The model-type registry: every type hrcam writes saves and loads back as the same network."""
import json

import pytest
import torch

from hrcam.errors import UserError
from hrcam.models.baselines.camnet import CAMNet
from hrcam.models.baselines.casm import CASMNet
from hrcam.models.baselines.feature_backbones import build_feature_backbone
from hrcam.models.baselines.lcam import LCAMNet
from hrcam.models.hrcam.nets import FullNet, HalfNet
from hrcam.models.pretrained.backbones import build_backbone
from hrcam.models.pretrained.decoder import DecoderNet
from hrcam.models.registry import load_network, load_weights, model_metadata, model_types, resolve_network
from hrcam.weights import save_weights

ARCH = dict(init_filters=8, growth_rate=4, layers_per_block=1, aux_channels=4)


def _networks() -> dict:
    torch.manual_seed(0)
    return {
        "half": (HalfNet(3, 3, **ARCH), {}),
        "full": (FullNet(3, 3, **ARCH), {}),
        "decoder": (DecoderNet(build_backbone("resnet18", num_classes=3), rank=2, width=8), {"objective": "consistency"}),
        "camnet": (CAMNet.build("resnet18", 3, extra_channels=8), {}),
        "lcam": (LCAMNet(build_feature_backbone("resnet18", num_classes=3), "fm"), {"loss": "ce"}),
        "casm": (CASMNet(build_feature_backbone("resnet18", num_classes=3)), {"thinning": "L", "lambda_r": 14.0}),
    }


def test_every_registered_type_saves_and_loads(tmp_path):
    nets = _networks()
    assert set(model_types()) == set(nets)
    assert set(model_types("baseline")) == {"camnet", "lcam", "casm"}
    x = torch.rand(2, 3, 64, 64)
    for kind, (net, extra) in nets.items():
        meta = model_metadata(kind, net, 64, ["a", "b", "c"], **extra)
        path = save_weights(tmp_path / f"{kind}.safetensors", net.state_dict(), meta)
        loaded, read = load_network(path)
        assert type(loaded) is type(net) and read["hrcam_type"] == kind and not loaded.training
        assert read["im_size"] == 64 and read["num_classes"] == 3
        with torch.no_grad():
            torch.testing.assert_close(loaded(x), net.eval()(x))
        assert type(load_weights(path)) is type(net)


def _old_half_metadata(net) -> dict:
    """The metadata exactly as ``hrcam.cams.network_metadata`` wrote it before the registry."""
    cfg = net.config.as_dict()
    return {"hrcam_type": "half", "num_classes": net.num_classes, "in_channels": cfg.pop("in_channels"),
            "im_size": 64, "arch": cfg, "format_version": 1, "class_names": ["a", "b", "c"]}


def test_files_written_by_the_old_code_load(tmp_path):
    from hrcam import load_model

    torch.manual_seed(0)
    half = HalfNet(3, 3, **ARCH).eval()
    save_weights(tmp_path / "half.safetensors", half.state_dict(), _old_half_metadata(half))
    # the old decoder_metadata / neighbour_metadata layouts, key by key
    dec = DecoderNet(build_backbone("resnet18", num_classes=3), rank=2, width=8).eval()
    save_weights(tmp_path / "dec.safetensors", dec.state_dict(), {
        "hrcam_type": "decoder", "backbone": "resnet18", "num_classes": 3, "in_channels": 3, "im_size": 64,
        "arch": {"rank": 2, "width": 8, "residual": True}, "class_names": dec.class_names,
        "format_version": 1, "objective": "reconstruction"})
    lcam = LCAMNet(CAMNet.build("resnet18", 3, extra_channels=8), "img").eval()
    save_weights(tmp_path / "lcam.safetensors", lcam.state_dict(), {
        "hrcam_type": "lcam", "num_classes": 3, "in_channels": 3, "im_size": 64, "format_version": 1,
        "arch": {"variant": "img", "loss": "selected",
                 "classifier": {"type": "camnet", **lcam.classifier.config()}}})
    # and a seed-era plain state dict (the seed's architecture) without any metadata
    seed_half = HalfNet(3, 3).eval()
    torch.save(seed_half.state_dict(), tmp_path / "seed.pt")

    x = torch.rand(1, 3, 64, 64)
    hm = load_model(tmp_path / "half.safetensors")
    assert hm.im_size == 64 and hm.class_names == ["a", "b", "c"]
    with torch.no_grad():
        torch.testing.assert_close(hm.net(x), half(x))
    seed = load_model(tmp_path / "seed.pt")
    with torch.no_grad():
        torch.testing.assert_close(seed.net(x), seed_half(x))
    for name, net in (("dec", dec), ("lcam", lcam)):
        with torch.no_grad():
            torch.testing.assert_close(load_weights(tmp_path / f"{name}.safetensors")(x), net(x))
    assert json.loads(json.dumps(load_network(tmp_path / "lcam.safetensors")[1]["arch"]))["variant"] == "img"


def test_wrong_or_unknown_types_are_user_errors(tmp_path):
    net = CAMNet.build("resnet18", 3, extra_channels=8)
    path = save_weights(tmp_path / "cam.safetensors", net.state_dict(), model_metadata("camnet", net, 64))
    with pytest.raises(UserError, match="does not hold decoder weights"):
        load_network(path, expect=("decoder",))
    with pytest.raises(UserError, match="holds camnet weights, not lcam"):
        resolve_network(path, "lcam")
    assert resolve_network(net, "lcam") is net  # in-memory networks pass through
    save_weights(tmp_path / "odd.safetensors", net.state_dict(), {"hrcam_type": "mystery"})
    with pytest.raises(UserError, match="unknown hrcam_type 'mystery'"):
        load_network(tmp_path / "odd.safetensors")
