"""timm's CNNs as backbones: the ``timm:<name>`` family of :mod:`hrcam.models.backbones`.

``pip install 'hrcam[timm]'`` adds the optional dependency; nothing here imports timm until a
``timm:`` name is used, and then a missing package is one line naming the extra.

A timm classifier is read the way timm's ``features_only`` reads it: its ``feature_info``
names the stages (``resnet18``: ``act1``, ``layer1`` … ``layer4``; ``efficientnet_b0``:
``blocks.0`` … ``blocks.6``). The stages of the adapter are the model's top-level modules
before its head, in order — a top-level container that holds feature stages (``blocks``) is
split into its children — so they end where the model's own ``forward_features`` ends
(EfficientNet's 1280-channel ``conv_head``, which ``features_only=True`` itself leaves out).
The head must be the model's own global *average* pool and one linear layer (dropout and
flatten aside); models with layers between pooling and the linear layer (MobileNetV3's
``conv_head``, ConvNeXt's norm, VGG's ``pre_logits``) are refused with that reason.

Every model built is checked once on a small random input: the stages applied in order must
give ``forward_features``, the classifier ``forward_head``, and ``linear(mean(A))`` the logits,
so the CAM ``Σ_k W[c,k] A[k]`` is exact. Inputs are normalized with the mean/std of the
model's ``pretrained_cfg`` (ImageNet's for most; 0.5 for the ``tf_*_lite`` ports).
"""
from __future__ import annotations

import functools

import torch
from torch import nn

from hrcam.errors import UserError

__all__ = ["TIMM_PREFIX", "is_timm_name", "import_timm", "timm_layout", "build_timm", "timm_pretrained_state"]

TIMM_PREFIX = "timm:"

#: top-level module names where timm's classifiers begin (the head part, after forward_features)
HEAD_PARTS = ("global_pool", "head_drop", "flatten", "pre_logits", "fc_norm", "head", "fc", "classifier",
              "conv_head_pool")
#: modules a GAP + linear head may hold besides the pooling and the linear layer
_NEUTRAL = (nn.Dropout, nn.Flatten, nn.Identity)


def is_timm_name(name) -> bool:
    """Whether ``name`` asks for a timm model (``timm:<model name>``)."""
    return isinstance(name, str) and name.startswith(TIMM_PREFIX) and len(name) > len(TIMM_PREFIX)


def import_timm():
    """The ``timm`` module, or a one-line error naming the optional extra."""
    try:
        import timm
    except ImportError:
        raise UserError("timm backbones need the timm package: pip install 'hrcam[timm]' (or pip install timm)"
                        ) from None
    return timm


def _model_name(name: str) -> str:
    return name[len(TIMM_PREFIX):]


def _create(name: str, **kwargs) -> nn.Module:
    timm = import_timm()
    try:
        return timm.create_model(_model_name(name), **kwargs)
    except RuntimeError as err:
        if "Unknown model" in str(err):
            raise ValueError(f"backbone {name!r}: timm has no model {_model_name(name)!r} "
                             f"(python -c \"import timm; print(timm.list_models('*{_model_name(name)[:8]}*'))\" "
                             "lists them)") from None
        raise


def _path_of(model: nn.Module, module: nn.Module) -> str | None:
    return next((p for p, m in model.named_modules() if m is module), None)


def _is_avg_pool(m: nn.Module) -> bool:
    kind = getattr(m, "pool_type", None)  # timm's SelectAdaptivePool2d
    return kind in ("avg", "fast", "fastavg") or isinstance(m, nn.AdaptiveAvgPool2d)


def _refusal(model: nn.Module, head_children: list[tuple[str, nn.Module]], linear) -> str | None:
    """Why the model's head is not global average pooling + one linear layer (None: it is)."""
    if not getattr(model, "feature_info", None):
        return "it has no features_only support (no feature_info)"
    if not isinstance(linear, nn.Linear):
        return f"its classifier is a {type(linear).__name__}, not a linear layer"
    pools, inside = 0, []
    for name, child in head_children:
        for sub_name, m in child.named_modules():
            where = ".".join(p for p in (name, sub_name) if p)
            if any(where.startswith(p + ".") for p in inside):
                continue  # a part of a pooling module already counted
            if m is linear or isinstance(m, _NEUTRAL):
                continue
            if hasattr(m, "pool_type") or isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                if not _is_avg_pool(m):
                    return f"its global pooling is {getattr(m, 'pool_type', type(m).__name__)!r}, not average"
                pools += 1
                inside.append(where)
                continue
            if list(m.children()):
                continue  # a container: its leaves are checked
            return f"its classifier has a {type(m).__name__} ({where}) besides the global pooling and the linear layer"
    if pools != 1:
        return "its classifier does not start with one global pooling"
    return None


