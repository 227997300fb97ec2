"""Rebuilding the neighbouring methods' networks (CAM, L-CAM, CASM) from exported weights.

``hrcam train cam|lcam|casm`` writes ``results/<name>/{best,last}_weights.safetensors`` whose
metadata records ``hrcam_type`` (``camnet``/``lcam``/``casm``), ``num_classes``, ``im_size``,
``class_names`` and ``arch`` (the JSON constructor arguments). :func:`load_neighbour` rebuilds
the structure with random weights (nothing is downloaded) and loads the file strictly.
"""
from __future__ import annotations

from torch import nn

from hrcam.models.camnet import CAMNet
from hrcam.models.casm import CASMNet
from hrcam.models.lcam import LCAMNet
from hrcam.models.torchvision_backbones import build_feature_backbone

__all__ = ["NEIGHBOUR_TYPES", "classifier_config", "build_classifier", "build_from_metadata", "load_neighbour"]

NEIGHBOUR_TYPES = ("camnet", "lcam", "casm")


def classifier_config(classifier: nn.Module) -> dict:
    """How to rebuild a frozen classifier: a torchvision backbone or a CAMNet."""
    if isinstance(classifier, CAMNet):
        return {"type": "camnet", **classifier.config()}
    return {"type": "torchvision", "backbone": classifier.name, "num_classes": int(classifier.num_classes)}


def build_classifier(cfg: dict) -> nn.Module:
    cfg = dict(cfg)
    kind = cfg.pop("type", "torchvision")
    if kind == "camnet":
        return CAMNet.from_config(cfg)
    if kind == "torchvision":
        return build_feature_backbone(cfg["backbone"], num_classes=int(cfg["num_classes"]))
    raise ValueError(f"unknown classifier type {kind!r}")


def build_from_metadata(meta: dict) -> nn.Module:
    """A network with the structure recorded in ``meta`` (random weights)."""
    kind = meta.get("hrcam_type")
    arch = dict(meta.get("arch") or {})
    if kind == "camnet":
        return CAMNet.from_config(arch)
    if kind == "lcam":
        return LCAMNet(build_classifier(arch["classifier"]), variant=arch.get("variant", "fm"))
    if kind == "casm":
        clf = build_classifier(arch["classifier"])
        return CASMNet(clf, width=int(arch.get("width", 64)), upsample=arch.get("upsample", "nearest"))
    raise ValueError(f"hrcam_type must be one of {NEIGHBOUR_TYPES}, got {kind!r}")


def load_neighbour(path) -> tuple[nn.Module, dict]:
    """``(network in eval mode, metadata)`` from a weights file or a results folder."""
    from hrcam.errors import UserError
    from hrcam.weights import load_weights

    state, meta = load_weights(path)
    if meta.get("hrcam_type") not in NEIGHBOUR_TYPES:
        raise UserError(f"{path} does not hold CAM / L-CAM / CASM weights "
                        f"(hrcam_type={meta.get('hrcam_type')!r}); train one with 'hrcam train cam|lcam|casm'")
    net = build_from_metadata(meta)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f"{path}: weights do not match the recorded architecture ({str(err).splitlines()[0]})") from None
    return net.eval(), meta
