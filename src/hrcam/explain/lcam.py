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
    """L-CAM (Gkartzonika et al., ECCV-W 2022): a learned attention map per class.

    ``A_c = σ(conv1×1(F))[c]`` on the frozen classifier's last conv maps ``F``, trained so that
    the classifier still recognises the class on ``A_c ⊙ F`` (Fm) or ``A_c ⊙ x`` (Img).

    Example:
        >>> maps = LCAMExplainer("results/lcam1").explain(images, targets=labels).maps

    Args:
        model: an LCAMNet, or a path to weights exported by ``hrcam train lcam``.
        device: where to run (default: the model's).

    Raises:
        ValueError: ``model`` is not an LCAMNet.
        UserError: the path holds other weights.
    """

    name = "lcam"

    def __init__(self, model, device=None):
        model = resolve_network(model, "lcam", LCAMNet, "an LCAMNet (hrcam train lcam)")
        super().__init__(model, device=device)

    def raw_maps(self, x, targets):
        with torch.no_grad():
            c, logits = self.model.explain(x)
            t = resolve_targets(targets, logits)
            maps = c[torch.arange(c.shape[0], device=c.device), t]
        return maps, logits, t
