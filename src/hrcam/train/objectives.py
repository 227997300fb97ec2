"""Decoder objectives that constrain the high-res CAM *inside* each low-res cell.

The seed trains the expansion network as an autoencoder (``reconstruction``); the 1×1
reconstruction head reads only 3 of A_high's 16 directions, so the class maps ``W[c]·A_high`` are
left free, and with transposed convolutions they come out checkerboarded. ``consistency`` pins
each cell's mean to the low-res CAM but nothing inside a cell. The ``faithfulness`` objective
asks the map of the labelled class to be an explanation the frozen classifier agrees with:

    s      = (high[y] − min low[y]) / (max low[y] − min low[y])   in the low-res CAM's units (fixed)
    m      = clip(s, 0, 1)
    keep   = CE(f(m ⊙ x + (1 − m) ⊙ u), y)       the kept pixels alone still give class y
    delete = −log(1 − p_y(f((1 − m) ⊙ x + m ⊙ u)))   the rest alone does not
    area   = mean((m + 5e-4)^0.3)                concave, so a small mask beats a dim one
    tv     = mean(w_x (∂x s)² + w_y (∂y s)²),    w = exp(−|∂ gray(x)| / σ): smooth except at image edges

That is ``scale='low'`` (the default). With ``scale='minmax'`` (the earlier default)
``m = s = norm(high[y])``, the per-image min-max; one far outlier pixel then sets every other
pixel of the mask to ≈ 1 and wins ``keep`` and ``delete`` at once, which a frozen pretrained
backbone's decoder learns (:func:`faithfulness_terms`).

``u`` is the fill that replaces the hidden pixels. With ``fill='random'`` it is one
uniform random colour per image, drawn anew at every step, one of Dabkowski & Gal's
alternatives: a fixed fill carries information. With a black fill (``'zero'``, the
masking of L-CAM-Img) a dark object cannot be deleted at all (its pixels are already the fill),
and the outline of a dark object on a lighter background is enough to keep it. The decoder
then learns to mark stroke *edges*. With ``'blur'`` the hidden pixels show the image itself under
a strong Gaussian blur (σ = 10/224 of the shorter side), Fong & Vedaldi's "meaningful
perturbation" ("Interpretable Explanations of Black Boxes by Meaningful Perturbation", ICCV
2017): it removes the object's detail but keeps the scene's colours, so neither the fill's colour
nor the mask's outline tells the classifier anything. It is the default: with the low-res mask it
brought the zero-fill deletion AUC to the low-res CAM's (README, decoder ablation, three seeds).
The pretrained decoder (:mod:`hrcam.train.decoder`) defaults to the random fill.

``f`` is the frozen HR-CAM classifier itself, so the map explains *this* classifier. The masking
game is Dabkowski & Gal's ("Real Time Image Saliency for Black Box Classifiers", NeurIPS 2017)
and L-CAM-Img's; the concave area term is L-CAM's ``(A + 0.0005)^0.3``; the edge-aware smoothness
is the image-guided total variation of depth/flow estimation. Paired with the anchored head
(:func:`hrcam.models.hrcam.nets.anchor_to_low`), each cell's mean stays the classifier's own
low-res CAM, so the decoder learns only where inside a cell the evidence lies.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["FaithfulnessWeights", "FILLS", "SCALES", "minmax_maps", "low_scaled_maps", "edge_aware_tv", "concave_area", "blurred", "mask_fill",
           "faithfulness_terms"]

#: what replaces the hidden pixels in the masking game (see the module docstring)
FILLS = ("random", "zero", "blur")

#: Gaussian σ of the ``'blur'`` fill, as a fraction of the image's shorter side (10 px at 224 px, the
#: blur of Fong & Vedaldi's "meaningful perturbations")
BLUR_SIGMA = 10 / 224

#: how the class map becomes the mask ``m`` of the masking game (see :func:`faithfulness_terms`)
SCALES = ("minmax", "low")


@dataclass(frozen=True)
class FaithfulnessWeights:
    """Weights of the ``faithfulness`` terms (defaults: measured on the demo, see the README ablation)."""

    keep: float = 1.0
    delete: float = 1.0
    area: float = 2.0
    tv: float = 100.0
    #: image-gradient scale of the edge-aware smoothness (intensities in [0, 1])
    sigma: float = 0.1
    #: the fill of hidden pixels: one of :data:`FILLS`
    fill: str = "blur"
    #: the map → mask scaling: one of :data:`SCALES`
    scale: str = "low"

    def __post_init__(self):
        if self.fill not in FILLS:
            raise ValueError(f"faithfulness fill must be one of {', '.join(FILLS)}, got {self.fill!r}")
        if self.scale not in SCALES:
            raise ValueError(f"faithfulness scale must be one of {', '.join(SCALES)}, got {self.scale!r}")
        for name, value in asdict(self).items():
            if name in ("fill", "scale"):
                continue
            if not (isinstance(value, (int, float)) and value >= 0 and value == value):
                raise ValueError(f"faithfulness weight {name} must be a number >= 0, got {value!r}")
        if self.sigma <= 0:
            raise ValueError(f"faithfulness sigma must be > 0, got {self.sigma}")


def minmax_maps(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Differentiable per-map min-max normalization of N×H×W maps (``eps`` keeps constant maps finite)."""
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
    return (maps - lo) / (hi - lo + eps)


