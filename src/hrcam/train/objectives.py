"""Decoder objectives that constrain the high-res CAM *inside* each low-res cell.

The seed trains the expansion network as an autoencoder (``reconstruction``); the 1×1
reconstruction head reads only 3 of A_high's 16 directions, so the class maps ``W[c]·A_high`` are
left free, and with transposed convolutions they come out checkerboarded. ``consistency`` pins
each cell's mean to the low-res CAM but nothing inside a cell. The ``faithfulness`` objective
asks the map of the labelled class to be an explanation the frozen classifier agrees with:

    m      = norm(high[y])                       per-image min-max, in [0, 1]
    keep   = CE(f(m ⊙ x), y)                     the kept pixels alone still give class y
    delete = −log(1 − p_y(f((1 − m) ⊙ x)))       the rest alone does not
    area   = mean((m + 5e-4)^0.3)                concave, so a small mask beats a dim one
    tv     = mean(w_x (∂x m)² + w_y (∂y m)²),    w = exp(−|∂ gray(x)| / σ): smooth except at image edges

``f`` is the frozen HR-CAM classifier itself, so the map explains *this* classifier. The masking
game is Dabkowski & Gal's ("Real Time Image Saliency for Black Box Classifiers", NeurIPS 2017)
and L-CAM-Img's; the concave area term is L-CAM's ``(A + 0.0005)^0.3``; the edge-aware smoothness
is the image-guided total variation of depth/flow estimation. Paired with the anchored head
(:func:`hrcam.models.hrcam.nets.anchor_to_low`), each cell's mean stays the classifier's own
low-res CAM, so the decoder learns only where inside a cell the evidence lies.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

__all__ = ["FaithfulnessWeights", "minmax_maps", "edge_aware_tv", "concave_area", "faithfulness_terms"]


@dataclass(frozen=True)
class FaithfulnessWeights:
    """Weights of the ``faithfulness`` terms (defaults: measured on the demo, see the README ablation)."""

    keep: float = 1.0
    delete: float = 1.0
    area: float = 2.0
    tv: float = 100.0
    #: image-gradient scale of the edge-aware smoothness (intensities in [0, 1])
    sigma: float = 0.1

    def __post_init__(self):
        for name, value in asdict(self).items():
            if not (isinstance(value, (int, float)) and value >= 0 and value == value):
                raise ValueError(f"faithfulness weight {name} must be a number >= 0, got {value!r}")
        if self.sigma <= 0:
            raise ValueError(f"faithfulness sigma must be > 0, got {self.sigma}")


def minmax_maps(maps: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Differentiable per-map min-max normalization of N×H×W maps (``eps`` keeps constant maps finite)."""
    lo = maps.amin(dim=(1, 2), keepdim=True)
    hi = maps.amax(dim=(1, 2), keepdim=True)
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


def faithfulness_terms(classifier, images: torch.Tensor, class_maps: torch.Tensor, labels: torch.Tensor,
                       weights: FaithfulnessWeights) -> dict[str, torch.Tensor]:
    """The weighted terms of the ``faithfulness`` objective (see the module docstring).

    Args:
        classifier: the frozen network giving logits (gradients flow through it to the maps).
        images: N×C×H×W input in [0, 1].
        class_maps: N×H×W high-res CAMs of the labelled classes.
        labels: N class indices.
        weights: the terms' weights.

    Returns:
        ``{"keep", "delete", "area", "tv"}``, each already multiplied by its weight.
    """
    m = minmax_maps(class_maps)
    terms: dict[str, torch.Tensor] = {}
    if weights.keep:
        terms["keep"] = weights.keep * F.cross_entropy(classifier(images * m[:, None]), labels)
    if weights.delete:
        p = F.softmax(classifier(images * (1 - m[:, None])), dim=1).gather(1, labels[:, None])[:, 0]
        terms["delete"] = weights.delete * -torch.log((1 - p).clamp_min(1e-6)).mean()
    if weights.area:
        terms["area"] = weights.area * concave_area(m)
    if weights.tv:
        terms["tv"] = weights.tv * edge_aware_tv(m, images, weights.sigma)
    return terms
