"""Tying a decoder's high-res features to the classifier's low-res ones (the ``bilinear`` anchor).

Both expansion networks (the FC-DenseNet :class:`~hrcam.models.hrcam.nets.FullNet` and the
pretrained-backbone :class:`~hrcam.models.pretrained.decoder.DecoderNet`) can pass their output
``B`` through :func:`anchor_to_low`, so each low-res cell's mean stays the classifier's own
evidence and the decoder only decides how that evidence is spread inside the cell.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["ANCHORS", "anchor_to_low", "check_anchor"]

#: how A_high is tied to A_low: ``none`` (the seed's: the decoder output is A_high) or
#: ``bilinear`` (the decoder's cell means are replaced by A_low's, see :func:`anchor_to_low`)
ANCHORS = ("none", "bilinear")


def check_anchor(anchor: str) -> str:
    """``anchor`` if it is one of :data:`ANCHORS`, else a ValueError naming the choices."""
    if anchor not in ANCHORS:
        raise ValueError(f"anchor must be one of {', '.join(ANCHORS)}, got {anchor!r}")
    return anchor


def anchor_to_low(a_high: torch.Tensor, a_low: torch.Tensor) -> torch.Tensor:
    """``B + up(A_low − pool(B))``: the decoder output ``B`` with its cell means moved onto A_low.

    ``pool`` averages each cell of ``B`` down to A_low's grid (an exact ``s×s`` average when the
    sides divide, else adaptive average pooling), ``up`` is a bilinear resize back. Every class map
    inherits it by linearity, ``high[c] = W[c]·B + up(low[c] − pool(W[c]·B))``: the decoder only
    decides how each low-res cell's evidence is spread inside the cell (and smoothly across cell
    borders), while the cell averages stay those of the classifier's own low-res CAM (exactly so
    for a nearest ``up``; bilinear keeps them within the interpolation's smoothing and adds no
    blocks). ``A_low`` must have ``B``'s channels (for a rank-r decoder: ``V_r·A``).
    """
    (h, w), (big_h, big_w) = a_low.shape[-2:], a_high.shape[-2:]
    if (h, w) == (big_h, big_w):
        return a_high
    if big_h % h == 0 and big_w % w == 0:
        pooled = F.avg_pool2d(a_high, (big_h // h, big_w // w))
    else:
        pooled = F.adaptive_avg_pool2d(a_high, (h, w))
    return a_high + F.interpolate(a_low - pooled, size=(big_h, big_w), mode="bilinear", align_corners=False)
