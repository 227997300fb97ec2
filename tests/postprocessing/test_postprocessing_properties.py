"""Post-processing pipeline: properties over random maps, and the batched path against a
per-image reference written the obvious way (``tests/_pipeline_reference.py``)."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage as ndi

from _pipeline_reference import reference_pipeline
from hrcam.postprocessing import pipeline, pipeline_batch

PARAMS = st.fixed_dictionaries(
    {
        "roi_percentile": st.floats(1, 99),
        "focal_scope": st.sampled_from(["global", "local"]),
        "maxima_areas": st.sampled_from(["small", "large"]),
        "merge_type": st.sampled_from(["blend", "multiply"]),
        "merge_alpha": st.floats(0, 1),
        "filter_type": st.sampled_from(["percentage", "threshold"]),
        "filter_percentage": st.floats(1, 99),
        "filter_threshold": st.floats(0, 1),
    }
)


@st.composite
def batches(draw):
    n = draw(st.integers(1, 3))
    H, W = draw(st.integers(6, 20)), draw(st.integers(6, 20))
    h, w = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    seed = draw(st.integers(0, 2**31 - 1))
    rng = np.random.default_rng(seed)
    kind = draw(st.sampled_from(["smooth", "noise", "constant", "quantized"]))
    highs = rng.standard_normal((n, H, W))
    lows = rng.standard_normal((n, h, w)) * draw(st.floats(0.01, 100))
    if kind == "smooth":
        highs = ndi.gaussian_filter(highs, (0, 2, 2))
    elif kind == "constant":
        highs[:] = draw(st.floats(-2, 2))
        lows[1:] = 0.0
    elif kind == "quantized":  # many ties
        highs, lows = np.round(highs), np.round(lows)
    if draw(st.booleans()):
        imgs = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    else:
        imgs = rng.random((n, H, W, 3)).astype(np.float32)
    return imgs, lows.astype(np.float32), highs.astype(np.float32)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=batches(), params=PARAMS)
def test_merged_in_unit_range_result_is_image_or_zero_and_batch_equals_singles(batch, params):
    imgs, lows, highs = batch
    out = pipeline_batch(imgs, lows, highs, **params)
    merged = out["merged"]
    assert np.isfinite(merged).all() and merged.min() >= 0 and merged.max() <= 1
    res = out["result"]
    assert res.dtype == imgs.dtype and res.shape == imgs.shape
    assert np.all((res == 0) | (res == imgs))
    for i in range(len(imgs)):
        one = pipeline(imgs[i], lows[i], highs[i], **params)
        for key, value in one.items():
            if key == "focal_points":
                assert value == out[key][i]
            elif key == "bounds":
                assert value == tuple(out[key][i])
            else:
                assert np.array_equal(value, out[key][i]), key


CASES = [
    dict(),
    dict(focal_scope="local"),
    dict(focal_scope="local", maxima_areas="large", merge_type="multiply"),
    dict(filter_type="threshold", filter_threshold=0.3, roi_percentile=60),
    dict(merge_alpha=0.8, filter_percentage=40, roi_percentile=70),
]


@pytest.mark.parametrize("params", CASES)
def test_batch_equals_the_per_image_reference_exactly(params):
    rng = np.random.default_rng(7)
    n, H, W = 4, 48, 40
    imgs = rng.random((n, H, W, 3)).astype(np.float32)
    highs = ndi.gaussian_filter(rng.standard_normal((n, H, W)), (0, 2.5, 2.5)).astype(np.float32)
    lows = ndi.gaussian_filter(rng.standard_normal((n, 6, 5)), (0, 1, 1)).astype(np.float32)
    out = pipeline_batch(imgs, lows, highs, **params)
    assert out["segmented"].any()  # the case is not trivial
    for i in range(n):
        ref = reference_pipeline(imgs[i], lows[i], highs[i], **params)
        for key, value in ref.items():
            if key in ("focal_points",):
                assert value == out[key][i], key
            elif key == "bounds":
                assert value == tuple(out[key][i]), key
            else:
                assert np.array_equal(value, out[key][i]), key


def test_region_growing_matches_simpleitk_connected_threshold_when_installed():
    sitk = pytest.importorskip("SimpleITK")
    from hrcam.postprocessing.region_growing import region_grow

    rng = np.random.default_rng(3)
    edges = ndi.gaussian_filter(rng.random((40, 30)), 1.5)
    points = [(int(x), int(y)) for x, y in rng.integers(0, 30, (6, 2))]
    lower, upper = np.percentile(edges, 30), np.percentile(edges, 70)
    seeds = np.zeros(edges.shape, bool)
    seeds[[y for _, y in points], [x for x, _ in points]] = True
    ours = region_grow(edges[None], seeds[None], [lower], [upper])[0]
    img = sitk.GetImageFromArray(edges)
    theirs = sitk.GetArrayFromImage(
        sitk.ConnectedThreshold(img, seedList=points, lower=float(lower), upper=float(upper), replaceValue=1)
    )
    assert np.array_equal(ours, theirs.astype(bool))


def test_batches_larger_than_a_chunk_equal_image_by_image_runs():
    from hrcam.postprocessing.steps import CHUNK

    rng = np.random.default_rng(11)
    n = CHUNK + 3
    imgs = rng.integers(0, 256, (n, 12, 10, 3), dtype=np.uint8)
    lows = rng.standard_normal((n, 3, 3)).astype(np.float32)
    highs = ndi.gaussian_filter(rng.standard_normal((n, 12, 10)), (0, 1, 1)).astype(np.float32)
    out = pipeline_batch(imgs, lows, highs, focal_scope="local")
    assert len(out["focal_points"]) == n and out["merged"].shape == (n, 12, 10)
    for i in range(n):
        one = pipeline(imgs[i], lows[i], highs[i], focal_scope="local")
        assert one["focal_points"] == out["focal_points"][i]
        for key in ("roi", "segmented", "full_segment", "merged", "result", "edges"):
            assert np.array_equal(one[key], out[key][i]), key


def test_nan_in_a_float_image_raises():
    img = np.zeros((8, 8, 3), np.float32)
    img[2, 2, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or inf"):
        pipeline(img, np.ones((2, 2)), np.ones((8, 8)))
