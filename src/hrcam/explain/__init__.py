"""Explainers: every method answers ``maps, logits = explainer(x, targets=None)``."""
from hrcam.explain.base import Explainer, normalize_maps

__all__ = ["Explainer", "normalize_maps"]
