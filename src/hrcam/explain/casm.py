"""CASM explanations (seed 003): the masker's mask.

The mask is class-agnostic by design (the method's name): ``targets`` only selects which
class the returned ``targets`` report; the map is the same for every class. The logits are
the classifier's on the unmodified image, from the same pass that feeds the masker.
"""
from __future__ import annotations

import torch

from hrcam.explain.base import Explainer, resolve_targets
from hrcam.models.baselines.casm import CASMNet
from hrcam.models.registry import resolve_network


class CASMExplainer(Explainer):
    name = "casm"

    def __init__(self, model, device=None):
        model = resolve_network(model, "casm")
        if not isinstance(model, CASMNet):
            raise ValueError(f"model: expected a CASMNet (hrcam train casm), got {type(model).__name__}")
        super().__init__(model, device=device)

    def raw_maps(self, x, targets):
        with torch.no_grad():
            logits, mask = self.model.logits_and_mask(x)
        return mask[:, 0], logits, resolve_targets(targets, logits)
