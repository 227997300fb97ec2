"""HR-CAM networks: shapes, channel counts (DESIGN §3), CAM linearity, half → full transfer."""
import pytest
import torch

from hrcam.models.base import class_maps
from hrcam.models.hrcam.fcdensenet import FCDenseNetConfig
from hrcam.models.hrcam.nets import FullNet, HalfNet

# DESIGN §3 with the seed's defaults: 48 → 112 → 176 → 240 → 304, bottleneck 64 new maps.
SEED_SKIPS = [112, 176, 240, 304]


def _record_shapes(net, x):
    shapes = {}
    enc = net.localization.encoder if isinstance(net, FullNet) else net.encoder
    hooks = [enc.blocks[i].register_forward_hook(
        lambda m, i_, o, k=i: shapes.__setitem__(f"block{k}", (o[0].shape, o[1].shape))) for i in range(4)]
    hooks.append(enc.bottleneck.register_forward_hook(lambda m, i_, o: shapes.__setitem__("bottleneck", o[1].shape)))
    if isinstance(net, FullNet):
        for i, st in enumerate(net.expansion):
            hooks.append(st.register_forward_hook(
                lambda m, i_, o, k=i: shapes.__setitem__(f"stage{k + 2}", (o[0].shape, o[1].shape))))
    with torch.no_grad():
        out = net.eval().forward_maps(x, high=isinstance(net, FullNet))
    for h in hooks:
        h.remove()
    return out, shapes


@pytest.mark.parametrize("size", [32, 64, 224])
def test_shapes_and_channels_follow_the_design(size):
    net = FullNet(num_classes=7)
    x = torch.rand(1, 3, size, size)
    out, shapes = _record_shapes(net, x)
    assert out.logits.shape == (1, 7)
    assert out.low_features.shape == (1, 16, size // 16, size // 16)
    assert out.high_features.shape == (1, 16, size, size)
    for k, ch in enumerate(SEED_SKIPS):
        full, new = shapes[f"block{k}"]
        assert full[1] == ch and new[1] == 64
        assert full[-1] == size // 2 ** (k + 1)
    assert shapes["bottleneck"][1:] == (64, size // 32, size // 32)
    # decoder stages 2..4 at S/8, S/4, S/2: up 64 + skip + 64 new maps
    for k, (skip, res) in enumerate(zip([240, 176, 112], [8, 4, 2])):
        full, new = shapes[f"stage{k + 2}"]
        assert full[1:] == (64 + skip + 64, size // res, size // res)
        assert new[1] == 64
    rec = net.reconstruct(x)
    assert rec.shape == x.shape and rec.min() >= 0 and rec.max() <= 1


def test_image_size_must_fit_the_downsampling():
    with pytest.raises(ValueError, match="multiple of 32"):
        HalfNet(3).eval()(torch.rand(1, 3, 48, 48))
    with pytest.raises(ValueError, match="growth_rate"):
        FCDenseNetConfig(growth_rate=0)


def test_cam_mean_plus_bias_equals_logit():
    net = HalfNet(num_classes=5, init_filters=8, growth_rate=4, layers_per_block=2).eval()
    torch.nn.init.normal_(net.fc.bias)
    x = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        out = net.forward_maps(x)
        maps = class_maps(net.low_weight, out.low_features)  # N×K×h×w
    assert maps.shape == (3, 5, 4, 4)
    recovered = maps.mean(dim=(2, 3)) + net.fc.bias
    torch.testing.assert_close(recovered, out.logits, rtol=1e-5, atol=1e-5)
    # explicit per-class sum for one class, written out by hand
    c = 2
    by_hand = sum(net.fc.weight[c, k] * out.low_features[:, k] for k in range(16))
    torch.testing.assert_close(maps[:, c], by_hand, rtol=1e-5, atol=1e-6)


def test_class_maps_per_image_class_matches_all_classes():
    w = torch.randn(4, 6)
    a = torch.randn(3, 6, 5, 5)
    all_maps = class_maps(w, a)
    picked = class_maps(w, a, torch.tensor([3, 0, 2]))
    torch.testing.assert_close(picked, all_maps[torch.arange(3), torch.tensor([3, 0, 2])])
    with pytest.raises(ValueError, match="out of range"):
        class_maps(w, a, torch.tensor([4, 0, 0]))


def test_full_from_half_is_bit_identical_and_frozen():
    torch.manual_seed(1)
    half = HalfNet(num_classes=4, init_filters=8, growth_rate=4, layers_per_block=2)
    # give BN non-trivial running statistics
    half.train()
    with torch.no_grad():
        half(torch.rand(4, 3, 32, 32))
    half.eval()
    full = FullNet.from_half(half)
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        ho = half.forward_maps(x)
        fo = full.forward_maps(x, high=True)
    assert torch.equal(ho.logits, fo.logits)
    assert torch.equal(ho.low_features, fo.low_features)
    assert all(not p.requires_grad for p in full.localization.parameters())
    assert any(p.requires_grad for p in full.expansion.parameters())
    full.train()
    assert not full.localization.training  # frozen batch norms stay in eval mode
    assert full.expansion.training


def test_class_maps_into_a_reused_buffer():
    w = torch.randn(5, 3)
    a = torch.randn(2, 3, 4, 4)
    buf = torch.full((2, 5, 4, 4), float("nan"))
    got = class_maps(w, a, out=buf)
    assert got.data_ptr() == buf.data_ptr()
    torch.testing.assert_close(buf, torch.einsum("kc,nchw->nkhw", w, a))


def test_resize_up_inference_runs_as_the_equal_transposed_conv(monkeypatch):
    # nearest ×2 + 3×3 conv (the layers as written, run with autograd on) against the fused
    # 4×4 stride-2 transposed conv that inference uses; odd sizes catch an off-by-one tap
    from hrcam.models.hrcam.fcdensenet import ResizeUp

    torch.manual_seed(0)
    up = ResizeUp(5, 3).eval()
    torch.nn.init.normal_(up[1].bias)
    x = torch.randn(2, 5, 7, 9)
    written = up(x).detach()
    assert written.shape == (2, 3, 14, 18)

    def no_resize(*a, **k):
        raise AssertionError("inference should not run the nearest resize")

    monkeypatch.setattr(torch.nn.Upsample, "forward", no_resize)
    with torch.no_grad():
        fused = up(x)
        fused_cl = up(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(fused, written, atol=1e-5, rtol=1e-5)
    assert torch.allclose(fused_cl, written, atol=1e-5, rtol=1e-5)
    monkeypatch.undo()
    up.fused = False  # the switch restores the layers as written
    with torch.no_grad():
        assert torch.equal(up(x), written)


def test_resize_decoder_maps_are_the_same_in_inference_and_training_paths():
    from hrcam.explain import create

    torch.manual_seed(0)
    arch = dict(init_filters=8, growth_rate=4, layers_per_block=1, num_blocks=2)
    net = FullNet(3, upsampling="resize", anchor="bilinear", **arch).eval()
    x = torch.rand(2, 3, 32, 32)
    logits, _, a_high = net.forward_all(x)  # grad enabled: the layers as written
    with create("hrcam", net) as e:  # inference_mode, channels-last, fused resize-conv
        out = e.explain(x, targets=[0, 2])
    expected = class_maps(net.high_weight, a_high.detach(), torch.tensor([0, 2]))
    assert torch.allclose(out.raw, expected, atol=1e-5, rtol=1e-4)
    assert torch.allclose(out.logits, logits.detach(), atol=1e-5, rtol=1e-5)
