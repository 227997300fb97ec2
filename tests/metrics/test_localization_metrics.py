"""Localization metrics on hand-made maps whose answers are worked out by hand."""
import math

import numpy as np
import pytest
import torch

from hrcam.metrics import localization as L


def _gt_square(n=1, size=10, y0=2, y1=5, x0=3, x1=7):
    m = np.zeros((n, size, size), dtype=bool)
    m[:, y0:y1, x0:x1] = True
    return m


def test_pointing_game_hit_miss_tolerance_and_empty():
    gt = _gt_square(3)  # rows 2..4, cols 3..6
    maps = np.zeros((3, 10, 10))
    maps[0, 3, 4] = 1.0  # inside
    maps[1, 3, 9] = 1.0  # 3 px right of col 6
    maps[2, 8, 8] = 1.0  # dy = 4, dx = 2 → distance √20 ≈ 4.47
    hit0 = L.pointing_game(maps, gt, tolerance=0)
    assert hit0.tolist() == [1.0, 0.0, 0.0]
    assert L.pointing_game(maps, gt, tolerance=3).tolist() == [1.0, 1.0, 0.0]
    assert L.pointing_game(maps, gt, tolerance=4.5).tolist() == [1.0, 1.0, 1.0]
    empty = np.zeros_like(gt)
    assert np.isnan(L.pointing_game(maps, empty)).all()


def test_pointing_tolerance_scales_with_image():
    assert L.pointing_tolerance(224) == 15.0
    assert L.pointing_tolerance(64) == pytest.approx(15 * 64 / 224)


def test_energy_pointing_game():
    gt = _gt_square(1)  # 12 pixels
    m = np.zeros((1, 10, 10))
    m[0, 2, 3] = 3.0  # inside
    m[0, 9, 9] = 1.0  # outside
    # normalized: inside 1, outside 1/3 → share = 1 / (4/3) = 0.75
    assert L.energy_pointing_game(m, gt)[0] == pytest.approx(0.75)
    # constant map counts as uniform: 12 / 100
    assert L.energy_pointing_game(np.full((1, 10, 10), 5.0), gt)[0] == pytest.approx(0.12)
    assert np.isnan(L.energy_pointing_game(m, np.zeros_like(gt))[0])


def test_low_resolution_maps_are_upsampled():
    # a 2×2 map with its maximum in the top-left quadrant of an 8×8 image
    m = torch.tensor([[[1.0, 0.0], [0.0, 0.0]]])
    gt = np.zeros((1, 8, 8), dtype=bool)
    gt[0, :4, :4] = True
    assert L.pointing_game(m, gt)[0] == 1.0
    gt2 = np.zeros((1, 8, 8), dtype=bool)
    gt2[0, 4:, 4:] = True
    assert L.pointing_game(m, gt2)[0] == 0.0


def test_cam_rule_box_largest_component():
    m = np.zeros((1, 12, 12))
    m[0, 1:3, 1:3] = 1.0  # 4 px blob holding the maximum
    m[0, 6:10, 5:11] = 0.5  # 24 px blob at 50 % of max → kept and larger
    m[0, 0, 11] = 0.1  # below 20 % → dropped
    assert L.boxes_cam_rule(m).tolist() == [[5, 6, 11, 10]]
    # raise the threshold above 0.5: only the small blob is left
    assert L.boxes_cam_rule(m, threshold=0.6).tolist() == [[1, 1, 3, 3]]


def test_cam_rule_uses_8_and_casm_rule_4_connectivity():
    # two 2×2 blocks touching only at a corner
    m = np.zeros((1, 6, 6))
    m[0, 0:2, 0:2] = 1.0
    m[0, 2:4, 2:4] = 1.0
    assert L.boxes_cam_rule(m).tolist() == [[0, 0, 4, 4]]
    keep = np.zeros((1, 6, 6), dtype=bool)
    keep[0, 0:2, 0:2] = True
    keep[0, 2:4, 2:5] = True  # the larger one
    assert L.largest_component_boxes(keep, connectivity=4).tolist() == [[2, 2, 5, 4]]
    assert L.largest_component_boxes(keep, connectivity=8).tolist() == [[0, 0, 5, 4]]


def test_casm_rule_keeps_mean_fraction():
    # 4×4 map, values: one pixel 1.0, three 0.6, twelve 0 → mean = (1 + 1.8)/16 = 0.175
    # k = round(0.175 · 16) = round(2.8) = 3 → the 1.0 pixel and the 0.6 ones (ties: all three)
    m = np.zeros((1, 4, 4))
    m[0, 0, 0] = 1.0
    m[0, 0, 1] = 0.6
    m[0, 1, 0] = 0.6
    m[0, 3, 3] = 0.6
    keep = L.casm_keep_masks(m)
    assert keep.sum() == 4
    # largest 4-connected component: (0,0), (0,1), (1,0) → box x 0..2, y 0..2
    assert L.boxes_casm_rule(m).tolist() == [[0, 0, 2, 2]]
    # a map of values 0..15: mean of normalized = 0.5 → keep the 8 largest (rows 2, 3)
    ramp = np.arange(16, dtype=float).reshape(1, 4, 4)
    assert L.casm_keep_masks(ramp)[0].tolist() == [[False] * 4] * 2 + [[True] * 4] * 2
    # constant map keeps nothing → zero box
    assert L.boxes_casm_rule(np.ones((1, 4, 4))).tolist() == [[0, 0, 0, 0]]


