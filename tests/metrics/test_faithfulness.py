"""Faithfulness metrics against closed forms worked out by hand.

The models here score class 0 by the mean of one image region R (top-left 4×4 of an 8×8 image)
and class 1 by a constant or by the mean of another region Q (bottom-right 4×4), so every
masked prediction is a sigmoid of a number that can be read off the mask.
"""
import math

import numpy as np
import pytest
import torch
from torch import nn

from hrcam.metrics import faithfulness as F

A = 4.0


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


class RegionModel(nn.Module):
    """logits = [A·mean_R(x), A·mean_Q(x)] (q_region=True) or [A·mean_R(x), A·0.5]."""

    def __init__(self, q_region=True):
        super().__init__()
        self.q_region = q_region
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        r = x[:, :, :4, :4].mean(dim=(1, 2, 3))
        q = x[:, :, 4:, 4:].mean(dim=(1, 2, 3)) if self.q_region else torch.full_like(r, 0.5)
        return torch.stack([A * r, A * q], dim=1)


def region_map(r_val, q_val, rest=0.0):
    m = torch.full((8, 8), rest)
    m[:4, :4] = r_val
    m[4:, 4:] = q_val
    return m


def q_image():
    x = torch.ones(3, 8, 8)
    x[:, 4:, 4:] = 0.8
    return x


def test_ad_ic_closed_form():
    model = RegionModel(q_region=True)
    x = torch.stack([q_image(), q_image()])
    # image 0 keeps R (1) and half of Q (0.5); image 1 keeps half of R and all of Q
    maps = torch.stack([region_map(1.0, 0.5), region_map(0.5, 1.0)])
    res = F.average_drop_increase(model, x, maps)
    y = sig(A * (1 - 0.8))  # clean: class 0 predicted, p0 = σ(A(r − q))
    # q = 0 and q = 0.5 (the 32 zero pixels are the lowest half): soft masks unchanged
    o0 = sig(A * (1.0 - 0.5 * 0.8))  # > y: increase
    o1 = sig(A * (0.5 - 0.8))
    for key in ("0", "0.5"):
        assert res[f"AD@{key}"] == pytest.approx(100 * (0 + (y - o1) / y) / 2, rel=1e-5)
        assert res[f"IC@{key}"] == pytest.approx(50.0)
    # q = 0.85: ⌊0.85·64⌋ = 54 lowest zeroed → image 0 keeps 10 R pixels, image 1 keeps 10 Q pixels
    o0 = sig(A * (10 / 16 - 0))
    o1 = sig(A * (0 - 0.8 * 10 / 16))
    assert o0 > y
    assert res["AD@0.85"] == pytest.approx(100 * ((y - o1) / y) / 2, rel=1e-5)
    assert res["IC@0.85"] == pytest.approx(50.0)
    assert res["n"] == 2 and sum(res["excluded"].values()) == 0


def test_drop_lowest_counts_and_range():
    maps = torch.rand(3, 10, 10) * 5 - 2
    out = F.drop_lowest(maps, 0.85)
    assert ((out == 0).reshape(3, -1).sum(1) >= 85).all()
    assert out.max() == pytest.approx(1.0) and out.min() >= 0
    with pytest.raises(ValueError, match="q"):
        F.drop_lowest(maps, 1.0)


def _expected_curve(a_sign, steps=20, hw=64, region=16):
    vals = []
    for i in range(steps + 1):
        k = (i * hw) // steps  # pixels removed/inserted; the map ranks R's 16 pixels first
        inside = min(k, region)
        r = (region - inside) / region if a_sign == "deletion" else inside / region
        vals.append(sig(A * (r - 0.5)))
    return sum((vals[i] + vals[i + 1]) / 2 for i in range(steps)) / steps


def test_deletion_insertion_closed_form():
    model = RegionModel(q_region=False)
    x = torch.ones(1, 3, 8, 8)
    # distinct values, R highest (so R's pixels are removed first)
    m = torch.arange(64, 0, -1).float().reshape(8, 8) / 100
    m[:4, :4] += 10
    res = F.deletion_insertion(model, x, m[None])
    assert res["deletion_auc"] == pytest.approx(_expected_curve("deletion"), rel=1e-5)
    assert res["insertion_auc"] == pytest.approx(_expected_curve("insertion"), rel=1e-5)


