"""The checkerboard measure: smooth maps score low, period-2 patterns far above the limit."""
import numpy as np
import pytest

from hrcam.metrics.artifacts import CHECKERBOARD_MAX_SHARE, box3, high_frequency_share


def _blob(size, sigma, cy, cx):
    yy, xx = np.mgrid[0:size, 0:size]
    return np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2.0 * sigma**2))


@pytest.mark.parametrize("size", [32, 64])
def test_checkerboard_scores_far_above_smooth(size):
    """Measured: smooth blobs (σ 3–10 px) < 0.003; hard-edged shapes ≈ 0.04; the blobs plus a
    ±0.2 period-2 pattern > 0.27 (and ±0.1 ≈ 0.17). The limit 0.1 sits between with margin."""
    yy, xx = np.mgrid[0:size, 0:size]
    checker = (-1.0) ** (yy + xx)
    for sigma in (3, 5, 10):
        for cy, cx in ((size / 2, size / 2), (size / 3, 0.7 * size)):
            smooth = _blob(size, sigma, cy, cx)
            s_smooth, s_checker = high_frequency_share(np.stack([smooth, smooth + 0.2 * checker]))
            assert s_smooth < 0.01
            assert s_checker > 0.25
            assert s_smooth < CHECKERBOARD_MAX_SHARE < s_checker
    rect = np.zeros((size, size))
    rect[size // 4 : size // 2, size // 4 : 3 * size // 4] = 1.0
    assert high_frequency_share(rect)[0] < CHECKERBOARD_MAX_SHARE  # sharp edges are not a checkerboard
    stripes = _blob(size, 8, size / 2, size / 2) + 0.1 * (-1.0) ** yy  # period 2 along one axis
    assert high_frequency_share(stripes)[0] > CHECKERBOARD_MAX_SHARE


def test_high_frequency_share_exact_small_case_and_constant():
    # a 1×3 map [0, 1, 0]: box3 with replicated borders = [1/3, 1/3, 1/3] (each row is the same
    # three rows, the columns [0,0,1], [0,1,0], [1,0,0] → means 1/3); residual (1/9 + 4/9 + 1/9)
    # over the variance Σ (m − 1/3)² = 1/9 + 4/9 + 1/9 → share 1
    m = np.array([[[0.0, 1.0, 0.0]]])
    np.testing.assert_allclose(box3(m), [[[1 / 3, 1 / 3, 1 / 3]]])
    assert high_frequency_share(m)[0] == pytest.approx(1.0)
    assert high_frequency_share(np.full((2, 5, 5), 7.0)).tolist() == [0.0, 0.0]
    # the share does not depend on the map's scale or offset
    b = _blob(16, 3, 8, 8)
    assert high_frequency_share(5 * b - 2)[0] == pytest.approx(high_frequency_share(b)[0])
    with pytest.raises(ValueError, match="NaN"):
        high_frequency_share(np.full((1, 4, 4), np.nan))
