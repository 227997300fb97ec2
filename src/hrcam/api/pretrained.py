"""Pretrained classifiers through the seed API (``HalfModel`` / ``FullModel``).

    from hrcam.api.pretrained import pretrained_half_model, load_decoder_model
    hm = pretrained_half_model()                 # offline EfficientNet-Lite0, ImageNet-1k names
    hm.predictN(x, 5); hm.cam(x)                 # x: [0,1] floats or uint8, N×H×W×C or N×C×H×W
    fm = load_decoder_model("results/dec/best_weights.safetensors")   # after `hrcam train decoder`
    high, low, preds = fm.generate_cams(x)

ImageNet mean/std normalization happens inside the network.
"""
from __future__ import annotations

from typing import Sequence

from hrcam.api.seed import FullModel, HalfModel
from hrcam.data.animals import NUM_ANIMAL_CLASSES
from hrcam.models.pretrained.backbones import build_backbone

__all__ = ["pretrained_half_model", "load_decoder_model", "ANIMAL_CLASSES"]

#: the seed's Animals subset = the first 398 ImageNet classes
ANIMAL_CLASSES = NUM_ANIMAL_CLASSES


def pretrained_half_model(name: str = "efficientnet_lite0", *, pretrained: bool | None = None,
                          backbone_weights=None, num_classes: int | None = None,
                          class_names: Sequence[str] | None = None, animals: bool = False, im_size: int = 224,
                          device=None) -> HalfModel:
    """A :class:`HalfModel` over a pretrained GAP + linear CNN (see :func:`build_backbone`).

    ``animals=True`` keeps only the first 398 ImageNet classes (the seed's Animals view).
    """
    net = build_backbone(name, pretrained=pretrained, backbone_weights=backbone_weights,
                         num_classes=num_classes, class_names=class_names)
    if animals:
        if net.num_classes != 1000:
            raise ValueError(f"animals=True needs a 1000-class ImageNet head, this one has {net.num_classes}")
        net = net.with_classes(range(ANIMAL_CLASSES))
    return HalfModel.from_network(net, im_size=im_size, class_names=net.class_names, device=device)


def load_decoder_model(path, device=None) -> FullModel:
    """A :class:`FullModel` (low- and high-res CAMs) from ``hrcam train decoder`` weights."""
    from hrcam.models.registry import load_network

    net, meta = load_network(path, device=device, expect=("decoder",))
    return FullModel.from_network(net, im_size=int(meta.get("im_size", 224)), class_names=net.class_names,
                                  device=device)
