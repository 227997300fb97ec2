"""HR-CAM explainers (DESIGN §3–4) for CAM networks with high-resolution features.

- :class:`HRCAMExplainer` ("hrcam"): the high-res map ``high[c] = Σ_k W_high[c, k] · A_high[k]``
  at input resolution, from one forward pass (no backward, no per-class passes).
- :class:`RefinedHRCAMExplainer` ("refined"): the low- and high-res maps of the same pass fed
  through the post-processing pipeline; the map is the pipeline's ``merged`` step.
- :class:`GuidedHRCAMExplainer` ("hrcam_guided"): the high-res map through the guided filter
  with the image as guide (edge-aware refinement).
"""
from __future__ import annotations

import torch

from hrcam.explain.base import Explainer, resolve_targets
from hrcam.models.base import CAMNetwork, class_maps, cpu_channels_last


def _require_high_res(model) -> None:
    if not isinstance(model, CAMNetwork) or not getattr(model, "has_high_res", False):
        raise ValueError(
            f"model: HR-CAM needs a CAMNetwork with high-resolution features (e.g. FullNet), "
            f"got {type(model).__name__}"
        )


def high_low_maps(model: CAMNetwork, x: torch.Tensor, targets):
    """One forward pass → ``(low N×h×w, high N×H×W, logits, targets)`` for the resolved targets.

    The pass runs under ``torch.inference_mode`` and, on the CPU, on a channels-last copy of
    ``x`` (convolutions and batch norms about 1.5× faster there; the model's own memory format
    is left alone). Only the resolved targets' maps are computed (one 1×C by C×HW product per
    image, from the same features for the low- and the high-res map); the returned tensors are
    ordinary (not inference) tensors.
    """
    with torch.inference_mode():
        out = model.forward_maps(cpu_channels_last(x), high=True)
        if out.high_features is None:
            raise ValueError(f"model: {type(model).__name__}.forward_maps(high=True) gave no high_features")
        t = resolve_targets(targets, out.logits)
        low = class_maps(model.low_weight, out.low_features, t)
        high = class_maps(model.high_weight, out.high_features, t)
    # clones outside inference mode: callers may use them in autograd or modify them in place
    return low.clone(), high.clone(), out.logits.clone(), t.clone()


class HRCAMExplainer(Explainer):
    """High-resolution CAM straight from the network, no post-processing (HR-CAM, DESIGN §3).

    ``high[c](i, j) = Σ_k W_high[c, k] · A_high[k, i, j]`` at input resolution, from one forward
    pass (no backward, no per-class passes); ``W_high`` is the classifier's ``W`` for a FullNet
    and ``U_r`` of the rank-r head for a pretrained :class:`~hrcam.models.pretrained.decoder.DecoderNet`.

    Example:
        >>> maps, logits = HRCAMExplainer(full_net)(images)    # N×H×W in [0, 1]

    Args:
        model: a CAM network with high-resolution features (FullNet, DecoderNet).
        device: where to run (default: the model's).

    Raises:
        ValueError: ``model`` has no high-resolution features.
    """

    name = "hrcam"

    def __init__(self, model, device=None):
        _require_high_res(model)
        super().__init__(model, device)

    def raw_maps(self, x, targets):
        _, high, logits, t = high_low_maps(self.model, x, targets)
        return high, logits, t


class RefinedHRCAMExplainer(Explainer):
    """HR-CAM refined by the post-processing pipeline (``merged`` of ``pipeline_batch``, DESIGN §4).

    The low- and high-res maps of one forward pass go through the pipeline: focal points of the
    high-res map inside the ROI (the low-res map above ``roi_percentile``), region growing into
    a filled segmentation ``S``, then ``merged = α · S + (1 − α) · norm(up(low))`` (``blend``,
    ``α = merge_alpha``) or ``S · norm(up(low))`` (``multiply``). Images whose maps hold NaN/inf
    get a NaN map, which metrics count and exclude.

    Example:
        >>> explainer = RefinedHRCAMExplainer(full_net, roi_percentile=80)
        >>> maps, logits = explainer(images)

    Args:
        model: a CAM network with high-resolution features (FullNet, DecoderNet).
        device: where to run (default: the model's).
        **pipeline_params: passed to :func:`hrcam.postprocessing.pipeline_batch` (DESIGN §4
            names: ``roi_percentile``, ``merge_type``, ``merge_alpha`` …).

    Raises:
        ValueError: ``model`` has no high-resolution features, or (from a call) a pipeline
            parameter out of range.
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


class GuidedHRCAMExplainer(Explainer):
    """HR-CAM refined edge-aware: the high-res map through the guided filter, the image as guide.

    ``q = guided_filter(x, norm(high[c]), r, eps)`` with the image's colours as guide (He et al.,
    "Guided Image Filtering", ECCV 2010; :mod:`hrcam.postprocessing.guided`). The defaults are
    those of the ``guided`` baseline (which filters the bilinear low-res CAM instead): ``r`` = half
    a low-res cell, ``eps`` = 0.01, colour guide, so the two differ only in the map that goes in.

    Example:
        >>> with GuidedHRCAMExplainer(full_net) as explainer:
        ...     maps, logits = explainer(images)      # N×H×W in [0, 1]

    Args:
        model: a CAM network with high-resolution features (a FullNet).
        radius: window radius in pixels (default: input side / low-res side / 2).
        eps: the filter's ridge, for intensities in [0, 1].
        colour: guide with the image's colours (default) or, ``False``, its gray level.

    Raises:
        ValueError: the model has no high-res maps, or ``radius`` / ``eps`` are out of range.
    """

    name = "hrcam_guided"

    def __init__(self, model, device=None, radius: int | None = None, eps: float | None = None,
                 colour: bool = True):
        from hrcam.postprocessing.guided import DEFAULT_EPS

        _require_high_res(model)
        super().__init__(model, device)
        if radius is not None and int(radius) < 1:
            raise ValueError(f"radius must be >= 1, got {radius}")
        self.radius = radius
        self.eps = DEFAULT_EPS if eps is None else float(eps)
        if not self.eps > 0:
            raise ValueError(f"eps must be > 0, got {eps}")
        self.colour = bool(colour)

    def raw_maps(self, x, targets):
        from hrcam.postprocessing.guided import default_radius, guided_refine

        low, high, logits, t = high_low_maps(self.model, x, targets)
        radius = int(self.radius or default_radius(x.shape[-1], low.shape[-1]))
        return guided_refine(x, high, radius, self.eps, self.colour), logits, t
