"""The pretrained HR-CAM path's backbones: :class:`BackboneNet` and :func:`build_backbone`.

They live in the one backbone adapter, :mod:`hrcam.models.backbones` (with the baselines'
:class:`~hrcam.models.backbones.TorchvisionBackbone` and the registry of backbone families);
this module keeps the import path that code written before the merge uses.
"""
from __future__ import annotations

from hrcam.models.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    SUPPORTED_FAMILIES,
    BackboneNet,
    build_backbone,
    freeze,
    imagenet_class_names,
    read_state_dict,
)

__all__ = [
    "BackboneNet",
    "build_backbone",
    "freeze",
    "imagenet_class_names",
    "read_state_dict",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SUPPORTED_FAMILIES",
]
