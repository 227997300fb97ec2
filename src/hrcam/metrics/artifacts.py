"""Artifact measures of saliency maps: how much of a map is a checkerboard.

The high-frequency share of a map ``m`` (min-max normalized first) is the part of its variance
that a 3×3 mean filter removes::

    share(m) = Σ_p (m_p − box3(m)_p)² / Σ_p (m_p − mean m)²

with ``box3`` the 3×3 mean filter, borders replicated. A smooth map keeps almost all its energy
under the filter (share near 0); the period-2 pattern of stride-2 transposed convolutions
(a checkerboard) is what the filter removes, so it drives the share up. A constant map has no
variance and scores 0. :data:`CHECKERBOARD_MAX_SHARE` is the line between the two, measured on
smooth blobs and on the same blobs with a ±0.2 period-2 pattern (see
``tests/metrics/test_artifacts.py``).
"""
from __future__ import annotations

import numpy as np

__all__ = ["CHECKERBOARD_MAX_SHARE", "box3", "high_frequency_share"]

#: maps whose :func:`high_frequency_share` exceeds this are checkerboarded. Measured
#: (tests/metrics/test_artifacts.py): smooth Gaussian blobs (σ 3–10 px) at 32 and 64 px score
#: < 0.003, hard-edged shapes (a binary rectangle, a 4×4 grid of flat 16-px cells) about 0.04,
#: the blobs plus a ±0.1 period-2 pattern about 0.17 and plus ±0.2 more than 0.27
CHECKERBOARD_MAX_SHARE = 0.1


def box3(maps: np.ndarray) -> np.ndarray:
    """3×3 mean filter of each ``N×H×W`` map, with replicated borders (``a a | a b c | c c``)."""
    a = np.asarray(maps, dtype=np.float64)
    _, h, w = a.shape
    p = np.pad(a, ((0, 0), (1, 1), (1, 1)), mode="edge")
    out = np.zeros_like(a)
    for dy in range(3):
        for dx in range(3):
            out += p[:, dy : dy + h, dx : dx + w]
    return out / 9.0


def high_frequency_share(maps) -> np.ndarray:
    """Share of each map's variance above a 3×3 box filter (module docstring), one value per map.

    ``maps``: ``N×H×W`` (or one ``H×W`` map; NumPy or torch), finite. Each map is min-max
    normalized first, so the share does not depend on its scale; constant maps give 0.

    Example:
        >>> smooth = np.outer(np.hanning(32), np.hanning(32))[None]
        >>> bool(high_frequency_share(smooth)[0] < CHECKERBOARD_MAX_SHARE)
        True

    Raises:
        ValueError: the maps are not 2-D/3-D or hold NaN / inf.
    """
    from hrcam.metrics.localization import normalize_maps

    m = normalize_maps(maps)
    residual = ((m - box3(m)) ** 2).sum(axis=(1, 2))
    variance = ((m - m.mean(axis=(1, 2), keepdims=True)) ** 2).sum(axis=(1, 2))
    return np.where(variance > 0, residual / np.where(variance > 0, variance, 1.0), 0.0)