def low_scaled_maps(maps: torch.Tensor, low_maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """N×H×W ``maps`` in the units of the classifier's own low-res CAMs (N×h×w, no gradient):
    0 at each low-res map's minimum, 1 at its maximum. Not clipped; the range comes from the
    low-res map alone, so no pixel of ``maps`` can change the scale of the others."""
    low = low_maps.detach()
    lo = low.amin(dim=(1, 2), keepdim=True)
    hi = low.amax(dim=(1, 2), keepdim=True)
    return (maps - lo) / (hi - lo + eps)


def edge_aware_tv(masks: torch.Tensor, images: torch.Tensor, sigma: float = 0.1) -> torch.Tensor:
    """Mean squared gradient of N×H×W ``masks``, down-weighted where the N×C×H×W image has edges."""
    gray = images.mean(dim=1)
    wx = torch.exp(-(gray[:, :, 1:] - gray[:, :, :-1]).abs() / sigma)
    wy = torch.exp(-(gray[:, 1:] - gray[:, :-1]).abs() / sigma)
    dx = (masks[:, :, 1:] - masks[:, :, :-1]).pow(2)
    dy = (masks[:, 1:] - masks[:, :-1]).pow(2)
    return (wx * dx).mean() + (wy * dy).mean()


def concave_area(masks: torch.Tensor, power: float = 0.3, offset: float = 5e-4) -> torch.Tensor:
    """``mean((m + offset)^power)``: L-CAM's area term; concave, so it favours few bright pixels."""
    return (masks + offset).pow(power).mean()


def blurred(images: torch.Tensor, sigma_fraction: float = BLUR_SIGMA) -> torch.Tensor:
    """N×C×H×W images under a Gaussian blur of σ = ``sigma_fraction`` × the shorter side.

    Separable (a row pass, then a column pass; 2·(2r+1) taps a pixel instead of (2r+1)²), radius
    r = ⌈3σ⌉ clipped to side − 1, reflect border.
    """
    n, c, h, w = images.shape
    sigma = sigma_fraction * min(h, w)
    radius = min(math.ceil(3 * sigma), min(h, w) - 1)  # reflect padding needs pad < side
    if sigma <= 0 or radius < 1:
        return images.clone()
    taps = torch.arange(-radius, radius + 1, dtype=images.dtype, device=images.device)
    kernel = torch.exp(-0.5 * (taps / sigma) ** 2)
    kernel = kernel / kernel.sum()
    flat = images.reshape(n * c, 1, h, w)
    flat = F.conv2d(F.pad(flat, (radius, radius, 0, 0), mode="reflect"), kernel.view(1, 1, 1, -1))
    flat = F.conv2d(F.pad(flat, (0, 0, radius, radius), mode="reflect"), kernel.view(1, 1, -1, 1))
    return flat.reshape(n, c, h, w)


def mask_fill(images: torch.Tensor, fill: str = "random") -> torch.Tensor:
    """The fill of the hidden pixels: N×C×1×1 (a uniform random colour per image, or black), or
    N×C×H×W for ``'blur'`` (the image itself under a strong Gaussian blur, :func:`blurred`).

    ``'random'`` draws from torch's global generator, which the trainers seed, so seeded runs repeat.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    if fill == "blur":
        with torch.no_grad():
            return blurred(images)
    shape = (images.shape[0], images.shape[1], 1, 1)
    if fill == "zero":
        return images.new_zeros(shape)
    return torch.rand(shape, dtype=images.dtype, device=images.device)


def faithfulness_terms(classifier, images: torch.Tensor, class_maps: torch.Tensor, labels: torch.Tensor,
                       weights: FaithfulnessWeights, low_maps: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """The weighted terms of the ``faithfulness`` objective (see the module docstring).

    The mask: with ``weights.scale == 'minmax'`` it is the per-map min-max of the class map, and
    the TV term is taken on it. With ``'low'`` it is the map in the low-res CAM's units
    (:func:`low_scaled_maps`) clipped to [0, 1], and the TV term is taken before the clipping. A
    min-max mask can be gamed: one pixel pushed far below the rest makes every other pixel ≈ 1,
    which keeps the class under ``keep``, hides the image under ``delete`` and flattens the TV.
    A frozen pretrained backbone's decoder learns exactly that (the README's pretrained section);
    in the low-res units such an outlier moves no other pixel and costs its jump in TV.

    Args:
        classifier: the frozen network giving logits (gradients flow through it to the maps).
        images: N×C×H×W input in [0, 1].
        class_maps: N×H×W high-res CAMs of the labelled classes.
        labels: N class indices.
        weights: the terms' weights.
        low_maps: N×h×w low-res CAMs of the same classes (needed for ``scale='low'``).

    Returns:
        ``{"keep", "delete", "area", "tv"}``, each already multiplied by its weight.

    Raises:
        ValueError: ``scale='low'`` without ``low_maps``.
    """
    if weights.scale == "low":
        if low_maps is None:
            raise ValueError("faithfulness scale 'low' needs the low-res CAMs (low_maps)")
        smooth = low_scaled_maps(class_maps, low_maps)
        m = smooth.clamp(0, 1)
    else:
        m = smooth = minmax_maps(class_maps)
    terms: dict[str, torch.Tensor] = {}
    mask = m[:, None]
    if weights.keep or weights.delete:
        u = mask_fill(images, weights.fill)
    if weights.keep:
        terms["keep"] = weights.keep * F.cross_entropy(classifier(images * mask + u * (1 - mask)), labels)
    if weights.delete:
        p = F.softmax(classifier(images * (1 - mask) + u * mask), dim=1).gather(1, labels[:, None])[:, 0]
        terms["delete"] = weights.delete * -torch.log((1 - p).clamp_min(1e-6)).mean()
    if weights.area:
        terms["area"] = weights.area * concave_area(m)
    if weights.tv:
        terms["tv"] = weights.tv * edge_aware_tv(smooth, images, weights.sigma)
    return terms
