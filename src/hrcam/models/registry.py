"""Every network hrcam saves, by its ``hrcam_type``: build, describe, load (torchvision style).

Each model type registers a *builder* (metadata → network with random weights; nothing is
downloaded) and a *metadata writer* (network → the fields that let the builder rebuild it)::

    @register_model("camnet", fields=lambda net: {"arch": net.config()}, family="baseline")
    def _build_camnet(meta):
        return CAMNet.from_config(meta["arch"])

    meta = model_metadata("camnet", net, im_size=224, class_names=names)   # written with the weights
    net = load_weights("results/cam/best_weights.safetensors")             # the right network, eval mode
    net, meta = load_network(path, expect=("camnet",))                     # with its metadata

Files without ``hrcam_type`` (plain state dicts and Lightning checkpoints of the seed's models)
load as ``full`` when they hold ``localization.*`` tensors, else as ``half``.

Built-in types: ``half``, ``full`` (:mod:`hrcam.models.hrcam.nets`), ``decoder``
(:mod:`hrcam.models.pretrained.decoder`), ``camnet``, ``lcam``, ``casm``
(:mod:`hrcam.models.baselines`).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from hrcam.errors import UserError

__all__ = ["ModelType", "register_model", "model_types", "get_model", "model_metadata", "load_network",
           "load_weights", "resolve_network", "FORMAT_VERSION"]

#: the metadata layout version written with every file
FORMAT_VERSION = 1

#: modules whose import registers the built-in types
_BUILTIN_MODULES = ("hrcam.models.hrcam.nets", "hrcam.models.pretrained.decoder", "hrcam.models.baselines.camnet",
                    "hrcam.models.baselines.lcam", "hrcam.models.baselines.casm")


@dataclass(frozen=True)
class ModelType:
    """One registered ``hrcam_type``.

    Args:
        name: the ``hrcam_type`` written into the metadata.
        build: metadata → network with the recorded structure and random weights.
        fields: ``(network, **extra)`` → the type's own metadata fields (``arch``, ``backbone``, …).
        family: ``"hrcam"``, ``"pretrained"`` or ``"baseline"`` (groups for command help and checks).
    """

    name: str
    build: Callable[[dict], nn.Module]
    fields: Callable[..., dict]
    family: str


_TYPES: dict[str, ModelType] = {}


def register_model(name: str, *, fields: Callable[..., dict], family: str):
    """Decorator registering ``build(meta) -> nn.Module`` as the builder of ``hrcam_type`` ``name``."""
    def deco(build):
        if name in _TYPES and _TYPES[name].build is not build:
            raise ValueError(f"model type {name!r} is already registered")
        _TYPES[name] = ModelType(name, build, fields, family)
        return build
    return deco


def _types() -> dict[str, ModelType]:
    for module in _BUILTIN_MODULES:
        importlib.import_module(module)
    return _TYPES


def model_types(family: str | None = None) -> tuple[str, ...]:
    """The registered ``hrcam_type`` names (of one ``family`` when given), in registration order."""
    return tuple(n for n, t in _types().items() if family is None or t.family == family)


def _type(name: str) -> ModelType:
    types = _types()
    if name not in types:
        raise UserError(f"unknown hrcam_type {name!r}; known: {', '.join(types)}")
    return types[name]


def get_model(name: str, meta: dict) -> nn.Module:
    """A network of type ``name`` with the structure recorded in ``meta`` (random weights)."""
    return _type(name).build(meta)


def model_metadata(name: str, net: nn.Module, im_size: int, class_names=None, **extra) -> dict:
    """The metadata saved with ``net``'s weights; ``extra`` goes to the type's writer (e.g. ``objective``)."""
    meta = {"hrcam_type": name, "num_classes": int(net.num_classes), "in_channels": 3, "im_size": int(im_size)}
    meta.update(_type(name).fields(net, **extra))
    meta["format_version"] = FORMAT_VERSION
    if class_names is not None and "class_names" not in meta:
        meta["class_names"] = list(class_names)
    return meta


def _legacy_type(state: dict) -> str:
    """The seed's files carry no metadata: a FullModel holds ``localization.*`` tensors."""
    return "full" if any(k.startswith("localization.") for k in state) else "half"


def load_network(path, device=None, expect: tuple[str, ...] | None = None,
                 what: str | None = None) -> tuple[nn.Module, dict]:
    """``(network in eval mode, metadata)`` from any weights file or results folder hrcam writes.

    Args:
        path: a ``.safetensors`` file, a weights-only state dict / Lightning checkpoint, or a
            results folder (its ``best_weights.safetensors``, else ``last_weights.safetensors``).
        device: where the network goes (default CPU).
        expect: the accepted ``hrcam_type`` values (default: any registered type).
        what: how to name the expected kind in the error message.

    Raises:
        UserError: missing or unreadable file, a type outside ``expect``, or tensors that do not
            fit the recorded structure.
    """
    from hrcam.weights import load_weights as read_weights
    from hrcam.weights import state_dict_mismatch

    state, meta = read_weights(path)
    meta = dict(meta)
    kind = meta.get("hrcam_type") or _legacy_type(state)
    if expect is not None and kind not in expect:
        raise UserError(f"{path} does not hold {what or ' / '.join(expect)} weights (hrcam_type={kind!r})")
    meta["hrcam_type"] = kind
    if "num_classes" not in meta:  # legacy half/full file: the classifier's rows
        fc = state.get("fc.weight", state.get("localization.fc.weight"))
        if fc is not None:
            meta["num_classes"] = int(fc.shape[0])
    net = get_model(kind, meta)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f"{path}: the weights do not fit the {kind} network they describe "
                        f"({state_dict_mismatch(err)})") from None
    return net.to(torch.device(device or "cpu")).eval(), meta


def load_weights(path, device=None) -> nn.Module:
    """The network (eval mode) saved in ``path``, whatever its type (see :func:`load_network`)."""
    return load_network(path, device=device)[0]


def resolve_network(model, kind: str, cls: type | None = None, expected: str | None = None) -> nn.Module:
    """``model`` itself, or the network of type ``kind`` loaded from ``model`` when it is a path.

    Args:
        model: a network or a weights path / results folder.
        kind: the ``hrcam_type`` a path must hold.
        cls: when given, the network must be an instance of it.
        expected: how to name ``cls`` in the error (default: its class name).

    Raises:
        UserError: a path holding another type.
        ValueError: a network that is not a ``cls``.
    """
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        net, meta = load_network(model)
        if meta["hrcam_type"] != kind:
            raise UserError(f"{model} holds {meta['hrcam_type']} weights, not {kind}")
        model = net
    if cls is not None and not isinstance(model, cls):
        raise ValueError(f"model: expected {expected or cls.__name__}, got {type(model).__name__}")
    return model
