"""Region growing and hole filling on whole stacks of masks with one ``scipy.ndimage.label`` call.

Connectivity is 4 (face) connectivity inside each image and nothing across images: the 3-D
structuring element has only its middle plane set, so stacking N images never joins them.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

__all__ = ["label_stack", "region_grow", "fill_small_holes", "MAX_HOLE_SIZE"]

MAX_HOLE_SIZE = 256

_STRUCTURE = np.zeros((3, 3, 3), dtype=bool)
_STRUCTURE[1] = ndi.generate_binary_structure(2, 1)  # 4-connectivity in-plane only


def label_stack(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of every image of an ``N×H×W`` boolean mask (labels unique over
    the stack). Labels are ``intp`` so that look-ups by label need no index conversion."""
    return ndi.label(mask, structure=_STRUCTURE, output=np.intp)


def region_grow(
    values: np.ndarray, seeds: np.ndarray, lower: np.ndarray, upper: np.ndarray
) -> np.ndarray:
    """Connected-threshold region growing (SimpleITK's ``ConnectedThreshold``), for a stack.

    Pixel ``p`` of image ``n`` is in the region iff a 4-connected path joins it to a seed of
    image ``n`` through pixels with ``lower[n] ≤ value ≤ upper[n]`` (both ends included; a seed
    outside that band grows nothing). Equivalently: label the band mask and keep the components
    that contain a seed.

    ``values``: ``N×H×W`` floats; ``seeds``: ``N×H×W`` bool; ``lower``/``upper``: length ``N``.
    Returns an ``N×H×W`` bool mask.
    """
    lo = np.asarray(lower, dtype=values.dtype)[:, None, None]
    hi = np.asarray(upper, dtype=values.dtype)[:, None, None]
    band = values >= lo
    band &= values <= hi
    labels, count = label_stack(band)
    hit = np.zeros(count + 1, dtype=bool)
    hit[labels[seeds]] = True
    hit[0] = False
    return np.take(hit, labels)


def fill_small_holes(mask: np.ndarray, max_size: int = MAX_HOLE_SIZE) -> np.ndarray:
    """Fill every hole of at most ``max_size`` pixels in each image of an ``N×H×W`` bool mask.

    A hole is a 4-connected component of the background, including those touching the border
    (as ``skimage.morphology.remove_small_holes(mask, max_size=max_size)`` counts them).
    """
    mask = np.asarray(mask, dtype=bool)
    labels, _ = label_stack(~mask)
    small = np.bincount(labels.ravel()) <= max_size
    small[0] = False
    return mask | np.take(small, labels)
