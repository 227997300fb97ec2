"""The frozen classifiers L-CAM and CASM explain: a torchvision backbone or a trained CAMNet.

:func:`classifier_config` records one in the weights' metadata, :func:`build_classifier`
rebuilds its structure (random weights, nothing downloaded).
"""
from __future__ import annotations

from torch import nn

from hrcam.models.baselines.camnet import CAMNet
from hrcam.models.baselines.feature_backbones import build_feature_backbone

__all__ = ["classifier_config", "build_classifier"]


def classifier_config(classifier: nn.Module) -> dict:
    """How to rebuild a frozen classifier: a torchvision backbone or a CAMNet."""
    if isinstance(classifier, CAMNet):
        return {"type": "camnet", **classifier.config()}
    cfg = {"type": "torchvision", "backbone": classifier.name, "num_classes": int(classifier.num_classes)}
    if getattr(classifier, "after_pool", False):
        cfg["after_pool"] = True
    return cfg


def build_classifier(cfg: dict) -> nn.Module:
    """The classifier described by :func:`classifier_config` (random weights)."""
    cfg = dict(cfg)
    kind = cfg.pop("type", "torchvision")
    if kind == "camnet":
        return CAMNet.from_config(cfg)
    if kind == "torchvision":
        return build_feature_backbone(cfg["backbone"], num_classes=int(cfg["num_classes"]),
                                      after_pool=bool(cfg.get("after_pool", False)))
    raise ValueError(f"unknown classifier type {kind!r}")
