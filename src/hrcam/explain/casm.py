"""CASM explanations (seed 003): the masker's mask.

The mask is class-agnostic by design (the method's name): ``targets`` only selects which
class the returned ``targets`` report; the map is the same for every class. The logits are
the classifier's on the unmodified image, from the same pass that feeds the masker.
"""
from __future__ import annotations

import torch

from hrcam.explain.base import Explainer, TrainedNetworkExplainer, resolve_targets
from hrcam.models.baselines.casm import CASMNet


class CASMExplainer(TrainedNetworkExplainer, Explainer):
    """CASM (Zolna et al., 2020): the mask of a masker trained against a pool of classifiers.

    ``mask = masker(stages(x)) ∈ [0, 1]^{H×W}``, trained so that ``(1 − mask) ⊙ x`` no longer
    shows the class while the mask stays small; the map is the same for every target class.

    Example:
        >>> maps = CASMExplainer("results/casm").explain(images).maps

    Args and Raises: as :class:`~hrcam.explain.base.TrainedNetworkExplainer`; ``model`` is a
    CASMNet or the weights of ``hrcam train casm``. A call's ``targets`` only choose the
    classes it reports: the mask is the same for all of them.
    """

    name = "casm"
    hrcam_type, network_class, network_label = "casm", CASMNet, "a CASMNet (hrcam train casm)"

    def raw_maps(self, x, targets):
        with torch.no_grad():
            logits, mask = self.model.logits_and_mask(x)
        return mask[:, 0], logits, resolve_targets(targets, logits)
