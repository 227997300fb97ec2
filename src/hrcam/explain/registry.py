"""Explainers by name: ``create("gradcam", model)``.

A factory is any callable ``factory(model, **kwargs) -> Explainer``. Register one with a single
line, either eagerly or lazily by import path (so ``import hrcam.explain`` stays light)::

    register("lcam", "hrcam.explain.lcam:LCAMExplainer")   # lazy: imported on first use
    register("mine", MyExplainer)                          # eager

Built-in methods are listed in :data:`_BUILTINS`; other modules may add a line there or call
:func:`register` at import time.
"""
from __future__ import annotations

import importlib
from typing import Callable, Union

Factory = Union[Callable, str]

_BUILTINS: dict[str, str] = {
    "cam": "hrcam.explain.cam:CAMExplainer",
    "hrcam": "hrcam.explain.hrcam:HRCAMExplainer",
    "refined": "hrcam.explain.hrcam:RefinedHRCAMExplainer",
    "hrcam_guided": "hrcam.explain.hrcam:GuidedHRCAMExplainer",
    "gradcam": "hrcam.explain.gradcam:GradCAMExplainer",
    "gradcampp": "hrcam.explain.gradcam:GradCAMPlusPlusExplainer",
    "scorecam": "hrcam.explain.gradcam:ScoreCAMExplainer",
    "layercam": "hrcam.explain.layercam:LayerCAMExplainer",
    "layercam_fused": "hrcam.explain.layercam:LayerCAMFusedExplainer",
    "guided": "hrcam.explain.guided:GuidedCAMExplainer",
    "camnet": "hrcam.explain.camnet:CAMNetExplainer",
    "lcam": "hrcam.explain.lcam:LCAMExplainer",
    "casm": "hrcam.explain.casm:CASMExplainer",
}

_REGISTRY: dict[str, Factory] = dict(_BUILTINS)


def register(name: str, factory: Factory, *, overwrite: bool = False) -> None:
    """Make ``factory`` (a callable or ``"module:attribute"``) available as ``name``."""
    if not isinstance(name, str) or not name or not name.replace("_", "").replace("-", "").isalnum():
        raise ValueError(f"name: expected a short alphanumeric method name, got {name!r}")
    if isinstance(factory, str):
        if ":" not in factory:
            raise ValueError(f"factory: expected 'module:attribute', got {factory!r}")
    elif not callable(factory):
        raise ValueError("factory: expected a callable or a 'module:attribute' string")
    if name in _REGISTRY and not overwrite and _REGISTRY[name] != factory:
        raise ValueError(f"name: explainer {name!r} is already registered (pass overwrite=True)")
    _REGISTRY[name] = factory


def available() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_REGISTRY)


def get_factory(name: str) -> Callable:
    """The factory registered as ``name`` (imports a lazy one)."""
    if name not in _REGISTRY:
        raise ValueError(f"method: unknown explainer {name!r}; choose from {', '.join(available())}")
    factory = _REGISTRY[name]
    if isinstance(factory, str):
        module, _, attr = factory.partition(":")
        factory = getattr(importlib.import_module(module), attr)
        _REGISTRY[name] = factory
    return factory


def create(name: str, model, **kwargs):
    """Build the explainer ``name`` for ``model`` (use it as a context manager to free hooks)."""
    return get_factory(name)(model, **kwargs)


def parse_methods(text: str | list[str]) -> list[str]:
    """``"cam, hrcam"`` or a list → checked, de-duplicated list of names (order kept)."""
    names = text.split(",") if isinstance(text, str) else list(text)
    out: list[str] = []
    for raw in names:
        name = str(raw).strip()
        if not name:
            continue
        if name not in _REGISTRY:
            raise ValueError(f"methods: unknown explainer {name!r}; choose from {', '.join(available())}")
        if name not in out:
            out.append(name)
    if not out:
        raise ValueError("methods: no method given")
    return out