def test_deletion_curve_endpoints():
    model = RegionModel(q_region=False)
    x = torch.ones(2, 3, 8, 8)
    dele, ins, cls, _ = F.deletion_insertion_curves(model, x, torch.rand(2, 8, 8), steps=4)
    assert dele.shape == (2, 5)
    # nothing removed = clean image, all removed = zero image (and the reverse for insertion)
    assert dele[:, 0] == pytest.approx(torch.full((2,), sig(A * 0.5)))
    assert dele[:, -1] == pytest.approx(torch.full((2,), sig(-A * 0.5)))
    assert ins[:, 0] == pytest.approx(dele[:, -1]) and ins[:, -1] == pytest.approx(dele[:, 0])


def test_deletion_of_a_black_object_needs_a_non_zero_baseline():
    model = RegionModel(q_region=False)
    x = torch.ones(1, 3, 8, 8)
    x[:, :, :4, :4] = 0.0  # R, the evidence of class 0, is black
    m = torch.zeros(8, 8)
    m[:4, :4] = 1.0  # the map marks exactly R, whose 16 pixels go first (steps=4: 16 per step)
    zero, _, _, _ = F.deletion_insertion_curves(model, x, m[None], classes=torch.tensor([0]), steps=4)
    # black over black: deleting R changes nothing
    assert zero[0, 1] == pytest.approx(zero[0, 0]) == pytest.approx(sig(-A * 0.5))
    mean, ins, _, _ = F.deletion_insertion_curves(model, x, m[None], classes=torch.tensor([0]), steps=4,
                                                  baseline="mean")
    # R filled with the image's mean colour (48/64 = 0.75)
    assert mean[0, 1] == pytest.approx(sig(A * 0.75 - A * 0.5))
    # insertion from the mean-colour image: everything but R is 0.75 at step 1
    assert ins[0, 0] == pytest.approx(sig(A * 0.75 - A * 0.5)) and ins[0, 1] == pytest.approx(sig(-A * 0.5))
    with pytest.raises(ValueError, match="baseline"):
        F.deletion_insertion(model, x, m[None], baseline="blur")


def test_inpaint_baseline_removes_a_black_object_and_its_outline():
    model = RegionModel(q_region=False)
    x = torch.ones(1, 3, 8, 8)
    x[:, :, :4, :4] = 0.0  # R, the evidence of class 0, is black on a white image
    m = torch.zeros(8, 8)
    m[:4, :4] = 1.0  # the map marks exactly R (steps=4: 16 pixels per step)
    dele, ins, _, _ = F.deletion_insertion_curves(model, x, m[None], classes=torch.tensor([0]), steps=4,
                                                  baseline="inpaint")
    tol = A * 3 / 255  # Telea on 8-bit data: a flat hole comes back within ±3 grey levels
    # step 1: R is refilled from the white pixels around it, so no black silhouette is left
    assert dele[0, 0] == pytest.approx(sig(-A * 0.5))
    assert dele[0, 1] == pytest.approx(sig(A * 1.0 - A * 0.5), abs=tol)
    # insertion step 1 keeps only R: the other 48 pixels are inpainted from R's black
    assert ins[0, 1] == pytest.approx(sig(-A * 0.5), abs=tol)
    # nothing kept to inpaint from: the image is black, as with the zero baseline
    assert dele[0, -1] == pytest.approx(sig(-A * 0.5)) and ins[0, 0] == pytest.approx(sig(-A * 0.5))
    assert ins[0, -1] == pytest.approx(dele[0, 0])
    auc = F.deletion_insertion(model, x, m[None], classes=torch.tensor([0]), steps=4, baseline="inpaint")
    assert auc["deletion_auc"] == pytest.approx(float(F.trapezoid_auc(dele[0])))


def test_trapezoid():
    assert float(F.trapezoid_auc(torch.tensor([0.0, 1.0, 1.0]))) == pytest.approx(0.75)


def test_masked_accuracy_and_entropy_closed_form():
    model = RegionModel(q_region=True)
    x = q_image()[None]
    maps = region_map(1.0, 0.0)[None]  # b = R
    res = F.masked_accuracy(model, x, maps, labels=[0])
    # masked-in: r = 1, q = 0 → class 0; masked-out: r = 0, q = 0.8 → class 1
    assert res["masked_in_top1"] == 1.0 and res["masked_out_top1"] == 0.0
    assert res["masked_out_top5"] == 1.0  # only 2 classes: top-5 always hits

    def h(p):
        return -(p * math.log(p) + (1 - p) * math.log(1 - p))

    assert res["masked_in_entropy"] == pytest.approx(h(sig(A * 1.0)), rel=1e-5)
    assert res["masked_out_entropy"] == pytest.approx(h(sig(A * 0.8)), rel=1e-5)


