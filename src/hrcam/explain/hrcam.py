"""HR-CAM explainers (DESIGN §3–4) for CAM networks with high-resolution features.

- :class:`HRCAMExplainer` ("hrcam"): the high-res map ``high[c] = Σ_k W_high[c, k] · A_high[k]``
  at input resolution, from one forward pass (no backward, no per-class passes).
- :class:`RefinedHRCAMExplainer` ("refined"): the low- and high-res maps of the same pass fed
  through the post-processing pipeline; the map is the pipeline's ``merged`` step.
"""
from __future__ import annotations

import torch

from hrcam.explain.base import Explainer, resolve_targets
from hrcam.models.base import CAMNetwork, class_maps


def _require_high_res(model) -> None:
    if not isinstance(model, CAMNetwork) or not getattr(model, "has_high_res", False):
        raise ValueError(
            f"model: HR-CAM needs a CAMNetwork with high-resolution features (e.g. FullNet), "
            f"got {type(model).__name__}"
        )


def high_low_maps(model: CAMNetwork, x: torch.Tensor, targets):
    """One forward pass → ``(low N×h×w, high N×H×W, logits, targets)`` for the resolved targets."""
    with torch.no_grad():
        out = model.forward_maps(x, high=True)
        if out.high_features is None:
            raise ValueError(f"model: {type(model).__name__}.forward_maps(high=True) gave no high_features")
        t = resolve_targets(targets, out.logits)
        low = class_maps(model.low_weight, out.low_features, t)
        high = class_maps(model.high_weight, out.high_features, t)
    return low, high, out.logits, t


class HRCAMExplainer(Explainer):
    """High-resolution CAM straight from the network (no post-processing)."""

    name = "hrcam"

    def __init__(self, model, device=None):
        _require_high_res(model)
        super().__init__(model, device)

    def raw_maps(self, x, targets):
        _, high, logits, t = high_low_maps(self.model, x, targets)
        return high, logits, t


class RefinedHRCAMExplainer(Explainer):
    """HR-CAM refined by the post-processing pipeline (``merged`` of ``pipeline_batch``).

    ``pipeline_params`` are passed to :func:`hrcam.postprocessing.pipeline_batch` (DESIGN §4
    names: ``roi_percentile``, ``merge_type``, ``merge_alpha`` …).
    """

    name = "refined"

    def __init__(self, model, device=None, **pipeline_params):
        _require_high_res(model)
        super().__init__(model, device)
        self.pipeline_params = pipeline_params

    def raw_maps(self, x, targets):
        from hrcam.postprocessing.refine import refined_maps  # lazy: scikit-image import is slow

        low, high, logits, t = high_low_maps(self.model, x, targets)
        n, _, h, w = x.shape
        # images with NaN/inf maps get a NaN map (counted and excluded by metrics)
        merged = refined_maps(x.detach().permute(0, 2, 3, 1).cpu().numpy(), low.cpu().numpy(), high.cpu().numpy(),
                              **self.pipeline_params)
        merged = torch.as_tensor(merged, dtype=torch.float32).reshape(n, h, w)
        return merged.to(x.device), logits, t
