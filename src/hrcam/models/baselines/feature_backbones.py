"""The baselines' backbones (CAM / L-CAM / CASM): :class:`TorchvisionBackbone` and its builder.

They live in the one backbone adapter, :mod:`hrcam.models.backbones` (with the pretrained HR-CAM
path's :class:`~hrcam.models.backbones.BackboneNet` and the registry of backbone families); this
module keeps the import path that code written before the merge uses.
"""
from __future__ import annotations

from hrcam.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    TorchvisionBackbone,
    backbone_names,
    build_feature_backbone,
    read_state_dict,
)

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TorchvisionBackbone",
    "build_feature_backbone",
    "read_state_dict",
]

#: backbone names accepted by :func:`build_feature_backbone`
BACKBONES = backbone_names(baselines=True)
