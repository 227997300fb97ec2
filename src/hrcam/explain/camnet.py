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
    """CAM of a fine-tuned :class:`~hrcam.models.baselines.camnet.CAMNet` (Zhou et al., CVPR 2016).

    ``cam[c] = Σ_k W[c,k] · A[k]`` with ``A`` the network's last conv maps and ``W`` its linear
    head (no bias), from one forward pass.

    Example:
        >>> explainer = CAMNetExplainer("results/cam")          # weights from `hrcam train cam`
        >>> maps = explainer.explain(images).maps              # N×H×W in [0, 1]

    Args:
        model: a CAMNet, or a path to weights exported by ``hrcam train cam``.
        device: where to run (default: the model's).

    Raises:
        ValueError: ``model`` is not a CAMNet.
        UserError: the path holds other weights.
    """

    name = "camnet"

    def __init__(self, model, device=None):
        model = resolve_network(model, "camnet", CAMNet, "a CAMNet (hrcam train cam)")
        super().__init__(model, device=device)
