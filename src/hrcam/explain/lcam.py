"""L-CAM explanations (seed 004): the target class's pre-sigmoid attention map.

``raw_maps`` returns ``c[n, t_n]`` at feature resolution; the base class upsamples it
bilinearly to the input and min-max normalizes it. The logits are the frozen classifier's on
the unmodified image (same backbone pass).
"""
from __future__ import annotations

import torch

from hrcam.explain.base import Explainer, resolve_targets
from hrcam.models.baselines.lcam import LCAMNet
from hrcam.models.registry import resolve_network


class LCAMExplainer(Explainer):
    name = "lcam"

    def __init__(self, model, device=None):
        model = resolve_network(model, "lcam")
        if not isinstance(model, LCAMNet):
            raise ValueError(f"model: expected an LCAMNet (hrcam train lcam), got {type(model).__name__}")
        super().__init__(model, device=device)

    def raw_maps(self, x, targets):
        with torch.no_grad():
            c, logits = self.model.explain(x)
            t = resolve_targets(targets, logits)
            maps = c[torch.arange(c.shape[0], device=c.device), t]
        return maps, logits, t
