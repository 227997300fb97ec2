"""Debugging helpers from the seed: compare two models' weights, estimate training memory."""
from __future__ import annotations

import torch
from torch import nn


def _as_module(m) -> nn.Module:
    return getattr(m, "net", m)  # accept HalfModel/FullModel wrappers too


def check_weights(model1, model2, atol: float = 0.0, verbose: bool = True) -> list[str]:
    """Compare the parameters and buffers two models share by position in their state dicts.

    Returns the names (from ``model1``) of the tensors that differ. The seed uses it to see up
    to which layer a FullModel's weights equal the HalfModel's: a HalfModel's state dict is a
    prefix of the FullModel's ``localization`` part, so tensors are matched by name after
    stripping a ``localization.`` prefix, and by order otherwise.
    """
    s1 = _as_module(model1).state_dict()
    s2 = _as_module(model2).state_dict()

    def strip(d):
        return {k.removeprefix("localization."): v for k, v in d.items()}

    a, b = strip(s1), strip(s2)
    differ = []
    common = [k for k in a if k in b]
    if not common:  # different naming: match by position
        common = list(zip(a, b))
    for key in common:
        k1, k2 = key if isinstance(key, tuple) else (key, key)
        t1, t2 = a[k1], b[k2]
        same = t1.shape == t2.shape and (
            torch.equal(t1, t2) if atol == 0 else torch.allclose(t1.float(), t2.float(), atol=atol))
        if not same:
            differ.append(k1)
    if verbose:
        print(f"{len(common) - len(differ)} of {len(common)} shared tensors equal"
              + (f"; first difference: {differ[0]}" if differ else ""))
    return differ


def get_model_memory_usage(model, batch_size: int, input_size=None, dtype_bytes: int = 4) -> float:
    """The seed's estimate of training memory in GB: ``bytes × (batch × activations + params)``.

    Activations are counted as the sum of every leaf module's output elements for one image
    (measured with forward hooks on a dummy input of ``input_size`` = (C, H, W); default the
    wrapper's ``im_size``), parameters as trainable plus frozen counts.
    """
    net = _as_module(model)
    if input_size is None:
        size = getattr(model, "im_size", 224)
        channels = getattr(getattr(net, "config", None), "in_channels", 3)
        input_size = (channels, size, size)
    counts = []

    def hook(_m, _inp, out):
        if isinstance(out, torch.Tensor):
            counts.append(out.numel())

    handles = [m.register_forward_hook(hook) for m in net.modules() if not list(m.children())]
    was_training = net.training
    try:
        net.eval()
        with torch.no_grad():
            dev = next(net.parameters()).device
            net(torch.zeros(1, *input_size, device=dev))
    finally:
        for h in handles:
            h.remove()
        net.train(was_training)
    activations = sum(counts)
    params = sum(p.numel() for p in net.parameters())
    return round(dtype_bytes * (batch_size * activations + params) / 1024**3, 3)
