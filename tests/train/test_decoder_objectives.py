"""The decoder options and objectives for maps that localize (issue: HR-CAM maps that localize).

Micro scale: a 32-px FC-DenseNet with 2 classes (a bright square on the left or the right half of a
noisy image), a few optimizer steps.
"""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrcam.metrics.artifacts import CHECKERBOARD_MAX_SHARE, high_frequency_share
from hrcam.models.hrcam.nets import FullNet, HalfNet, anchor_to_low
from hrcam.models.registry import get_model, model_metadata
from hrcam.train.modules import FullModule, HalfModule
from hrcam.train.objectives import (
    FaithfulnessWeights,
    blurred,
    edge_aware_tv,
    faithfulness_terms,
    low_scaled_maps,
    mask_fill,
    minmax_maps,
)

ARCH = {"init_filters": 8, "growth_rate": 4, "layers_per_block": 1, "num_blocks": 2}


def _squares(n: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 * torch.rand(n, 3, 32, 32, generator=g)
    y = torch.randint(0, 2, (n,), generator=g)
    masks = torch.zeros(n, 32, 32, dtype=torch.bool)
    for i in range(n):
        r = int(torch.randint(4, 18, (1,), generator=g))
        c = int(torch.randint(2, 8, (1,), generator=g)) + (16 if y[i] else 0)
        x[i, :, r:r + 10, c:c + 8] = 0.9
        masks[i, r:r + 10, c:c + 8] = True
    return x, y, masks


@pytest.fixture(scope="module")
def trained_half():
    torch.manual_seed(0)
    x, y, _ = _squares(64)
    module = HalfModule(2, 3, 32, ARCH)
    opt = torch.optim.Adam(module.net.parameters(), lr=3e-3)
    module.net.train()
    for _ in range(40):
        loss = F.cross_entropy(module.net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return module.net.eval()


def _localize(half: HalfNet, steps: int, seed: int = 0) -> tuple[FullModule, list[float]]:
    torch.manual_seed(seed)
    x, y, _ = _squares(32, seed=1)
    module = FullModule(half.state_dict(), 2, 3, 32, ARCH, objective="faithfulness", upsampling="resize",
                        anchor="bilinear", optimizer="adam")
    opt = module.configure_optimizers()["optimizer"]
    losses = []
    module.net.train()
    for _ in range(steps):
        _, loss, _ = module._losses(x, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return module.eval(), losses


def test_anchor_keeps_cell_means_of_the_low_res_features():
    """With a nearest ``up`` the anchor would be exact; bilinear keeps the cell means close."""
    g = torch.Generator().manual_seed(0)
    a_low = torch.randn(2, 4, 4, 4, generator=g)
    b = torch.randn(2, 4, 64, 64, generator=g)
    out = anchor_to_low(b, a_low)
    pooled = F.avg_pool2d(out, 16)
    r = np.corrcoef(pooled.flatten().numpy(), a_low.flatten().numpy())[0, 1]
    assert r > 0.9
    # the decoder's pattern inside the cells survives: out − b is smooth (a bilinear image of 4×4)
    assert float(high_frequency_share((out - b)[:, 0]).max()) < 0.01


def test_full_options_keep_classification_bit_identical(trained_half):
    x, _, _ = _squares(4, seed=3)
    for upsampling in ("transposed", "resize"):
        for anchor in ("none", "bilinear"):
            full = FullNet.from_half(trained_half, upsampling=upsampling, anchor=anchor).eval()
            with torch.no_grad():  # inference, as HalfModel / FullModel run it
                logits, _, a_high = full.forward_all(x)
                assert torch.equal(logits, trained_half(x))
            assert a_high.shape == (4, 16, 32, 32)


def test_decoder_options_round_trip_through_metadata(trained_half):
    full = FullNet.from_half(trained_half, upsampling="resize", anchor="bilinear")
    meta = model_metadata("full", full, 32)
    assert meta["decoder"] == {"upsampling": "resize", "anchor": "bilinear"}
    again = get_model("full", meta)
    again.load_state_dict(full.state_dict())
    assert (again.upsampling, again.anchor) == ("resize", "bilinear")
    # a file written before the options existed has no "decoder" entry: the seed's decoder
    old = dict(meta)
    old.pop("decoder")
    seed = get_model("full", old)
    assert (seed.upsampling, seed.anchor) == ("transposed", "none")


def test_faithfulness_training_lowers_its_loss_and_maps_are_smooth_and_follow_the_class(trained_half):
    module, losses = _localize(trained_half, 30)
    assert np.mean(losses[-5:]) < np.mean(losses[:5])
    x, y, masks = _squares(16, seed=7)
    with torch.no_grad():
        _, a_low, a_high = module.net.forward_all(x)
        high = torch.einsum("nk,nkhw->nhw", module.net.low_weight[y], a_high)
        low = torch.einsum("nk,nkhw->nhw", module.net.low_weight[y], a_low)
    # no checkerboard (resize-conv + anchor), measured on the trained micro model
    assert float(high_frequency_share(high.numpy()).mean()) < CHECKERBOARD_MAX_SHARE
    # still this classifier's evidence: pooled to the low-res grid it follows the low-res CAM
    pooled = F.avg_pool2d(high[:, None], high.shape[-1] // low.shape[-1])[:, 0]
    assert np.corrcoef(pooled.flatten().numpy(), low.flatten().numpy())[0, 1] > 0.9


def test_faithfulness_objective_is_seeded(trained_half):
    a, _ = _localize(trained_half, 3, seed=5)
    b, _ = _localize(trained_half, 3, seed=5)
    for (name, p), q in zip(a.net.state_dict().items(), b.net.state_dict().values()):
        assert torch.equal(p, q), name


def test_edge_aware_tv_is_cheaper_across_image_edges():
    img = torch.zeros(1, 3, 8, 8)
    img[..., 4:] = 1.0  # a vertical edge between columns 3 and 4
    along_edge = torch.zeros(1, 8, 8)
    along_edge[..., 4:] = 1.0  # the mask jumps where the image does
    across = torch.zeros(1, 8, 8)
    across[:, 4:] = 1.0  # the mask jumps where the image is flat
    assert float(edge_aware_tv(along_edge, img)) < 0.01 * float(edge_aware_tv(across, img))


def test_minmax_maps_and_weights_validation():
    m = minmax_maps(torch.tensor([[[1.0, 3.0], [2.0, 5.0]]]))
    assert torch.allclose(m, torch.tensor([[[0.0, 0.5], [0.25, 1.0]]]), atol=1e-5)
    with pytest.raises(ValueError, match="area"):
        FaithfulnessWeights(area=-1)
    with pytest.raises(ValueError, match="anchor"):
        FullNet(2, 3, anchor="nearest", **ARCH)
    with pytest.raises(ValueError, match="optimizer"):
        FullModule(None, 2, 3, 32, ARCH, optimizer="sgd")


class _MeanColour(torch.nn.Module):
    """A stand-in classifier whose logits are the image's mean colour (3 'classes': R, G, B)."""

    def forward(self, x):
        return 4 * x.mean(dim=(2, 3))


def test_mask_fill_is_one_random_colour_per_image_or_black():
    images = torch.rand(4, 3, 8, 8)
    torch.manual_seed(3)
    u = mask_fill(images, "random")
    torch.manual_seed(3)
    again = mask_fill(images, "random")
    assert u.shape == (4, 3, 1, 1) and torch.equal(u, again)
    assert 0 <= float(u.min()) and float(u.max()) <= 1 and not torch.equal(u[0], u[1])
    assert torch.equal(mask_fill(images, "zero"), torch.zeros(4, 3, 1, 1))
    with pytest.raises(ValueError, match="fill"):
        mask_fill(images, "grey")
    with pytest.raises(ValueError, match="fill"):
        FaithfulnessWeights(fill="grey")


def test_blur_fill_is_the_image_under_a_gaussian_of_a_tenth_of_the_side():
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, 64, 64, generator=g)
    u = mask_fill(images, "blur")
    assert u.shape == images.shape and not u.requires_grad
    # a blur keeps each channel's mean (reflect border) and removes the pixel noise
    assert torch.allclose(u.mean(dim=(2, 3)), images.mean(dim=(2, 3)), atol=0.02)
    assert float(u.std()) < 0.2 * float(images.std())
    # a constant image stays itself; an impulse spreads to a Gaussian of σ = side·10/224
    flat = torch.full((1, 1, 64, 64), 0.4)
    assert torch.allclose(blurred(flat), flat, atol=1e-6)
    impulse = torch.zeros(1, 1, 64, 64)
    impulse[..., 32, 32] = 1.0
    row = blurred(impulse)[0, 0, 32]
    sigma = 64 * 10 / 224
    d = torch.arange(64, dtype=torch.float32) - 32
    spread = float((row * d ** 2).sum() / row.sum()) ** 0.5
    assert spread == pytest.approx(sigma, rel=0.1)
    # tiny images still work (the kernel shrinks below the side) and the gradient stops at the fill
    tiny = torch.rand(1, 3, 5, 7, requires_grad=True)
    assert mask_fill(tiny, "blur").shape == (1, 3, 5, 7)
    assert mask_fill(tiny, "blur").grad_fn is None


def test_black_fill_cannot_delete_a_dark_object_and_a_random_fill_can():
    # a black square (the object) on a red background; the map marks the square exactly
    x = torch.zeros(1, 3, 8, 8)
    x[:, 0] = 1.0
    x[:, :, 2:6, 2:6] = 0.0
    square = torch.zeros(1, 8, 8)
    square[:, 2:6, 2:6] = 1.0
    labels = torch.tensor([0])
    only_delete = dict(keep=0.0, area=0.0, tv=0.0, scale="minmax")  # the square is the mask as it is
    black = faithfulness_terms(_MeanColour(), x, square, labels, FaithfulnessWeights(fill="zero", **only_delete))
    # black fill: deleting the (already black) square changes no pixel, so the loss is the
    # one of the untouched image
    p = F.softmax(_MeanColour()(x), dim=1)[0, 0]
    assert torch.allclose(black["delete"], -torch.log(1 - p), atol=1e-6)
    torch.manual_seed(0)
    u = mask_fill(x, "random")
    torch.manual_seed(0)
    rand = faithfulness_terms(_MeanColour(), x, square, labels, FaithfulnessWeights(fill="random", **only_delete))
    filled = x * (1 - square[:, None]) + u * square[:, None]
    q = F.softmax(_MeanColour()(filled), dim=1)[0, 0]
    assert torch.allclose(rand["delete"], -torch.log(1 - q), atol=1e-6)
    assert not torch.allclose(rand["delete"], black["delete"])


def test_low_scaled_mask_is_in_the_low_res_units_and_ignores_an_outlier():
    low = torch.tensor([[[2.0, 4.0], [6.0, 10.0]]])  # range 2 .. 10
    maps = torch.tensor([[[2.0, 6.0, 10.0, 14.0]]]).expand(1, 4, 4).clone()
    scaled = low_scaled_maps(maps, low)
    assert torch.allclose(scaled[0, 0], torch.tensor([0.0, 0.5, 1.0, 1.5]), atol=1e-5)  # not clipped
    spiked = maps.clone()
    spiked[0, 0, 0] = -1000.0
    # min-max: one far outlier squeezes every other pixel to ≈ 1; the low-res units do not move
    assert float(minmax_maps(spiked)[0, 1:].min()) > 0.98
    assert torch.equal(low_scaled_maps(spiked, low)[0, 1:], scaled[0, 1:])
    with pytest.raises(ValueError, match="scale"):
        FaithfulnessWeights(scale="max")


def test_an_outlier_pixel_games_the_minmax_mask_but_not_the_low_scaled_one():
    # the map marks the object (left half); a copy adds one far-negative pixel in a corner
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 8, 8, generator=g)
    honest = torch.zeros(2, 8, 8)
    honest[:, :, :4] = 1.0
    spiked = honest.clone()
    spiked[:, 0, 7] = -100.0
    low = torch.tensor([[0.0, 1.0]]).expand(2, 2, 2).contiguous().transpose(1, 2)  # 2×2 cells: 0 .. 1
    labels = torch.tensor([0, 1])

    def terms(maps, scale):
        torch.manual_seed(0)
        return faithfulness_terms(_MeanColour(), x, maps, labels, FaithfulnessWeights(scale=scale), low_maps=low)

    # min-max: the outlier turns the mask on everywhere, so the area grows and the TV shrinks
    mm_honest, mm_spiked = terms(honest, "minmax"), terms(spiked, "minmax")
    assert float(mm_spiked["area"]) > 1.5 * float(mm_honest["area"])
    assert float(mm_spiked["tv"]) < float(mm_honest["tv"])
    # low-res units: the mask elsewhere is unchanged (same area up to the one pixel) and the
    # outlier's jump is paid in TV
    lo_honest, lo_spiked = terms(honest, "low"), terms(spiked, "low")
    assert float(lo_spiked["area"]) == pytest.approx(float(lo_honest["area"]), abs=0.05)
    assert float(lo_spiked["tv"]) > 10 * float(lo_honest["tv"])
    with pytest.raises(ValueError, match="low_maps"):
        faithfulness_terms(_MeanColour(), x, honest, labels, FaithfulnessWeights(scale="low"))
