"""Region growing and hole filling on whole stacks of masks, with OpenCV.

Connectivity is 4 (face) connectivity inside each image and nothing across images (OpenCV works
on one 2-D image per call). Region growing is a flood fill from the seeds (``cv2.floodFill``),
hole filling a labelling of the background (``cv2.connectedComponents``) with a size look-up.
"""
from __future__ import annotations

import cv2
import numpy as np

from hrcam.postprocessing.filters import stack_nonzero

__all__ = ["label_stack", "region_grow", "fill_small_holes", "MAX_HOLE_SIZE"]

MAX_HOLE_SIZE = 256

#: Most pixels a ``uint16`` labelling may cover: a checkerboard of ``P`` pixels has ``⌈P/2⌉``
#: 4-connected components, which plus the background label 0 must fit in 65535 labels.
_U16_PIXELS = 2 * (np.iinfo(np.uint16).max - 1)


_LTYPE = {np.dtype(np.uint16): cv2.CV_16U, np.dtype(np.int32): cv2.CV_32S}


def _label_sizes(labels: np.ndarray, count: int) -> np.ndarray:
    """Pixel count of every label ``0 … count−1`` of a label image: ``cv2.calcHist`` for
    ``uint16`` labels (twice as fast as ``np.bincount``, which first converts them to ``intp``)."""
    if labels.dtype == np.uint16:
        return cv2.calcHist([labels], [0], None, [count], [0, count]).ravel()
    return np.bincount(labels.ravel(), minlength=count)


def label_stack(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of every image of an ``N×H×W`` boolean mask, labels unique over the
    stack (0 = background), as an ``int32`` ``N×H×W`` array and the number of labels.

    One ``cv2.connectedComponents`` call for the whole stack: the images are stacked vertically
    into one tall 2-D mask with an all-zero separator row between consecutive images, which no
    component can cross."""
    mask = np.asarray(mask, dtype=bool)
    n, H, W = mask.shape
    tall = np.zeros((n, H + 1, W), np.uint8)  # row H of each image: the separator
    tall[:, :H] = mask
    count, labels = cv2.connectedComponents(tall.reshape(-1, W), connectivity=4, ltype=cv2.CV_32S)
    return labels.reshape(n, H + 1, W)[:, :H], count


def region_grow(
    values: np.ndarray,
    seeds: np.ndarray,
    lower: np.ndarray,
    upper: np.ndarray,
    out: np.ndarray | None = None,
) -> np.ndarray:
    """Connected-threshold region growing (SimpleITK's ``ConnectedThreshold``), for a stack.

    Pixel ``p`` of image ``n`` is in the region iff a 4-connected path joins it to a seed of
    image ``n`` through pixels with ``lower[n] ≤ value ≤ upper[n]`` (both ends included; a seed
    outside that band grows nothing).

    Computed as a flood fill of the band mask (1 = in the band) from each seed that is still 1,
    setting the region to 2 (``cv2.floodFill`` with 4-connectivity fills the pixels equal to the
    seed's value): the work is proportional to the grown region, not to the image.

    ``values``: ``N×H×W`` floats; ``seeds``: ``N×H×W`` bool; ``lower``/``upper``: length ``N``.
    Returns an ``N×H×W`` bool mask (into ``out`` if given).
    """
    n = values.shape[0]
    lo = np.asarray(lower, dtype=values.dtype).reshape(n, 1, 1)
    hi = np.asarray(upper, dtype=values.dtype).reshape(n, 1, 1)
    band = np.empty(values.shape, np.uint8)
    inside = band.view(bool)
    np.greater_equal(values, lo, out=inside)
    inside &= values <= hi
    ns, ys, xs = stack_nonzero(seeds)
    for i, y, x in zip(ns.tolist(), ys.tolist(), xs.tolist()):
        if band[i, y, x] == 1:  # not yet reached from an earlier seed
            cv2.floodFill(band[i], None, (x, y), 2, flags=4)
    return np.equal(band, 2, out=out)


def fill_small_holes(mask: np.ndarray, max_size: int = MAX_HOLE_SIZE, out: np.ndarray | None = None) -> np.ndarray:
    """Fill every hole of at most ``max_size`` pixels in each image of an ``N×H×W`` bool mask.

    A hole is a 4-connected component of the background, including those touching the border
    (as ``skimage.morphology.remove_small_holes(mask, max_size=max_size)`` counts them):
    ``out = mask ∪ {background pixels whose component has ≤ max_size pixels}``.

    One ``cv2.connectedComponents`` call per image labels the background; then a look-up table
    ``keep[label] = (label is the mask) or (size[label] ≤ max_size)`` maps the labels to the
    output. With at most 256 labels (the usual case) the labels fit in ``uint8`` and both the
    sizes (``cv2.calcHist``) and the look-up (``cv2.LUT``) take one fast pass.
    """
    mask = np.asarray(mask, dtype=bool)
    n, H, W = mask.shape
    out = np.empty(mask.shape, bool) if out is None else out
    background = np.empty((H, W), np.uint8)
    wide = np.empty((H, W), np.uint16 if H * W <= _U16_PIXELS else np.int32)
    narrow = np.empty((H, W), np.uint8)
    for m, o in zip(mask, out):
        np.logical_not(m, out=background.view(bool))
        count, labels = cv2.connectedComponents(background, labels=wide, connectivity=4, ltype=_LTYPE[wide.dtype])
        if count <= 256:
            np.copyto(narrow, labels, casting="unsafe")  # exact: labels < 256
            sizes = cv2.calcHist([narrow], [0], None, [256], [0, 256]).ravel()
            lut = (sizes <= max_size).view(np.uint8)
            lut[0] = 1  # label 0 is the mask itself
            cv2.LUT(narrow, lut, dst=o.view(np.uint8))
        else:
            sizes = _label_sizes(labels, count)
            keep = sizes <= max_size
            keep[0] = True
            np.take(keep, labels, out=o)
    return out
