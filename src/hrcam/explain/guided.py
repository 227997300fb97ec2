"""The low-res CAM upsampled edge-aware: a guided filter (He et al.) with the image as guide.

The filter itself lives in :mod:`hrcam.postprocessing.guided` (the HR-CAM refinement uses the same
one). The CAM ``p`` is first upsampled bilinearly to the input; the guide ``I`` is the image's gray
level (the channel mean). With ``f`` the mean over a (2r+1)×(2r+1) window (borders replicated)
the guided filter (He, Sun and Tang, "Guided Image Filtering", ECCV 2010, Alg. 1) is::

    a = (f(I·p) − f(I)·f(p)) / (f(I²) − f(I)² + ε)
    b = f(p) − a · f(I)
    q = f(a) · I + f(b)

so inside each window the output is an affine function of the image's gray level: the map
follows the image's edges where the image varies more than √ε, and is a smoothed ``p``
(``f(f(p))``) where it is flat. Defaults: ``r`` = half the CAM's stride (8 at stride 16: a window
spans one cell), ``ε = 1e-2`` (0.1² for intensities in [0, 1]).
"""
from __future__ import annotations

from hrcam.explain.cam import CAMExplainer
from hrcam.postprocessing.guided import DEFAULT_EPS, box_mean, default_radius, guided_filter, guided_refine

__all__ = ["DEFAULT_EPS", "box_mean", "guided_filter", "GuidedCAMExplainer"]

class GuidedCAMExplainer(CAMExplainer):
    """Low-res CAM, bilinearly upsampled, then guided-filtered with the image's gray level.

    ``q = f(a)·I + f(b)``, ``a = cov_f(I, p) / (var_f(I) + ε)``, ``b = f(p) − a·f(I)`` (He et al.,
    ECCV 2010; module docstring). Same forward pass as CAM; no backward.

    Example:
        >>> maps, logits = GuidedCAMExplainer(net, eps=1e-2)(images)  # doctest: +SKIP

    Args:
        model: a CAM network (HR-CAM half / full, pretrained backbone), or any classifier with
            ``features`` and ``classifier`` as for :class:`~hrcam.explain.cam.CAMExplainer`.
        radius: window radius in pixels (default: half the CAM's stride, at least 1).
        eps: regularization ε > 0 (default 1e-2); ε → ∞ gives the box-smoothed CAM ``f(f(p))``.
        features, classifier, device: as for :class:`~hrcam.explain.cam.CAMExplainer`.

    Raises:
        ValueError: ``radius`` is not a positive integer, ``eps`` is not > 0, or the model is
            not a CAM network and ``features``/``classifier`` are missing.
    """

    name = "guided"

    def __init__(self, model, radius: int | None = None, eps: float = DEFAULT_EPS, features=None,
                 classifier=None, device=None):
        if radius is not None and (not isinstance(radius, int) or isinstance(radius, bool) or radius < 1):
            raise ValueError(f"radius: expected a positive integer, got {radius!r}")
        if not isinstance(eps, (int, float)) or isinstance(eps, bool) or not eps > 0:
            raise ValueError(f"eps: expected a positive number, got {eps!r}")
        super().__init__(model, features=features, classifier=classifier, device=device)
        self.radius = radius
        self.eps = float(eps)

    def raw_maps(self, x, targets):
        low, logits, t = super().raw_maps(x, targets)
        radius = self.radius if self.radius is not None else default_radius(x.shape[-1], low.shape[-1])
        return guided_refine(x, low, radius, self.eps), logits, t
