"""The OpenCV fast paths of the post-processing pipeline give exactly what the obvious SciPy /
scikit-image / NumPy formulations give, on random inputs of many shapes and value ranges
(including tiny images, wide dynamic ranges, ties, and label counts past 8 and 16 bits)."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import filters, morphology

from _pipeline_reference import grow, top_k
from hrcam.postprocessing import pipeline, pipeline_batch
from hrcam.postprocessing.filters import RowRanks, box_blur, sobel_magnitude
from hrcam.postprocessing.merge import apply_mask, percentage_mask
from hrcam.postprocessing.region_growing import fill_small_holes, label_stack, region_grow

SHAPES = [(1, 1), (1, 6), (5, 1), (2, 2), (3, 7), (4, 4), (8, 5), (23, 17), (40, 64)]


def _maps(rng, shape, kind):
    """Float32 maps with different value structures."""
    a = rng.random((3,) + shape)
    if kind == "smooth":
        a = ndi.gaussian_filter(a, (0, 2, 2))
    elif kind == "wide":  # values spanning many binades, and exact zeros
        a = a * 10.0 ** rng.integers(-12, 1, a.shape)
        a[rng.random(a.shape) < 0.2] = 0
    elif kind == "quantized":
        a = np.round(a * 4) / 4
    return a.astype(np.float32)


@pytest.mark.parametrize("kind", ["noise", "smooth", "wide", "quantized"])
def test_box_blur_and_sobel_are_bit_identical_to_scipy_and_scikit_image(kind):
    rng = np.random.default_rng(0)
    for shape in SHAPES:
        a = _maps(rng, shape, kind)
        assert np.array_equal(box_blur(a), ndi.uniform_filter(a, size=(1, 5, 5), mode="reflect")), shape
        assert np.array_equal(sobel_magnitude(a), np.stack([filters.sobel(m) for m in a])), shape


def test_region_growing_equals_a_flood_fill_per_seed():
    rng = np.random.default_rng(1)
    for trial in range(12):
        H, W = rng.integers(5, 60, 2)
        values = ndi.gaussian_filter(rng.random((3, H, W)), (0, 1, 1)).astype(np.float32)
        seeds = rng.random((3, H, W)) < (0.002 if trial % 2 else 0.05)  # few or many seeds
        lower = np.quantile(values, 0.3, axis=(1, 2))
        upper = np.quantile(values, 0.8, axis=(1, 2))
        out = region_grow(values, seeds, lower, upper)
        for v, s, lo, hi, o in zip(values, seeds, lower, upper, out):
            ys, xs = np.nonzero(s)
            lo32, hi32 = np.float32(lo), np.float32(hi)  # the bounds as the float32 maps see them
            assert np.array_equal(o, grow(v, list(zip(xs, ys)), lo32, hi32))


@pytest.mark.parametrize(
    "shape,p",
    [
        ((3, 30, 41), 0.5),   # many small holes
        ((2, 80, 80), 0.5),   # > 256 background labels in an image (no 8-bit look-up), one > 256 px
        ((2, 90, 80), 0.3),   # large background components
        ((1, 370, 360), 0.5),  # too many pixels for 16-bit labels
        ((2, 1, 9), 0.5),
        ((2, 7, 1), 0.5),
    ],
)
def test_hole_filling_equals_scikit_image_remove_small_holes(shape, p):
    rng = np.random.default_rng(2)
    mask = rng.random(shape) < p
    if shape[1] > 80:  # blobs as well as noise
        mask |= ndi.gaussian_filter(rng.random(shape), (0, 3, 3)) > 0.55
    expected = np.stack([morphology.remove_small_holes(m, max_size=256) for m in mask])
    assert np.array_equal(fill_small_holes(mask), expected)


def test_label_stack_keeps_images_apart():
    rng = np.random.default_rng(3)
    mask = rng.random((4, 12, 9)) < 0.6
    mask[:, -1] = mask[:, 0] = True  # last row of one image and first of the next both set
    labels, count = label_stack(mask)
    per_image = [ndi.label(m)[1] for m in mask]
    assert count - 1 == sum(per_image)
    for i in range(3):
        assert not set(np.unique(labels[i][labels[i] > 0])) & set(np.unique(labels[i + 1]))


def test_top_k_and_percentage_filter_equal_a_stable_sort_with_ties():
    rng = np.random.default_rng(4)
    maps = np.round(rng.random((6, 11, 13)) * 3).astype(np.float32) / 3  # 4 values: many ties
    maps[0] = 0.25  # constant
    maps[1] = 0
    maps[1, :2] = 1  # the k-th largest is the minimum
    for k in (1, 5, 40, 142):
        got = RowRanks(maps, top_ks=(k,)).top_k(k)
        assert np.array_equal(got, np.stack([top_k(m, k) for m in maps])), k
    for pct in (3, 15, 50, 90):
        k = int(round(pct / 100 * maps[0].size))
        expected = np.stack([top_k(m, k) & (m > m.min()) for m in maps])
        assert np.array_equal(percentage_mask(maps, pct), expected), pct


@pytest.mark.parametrize("channels", [None, 1, 3, 4])
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_apply_mask_keeps_exactly_the_masked_pixels(channels, dtype):
    rng = np.random.default_rng(5)
    shape = (2, 6, 7) if channels is None else (2, 6, 7, channels)
    imgs = (rng.random(shape) * 200 + 1).astype(dtype)
    keep = rng.random((2, 6, 7)) < 0.4
    expected = np.where(keep if channels is None else keep[..., None], imgs, 0).astype(dtype)
    out = apply_mask(imgs, keep)
    assert out.dtype == dtype and np.array_equal(out, expected)


def test_huge_finite_images_are_accepted_and_non_finite_ones_rejected():
    img = np.full((6, 6, 3), 3e38, np.float32)  # its sum overflows, its values are finite
    steps = pipeline(img, np.ones((2, 2)), np.ones((6, 6)))
    assert np.isfinite(steps["result"]).all()
    img[1, 2, 0] = -np.inf
    with pytest.raises(ValueError, match="NaN or inf"):
        pipeline(img, np.ones((2, 2)), np.ones((6, 6)))


def test_non_contiguous_inputs_give_the_same_outputs():
    rng = np.random.default_rng(6)
    imgs = rng.random((2, 3, 20, 18)).astype(np.float32)  # N×C×H×W, seen as N×H×W×C below
    highs = ndi.gaussian_filter(rng.random((2, 18, 20)), (0, 1, 1)).astype(np.float32)
    lows = rng.random((2, 4, 5)).astype(np.float32)
    views = (imgs.transpose(0, 2, 3, 1), lows, highs.transpose(0, 2, 1))
    copies = tuple(np.ascontiguousarray(v) for v in views)
    assert not views[0].flags.c_contiguous and not views[2].flags.c_contiguous
    a, b = pipeline_batch(*views), pipeline_batch(*copies)
    for key in a:
        assert (a[key] == b[key]) if key == "focal_points" else np.array_equal(a[key], b[key]), key