@functools.lru_cache(maxsize=64)
def timm_layout(name: str) -> dict:
    """The :class:`~hrcam.models.backbones.BackboneFamily` fields of the timm model ``name``.

    Read from the model's structure (built on the ``meta`` device: no memory, no init cost).
    """
    try:
        with torch.device("meta"):
            model = _create(name, pretrained=False)
    except (UserError, ValueError):
        raise
    except Exception:  # a model whose init needs real tensors
        model = _create(name, pretrained=False)
    children = list(model.named_children())
    cut = next((i for i, (n, _) in enumerate(children) if n in HEAD_PARTS), len(children))
    body, head_children = children[:cut], children[cut:]
    while body and isinstance(body[-1][1], nn.Identity):  # e.g. RegNetX's final_conv
        body.pop()
    linear = model.get_classifier() if hasattr(model, "get_classifier") else None
    cfg = getattr(model, "pretrained_cfg", {}) or {}
    out = {"mean": tuple(cfg.get("mean", (0.485, 0.456, 0.406))), "std": tuple(cfg.get("std", (0.229, 0.224, 0.225)))}
    refused = _refusal(model, head_children, linear) if body else "no stages before its head"
    if refused:
        return {**out, "refused": refused}
    features = [f["module"] for f in model.feature_info]
    stages, names = [], []
    for child, module in body:
        if any(f.startswith(child + ".") for f in features):
            stages.append(f"{child}.*")
            names += [f"{child}.{c}" for c, _ in module.named_children()]
        else:
            stages.append(child)
            names.append(child)
    taps = [f for f in features if f in names]
    channels = [int(f["num_chs"]) for f in model.feature_info if f["module"] in names]
    if names[-1] not in taps:  # A itself, where forward_features ends after the last feature stage
        taps.append(names[-1])
        channels.append(int(model.num_features))
    return {**out, "stages": tuple(stages), "classifier": tuple(n for n, _ in head_children),
            "head": _path_of(model, linear), "taps": tuple(taps), "tap_channels": tuple(channels),
            "stride": int(model.feature_info[-1]["reduction"]), "refused": None}


def _run(model: nn.Module, tokens, x: torch.Tensor) -> torch.Tensor:
    for token in tokens:
        parts = list(getattr(model, token[:-2]).children()) if token.endswith(".*") else [getattr(model, token)]
        for m in parts:
            x = m(x)
    return x


def check_split(name: str, model: nn.Module, layout: dict, size: int = 64) -> None:
    """Raise unless the stages reproduce ``forward_features`` and pool + linear the logits."""
    modes = {m: m.training for m in model.modules()}
    gen = torch.Generator().manual_seed(0)  # no draw from the global generator
    x = torch.rand(2, 3, size, size, generator=gen)
    try:
        model.eval()
        with torch.no_grad():
            a = _run(model, layout["stages"], x)
            ok_features = torch.allclose(a, model.forward_features(x), rtol=1e-4, atol=1e-5)
            logits = model.forward_head(a)
            head = model.get_classifier()
            ok_head = torch.allclose(head(a.mean(dim=(2, 3))), logits, rtol=1e-4, atol=1e-5)
            ok_classifier = torch.allclose(_run(model, layout["classifier"], a), logits, rtol=1e-4, atol=1e-5)
    finally:
        for m, mode in modes.items():
            m.training = mode
    if not ok_features:
        raise ValueError(f"backbone {name!r}: its forward_features is not its top-level modules in order; "
                         "hrcam cannot split it into stages")
    if not (ok_head and ok_classifier):
        raise ValueError(f"backbone {name!r}: its head is not global average pooling + one linear layer "
                         "(CAM needs one)")


def build_timm(name: str, num_classes: int) -> nn.Module:
    """The timm model ``name`` with random weights and ``num_classes`` classes, its split checked."""
    layout = timm_layout(name)
    if layout.get("refused"):
        raise ValueError(f"backbone {name!r} is not a global-pooling + linear CNN ({layout['refused']})")
    model = _create(name, pretrained=False, num_classes=int(num_classes))
    check_split(name, model, layout)
    return model


def timm_pretrained_state(name: str) -> dict[str, torch.Tensor]:
    """timm's own pretrained weights of ``name`` (``pretrained=True``: downloaded, needs a network)."""
    try:
        model = _create(name, pretrained=True)
    except (UserError, ValueError):
        raise
    except Exception as err:
        from hrcam.weights import first_line

        raise ValueError(f"backbone {name!r}: cannot get timm's pretrained weights ({first_line(err)}); "
                         "without a network, give a local file with --backbone_weights") from None
    return model.state_dict()
