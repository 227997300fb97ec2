"""CAM on a :class:`~hrcam.models.baselines.camnet.CAMNet` (Zhou et al., seed 002).

``cam[c] = Σ_k W[c,k] · A[k]`` from the network's own forward pass (see
:class:`hrcam.explain.cam.CAMExplainer`); ``model`` may also be a path to weights exported by
``hrcam train cam``.
"""
from __future__ import annotations

from hrcam.explain.base import TrainedNetworkExplainer
from hrcam.explain.cam import CAMExplainer
from hrcam.models.baselines.camnet import CAMNet


class CAMNetExplainer(TrainedNetworkExplainer, CAMExplainer):
    """CAM of a fine-tuned :class:`~hrcam.models.baselines.camnet.CAMNet` (Zhou et al., CVPR 2016).

    ``cam[c] = Σ_k W[c,k] · A[k]`` with ``A`` the network's last conv maps and ``W`` its linear
    head (no bias), from one forward pass.

    Example:
        >>> explainer = CAMNetExplainer("results/cam")          # weights from `hrcam train cam`
        >>> maps = explainer.explain(images).maps              # N×H×W in [0, 1]

    Args and Raises: as :class:`~hrcam.explain.base.TrainedNetworkExplainer`; ``model`` is a
    CAMNet or the weights of ``hrcam train cam``.
    """

    name = "camnet"
    hrcam_type, network_class, network_label = "camnet", CAMNet, "a CAMNet (hrcam train cam)"