def test_inpainting_on_flat_image_stays_flat():
    x = torch.full((2, 3, 16, 16), 0.4)  # 0.4 = 102/255 exactly representable in 8 bits
    remove = torch.zeros(2, 16, 16, dtype=torch.bool)
    remove[:, 5:11, 4:12] = True
    out = F.inpaint_telea(x, remove)
    # kept pixels are untouched; OpenCV's Telea adds a gradient term that, on 8-bit data, leaves
    # a few grey levels of noise in a flat hole (opencv/opencv#25404), so "flat" means ±3/255
    assert torch.equal(out[:, :, ~remove[0]], x[:, :, ~remove[0]])
    assert (out - 0.4).abs().max() <= 3 / 255 + 1e-6
    assert float(out[:, :, remove[0]].mean()) == pytest.approx(0.4, abs=1 / 255)
    # a gray image with one bright removed square: the hole is filled from the gray border, not 0 or 1
    y = torch.full((1, 1, 16, 16), 0.4)
    y[..., 6:10, 6:10] = 1.0
    hole = torch.zeros(1, 16, 16, dtype=torch.bool)
    hole[:, 5:11, 5:11] = True
    filled = F.inpaint_telea(y, hole)
    assert torch.allclose(filled[..., 6:10, 6:10], torch.full((1, 1, 4, 4), 0.4), atol=2 / 255)


def test_inpainted_accuracy_on_flat_image():
    model = RegionModel(q_region=False)
    x = torch.ones(1, 3, 8, 8)
    res = F.masked_accuracy(model, x, region_map(1.0, 0.0)[None], labels=[0])
    assert res["inpainted_top1"] == 1.0  # the hole is refilled with 1s: r = 1 again
    assert res["masked_out_top1"] == 0.0


def test_entropy_of_known_distribution():
    logits = torch.log(torch.tensor([[0.5, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3]]))
    assert F.entropy(logits).tolist() == pytest.approx([1.5 * math.log(2), math.log(3)], rel=1e-6)


def test_invalid_maps_are_counted_and_excluded():
    model = RegionModel(q_region=True)
    x = torch.stack([q_image()] * 4)
    good = region_map(0.5, 1.0)
    nan = good.clone()
    nan[0, 0] = float("nan")
    maps = torch.stack([nan, torch.zeros(8, 8), torch.full((8, 8), 3.0), good])
    assert F.exclusion_reasons(maps) == ["nonfinite", "all_zero", "constant", None]
    res = F.faithfulness(model, x, maps, labels=[0, 0, 0, 0])
    alone = F.faithfulness(model, x[3:], maps[3:], labels=[0])
    assert res["n"] == 1
    assert res["excluded"] == {"nonfinite": 1, "all_zero": 1, "constant": 1}
    for key, val in alone.items():
        if key not in ("n", "excluded"):
            assert res[key] == pytest.approx(val), key
    # nothing valid: NaN, never a perfect or zero score
    none = F.faithfulness(model, x[:3], maps[:3])
    assert none["n"] == 0 and math.isnan(none["AD@0"]) and math.isnan(none["deletion_auc"])
    assert math.isnan(none["masked_in_top1"])


def test_bad_input():
    model = RegionModel()
    with pytest.raises(ValueError, match="maps"):
        F.average_drop_increase(model, torch.ones(2, 3, 8, 8), torch.rand(2, 4, 4))
    with pytest.raises(ValueError, match="threshold"):
        F.masked_accuracy(model, torch.ones(1, 3, 8, 8), torch.rand(1, 8, 8), threshold=0)
    with pytest.raises(ValueError, match="batch_size"):
        F.deletion_insertion(model, torch.ones(1, 3, 8, 8), torch.rand(1, 8, 8), batch_size=0)


def test_numpy_channels_last_input_and_batching_agree():
    model = RegionModel(q_region=True)
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 8, 8, generator=g)
    maps = torch.rand(5, 8, 8, generator=g)
    a = F.faithfulness(model, x, maps, batch_size=2)
    b = F.faithfulness(model, x.permute(0, 2, 3, 1).numpy(), maps.numpy(), batch_size=32)
    for key in a:
        if key != "excluded":
            assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert np.isfinite([a["AD@0"], a["deletion_auc"], a["insertion_auc"]]).all()
