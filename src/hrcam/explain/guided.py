"""The low-res CAM upsampled edge-aware: a guided filter (He et al.) with the image as guide.

The filter itself, with its formulas, lives in :mod:`hrcam.postprocessing.guided` (the HR-CAM
refinement uses the same one). The CAM ``p`` is first upsampled bilinearly to the input, then
filtered with the image's colours as guide (or its gray level, ``colour=False``): inside each
(2r+1)×(2r+1) window the output is an affine function of the guide, so the map follows the
image's edges where it varies more than √ε and is a box-smoothed ``p`` where it is flat.
Defaults: ``r`` = half the CAM's stride (8 at stride 16: a window spans one cell), ``ε = 1e-2``
(0.1² for intensities in [0, 1]).
"""
from __future__ import annotations

from hrcam.explain.cam import CAMExplainer
from hrcam.postprocessing.guided import DEFAULT_EPS, box_mean, default_radius, guided_filter, guided_refine

__all__ = ["DEFAULT_EPS", "box_mean", "guided_filter", "GuidedCAMExplainer"]

class GuidedCAMExplainer(CAMExplainer):
    """Low-res CAM, bilinearly upsampled, then guided-filtered with the image as guide.

    ``q = f(a)ᵀ·I + f(b)``, ``a = (Σ_f(I) + εU)⁻¹ cov_f(I, p)``, ``b = f(p) − aᵀ·f(I)`` (He et al.,
    ECCV 2010, eq. 14 for a colour guide; :mod:`hrcam.postprocessing.guided`). Same forward pass
    as CAM; no backward.

    Example:
        >>> maps, logits = GuidedCAMExplainer(net, eps=1e-2)(images)  # doctest: +SKIP

    Args:
        model: a CAM network (HR-CAM half / full, pretrained backbone), or any classifier with
            ``features`` and ``classifier`` as for :class:`~hrcam.explain.cam.CAMExplainer`.
        radius: window radius in pixels (default: half the CAM's stride, at least 1).
        eps: regularization ε > 0 (default 1e-2); ε → ∞ gives the box-smoothed CAM ``f(f(p))``.
        colour: guide with the image's colours (default) or, ``False``, its gray level.
        features, classifier, device: as for :class:`~hrcam.explain.cam.CAMExplainer`.

    Raises:
        ValueError: ``radius`` is not a positive integer, ``eps`` is not > 0, or the model is
            not a CAM network and ``features``/``classifier`` are missing.
    """

    name = "guided"

    def __init__(self, model, radius: int | None = None, eps: float = DEFAULT_EPS, features=None,
                 classifier=None, device=None, colour: bool = True):
        if radius is not None and (not isinstance(radius, int) or isinstance(radius, bool) or radius < 1):
            raise ValueError(f"radius: expected a positive integer, got {radius!r}")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"eps: expected a positive number, got {eps!r}")
        super().__init__(model, features=features, classifier=classifier, device=device)
        self.radius = radius
        self.eps = float(eps)
        self.colour = bool(colour)

    def raw_maps(self, x, targets):
        low, logits, t = super().raw_maps(x, targets)
        radius = self.radius if self.radius is not None else default_radius(x.shape[-1], low.shape[-1])
        return guided_refine(x, low, radius, self.eps, self.colour), logits, t
