"""Region growing and hole filling on whole stacks of masks, with OpenCV.

Connectivity is 4 (face) connectivity inside each image and nothing across images. Several
images are labelled in one ``cv2.connectedComponents`` call by stacking them vertically into one
tall 2-D mask with an all-zero separator row between consecutive images: a component cannot
cross a zero row, so the components of the tall mask are exactly those of the single images.
"""
from __future__ import annotations

import cv2
import numpy as np

from hrcam.postprocessing.filters import stack_nonzero

__all__ = ["label_stack", "region_grow", "fill_small_holes", "MAX_HOLE_SIZE"]

MAX_HOLE_SIZE = 256

#: Most pixels one ``uint16`` labelling may cover: a checkerboard of ``P`` pixels has ``⌈P/2⌉``
#: 4-connected components, which plus the background label 0 must fit in 65535 labels.
_U16_PIXELS = 2 * (np.iinfo(np.uint16).max - 1)


def _separated(n: int, H: int, W: int) -> tuple[np.ndarray, np.ndarray]:
    """A zeroed ``uint8`` buffer ``n×(H+1)×W`` (row ``H`` of each image is the separator) and its
    ``n×H×W`` image part viewed as ``bool``, to be written with ``out=``."""
    buf = np.zeros((n, H + 1, W), np.uint8)
    return buf, buf[:, :H].view(bool)


def _label_sizes(tall: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """4-connected labels of a 2-D ``uint8`` mask and the pixel count of every label.

    ``uint16`` labels counted by ``cv2.calcHist`` when they cannot overflow (twice as fast as
    ``np.bincount``, which first converts the labels to ``intp``); ``int32`` + ``bincount`` else.
    """
    if tall.size <= _U16_PIXELS:
        count, labels = cv2.connectedComponents(tall, connectivity=4, ltype=cv2.CV_16U)
        sizes = cv2.calcHist([labels], [0], None, [count], [0, count]).ravel()
    else:
        count, labels = cv2.connectedComponents(tall, connectivity=4, ltype=cv2.CV_32S)
        sizes = np.bincount(labels.ravel(), minlength=count)
    return labels, sizes


def label_stack(mask: np.ndarray) -> tuple[np.ndarray, int]:
    """4-connected components of every image of an ``N×H×W`` boolean mask, labels unique over the
    stack (0 = background), as an ``int32`` ``N×H×W`` array and the number of labels."""
    mask = np.asarray(mask, dtype=bool)
    n, H, W = mask.shape
    buf, view = _separated(n, H, W)
    view[...] = mask
    count, labels = cv2.connectedComponents(buf.reshape(-1, W), connectivity=4, ltype=cv2.CV_32S)
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
    The background is labelled a few images per call (as many as ``uint16`` labels allow).
    """
    mask = np.asarray(mask, dtype=bool)
    n, H, W = mask.shape
    out = np.empty(mask.shape, bool) if out is None else out
    per_call = max(1, _U16_PIXELS // ((H + 1) * W))
    buf, view = _separated(min(per_call, n), H, W)
    for start in range(0, n, per_call):
        part = slice(start, start + per_call)
        k = len(mask[part])
        np.logical_not(mask[part], out=view[:k])
        labels, sizes = _label_sizes(buf[:k].reshape(-1, W))
        small = sizes <= max_size
        small[0] = False  # label 0: the mask itself and the separator rows
        np.take(small, labels.reshape(k, H + 1, W)[:, :H], out=out[part])
    out |= mask
    return out
