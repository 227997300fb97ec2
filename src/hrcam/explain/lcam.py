"""L-CAM explanations (seed 004): the target class's pre-sigmoid attention map.

``raw_maps`` returns ``c[n, t_n]`` at feature resolution; the base class upsamples it
bilinearly to the input and min-max normalizes it. The logits are the frozen classifier's on
the unmodified image (same backbone pass).
"""
from __future__ import annotations

import torch

from hrcam.explain.base import Explainer, TrainedNetworkExplainer, resolve_targets
from hrcam.models.baselines.lcam import LCAMNet


class LCAMExplainer(TrainedNetworkExplainer, Explainer):
    """L-CAM (Gkartzonika et al., ECCV-W 2022): a learned attention map per class.

    ``A_c = σ(conv1×1(F))[c]`` on the frozen classifier's last conv maps ``F``, trained so that
    the classifier still recognises the class on ``A_c ⊙ F`` (Fm) or ``A_c ⊙ x`` (Img).

    Example:
        >>> maps = LCAMExplainer("results/lcam1").explain(images, targets=labels).maps

    Args and Raises: as :class:`~hrcam.explain.base.TrainedNetworkExplainer`; ``model`` is an
    LCAMNet or the weights of ``hrcam train lcam``. A call's ``targets`` (default: each
    image's predicted class) pick the attention map returned, one of the K the pass computes.
    """

    name = "lcam"
    hrcam_type, network_class, network_label = "lcam", LCAMNet, "an LCAMNet (hrcam train lcam)"

    def raw_maps(self, x, targets):
        with torch.no_grad():
            c, logits = self.model.explain(x)
            t = resolve_targets(targets, logits)
            maps = c[torch.arange(c.shape[0], device=c.device), t]
        return maps, logits, t