def test_box_iou_and_accuracy_rules():
    a = [[0, 0, 10, 10]]
    b = [[0, 0, 10, 5], [5, 0, 15, 10]]  # IoU 50/100 = 0.5 and 50/150
    assert L.box_iou(a, b)[0].tolist() == pytest.approx([0.5, 1 / 3])
    # exactly 0.5: CAM rule (≥) hits, CASM rule (>) misses
    assert L.box_accuracy(a, [b[:1]], "cam").tolist() == [1.0]
    assert L.box_accuracy(a, [b[:1]], "casm").tolist() == [0.0]
    # any box of the class counts; no box → NaN
    assert L.box_accuracy([[0, 0, 10, 10]] * 2, [[[20, 20, 30, 30], [1, 1, 10, 10]], []], "casm")[0] == 1.0
    assert np.isnan(L.box_accuracy([[0, 0, 10, 10]], [[]], "cam")[0])
    with pytest.raises(ValueError, match="rule"):
        L.box_accuracy(a, [b], "other")


def test_mask_iou():
    gt = _gt_square(1)  # 12 px
    m = np.zeros((1, 10, 10))
    m[0, 2:5, 3:5] = 1.0  # 6 px inside
    m[0, 8, 8] = 0.9  # 1 px outside, above 0.5
    m[0, 9, 9] = 0.4  # below 0.5
    # inter 6, union 12 + 1 = 13
    assert L.mask_iou(m, gt)[0] == pytest.approx(6 / 13)
    assert L.mask_iou(m, gt, threshold=0.3)[0] == pytest.approx(6 / 14)
    assert np.isnan(L.mask_iou(m, np.zeros_like(gt))[0])


def test_localization_metrics_le_om_and_summary():
    gt = _gt_square(2)
    boxes = [[[3, 2, 7, 5]], [[3, 2, 7, 5]]]
    good = gt[0].astype(float)  # the map equals the mask
    bad = np.zeros((10, 10))
    bad[8:10, 0:2] = 1.0  # far away
    maps = np.stack([good, bad])
    out = L.localization_metrics(maps, gt_masks=gt, gt_boxes=boxes, correct=[True, False],
                                 tolerance_px=0)
    assert out["pointing_game"].tolist() == [1.0, 0.0]
    assert out["box_acc_cam"].tolist() == [1.0, 0.0]
    assert out["box_acc_casm"].tolist() == [1.0, 0.0]
    assert out["le_cam"].tolist() == [0.0, 1.0]
    assert out["om_cam"].tolist() == [0.0, 1.0]
    assert out["mask_iou"].tolist() == [1.0, 0.0]
    assert out["energy_pointing_game"].tolist() == [1.0, 0.0]
    # right box, wrong class → OM counts it as an error
    out2 = L.localization_metrics(maps[:1], gt_masks=gt[:1], gt_boxes=boxes[:1], correct=[False])
    assert out2["le_cam"].tolist() == [0.0] and out2["om_cam"].tolist() == [1.0]
    s = L.summarize(out)
    assert s["pointing_game"] == 0.5 and s["count"] == 2


def test_boxes_only_ground_truth_and_missing_masks():
    boxes = [[[0, 0, 4, 4]], []]
    maps = np.zeros((2, 8, 8))
    maps[:, 1, 1] = 1.0
    out = L.localization_metrics(maps, gt_boxes=boxes, image_size=8)
    assert out["pointing_game"][0] == 1.0 and math.isnan(out["pointing_game"][1])
    assert np.isnan(out["mask_iou"]).all()
    s = L.summarize(out)
    assert s["pointing_game"] == 1.0 and s["count_pointing_game"] == 1
    # per-image mask list with a gap falls back to the boxes for that image
    m0 = np.zeros((8, 8), dtype=bool)
    m0[1, 1] = True
    out = L.localization_metrics(maps, gt_masks=[m0, None], gt_boxes=[[[0, 0, 2, 2]], [[0, 0, 3, 3]]])
    assert out["pointing_game"].tolist() == [1.0, 1.0]
    assert out["mask_iou"][0] == 1.0 and np.isnan(out["mask_iou"][1])


def test_batch_equals_one_by_one():
    rng = np.random.default_rng(0)
    maps = rng.random((6, 16, 16))
    gt = rng.random((6, 16, 16)) > 0.7
    batch = L.boxes_casm_rule(maps)
    single = np.concatenate([L.boxes_casm_rule(maps[i : i + 1]) for i in range(6)])
    assert batch.tolist() == single.tolist()
    e = L.energy_pointing_game(maps, gt)
    assert e.tolist() == pytest.approx([L.energy_pointing_game(maps[i], gt[i])[0] for i in range(6)])


def test_bad_inputs():
    with pytest.raises(ValueError, match="maps"):
        L.as_maps(np.zeros((2, 2, 2, 2)))
    with pytest.raises(ValueError, match="NaN"):
        L.as_maps(np.full((1, 2, 2), np.nan))
    with pytest.raises(ValueError, match="tolerance"):
        L.pointing_game(np.zeros((1, 4, 4)), np.ones((1, 4, 4)), tolerance=-1)
    with pytest.raises(ValueError, match="gt_masks or gt_boxes"):
        L.localization_metrics(np.zeros((1, 4, 4)))
