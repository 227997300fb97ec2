"""The memory-efficient dense block (one shared output buffer) against the concatenating one."""
import copy

import pytest
import torch

from hrcam.models.hrcam.fcdensenet import DenseBlock, set_memory_efficient
from hrcam.models.hrcam.nets import FullNet, HalfNet
from hrcam.train.modules import FullModule

ARCH = {"init_filters": 8, "growth_rate": 4, "layers_per_block": 3}


def _close(a, b, msg=""):
    """Equal up to float32 rounding of a deep sum: 1e-4 of the tensor's scale (both orders of
    summation land about 2e-5 of the scale from a float64 reference)."""
    err, scale = (a - b).abs().max().item(), b.abs().max().item()
    assert err <= 1e-4 * scale + 1e-7, f"{msg}: max difference {err:.3g} at scale {scale:.3g}"


def _pair(net):
    cat = set_memory_efficient(copy.deepcopy(net), False)
    return set_memory_efficient(net, True), cat


def _grads(net, x):
    xi = x.to(next(net.parameters()).dtype).clone().requires_grad_()
    logits = net(xi)
    (logits ** 2).sum().backward()
    return {"logits": logits.detach(), "input": xi.grad, **{n: p.grad for n, p in net.named_parameters()},
            **dict(net.named_buffers())}


@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
@pytest.mark.parametrize("train", [True, False])
def test_logits_gradients_and_running_stats_match_the_concatenating_block(fmt, train):
    """Against a float64 reference, the shared buffer is as accurate as torch.cat (float32 both)."""
    eff, cat = _pair(HalfNet(5, **ARCH).to(memory_format=fmt))
    ref = copy.deepcopy(cat).double()
    x = torch.rand(3, 3, 32, 32).contiguous(memory_format=fmt)
    got = [_grads(m.train(train), x) for m in (eff, cat, ref)]
    for name, r in got[2].items():
        if r.dtype == torch.long:  # num_batches_tracked
            assert torch.equal(got[0][name], r), name
            continue
        err_eff = (got[0][name].double() - r).abs().max().item()
        err_cat = (got[1][name].double() - r).abs().max().item()
        assert err_eff <= 4 * err_cat + 1e-6 * r.abs().max().item() + 1e-9, (name, err_eff, err_cat)
    if train:  # the batch statistics were taken: running stats moved, counters advanced once
        bn = eff.encoder.blocks[0].layers[2][0]
        assert int(bn.num_batches_tracked) == 1 and not torch.equal(bn.running_var, torch.ones_like(bn.running_var))


def test_block_returns_full_and_new_with_the_input_first():
    block = DenseBlock(6, 4, 2).eval()
    x = torch.rand(2, 6, 8, 8)
    full, new = block(x)
    assert full.shape == (2, 14, 8, 8) and new.shape == (2, 8, 8, 8)
    assert torch.equal(full[:, :6], x) and torch.equal(full[:, 6:], new)
    # layer 2 sees the input and layer 1's maps: recompute it by hand with torch.cat
    y1 = block.layers[0](x)
    y2 = block.layers[1](torch.cat([x, y1], 1))
    torch.testing.assert_close(new, torch.cat([y1, y2], 1), rtol=1e-6, atol=1e-6)


def test_state_dict_keys_are_unchanged_and_old_weights_load():
    net = HalfNet(4, **ARCH)
    keys = list(net.state_dict())
    assert "encoder.blocks.0.layers.2.0.running_mean" in keys and "encoder.blocks.0.layers.2.2.weight" in keys
    cat = set_memory_efficient(HalfNet(4, **ARCH), False)
    cat.load_state_dict(net.state_dict())  # same layout both ways
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(net.eval()(x), cat.eval()(x), rtol=1e-5, atol=1e-6)


def test_frozen_transfer_is_bit_identical_with_the_shared_buffer():
    half = HalfNet(4, **ARCH).eval()
    full = FullNet.from_half(half).eval()
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(full(x), half(x))


