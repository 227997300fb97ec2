"""Post-processing pipeline (DESIGN §4): steps checked against answers worked out by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from skimage.filters import sobel

from hrcam.postprocessing import STEP_KEYS, pipeline, pipeline_batch, validate_params
from hrcam.postprocessing.filters import box_blur, normalize, resize_bilinear, sobel_magnitude
from hrcam.postprocessing.focal_points import global_focal_mask, local_focal_mask, mask_to_points
from hrcam.postprocessing.merge import merge_maps, percentage_mask, threshold_mask
from hrcam.postprocessing.region_growing import fill_small_holes, region_grow


# ---------------------------------------------------------------- filters
def test_box_filter_on_an_impulse_is_a_5x5_square_of_one_25th():
    a = np.zeros((1, 9, 9), np.float32)
    a[0, 4, 4] = 1
    out = box_blur(a)[0]
    expected = np.zeros((9, 9))
    expected[2:7, 2:7] = 1 / 25
    np.testing.assert_allclose(out, expected, atol=1e-7)


def test_box_filter_reflects_at_the_border():
    # reflect border "d c b a | a b c d": an impulse in the corner is counted 4 times at (0, 0)
    a = np.zeros((1, 6, 6), np.float32)
    a[0, 0, 0] = 1
    out = box_blur(a)[0]
    assert out[0, 0] == pytest.approx(4 / 25)
    assert out[0, 2] == pytest.approx(2 / 25)   # mirrored once along the row axis
    assert out[2, 2] == pytest.approx(1 / 25)
    assert out[3, 0] == 0


def test_normalize_constant_map_is_zero_not_nan():
    out = normalize(np.stack([np.full((3, 3), 7.0), np.arange(9.0).reshape(3, 3)]))
    assert np.array_equal(out[0], np.zeros((3, 3)))
    np.testing.assert_allclose(out[1], np.arange(9).reshape(3, 3) / 8, atol=1e-7)


def test_batched_sobel_is_bit_identical_to_scikit_image_per_image():
    rng = np.random.default_rng(3)
    stack = rng.random((4, 23, 17)).astype(np.float32)
    out = sobel_magnitude(stack)
    for a, b in zip(stack, out):
        assert np.array_equal(sobel(a), b)


def test_sobel_of_a_vertical_step_by_hand():
    # step 0 | 1 between columns 2 and 3; scikit-image weights: d/dx = [1,0,-1] x [1,2,1]/4,
    # magnitude sqrt((gx² + gy²)/2). Next to the step |gx| = 1, gy = 0 → 1/sqrt(2).
    a = np.zeros((1, 5, 6), np.float32)
    a[0, :, 3:] = 1
    out = sobel_magnitude(a)[0]
    np.testing.assert_allclose(out[:, 2], 1 / np.sqrt(2), rtol=1e-6)
    np.testing.assert_allclose(out[:, 3], 1 / np.sqrt(2), rtol=1e-6)
    assert np.all(out[:, [0, 5]] == 0)


@pytest.mark.parametrize("src,dst", [((3, 4), (12, 16)), ((7, 7), (10, 13)), ((5, 2), (5, 2))])
def test_bilinear_resize_matches_pytorch_align_corners_false(src, dst):
    rng = np.random.default_rng(0)
    low = rng.standard_normal((2,) + src).astype(np.float32)
    expected = torch.nn.functional.interpolate(
        torch.from_numpy(low)[:, None], size=dst, mode="bilinear", align_corners=False
    )[:, 0].numpy()
    np.testing.assert_allclose(resize_bilinear(low, dst), expected, atol=1e-5)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_batched_percentiles_equal_numpy_exactly(dtype):
    from hrcam.postprocessing.filters import percentile, ragged_percentiles

    rng = np.random.default_rng(5)
    for trial in range(40):
        n = int(rng.integers(1, 200))
        a = rng.random((3, n)).astype(dtype)
        if trial % 3 == 0:
            a = np.round(a * 4) / 4  # ties
        q = float(rng.uniform(0.5, 99.5))
        expected = np.percentile(a, q, axis=1)
        got = percentile(a, q)
        assert got.dtype == expected.dtype and np.array_equal(got, expected)
        groups = ragged_percentiles(a.ravel(), np.array([n, n, n]), (25, q))
        assert np.array_equal(groups, [[np.percentile(r, 25), np.percentile(r, q)] for r in a])


# ---------------------------------------------------------------- ROI and focal points
def test_roi_holds_the_expected_share_of_pixels():
    # low has the image's size (the bilinear resize is then the identity) and the values 0..99:
    # pct(·, 85) = 84.15, so the ROI is exactly the 15 pixels with values 85..99.
    rng = np.random.default_rng(0)
    low = rng.permutation(100).reshape(10, 10).astype(np.float32)
    high = rng.random((10, 10))
    steps = pipeline(np.ones((10, 10, 3)), low, high, roi_percentile=85)
    assert np.array_equal(steps["low_resized"], low)
    assert steps["roi"].sum() == 15
    assert np.array_equal(steps["roi"], low >= 85)
    steps = pipeline(np.ones((10, 10, 3)), low, high, roi_percentile=50)  # pct = 49.5
    assert np.array_equal(steps["roi"], low >= 50)


def test_global_focal_points_are_the_round_sqrt_h_largest_pixels():
    # H = 16 → round(√16) = 4 points; four known maxima as (x, y) = (column, row)
    low = np.zeros((16, 16), np.float32)
    peaks = [(3, 1), (14, 2), (0, 9), (7, 15)]
    for v, (x, y) in enumerate(peaks):
        low[y, x] = 10 + v
    low[5, 5] = 9  # fifth largest: not a focal point
    steps = pipeline(np.ones((16, 16, 3)), low, np.random.rand(16, 16))
    assert sorted(steps["focal_points"]) == sorted(peaks)


def test_global_focal_point_ties_go_to_the_first_pixels_in_raster_order():
    flat = np.zeros((1, 9, 9), np.float32)  # round(√9) = 3 points among 81 equal values
    assert mask_to_points(global_focal_mask(flat)[0]) == [(0, 0), (1, 0), (2, 0)]


def test_local_focal_points_keep_maxima_above_the_midpoint_of_their_values():
    # local maxima with values 10, 9 and 2 → threshold (10 + 2)/2 = 6 keeps 10 and 9
    low = np.zeros((6, 6), np.float32)
    low[1, 1], low[4, 3], low[1, 4] = 10, 9, 2
    mask = local_focal_mask(low[None], (6, 6), "large")[0]
    assert mask_to_points(mask) == [(1, 1), (3, 4)]
    # upscaled ×4 with nearest resize: 'large' keeps the 4×4 blocks, 'small' thins them
    large = local_focal_mask(low[None], (24, 24), "large")[0]
    expected = np.zeros((24, 24), bool)
    expected[4:8, 4:8] = expected[16:20, 12:16] = True
    assert np.array_equal(large, expected)
    small = local_focal_mask(low[None], (24, 24), "small")[0]
    assert small[4:8, 4:8].any() and small[16:20, 12:16].any()
    assert not (small & ~expected).any() and small.sum() < expected.sum()


def test_local_focal_points_of_a_constant_map_are_empty():
    assert not local_focal_mask(np.ones((1, 4, 4)), (8, 8)).any()


# ---------------------------------------------------------------- region growing and holes
def test_region_growing_on_a_small_array_by_hand():
    v = np.array(
        [
            [0.5, 0.5, 0.9, 0.1, 0.5],
            [0.1, 0.5, 0.9, 0.5, 0.5],
            [0.5, 0.1, 0.9, 0.5, 0.1],
            [0.5, 0.5, 0.5, 0.5, 0.9],
            [0.9, 0.9, 0.9, 0.9, 0.5],
        ],
        np.float32,
    )
    seeds = np.zeros((5, 5), bool)
    seeds[0, 0] = True  # band [0.4, 0.6]: 4-connected path only, diagonals do not count
    out = region_grow(v[None], seeds[None], [0.4], [0.6])[0]
    expected = np.zeros((5, 5), bool)
    expected[0, 0] = expected[0, 1] = expected[1, 1] = True
    assert np.array_equal(out, expected)
    # a second seed on the right grows up to (0, 4) and down and round through row 3 to (2, 0);
    # (4, 4) is in the band but walled off by 0.9s
    seeds[1, 4] = True
    out = region_grow(v[None], seeds[None], [0.4], [0.6])[0]
    expected[[0, 1, 1, 2, 3, 3, 3, 3, 2], [4, 3, 4, 3, 3, 2, 1, 0, 0]] = True
    assert np.array_equal(out, expected)
    # bounds are inclusive; a seed outside the band grows nothing
    assert region_grow(v[None], seeds[None], [0.5], [0.5])[0].sum() == expected.sum()
    seeds2 = np.zeros((5, 5), bool)
    seeds2[0, 2] = True  # value 0.9
    assert not region_grow(v[None], seeds2[None], [0.4], [0.6]).any()


def test_region_growing_never_crosses_between_images_of_a_batch():
    v = np.ones((2, 4, 4), np.float32)  # everything in the band, in both images
    seeds = np.zeros((2, 4, 4), bool)
    seeds[0, 3, 0] = True  # last row of image 0 touches first row of image 1 in memory
    out = region_grow(v, seeds, [0, 0], [2, 2])
    assert out[0].all() and not out[1].any()


def test_hole_filling_up_to_256_pixels():
    mask = np.ones((1, 60, 60), bool)
    mask[0, 2:5, 2:5] = False        # 9 px hole: filled
    mask[0, 10:26, 10:26] = False    # 16×16 = 256 px: filled ("up to 256")
    mask[0, 30:47, 30:47] = False    # 17×17 = 289 px: kept
    out = fill_small_holes(mask)[0]
    assert out[2:5, 2:5].all() and out[10:26, 10:26].all()
    assert not out[30:47, 30:47].any()
    # holes are 4-connected: a diagonal touch does not join two 200-px holes into one
    m = np.ones((1, 40, 40), bool)
    m[0, 0:10, 0:20] = False
    m[0, 10:20, 20:40] = False
    assert fill_small_holes(m)[0].all()


# ---------------------------------------------------------------- merge and result
def test_blend_and_multiply_by_hand():
    seg = np.array([[[True, False], [True, False]]])
    low = np.array([[[0.0, 2.0], [4.0, 4.0]]], np.float32)  # norm → 0, .5, 1, 1
    np.testing.assert_allclose(merge_maps(seg, low, "blend", 0.5)[0], [[0.5, 0.25], [1.0, 0.5]])
    np.testing.assert_allclose(merge_maps(seg, low, "blend", 1.0)[0], [[1, 0], [1, 0]])
    np.testing.assert_allclose(merge_maps(seg, low, "multiply")[0], [[0, 0], [1, 0]])


def test_merge_of_blank_maps_returns_the_other_one():
    seg = np.zeros((1, 2, 2), bool)
    low = np.array([[[0.0, 2.0], [4.0, 4.0]]], np.float32)
    np.testing.assert_allclose(merge_maps(seg, low, "blend", 0.3)[0], [[0, 0.5], [1, 1]])
    seg1 = np.array([[[True, False], [False, False]]])
    np.testing.assert_allclose(merge_maps(seg1, -low, "blend", 0.3)[0], [[1, 0], [0, 0]])
    assert not merge_maps(seg, np.zeros((1, 2, 2)), "blend", 0.3).any()


def test_percentage_filter_keeps_the_requested_share():
    merged = (np.arange(100, dtype=np.float32) / 99).reshape(1, 10, 10)
    keep = percentage_mask(merged, 15)[0]
    assert keep.sum() == 15 and np.array_equal(keep, merged[0] >= 85 / 99)
    # ties: 20 equal top values and 10 % requested → exactly 10, the first in raster order
    tied = np.zeros((1, 10, 10), np.float32)
    tied[0, 5:7, :] = 1
    keep = percentage_mask(tied, 10)[0]
    assert keep.sum() == 10 and keep[5].all()
    # a constant map has no "highest" pixels
    assert not percentage_mask(np.full((1, 4, 4), 0.3, np.float32), 50).any()


def test_threshold_filter_uses_the_normalized_map():
    merged = np.array([[[0.2, 0.4], [0.6, 0.7]]], np.float32)  # norm → 0, .4, .8, 1
    assert np.array_equal(threshold_mask(merged, 0.6)[0], [[False, False], [True, True]])


def test_result_keeps_image_pixels_of_the_top_share_only():
    rng = np.random.default_rng(1)
    img = rng.integers(1, 256, (20, 20, 3), dtype=np.uint8)  # no zero pixel in the image
    low = rng.permutation(400).reshape(20, 20).astype(np.float32)
    steps = pipeline(img, low, np.zeros((20, 20)), filter_percentage=10)
    kept = steps["result"].any(axis=-1)
    assert kept.sum() == 40  # 10 % of 400
    assert np.array_equal(steps["result"][kept], img[kept])
    assert steps["result"].dtype == np.uint8


# ---------------------------------------------------------------- inputs, outputs, validation
def test_keys_shapes_and_input_forms():
    rng = np.random.default_rng(0)
    img = rng.random((1, 24, 40, 3)).astype(np.float32)  # seed form 1×H×W×3, non-square
    steps = pipeline(img, rng.random((3, 5)), rng.random((24, 40)))
    assert tuple(steps) == STEP_KEYS
    for k in ("blurred", "low_resized", "edges", "roi", "segmented", "full_segment", "merged"):
        assert steps[k].shape == (24, 40), k
    assert steps["low"].shape == (3, 5) and steps["result"].shape == (24, 40, 3)
    assert isinstance(steps["bounds"], tuple) and len(steps["bounds"]) == 2
    assert all(isinstance(p, tuple) and len(p) == 2 for p in steps["focal_points"])
    same = pipeline(img[0], rng.random((3, 5)), rng.random((24, 40)))
    assert same["result"].shape == (24, 40, 3)
    batch = pipeline_batch(np.repeat(img, 3, 0), rng.random((3, 3, 5)), rng.random((3, 24, 40)))
    assert batch["merged"].shape == (3, 24, 40) and batch["bounds"].shape == (3, 2)
    assert len(batch["focal_points"]) == 3


@pytest.mark.parametrize("fill", [0.0, 3.0])
def test_constant_and_zero_maps_give_defined_outputs(fill):
    img = np.full((16, 16, 3), 0.5)
    for low, high in [(np.full((4, 4), fill), np.full((16, 16), fill)), (np.zeros((4, 4)), np.random.rand(16, 16))]:
        for scope in ("global", "local"):
            steps = pipeline(img, low, high, focal_scope=scope)
            for k in ("blurred", "low_resized", "edges", "merged"):
                assert np.isfinite(steps[k]).all(), k
            assert all(np.isfinite(steps["bounds"]))
            assert steps["merged"].min() >= 0 and steps["merged"].max() <= 1


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("where", ["low", "high"])
def test_nan_or_inf_in_a_map_raises(bad, where):
    low, high = np.ones((4, 4)), np.ones((16, 16))
    (low if where == "low" else high)[1, 1] = bad
    with pytest.raises(ValueError, match="NaN or inf"):
        pipeline(np.ones((16, 16, 3)), low, high)


def test_high_res_map_must_match_the_image():
    with pytest.raises(ValueError, match="size 16×16"):
        pipeline(np.ones((16, 16, 3)), np.ones((4, 4)), np.ones((15, 16)))


@pytest.mark.parametrize(
    "name,value,accepts",
    [
        ("roi_percentile", 0, r"\(0, 100\)"),
        ("roi_percentile", 100, r"\(0, 100\)"),
        ("roi_percentile", "85", r"\(0, 100\)"),
        ("focal_scope", "everywhere", "'global', 'local'"),
        ("maxima_areas", "medium", "'small', 'large'"),
        ("merge_type", "merge", "'blend', 'multiply'"),
        ("merge_alpha", 1.5, r"\[0, 1\]"),
        ("merge_alpha", float("nan"), r"\[0, 1\]"),
        ("filter_type", "top", "'percentage', 'threshold'"),
        ("filter_percentage", 0, r"\(0, 100\)"),
        ("filter_percentage", 120, r"\(0, 100\)"),
        ("filter_threshold", -0.1, r"\[0, 1\]"),
        ("filter_threshold", True, r"\[0, 1\]"),
    ],
)
def test_each_bad_parameter_raises_naming_it_and_what_it_accepts(name, value, accepts):
    with pytest.raises(ValueError, match=f"{name} must be .*{accepts}"):
        validate_params(**{name: value})
    with pytest.raises(ValueError, match=name):
        pipeline(np.ones((8, 8, 3)), np.ones((2, 2)), np.ones((8, 8)), **{name: value})


def test_unknown_parameter_is_named():
    with pytest.raises(ValueError, match="roi_percentil"):
        validate_params(roi_percentil=80)


def test_defaults_are_the_seeds():
    assert validate_params().as_dict() == dict(
        roi_percentile=85, focal_scope="global", maxima_areas="small", merge_type="blend",
        merge_alpha=0.5, filter_type="percentage", filter_percentage=15, filter_threshold=0.6,
        pixel_scale="fixed",  # beyond the seed: its fixed pixel constants stay the default
    )


def test_maps_beyond_float32_range_are_rejected_not_turned_into_nan():
    with pytest.raises(ValueError, match="highs contains NaN or inf"):
        pipeline(np.ones((4, 4, 3)), np.ones((2, 2)), np.full((4, 4), 1e300))


@pytest.mark.parametrize("shape", [(1, 1), (2, 3), (5, 1)])
def test_tiny_images_work(shape):
    rng = np.random.default_rng(0)
    for scope in ("global", "local"):
        steps = pipeline(rng.random(shape + (3,)), rng.random((1, 1)), rng.random(shape), focal_scope=scope)
        assert steps["merged"].shape == shape and np.isfinite(steps["merged"]).all()
