"""CAM on a :class:`~hrcam.models.baselines.camnet.CAMNet` (Zhou et al., seed 002).

``cam[c] = Σ_k W[c,k] · A[k]`` from the network's own forward pass (see
:class:`hrcam.explain.cam.CAMExplainer`); ``model`` may also be a path to weights exported by
``hrcam train cam``.
"""
from __future__ import annotations

from hrcam.explain.cam import CAMExplainer
from hrcam.models.baselines.camnet import CAMNet
from hrcam.models.registry import resolve_network


class CAMNetExplainer(CAMExplainer):
    name = "camnet"

    def __init__(self, model, device=None):
        model = resolve_network(model, "camnet")
        if not isinstance(model, CAMNet):
            raise ValueError(f"model: expected a CAMNet (hrcam train cam), got {type(model).__name__}")
        super().__init__(model, device=device)