def test_decoder_training_step_matches_and_an_in_place_edit_is_caught():
    torch.manual_seed(0)
    half = HalfNet(3, **ARCH).state_dict()
    mods = [FullModule(half, 3, 3, 32, ARCH) for _ in range(2)]
    mods[1].net.load_state_dict(mods[0].net.state_dict())
    set_memory_efficient(mods[0].net, True)
    set_memory_efficient(mods[1].net, False)
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 2])
    for m in mods:
        m.net.train()
        m._losses(x, y)[1].backward()
    for (name, p), q in zip(mods[0].net.named_parameters(), mods[1].net.parameters()):
        if p.requires_grad:
            _close(p.grad, q.grad, name)
    block = set_memory_efficient(DenseBlock(6, 4, 2), True)
    # the backward pass reads the buffer: an in-place edit of the output, directly or through a
    # detached alias, is refused there instead of giving wrong gradients
    for edit in (lambda t: t.mul_(2), lambda t: t.detach().mul_(2)):
        full, _ = block(torch.rand(2, 6, 8, 8, requires_grad=True))
        with torch.no_grad():
            edit(full)
        with pytest.raises(RuntimeError, match="modified by an inplace operation"):
            full.sum().backward()


def test_hooks_on_inner_layers_still_fire():
    net = HalfNet(3, **ARCH)
    seen = []
    net.encoder.blocks[0].layers[1].register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    net(torch.rand(2, 3, 32, 32, requires_grad=True)).sum().backward()
    assert seen == [(2, 4, 16, 16)]


