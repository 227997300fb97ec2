"""Explainers: every method answers ``maps, logits = explainer(x, targets=None)``.

Build one by name with :func:`create` (``cam, hrcam, refined, gradcam, gradcampp, scorecam`` and
whatever other modules register); method modules are imported on first use.
"""
from hrcam.explain.base import Explainer, Explanation, normalize_maps
from hrcam.explain.registry import available, create, register

__all__ = ["Explainer", "Explanation", "normalize_maps", "available", "create", "register"]
