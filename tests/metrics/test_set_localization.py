"""Set-level, threshold-free localization metrics (PxAP, best-threshold IoU, MaxBoxAccV2) on
hand-computed cases and against scikit-learn."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from hrcam.metrics import localization as L


def test_pxap_hand_computed_4x4():
    # scores (already in [0, 1], min 0 and max 1 so normalization keeps them) and labels:
    #   1.0 pos, 0.8 neg, 0.6 pos, 0.4 pos, everything else 0.0 (12 pixels, 1 of them pos):
    #   4 positives in all
    m = np.zeros((1, 4, 4))
    g = np.zeros((1, 4, 4), dtype=bool)
    m[0, 0, 0], g[0, 0, 0] = 1.0, True
    m[0, 0, 1] = 0.8
    m[0, 1, 0], g[0, 1, 0] = 0.6, True
    m[0, 1, 1], g[0, 1, 1] = 0.4, True
    g[0, 3, 3] = True  # a positive among the twelve tied zeros
    # thresholds from the top: (P, R) = (1, 1/4), (1/2, 1/4), (2/3, 2/4), (3/4, 3/4), (4/16, 1)
    expected = 0.25 * 1 + 0 + 0.25 * (2 / 3) + 0.25 * 0.75 + 0.25 * (4 / 16)  # = 2/3
    assert L.pxap(m, g) == pytest.approx(expected)


def test_pxap_perfect_and_constant_maps():
    g = np.zeros((2, 8, 8), dtype=bool)
    g[0, 2:5, 1:4] = True
    g[1, 5:, 5:] = True
    assert L.pxap(g.astype(float), g) == pytest.approx(1.0)
    # constant maps: every pixel tied → AP = positive fraction (9 + 9 of 128)
    assert L.pxap(np.full((2, 8, 8), 3.0), g) == pytest.approx(18 / 128)
    assert np.isnan(L.pxap(np.ones((2, 8, 8)), np.zeros_like(g)))


@pytest.mark.parametrize("levels", [None, 4])  # continuous scores, and heavy ties
def test_pxap_equals_sklearn_and_histogram_is_close(levels):
    rng = np.random.default_rng(1 if levels else 2)
    maps = rng.random((7, 8, 8)) if levels is None else rng.integers(0, levels, (7, 8, 8)).astype(float)
    masks = rng.random((7, 16, 16)) < 0.3
    norm = L.normalize_maps(L.upsample_maps(maps, (16, 16)))
    exact = average_precision_score(masks.ravel(), norm.ravel())
    assert L.pxap(maps, masks) == pytest.approx(exact, abs=1e-12)
    acc = L.PxAPAccumulator(bins=1000)
    for start in range(0, 7, 3):  # streaming in batches gives the same histograms
        acc.update(maps[start : start + 3], masks[start : start + 3])
    assert abs(acc.value() - exact) < 1e-3
    fine = L.PxAPAccumulator()
    fine.update(maps, masks)
    assert abs(fine.value() - exact) < 2e-4


def test_pxap_skips_missing_masks_in_a_list():
    g = np.zeros((8, 8), dtype=bool)
    g[:4] = True
    maps = np.stack([g.astype(float), 1.0 - g])  # the second map is wrong, but its mask is missing
    assert L.pxap(maps, [g, None]) == pytest.approx(1.0)


def test_best_threshold_iou_known_threshold():
    # map values 0.0 / 0.3 / 0.7 / 1.0 on four 2×4 bands; mask = the two top bands.
    m = np.zeros((1, 8, 4))
    m[0, 0:2], m[0, 2:4], m[0, 4:6] = 1.0, 0.7, 0.3
    g = np.zeros((1, 8, 4), dtype=bool)
    g[0, :4] = True
    # t ≤ 0: all 32 kept, IoU 16/32; 0 < t ≤ 0.3: 24 kept, 16/24; 0.3 < t ≤ 0.7: exact, 1;
    # t > 0.7: 8 kept, 8/16. The best (lowest) threshold on the 0.01 grid is 0.31.
    res = L.best_threshold_iou(m, g)
    assert res.value == pytest.approx(1.0)
    assert res.threshold == pytest.approx(0.31)
    # a second image whose mask is only the top band: at t in (0.3, 0.7] the mean is
    # (1 + 8/16) / 2 = 0.75, at t in (0.7, 1] it is (8/16 + 1) / 2 = 0.75: a tie, the lowest t wins
    g2 = np.zeros((1, 8, 4), dtype=bool)
    g2[0, :2] = True
    both = L.best_threshold_iou(np.concatenate([m, m]), np.concatenate([g, g2]))
    assert both.value == pytest.approx(0.75)
    assert both.threshold == pytest.approx(0.31)
    curve_acc = L.BestIoUAccumulator()  # that image alone: only t > 0.7 is exact (0.70 keeps 0.7)
    curve_acc.update(m, g2)
    assert curve_acc.result() == (pytest.approx(1.0), pytest.approx(0.71))


def test_best_threshold_iou_constant_and_empty_masks():
    g = np.zeros((1, 10, 10), dtype=bool)
    g[0, :5] = True
    res = L.best_threshold_iou(np.ones((1, 10, 10)), g)  # all kept at t = 0, nothing above
    assert (res.value, res.threshold) == (pytest.approx(0.5), 0.0)
    assert np.isnan(L.best_threshold_iou(np.ones((1, 10, 10)), np.zeros_like(g)).value)


def test_component_boxes_every_component():
    keep = np.zeros((10, 12), dtype=bool)
    keep[1:3, 1:4] = True
    keep[6:9, 8:11] = True
    keep[9, 11] = True  # diagonal neighbour of (8, 10): same 8-connected component
    boxes = sorted(L.component_boxes(keep).tolist())
    assert boxes == [[1, 1, 4, 3], [8, 6, 12, 10]]
    assert L.component_boxes(np.zeros((4, 4), bool)).shape == (0, 4)


def test_max_box_acc_v2_uses_all_components():
    # two blobs: a strong small one (a decoy) and a weaker one that is exactly the object
    m = np.zeros((1, 20, 20))
    m[0, 1:4, 1:4] = 1.0
    m[0, 10:18, 8:16] = 0.5
    gt = [[[8, 10, 16, 18]]]
    res = L.max_box_acc_v2(m, gt)
    # at t ≤ 0.5 both blobs give boxes and the object's box has IoU 1: a hit at every δ
    assert res.value == pytest.approx(1.0)
    assert res.per_iou == {0.3: 1.0, 0.5: 1.0, 0.7: 1.0}
    assert res.thresholds[0.5] == pytest.approx(0.01)  # t = 0 keeps the whole image (IoU 0.16)
    # only the largest component (the CAM rule at its fixed threshold) would miss it sometimes;
    # with the object box shifted to IoU 0.6 (8×8 vs 8×8 offset by 2 px: 48 / 80), δ = 0.7 fails
    shifted = [[[10, 10, 18, 18]]]
    res2 = L.max_box_acc_v2(m, shifted)
    assert res2.per_iou == {0.3: 1.0, 0.5: 1.0, 0.7: 0.0}
    assert res2.value == pytest.approx(2 / 3)


def test_max_box_acc_v2_perfect_constant_and_upsampling():
    gt_boxes = [[[2, 2, 6, 6]], [[0, 4, 8, 8]]]
    masks = L.boxes_to_masks(gt_boxes, (8, 8))
    assert L.max_box_acc_v2(masks.astype(float), gt_boxes).value == pytest.approx(1.0)
    # constant maps: t = 0 keeps the whole image (IoU 0.25 and 0.5), t > 0 nothing
    res = L.max_box_acc_v2(np.ones((2, 8, 8)), gt_boxes)
    assert res.per_iou == {0.3: 0.5, 0.5: 0.5, 0.7: 0.0}
    # a 2×2 map upsampled to 8×8 whose top-left cell is the object
    low = np.array([[[1.0, 0.0], [0.0, 0.0]]])
    assert L.max_box_acc_v2(low, [[[0, 0, 4, 4]]], size=(8, 8)).value == pytest.approx(1.0)
    # images without boxes do not count
    assert L.max_box_acc_v2(np.ones((1, 8, 8)), [[]]).count == 0


def test_set_accumulator_streams_like_the_functions():
    rng = np.random.default_rng(3)
    maps = rng.random((6, 4, 4))
    masks = np.zeros((6, 16, 16), dtype=bool)
    for i in range(6):
        y, x = rng.integers(0, 8, 2)
        masks[i, y : y + 8, x : x + 6] = True
    acc = L.SetLocalizationAccumulator()
    acc.update(maps[:4], masks[:4])
    acc.update(maps[4:], list(masks[4:]))
    res = acc.result()
    best = L.best_threshold_iou(maps, masks)
    assert res["best_iou"] == pytest.approx(best.value)
    assert res["best_iou_threshold"] == pytest.approx(best.threshold)
    assert abs(res["pxap"] - L.pxap(maps, masks)) < 1e-3
    boxes = [[b] for b in L.mask_boxes(masks).tolist()]
    assert res["max_box_acc_v2"] == pytest.approx(L.max_box_acc_v2(maps, boxes, size=(16, 16)).value)
    assert set(L.SET_KEYS) <= set(res)


def test_set_metrics_reject_bad_input():
    with pytest.raises(ValueError, match="masks"):
        L.pxap(np.ones((2, 4, 4)), np.ones((3, 4, 4), bool))
    with pytest.raises(ValueError, match="NaN"):
        L.best_threshold_iou(np.full((1, 4, 4), np.nan), np.ones((1, 4, 4), bool))
    with pytest.raises(ValueError, match="iou_thresholds"):
        L.max_box_acc_v2(np.ones((1, 4, 4)), [[[0, 0, 2, 2]]], iou_thresholds=(0.5, 1.5))
    with pytest.raises(ValueError, match="bins"):
        L.PxAPAccumulator(0)