@pytest.mark.parametrize("train,channels_last,side", [(True, False, 10), (False, False, 10), (True, True, 11)])
def test_recomputing_transition_down_matches_the_layers_run_one_by_one(train, channels_last, side):
    """The memory-efficient transition keeps only its input, yet gives the same output, input and
    weight gradients, and moves the running statistics once."""
    from hrcam.models.hrcam.fcdensenet import TransitionDown, _TransitionDownFn

    torch.manual_seed(0)
    eff = set_memory_efficient(TransitionDown(6).train(train), True)
    plain = set_memory_efficient(copy.deepcopy(eff), False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.randn(3, 6, side, side).contiguous(memory_format=fmt)  # odd: the pool drops the last row
    outs = []
    for m in (eff, plain):
        xi = x.clone(memory_format=torch.preserve_format).requires_grad_()
        y = m(xi)
        (y * torch.arange(y.numel()).view_as(y).sin()).sum().backward()
        outs.append((y.detach(), xi.grad, [p.grad for p in m.parameters()], m[0].running_mean.clone(),
                     int(m[0].num_batches_tracked)))
    assert eff.memory_efficient is True and plain.memory_efficient is False
    (ye, ge, pe, rme, ne), (yp, gp, pp, rmp, npl) = outs
    assert torch.equal(ye, yp) and ne == npl == int(train)
    torch.testing.assert_close(rme, rmp)
    _close(ge, gp, "input")
    for a, b in zip(pe, pp):
        _close(a, b, "weight")
    seen = []  # and the recomputing path is the one the block takes while training
    orig = _TransitionDownFn.apply
    try:
        _TransitionDownFn.apply = lambda *a: seen.append(1) or orig(*a)
        eff(x.clone().requires_grad_())
    finally:
        _TransitionDownFn.apply = orig
    assert seen == [1]


@pytest.mark.parametrize("train,image_grad,channels_last", [(True, False, False), (True, True, True),
                                                           (False, True, False)])
def test_recomputing_stem_matches_the_layers_run_one_by_one(train, image_grad, channels_last):
    """The memory-efficient stem keeps only the image, yet gives the same output, weight (and,
    when asked, image) gradients, and moves the running statistics once."""
    from hrcam.models.hrcam.fcdensenet import Stem, _StemFn

    torch.manual_seed(0)
    eff = set_memory_efficient(Stem(3, 5).train(train), True)
    plain = set_memory_efficient(copy.deepcopy(eff), False)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    x = torch.rand(2, 3, 9, 11).contiguous(memory_format=fmt)
    outs = []
    for m in (eff, plain):
        xi = x.clone(memory_format=torch.preserve_format).requires_grad_(image_grad)
        y = m(xi)
        (y * torch.arange(y.numel()).view_as(y).cos()).sum().backward()
        outs.append((y.detach(), xi.grad, [p.grad for p in m.parameters()], m[1].running_var.clone(),
                     int(m[1].num_batches_tracked)))
    (ye, ge, pe, rve, ne), (yp, gp, pp, rvp, npl) = outs
    torch.testing.assert_close(ye, yp, rtol=1e-6, atol=1e-6)
    assert ne == npl == int(train)
    torch.testing.assert_close(rve, rvp)
    if image_grad:
        _close(ge, gp, "input")
    else:
        assert ge is None and gp is None
    for a, b in zip(pe, pp):
        _close(a, b, "weight")
    seen = []  # the recomputing path is the one taken, and only while autograd records
    orig = _StemFn.apply
    try:
        _StemFn.apply = lambda *a: seen.append(1) or orig(*a)
        eff(x)
        with torch.no_grad():
            eff(x)
    finally:
        _StemFn.apply = orig
    assert seen == [1]


def test_auto_recomputes_only_large_maps(monkeypatch):
    """'auto' (the default) keeps small maps the plain way and recomputes large ones; the
    threshold is on the block's output bytes. Either way the logits are the same."""
    from hrcam.models.hrcam import fcdensenet

    net = HalfNet(3, **ARCH).train()
    assert {b.memory_efficient for b in net.encoder.blocks} == {"auto"}
    calls = []
    orig = fcdensenet._DenseBlockFn.apply
    monkeypatch.setattr(fcdensenet._DenseBlockFn, "apply", lambda *a: calls.append(1) or orig(*a))
    x = torch.rand(2, 3, 32, 32)
    small = net(x)
    assert calls == []  # 2 × 20 × 16 × 16 floats: far below 32 MiB
    first = net.encoder.blocks[0]
    need = 2 * first.out_channels * 16 * 16 * 4  # the first block's output, in bytes
    monkeypatch.setattr(fcdensenet, "MEMORY_EFFICIENT_MIN_BYTES", need)
    big = net(x)
    assert len(calls) == 1  # only the first block reaches the threshold
    torch.testing.assert_close(big, small, rtol=1e-5, atol=1e-6)
    monkeypatch.setattr(fcdensenet, "MEMORY_EFFICIENT_MIN_BYTES", 2 ** 40)
    cat_calls = []
    cat = fcdensenet.DenseBlock._forward_cat
    monkeypatch.setattr(fcdensenet.DenseBlock, "_forward_cat", lambda self, t: cat_calls.append(1) or cat(self, t))
    net(x)
    n_blocks = sum(isinstance(m, DenseBlock) for m in net.modules())
    assert len(cat_calls) == n_blocks  # training, every block below the threshold: plain
    cat_calls.clear()
    with torch.no_grad():  # without autograd the buffer is used at any size (no recomputation to pay)
        net.eval()(x)
    assert cat_calls == [] and net.encoder.blocks[0].memory_efficient == "auto"
    with pytest.raises(ValueError, match="True, False or 'auto'"):
        set_memory_efficient(net, "yes")


@pytest.mark.parametrize("training", [True, False])
@pytest.mark.parametrize("fmt", [torch.contiguous_format, torch.channels_last])
def test_bn_backward_reads_a_buffer_view_and_adds_into_the_accumulator(training, fmt):
    """The block's BN backward against PyTorch's own (in float64), on a channel slice of a wider
    buffer as the block passes it; the input gradient is added to what ``out`` held."""
    from hrcam.models.hrcam.fcdensenet import _bn_backward_into

    class Mode:
        eps = 1e-5

    Mode.training = training
    g = torch.Generator().manual_seed(0)
    k, n = 5, 9  # an odd batch: the per-channel dot runs in chunks of a few images
    buf = (torch.randn(n, k + 3, 6, 7, generator=g, dtype=torch.float64) * 2 + 1).contiguous(memory_format=fmt)
    x = buf[:, :k]
    grad = torch.randn(n, k, 6, 7, generator=g, dtype=torch.float64).contiguous(memory_format=fmt)
    weight = torch.rand(k, generator=g, dtype=torch.float64) + 0.5
    mean, invstd = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False).add(Mode.eps).rsqrt()
    running_mean, running_var = torch.randn(k, generator=g, dtype=torch.float64), torch.rand(k, generator=g,
                                                                                               dtype=torch.float64) + 0.5
    start = torch.randn(n, k + 2, 6, 7, generator=g, dtype=torch.float64).contiguous(memory_format=fmt)
    out = start.clone(memory_format=fmt)
    grad_w, grad_b = _bn_backward_into(out[:, :k], grad, x, Mode, weight, mean, invstd, running_mean, running_var)
    ref_x, ref_w, ref_b = torch.ops.aten.native_batch_norm_backward(
        grad, x.contiguous(), weight, running_mean, running_var, mean if training else None,
        invstd if training else None, training, Mode.eps, [True, True, True])
    torch.testing.assert_close(out[:, :k], start[:, :k] + ref_x, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out[:, k:], start[:, k:], rtol=0, atol=0)  # the channels after it untouched
    torch.testing.assert_close(grad_w, ref_w, rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(grad_b, ref_b, rtol=1e-9, atol=1e-9)
