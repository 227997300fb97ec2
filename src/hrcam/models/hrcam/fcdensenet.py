"""FC-DenseNet ("Tiramisu") building blocks, as HR-CAM uses them (DESIGN §3).

Defaults are the seed's: 4 dense blocks down, 4 layers per block, growth rate 16, 48 initial
filters, no compression, max-pool transitions, transposed-conv upsampling, and an extra
("early") transition at each end. Convolutions are He-normal initialised and bias-free unless
stated; batch norm uses eps 1.1e-5.

With S the input side and the defaults, channels and resolutions are::

    stem 3×3 conv            48 @ S
    early transition down    48 @ S/2
    block 1 .. 4  (skips)   112 @ S/2, 176 @ S/4, 240 @ S/8, 304 @ S/16
    bottleneck (new maps)    64 @ S/32
    decoder stage 1..4       up 64 → concat skip → block → 64 new maps, at S/16 .. S/2
    final transition up      16 @ S   (applied to all of stage 4: 64 + 112 + 64 = 240 ch)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

BN_EPS = 1.1e-5


@dataclass(frozen=True)
class FCDenseNetConfig:
    """Hyper-parameters of the FC-DenseNet (defaults: the seed's)."""

    in_channels: int = 3
    init_filters: int = 48
    growth_rate: int = 16
    layers_per_block: int = 4
    num_blocks: int = 4
    aux_channels: int = 16
    up_filters: int = 64

    def __post_init__(self):
        for name in ("in_channels", "init_filters", "growth_rate", "layers_per_block", "num_blocks",
                     "aux_channels", "up_filters"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

    @property
    def downsampling(self) -> int:
        """Total stride down to the bottleneck: the input side must be a multiple of it."""
        return 2 ** (self.num_blocks + 1)

    @property
    def low_res_stride(self) -> int:
        """Input side / A_low side (16 with the defaults: 14×14 at 224)."""
        return 2 ** self.num_blocks

    @property
    def block_new_channels(self) -> int:
        return self.layers_per_block * self.growth_rate

    def skip_channels(self) -> list[int]:
        """Channels of the encoder skips, from S/2 down to S/2**num_blocks."""
        c = self.init_filters
        out = []
        for _ in range(self.num_blocks):
            c += self.block_new_channels
            out.append(c)
        return out

    def as_dict(self) -> dict:
        return asdict(self)

    def check_size(self, h: int, w: int) -> None:
        d = self.downsampling
        if h % d or w % d:
            raise ValueError(f"image size {h}×{w} must be a multiple of {d} for this network")


def he_init(module: nn.Module) -> None:
    """He-normal weights for every (transposed) convolution, zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def bn_relu_conv(in_ch: int, out_ch: int, kernel: int) -> nn.Sequential:
    """BatchNorm → ReLU → ``kernel``×``kernel`` conv (same padding), FC-DenseNet's basic layer."""
    return nn.Sequential(
        nn.BatchNorm2d(in_ch, eps=BN_EPS),
        nn.ReLU(inplace=True),
        nn.Conv2d(in_ch, out_ch, kernel, padding=kernel // 2, bias=False),
    )


class DenseBlock(nn.Module):
    """``layers`` × (BN, ReLU, 3×3 conv → growth); each output is concatenated onto the input.

    Returns ``(full, new)``: the block input with all new maps appended, and the new maps alone.

    With :attr:`memory_efficient` the block allocates its output ``full`` once and
    each layer reads the channels written so far and writes its ``growth`` new maps into it,
    instead of ``torch.cat``-ing the growing input at every layer (Pleiss et al. 2017). For
    training, each layer's BN → ReLU output is not kept for the backward pass but recomputed from
    the shared buffer there (an elementwise pass), so the activations a block keeps are its output
    alone instead of two copies of every layer's input. The math is the same: outputs and
    gradients equal the concatenating version's to float rounding.
    """

    #: shared output buffer instead of one concatenation per layer: ``True``, ``False``, or ``"auto"``
    #: (the default: always without autograd, and in training only where the block's output has
    #: :data:`MEMORY_EFFICIENT_MIN_BYTES` or more; see :func:`set_memory_efficient`)
    memory_efficient: bool | str = "auto"

    def __init__(self, in_channels: int, growth_rate: int, layers: int):
        super().__init__()
        self.layers = nn.ModuleList(
            bn_relu_conv(in_channels + i * growth_rate, growth_rate, 3) for i in range(layers)
        )
        self.out_channels = in_channels + layers * growth_rate

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        tracked = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        # without autograd the buffer only saves copies, at any size; 'auto' weighs the recomputation
        shared = self.memory_efficient is True or (
            self.memory_efficient == "auto" and (not tracked or _use_memory_efficient("auto", x, self.out_channels)))
        if not shared or _has_hooks(self.layers):
            return self._forward_cat(x)  # hooks on the layers must see their modules called
        c0 = x.shape[1]
        if not tracked:
            with torch.no_grad():
                buf = _new_buffer(x, self.out_channels)
                for layer in self.layers:
                    k = layer[0].num_features
                    buf[:, k:k + layer[2].out_channels].copy_(layer(buf[:, :k]))
            return buf, buf[:, c0:]
        params = [t for layer in self.layers for t in (layer[2].weight, layer[0].weight, layer[0].bias)]
        full = _DenseBlockFn.apply(x, tuple(self.layers), self.out_channels, *params)
        return full, full[:, c0:]

    def _forward_cat(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The concatenating forward pass (``memory_efficient=False``)."""
        new = []
        for layer in self.layers:
            y = layer(x)
            new.append(y)
            x = torch.cat([x, y], dim=1)
        return x, torch.cat(new, dim=1)


#: ``memory_efficient="auto"`` recomputes only where a block's output (a transition's input) has
#: at least this many bytes. Below it the saving is small and the extra passes and Python-level
#: autograd Functions cost more than they save: measured at 64 px (seed architecture, 2 threads)
#: the shared buffer everywhere trained at 0.7× the concatenating blocks' img/s; at 224 px, where
#: the S/2 and S/4 maps of a batch of 16 are 35–180 MB each, it is what brings the peak RSS to 0.7×.
MEMORY_EFFICIENT_MIN_BYTES = 32 * 2 ** 20


def _use_memory_efficient(setting: bool | str, x: torch.Tensor, channels: int) -> bool:
    if setting == "auto":
        return x.shape[0] * channels * x[0, 0].numel() * x.element_size() >= MEMORY_EFFICIENT_MIN_BYTES
    return bool(setting)


def set_memory_efficient(module: nn.Module, enabled: bool | str = True) -> nn.Module:
    """Switch every :class:`DenseBlock` in ``module`` to the shared buffer and every
    :class:`TransitionDown` and the :class:`Stem` to recomputing their inner maps (``True``), to one ``torch.cat`` per
    layer and autograd's own saved tensors (``False``), or to choosing by size (``"auto"``, the
    default: :data:`MEMORY_EFFICIENT_MIN_BYTES`); same weights, same math. Returns ``module``."""
    if enabled not in (True, False, "auto"):
        raise ValueError(f"enabled must be True, False or 'auto', got {enabled!r}")
    for m in module.modules():
        if isinstance(m, (DenseBlock, TransitionDown, Stem)):
            m.memory_efficient = enabled
    return module


def _has_hooks(module: nn.Module) -> bool:
    return any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks
               for m in module.modules())


def _is_channels_last(x: torch.Tensor) -> bool:
    return x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()


def _new_buffer(x: torch.Tensor, channels: int) -> torch.Tensor:
    """A block's output buffer in ``x``'s memory format, with ``x`` in its first channels."""
    fmt = torch.channels_last if _is_channels_last(x) else torch.contiguous_format
    buf = torch.empty((x.shape[0], channels, *x.shape[2:]), dtype=x.dtype, device=x.device, memory_format=fmt)
    buf[:, :x.shape[1]].copy_(x)
    return buf


def _dense(t: torch.Tensor, fmt: torch.memory_format) -> torch.Tensor:
    """``t`` (a channel slice of a block's buffer) as a dense tensor in the buffer's memory format
    ``fmt``: a transient copy, since the kernels' fast paths want dense input."""
    return t.contiguous(memory_format=fmt)


def _bn_relu(x, bn, bn_weight, bn_bias):
    """ReLU(BN(x)) as ``bn`` computes it in its mode, moving its running statistics once.
    Returns ``(relu_out, mean, invstd, training)``; the last three let the backward pass recompute it."""
    training = bn.training or bn.running_mean is None
    momentum = 0.0 if bn.momentum is None else bn.momentum
    if bn.training and bn.track_running_stats and bn.num_batches_tracked is not None:
        bn.num_batches_tracked.add_(1)
        if bn.momentum is None:
            momentum = 1.0 / float(bn.num_batches_tracked)
    xn, mean, invstd = torch.native_batch_norm(x, bn_weight, bn_bias, bn.running_mean, bn.running_var,
                                               training, momentum, bn.eps)
    return xn.relu_(), mean, invstd, training


def _bn_relu_again(x, ctx, bn_weight, bn_bias, mean, invstd, running_mean, running_var):
    """The forward's ReLU(BN(x)) recomputed in the backward pass from the saved statistics
    (``ctx.training`` and ``ctx.eps`` as :func:`_bn_relu` left them): one fused multiply-add."""
    if ctx.training:
        m, s = mean, invstd
    else:
        m, s = running_mean, torch.rsqrt(running_var + ctx.eps)
    shape = (1, -1, 1, 1)
    scale = (s * bn_weight).to(x.dtype)
    shift = (bn_bias - m * s * bn_weight).to(x.dtype)
    return torch.addcmul(shift.view(shape), x, scale.view(shape)).relu_()


def _keep_for_recompute(ctx, x, bn, conv_weight, bn_weight, bn_bias, mean, invstd, training, conv_dtype):
    """What the stem's and a transition's backward pass need to recompute conv and BN-ReLU:
    the input, the weights, BN's batch statistics and mode (unpacked in this order)."""
    ctx.training, ctx.eps, ctx.conv_dtype = training, bn.eps, conv_dtype
    ctx.save_for_backward(x, conv_weight, bn_weight, bn_bias, mean, invstd, bn.running_mean, bn.running_var)


def _relu_backward_(grad: torch.Tensor, relu_out: torch.Tensor) -> torch.Tensor:
    """The gradient through a ReLU, written over ``grad`` (a temporary of the backward pass): zero
    where the ReLU's output is zero. ``threshold_backward`` itself, in its ``out=`` form: one map
    less at the peak, and no fresh pages to fault in."""
    return torch.ops.aten.threshold_backward.grad_input(grad, relu_out, 0.0, grad_input=grad)


class _DenseBlockFn(torch.autograd.Function):
    """A whole dense block on one shared output buffer: each layer's BN → ReLU → 3×3 conv reads
    the channels written so far and writes its new maps after them.

    Forward keeps only the buffer (the block's output, which the next layer keeps anyway) and
    each layer's batch statistics. Backward walks the layers in reverse with one gradient buffer
    the size of the output: layer i's output gradient is its channel slice, and the gradient of its
    input is added in place into the channels before it. So every map's gradient is summed where it
    lies, instead of autograd adding one fresh tensor per consumer (a block input has one consumer
    per layer), and the BN → ReLU of each input is recomputed from the buffer. The BN backward
    (:func:`_bn_backward_into`) reads its input where it lies in the buffer and adds its gradient
    straight into the accumulator: no dense copy of the input and no fresh input gradient, two
    maps of the block's size less at the peak of the step (the decoder's S/2 block, at 224 px)."""

    @staticmethod
    def forward(ctx, x, layers, channels, *params):
        buf = _new_buffer(x, channels)
        fmt = torch.channels_last if _is_channels_last(buf) else torch.contiguous_format
        stats = []
        for layer in layers:
            bn, conv = layer[0], layer[2]
            k = bn.num_features
            r, mean, invstd, training = _bn_relu(_dense(buf[:, :k], fmt), bn, bn.weight, bn.bias)
            y = F.conv2d(r, conv.weight, None, conv.stride, conv.padding, conv.dilation, conv.groups)
            del r
            buf[:, k:k + y.shape[1]].copy_(y)
            stats.append((mean, invstd, training, y.dtype))
        ctx.layers, ctx.c0 = layers, x.shape[1]
        ctx.training = [t for _, _, t, _ in stats]
        ctx.conv_dtypes = [d for _, _, _, d in stats]
        ctx.save_for_backward(buf, *[t for m, s, _, _ in stats for t in (m, s)])
        return buf

    @staticmethod
    def backward(ctx, grad_full):
        buf, *flat = ctx.saved_tensors
        fmt = torch.channels_last if _is_channels_last(buf) else torch.contiguous_format
        grad_full = grad_full.to(buf.dtype)
        # ``acc``: the gradient of the buffer's first channels, summed so far (a copy: the incoming
        # gradient may be shared with other consumers, so it is never written to)
        acc, grads = None, []
        for i in reversed(range(len(ctx.layers))):
            bn, conv = ctx.layers[i][0], ctx.layers[i][2]
            mean, invstd = flat[2 * i], flat[2 * i + 1]
            k, g = bn.num_features, conv.out_channels
            conv_dtype = ctx.conv_dtypes[i]
            stats = _LayerStats(ctx.training[i], bn.eps)
            prefix = buf[:, :k]  # a strided view: read in place, never copied
            r = _bn_relu_again(prefix, stats, bn.weight, bn.bias, mean, invstd, bn.running_mean, bn.running_var)
            grad_y = (grad_full if acc is None else acc)[:, k:k + g]
            grad_r, grad_w, _ = torch.ops.aten.convolution_backward(
                _dense(grad_y, fmt).to(conv_dtype), r.to(conv_dtype), conv.weight.to(conv_dtype), None,
                list(conv.stride), list(conv.padding), list(conv.dilation), False, [0, 0], conv.groups,
                [True, True, False])
            grad_xn = _relu_backward_(grad_r.to(buf.dtype), r)
            del grad_r, r, grad_y
            if acc is None:
                acc = grad_full[:, :k].clone(memory_format=fmt)
            grad_bw, grad_bb = _bn_backward_into(acc[:, :k], grad_xn, prefix, stats, bn.weight, mean, invstd,
                                                 bn.running_mean, bn.running_var)
            del grad_xn
            grads.append((grad_w.to(conv.weight.dtype), grad_bw, grad_bb))
        params = [t for trio in reversed(grads) for t in trio]
        return (acc[:, :ctx.c0], None, None, *params)


#: images per chunk of :func:`_bn_backward_into`'s per-channel Σ g·x (bounds its temporary)
_DOT_CHUNK = 4


def _channel_dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``Σ_{n,h,w} a·b`` per channel, in float32 or better, a few images at a time so that the
    product's temporary stays small (``b`` may be a strided view)."""
    acc_dtype = torch.promote_types(a.dtype, torch.float32)
    out = torch.zeros(a.shape[1], dtype=acc_dtype, device=a.device)
    for n in range(0, a.shape[0], _DOT_CHUNK):
        out += (a[n:n + _DOT_CHUNK] * b[n:n + _DOT_CHUNK]).sum(dim=(0, 2, 3), dtype=acc_dtype)
    return out


def _bn_backward_into(out, grad, x, ctx, weight, mean, invstd, running_mean, running_var):
    """Batch norm's backward pass, its input gradient *added* into ``out`` in place; returns
    ``(grad_weight, grad_bias)``.

    ``x`` is the BN input (a view of the block's buffer, read where it lies) and ``grad`` the
    gradient of the BN output. With ``x̂ = (x − μ)·σ⁻¹``, ``Σ`` over the batch and pixels per
    channel, ``M`` their number: ``∂w = Σ g·x̂ = σ⁻¹(Σ g·x − μ Σ g)``, ``∂b = Σ g`` and, in
    training mode (batch statistics),
    ``∂x = wσ⁻¹ (g − Σg/M − x̂ Σ g·x̂ / M) = α g + β x + γ`` with per-channel
    ``α = wσ⁻¹``, ``β = −α σ⁻¹ ∂w/M``, ``γ = −α (Σg/M − μ σ⁻¹ ∂w/M)``; in eval mode (running
    statistics) ``∂x = α g``. Three in-place passes over ``out``: no map-sized temporary, where
    ``native_batch_norm_backward`` needs a dense copy of ``x`` and returns a fresh ``∂x``."""
    if ctx.training:
        m, s = mean.double(), invstd.double()
    else:
        m, s = running_mean.double(), torch.rsqrt(running_var.double() + ctx.eps)
    sum_g = grad.sum(dim=(0, 2, 3), dtype=torch.promote_types(grad.dtype, torch.float32)).double()
    grad_w = s * (_channel_dot(grad, x).double() - m * sum_g)
    alpha = weight.double() * s
    shape = (1, -1, 1, 1)
    out.addcmul_(grad, alpha.to(out.dtype).view(shape))
    if ctx.training:
        count = grad.numel() // grad.shape[1]
        beta = -alpha * s * grad_w / count
        gamma = -alpha * (sum_g / count - m * s * grad_w / count)
        out.addcmul_(x, beta.to(out.dtype).view(shape))
        out.add_(gamma.to(out.dtype).view(shape))
    return grad_w.to(weight.dtype), sum_g.to(weight.dtype)


class _LayerStats:
    """What :func:`_bn_relu_again` reads of one layer's forward pass: its BN mode and eps."""

    def __init__(self, training: bool, eps: float):
        self.training, self.eps = training, eps


class Stem(nn.Sequential):
    """3×3 conv, BN, ReLU: the encoder's first layer, at the image's full resolution.

    With :attr:`memory_efficient`, training keeps only the image (3 channels) for the backward
    pass and recomputes the conv and BN there. Otherwise autograd keeps the conv's output for the
    BN backward, a full-resolution map with ``init_filters`` channels (154 MB for a batch of 16 at
    224 px, seed architecture), from the forward pass until the very last step of the backward
    pass, where the stem's own gradients meet the transition's at the peak of the step's memory.
    Same math, to float rounding; the running statistics are updated once.
    """

    #: recompute instead of keeping the conv's output: ``True``, ``False`` or ``"auto"`` (the default:
    #: only for outputs of :data:`MEMORY_EFFICIENT_MIN_BYTES` or more; see :func:`set_memory_efficient`)
    memory_efficient: bool | str = "auto"

    def __init__(self, in_channels: int, filters: int):
        super().__init__(
            nn.Conv2d(in_channels, filters, 3, padding=1, bias=False),
            nn.BatchNorm2d(filters, eps=BN_EPS),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv, bn = self[0], self[1]
        tracked = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        eff = _use_memory_efficient(self.memory_efficient, x, conv.out_channels)
        if not (eff and tracked) or _has_hooks(self) or conv.padding != (1, 1) or conv.stride != (1, 1):
            return super().forward(x)
        return _StemFn.apply(x, bn, conv.weight, bn.weight, bn.bias)


class _StemFn(torch.autograd.Function):
    """3×3 conv → BN → ReLU, keeping only the image (and BN's batch statistics)."""

    @staticmethod
    def forward(ctx, x, bn, conv_weight, bn_weight, bn_bias):
        z = F.conv2d(x, conv_weight, padding=1)
        r, mean, invstd, training = _bn_relu(z, bn, bn_weight, bn_bias)
        _keep_for_recompute(ctx, x, bn, conv_weight, bn_weight, bn_bias, mean, invstd, training, z.dtype)
        return r

    @staticmethod
    def backward(ctx, grad_out):
        x, conv_weight, bn_weight, bn_bias, mean, invstd, running_mean, running_var = ctx.saved_tensors
        w = conv_weight.to(ctx.conv_dtype)
        xc = x.to(ctx.conv_dtype)
        z = F.conv2d(xc, w, padding=1)
        r = _bn_relu_again(z, ctx, bn_weight, bn_bias, mean, invstd, running_mean, running_var)
        # the gradient through the ReLU, written over the recomputed ReLU output (no new map)
        grad_zn = torch.ops.aten.threshold_backward.grad_input(grad_out.to(r.dtype), r, 0.0, grad_input=r)
        grad_z, grad_bw, grad_bb = torch.ops.aten.native_batch_norm_backward(
            grad_zn, z, bn_weight, running_mean, running_var, mean, invstd, ctx.training, ctx.eps,
            [True, True, True])
        del grad_zn, r, z
        grad_x, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_z, xc, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 1,
            [bool(ctx.needs_input_grad[0]), True, False])
        if grad_x is not None:
            grad_x = grad_x.to(x.dtype)
        return grad_x, None, grad_w.to(conv_weight.dtype), grad_bw, grad_bb


class TransitionDown(nn.Sequential):
    """BN, ReLU, 1×1 conv (same channels), 2×2 max-pool.

    With :attr:`memory_efficient`, training keeps only the transition's input for
    the backward pass, which the block before it keeps anyway, and recomputes the BN → ReLU →
    conv maps there. Otherwise autograd keeps three more tensors per transition: the ReLU output,
    the conv output and the pooling indices. At 224 px the first two transitions run at S and S/2,
    so that is ≈ 0.6 GB of a batch of 16. The cost is one more 1×1 conv and pool per transition in
    the backward pass. Same math: outputs and gradients equal the layers run one by one, to float
    rounding, and the running statistics are updated once.
    """

    #: recompute instead of keeping the inner maps: ``True``, ``False`` or ``"auto"`` (the default:
    #: only for inputs of :data:`MEMORY_EFFICIENT_MIN_BYTES` or more; see :func:`set_memory_efficient`)
    memory_efficient: bool | str = "auto"

    def __init__(self, channels: int):
        super().__init__(
            nn.BatchNorm2d(channels, eps=BN_EPS),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 1, bias=False),
            nn.MaxPool2d(2),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bn, conv, pool = self[0], self[2], self[3]
        tracked = torch.is_grad_enabled() and (x.requires_grad or any(p.requires_grad for p in self.parameters()))
        eff = _use_memory_efficient(self.memory_efficient, x, x.shape[1])
        if not (eff and tracked) or _has_hooks(self) or (pool.kernel_size, pool.stride) != (2, 2):
            return super().forward(x)
        return _TransitionDownFn.apply(x, bn, conv.weight, bn.weight, bn.bias)


#: how the expansion network doubles the resolution: the seed's transposed convolution, or
#: nearest-neighbour resize then a 3×3 convolution (no checkerboard: Odena et al. 2016,
#: "Deconvolution and Checkerboard Artifacts", Distill)
UPSAMPLING = ("transposed", "resize")


class TransitionUp(nn.Sequential):
    """3×3 transposed conv, stride 2 (doubles the side exactly), with bias, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.ConvTranspose2d(in_channels, out_channels, 3, stride=2, padding=1, output_padding=1, bias=True),
            nn.ReLU(inplace=True),
        )


#: row/column taps of the 4×4 stride-2 transposed kernel equal to "nearest ×2, then 3×3 conv":
#: kernel tap ``k`` sums the 3×3 taps ``d`` whose shifted output lands on the same input pixel
_RESIZE_TAPS = ((0.0, 0.0, 1.0), (0.0, 1.0, 1.0), (1.0, 1.0, 0.0), (1.0, 0.0, 0.0))


def resize_conv_as_transposed(weight: torch.Tensor) -> torch.Tensor:
    """The ``in×out×4×4`` kernel ``K`` of a stride-2, padding-1 transposed convolution equal to a
    nearest ×2 resize followed by a 3×3 (padding 1) convolution with ``weight`` (``out×in×3×3``).

    Output pixel ``2i + a`` of the resize-conv reads input rows ``⌊(2i + a + d) / 2⌋`` for
    ``d ∈ {−1, 0, 1}``, i.e. only two input rows per output parity: ``K = A·W·Aᵀ`` per channel pair
    with ``A`` the 4×3 tap matrix :data:`_RESIZE_TAPS`. Same outputs to float rounding, at 16
    instead of 36 multiply-adds per input pixel and channel pair, and no ×4 upsampled copy of
    the input.
    """
    a = torch.tensor(_RESIZE_TAPS, dtype=weight.dtype, device=weight.device)
    return torch.einsum("kd,oide,le->iokl", a, weight, a)


class ResizeUp(nn.Sequential):
    """Nearest-neighbour ×2 resize, then a 3×3 conv with bias, then ReLU.

    Every output pixel sees the same number of kernel taps, so unlike a 3×3 stride-2 transposed
    convolution (whose taps overlap unevenly) it cannot paint a period-2 checkerboard.

    Without autograd (inference) and without hooks on its modules, the resize and the conv run as
    the one equal 4×4 stride-2 transposed convolution (:func:`resize_conv_as_transposed`): same
    maps to float rounding, about 2–4× faster. Training runs the layers as written.
    """

    #: run inference as the equal transposed convolution (``False``: resize, then conv, as written)
    fused: bool = True

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__(
            nn.Upsample(scale_factor=2, mode="nearest"),
            nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=True),
            nn.ReLU(inplace=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.fused or torch.is_grad_enabled() or any(_has_hooks(m) for m in self):
            return super().forward(x)
        conv = self[1]
        y = F.conv_transpose2d(x, resize_conv_as_transposed(conv.weight), conv.bias, stride=2, padding=1)
        return y.relu_()


def _pool_backward_into_(z: torch.Tensor, grad_out: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """The gradient of a 2×2, stride-2 max-pool of ``z``, written over ``z`` (whose values the
    backward pass no longer needs): zero, then each window's gradient at its argmax ``idx``.
    The windows do not overlap, so every position is written at most once: the same values as
    ``max_pool2d_with_indices_backward``, without a fresh full-resolution map to allocate and
    fault in (measured at 16×48×224×224: 0.03–0.07 s against 0.10–0.12 s)."""
    n, c, h, w = z.shape
    z.zero_().view(n, c, h * w).scatter_(2, idx.reshape(n, c, -1), grad_out.to(z.dtype).reshape(n, c, -1))
    return z


class _TransitionDownFn(torch.autograd.Function):
    """BN → ReLU → 1×1 conv → 2×2 max-pool, keeping only the input (and BN's batch statistics)."""

    @staticmethod
    def forward(ctx, x, bn, conv_weight, bn_weight, bn_bias):
        r, mean, invstd, training = _bn_relu(x, bn, bn_weight, bn_bias)
        z = F.conv2d(r, conv_weight)
        del r
        out = F.max_pool2d(z, 2)
        _keep_for_recompute(ctx, x, bn, conv_weight, bn_weight, bn_bias, mean, invstd, training, z.dtype)
        return out

    @staticmethod
    def backward(ctx, grad_out):
        x, conv_weight, bn_weight, bn_bias, mean, invstd, running_mean, running_var = ctx.saved_tensors
        r = _bn_relu_again(x, ctx, bn_weight, bn_bias, mean, invstd, running_mean, running_var)
        w = conv_weight.to(ctx.conv_dtype)
        z = F.conv2d(r.to(ctx.conv_dtype), w)
        _, idx = torch.ops.aten.max_pool2d_with_indices(z, [2, 2], [2, 2])
        grad_z = _pool_backward_into_(z, grad_out, idx)
        del z, idx
        grad_r, grad_w, _ = torch.ops.aten.convolution_backward(
            grad_z, r.to(ctx.conv_dtype), w, None, [1, 1], [0, 0], [1, 1], False, [0, 0], 1, [True, True, False])
        del grad_z
        grad_xn = _relu_backward_(grad_r.to(x.dtype), r)
        del grad_r, r
        grad_x, grad_bw, grad_bb = torch.ops.aten.native_batch_norm_backward(
            grad_xn, x, bn_weight, running_mean, running_var, mean, invstd, ctx.training, ctx.eps,
            [True, True, True])
        return grad_x, None, grad_w.to(conv_weight.dtype), grad_bw, grad_bb


def transition_up(in_channels: int, out_channels: int, upsampling: str = "transposed") -> nn.Sequential:
    """The ×2 upsampling layer named by ``upsampling`` (one of :data:`UPSAMPLING`)."""
    if upsampling == "transposed":
        return TransitionUp(in_channels, out_channels)
    if upsampling == "resize":
        return ResizeUp(in_channels, out_channels)
    raise ValueError(f"upsampling must be one of {', '.join(UPSAMPLING)}, got {upsampling!r}")


class Encoder(nn.Module):
    """Stem, early transition down, the dense blocks down, and the bottleneck block.

    ``forward`` returns ``(skips, bottleneck_new)``; skips are ordered from the highest
    resolution (S/2) to the lowest (S/2**num_blocks).
    """

    def __init__(self, cfg: FCDenseNetConfig):
        super().__init__()
        self.stem = Stem(cfg.in_channels, cfg.init_filters)
        self.early_down = TransitionDown(cfg.init_filters)
        blocks, downs = [], []
        c = cfg.init_filters
        for _ in range(cfg.num_blocks):
            block = DenseBlock(c, cfg.growth_rate, cfg.layers_per_block)
            c = block.out_channels
            blocks.append(block)
            downs.append(TransitionDown(c))
        self.blocks = nn.ModuleList(blocks)
        self.downs = nn.ModuleList(downs)
        self.bottleneck = DenseBlock(c, cfg.growth_rate, cfg.layers_per_block)

    def forward(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        x = self.early_down(self.stem(x))
        skips = []
        for block, down in zip(self.blocks, self.downs):
            x, _ = block(x)
            skips.append(x)
            x = down(x)
        _, new = self.bottleneck(x)
        return skips, new


class DecoderStage(nn.Module):
    """Transition up → concatenate the encoder skip → dense block.

    Returns ``(full, new)`` like :class:`DenseBlock`; ``new`` goes to the next stage.
    """

    def __init__(self, in_channels: int, skip_channels: int, cfg: FCDenseNetConfig,
                 upsampling: str = "transposed"):
        super().__init__()
        self.up = transition_up(in_channels, cfg.up_filters, upsampling)
        self.block = DenseBlock(cfg.up_filters + skip_channels, cfg.growth_rate, cfg.layers_per_block)

    def forward(self, x: torch.Tensor, skip: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.block(torch.cat([self.up(x), skip], dim=1))
