"""Edge-aware smoothing of maps with the image as guide: the guided filter (He et al., ECCV 2010).

The guide ``I`` is the image's gray level (the channel mean). With ``f`` the mean over a
(2r+1)×(2r+1) window (borders replicated), the guided filter (He, Sun and Tang, "Guided Image
Filtering", ECCV 2010, Alg. 1) of a map ``p`` is::

    a = (f(I·p) − f(I)·f(p)) / (f(I²) − f(I)² + ε)
    b = f(p) − a · f(I)
    q = f(a) · I + f(b)

so inside each window the output is an affine function of the image's gray level: the map
follows the image's edges where the image varies more than √ε, and is a smoothed ``p``
(``f(f(p))``) where it is flat. It is linear in ``p``, so min-max normalizing before or after gives
the same normalized map. hrcam uses it twice, with the same ``r`` and ``ε``: as a baseline (the
bilinear low-res CAM through it, the ``guided`` explainer) and as the edge-aware refinement of the
high-res CAM (:func:`guided_refine`, the ``hrcam_guided`` explainer), so the two differ only in
the map that goes in. Defaults: ``r`` = half the CAM's stride (8 at stride 16: a window spans
one cell), ``ε = 1e-2`` (0.1² for intensities in [0, 1]).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["DEFAULT_EPS", "default_radius", "box_mean", "guided_filter", "guided_refine"]

#: the guided filter's regularization ε (0.1² for intensities in [0, 1])
DEFAULT_EPS = 1e-2


def default_radius(image_side: int, low_side: int) -> int:
    """Half the low-res CAM's stride, at least 1 (8 px at stride 16: the window spans one cell)."""
    return max(1, (int(image_side) // max(1, int(low_side))) // 2)


def box_mean(a: torch.Tensor, radius: int) -> torch.Tensor:
    """Mean over the (2r+1)×(2r+1) window around each pixel of ``N×H×W`` maps, borders
    replicated (``avg_pool2d`` on the replicate-padded maps)."""
    k = 2 * radius + 1
    padded = F.pad(a[:, None], (radius, radius, radius, radius), mode="replicate")
    return F.avg_pool2d(padded, k, stride=1)[:, 0]


def guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """He et al.'s guided filter of ``src`` with gray ``guide`` (both ``N×H×W``), batched.

    Raises:
        ValueError: shapes differ, ``radius`` is not a positive integer or ``eps`` is not > 0.
    """
    if guide.shape != src.shape or guide.ndim != 3:
        raise ValueError(f"guide and src must both be N×H×W, got {tuple(guide.shape)} and {tuple(src.shape)}")
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 1:
        raise ValueError(f"radius: expected a positive integer, got {radius!r}")
    if not eps > 0:
        raise ValueError(f"eps: expected a positive number, got {eps!r}")
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(src, radius)
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def guided_refine(images: torch.Tensor, maps: torch.Tensor, radius: int, eps: float = DEFAULT_EPS) -> torch.Tensor:
    """N×h×w ``maps`` resized bilinearly to the N×C×H×W ``images`` (when smaller), then guided-filtered
    with the images' gray level as guide (no gradients)."""
    size = tuple(images.shape[-2:])
    with torch.no_grad():
        m = maps.float()
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        return guided_filter(images.float().mean(dim=1), m, int(radius), eps)
