"""Edge-aware smoothing of maps with the image as guide: the guided filter (He et al., ECCV 2010).

With ``f`` the mean over a (2r+1)×(2r+1) window (borders replicated), the guided filter (He, Sun
and Tang, "Guided Image Filtering", ECCV 2010, Alg. 1) of a map ``p`` with a gray guide ``I`` is::

    a = (f(I·p) − f(I)·f(p)) / (f(I²) − f(I)² + ε)
    b = f(p) − a · f(I)
    q = f(a) · I + f(b)

so inside each window the output is an affine function of the image's gray level: the map
follows the image's edges where the image varies more than √ε, and is a smoothed ``p``
(``f(f(p))``) where it is flat. With a colour guide (C channels, the paper's eq. 14) ``a`` is a
C-vector per window, ``a = (Σ + εU)⁻¹ (f(I·p) − f(I)·f(p))`` with ``Σ`` the window's C×C colour
covariance, and ``q = f(a)ᵀ I + f(b)``: the map then also follows edges between colours of equal
brightness (a red digit on green grass), which the gray level cannot see. It is linear in ``p``,
so min-max normalizing before or after gives the same normalized map.

hrcam uses it twice, with the same guide, ``r`` and ``ε``: as a baseline (the bilinear low-res
CAM through it, the ``guided`` explainer) and as the edge-aware refinement of the high-res CAM
(:func:`guided_refine`, the ``hrcam_guided`` explainer), so the two differ only in the map that
goes in. Defaults: the image's colours as guide, ``r`` = half the CAM's stride (8 at stride 16:
a window spans one cell), ``ε = 1e-2`` (0.1² for intensities in [0, 1]).
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
    """He et al.'s guided filter of ``src`` (``N×H×W``) with a gray ``N×H×W`` or colour ``N×C×H×W`` guide, batched.

    Raises:
        ValueError: shapes differ, ``radius`` is not a positive integer or ``eps`` is not > 0.
    """
    if src.ndim != 3 or guide.ndim not in (3, 4) or (guide.shape[:1] + guide.shape[-2:]) != src.shape:
        raise ValueError(f"guide must be N×H×W or N×C×H×W and src N×H×W of the same N, H, W, got "
                         f"{tuple(guide.shape)} and {tuple(src.shape)}")
    if not isinstance(radius, int) or isinstance(radius, bool) or radius < 1:
        raise ValueError(f"radius: expected a positive integer, got {radius!r}")
    if not eps > 0:
        raise ValueError(f"eps: expected a positive number, got {eps!r}")
    if guide.ndim == 4:
        return _colour_guided_filter(guide, src, radius, eps)
    mean_i = box_mean(guide, radius)
    mean_p = box_mean(src, radius)
    cov_ip = box_mean(guide * src, radius) - mean_i * mean_p
    var_i = box_mean(guide * guide, radius) - mean_i * mean_i
    a = cov_ip / (var_i + eps)
    b = mean_p - a * mean_i
    return box_mean(a, radius) * guide + box_mean(b, radius)


def _colour_guided_filter(guide: torch.Tensor, src: torch.Tensor, radius: int, eps: float) -> torch.Tensor:
    """The colour-guide case of :func:`guided_filter` (one C×C solve per pixel)."""
    c = guide.shape[1]
    mean_i = box_mean(guide.flatten(0, 1), radius).view_as(guide)  # N×C×H×W
    mean_p = box_mean(src, radius)
    cov_ip = box_mean((guide * src[:, None]).flatten(0, 1), radius).view_as(guide) - mean_i * mean_p[:, None]
    pairs = torch.stack([guide[:, i] * guide[:, j] for i in range(c) for j in range(c)], dim=1)  # N×C²×H×W
    second = box_mean(pairs.flatten(0, 1), radius).view(guide.shape[0], c, c, *guide.shape[-2:])
    sigma = second - mean_i[:, :, None] * mean_i[:, None, :]  # N×C×C×H×W
    sigma = sigma.permute(0, 3, 4, 1, 2) + eps * torch.eye(c, dtype=guide.dtype, device=guide.device)
    a = torch.linalg.solve(sigma, cov_ip.permute(0, 2, 3, 1)[..., None])[..., 0].permute(0, 3, 1, 2)  # N×C×H×W
    b = mean_p - (a * mean_i).sum(dim=1)
    return (box_mean(a.flatten(0, 1), radius).view_as(a) * guide).sum(dim=1) + box_mean(b, radius)


def guided_refine(images: torch.Tensor, maps: torch.Tensor, radius: int, eps: float = DEFAULT_EPS,
                  colour: bool = True) -> torch.Tensor:
    """N×h×w ``maps`` resized bilinearly to the N×C×H×W ``images`` (when smaller), then guided-filtered
    with the images as guide: their colours (``colour=True``, the default) or their gray level
    (the channel mean). No gradients."""
    size = tuple(images.shape[-2:])
    with torch.no_grad():
        m = maps.float()
        if tuple(m.shape[-2:]) != size:
            m = F.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]
        x = images.float()
        guide = x if colour and x.shape[1] > 1 else x.mean(dim=1)
        return guided_filter(guide, m, int(radius), eps)
