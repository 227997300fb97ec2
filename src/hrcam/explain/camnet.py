"""CAM on a :class:`~hrcam.models.camnet.CAMNet` (Zhou et al., seed 002).

``cam[c] = Σ_k W[c,k] · A[k]`` from the network's own forward pass (see
:class:`hrcam.explain.cam.CAMExplainer`); ``model`` may also be a path to weights exported by
``hrcam train cam``.
"""
from __future__ import annotations

from hrcam.explain.cam import CAMExplainer
from hrcam.models.camnet import CAMNet


def resolve_model(model, kind: str):
    """An in-memory network, or one loaded (eval mode) from a weights path of type ``kind``."""
    if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
        from hrcam.errors import UserError
        from hrcam.models.neighbour_io import load_neighbour

        net, meta = load_neighbour(model)
        if meta.get("hrcam_type") != kind:
            raise UserError(f"{model} holds {meta.get('hrcam_type')} weights, not {kind}")
        return net
    return model


class CAMNetExplainer(CAMExplainer):
    name = "camnet"

    def __init__(self, model, device=None):
        model = resolve_model(model, "camnet")
        if not isinstance(model, CAMNet):
            raise ValueError(f"model: expected a CAMNet (hrcam train cam), got {type(model).__name__}")
        super().__init__(model, device=device)
