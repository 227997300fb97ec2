"""LayerCAM (single and fused layers), checked against the formula written out by hand with
autograd, and its per-network layer resolver."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrcam.explain import create
from hrcam.explain.layercam import encoder_layers, resolve_layer
from hrcam.models.hrcam.nets import FullNet
from hrcam.normalization import minmax_normalize


def _layercam_by_hand(net, x, module, renormalize=True):
    """ReLU(Σ_k ReLU(∂y_c/∂A_k)·A_k) at ``module``, min-max normalized, bilinearly upsampled and
    (``renormalize``) normalized again at input size (an explainer's maps are)."""
    store = {}
    h = module.register_forward_hook(lambda m, i, o: store.__setitem__("a", o))
    try:
        xx = x.clone().requires_grad_(True)
        logits = net(xx)
    finally:
        h.remove()
    t = logits.argmax(1)
    a = store["a"]
    (g,) = torch.autograd.grad(logits[torch.arange(len(x)), t].sum(), a)
    m = torch.relu((torch.relu(g) * a).sum(1)).detach()
    m = minmax_normalize(m)  # the package scales each layer map before resizing it
    up = F.interpolate(m[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
    return (minmax_normalize(up) if renormalize else up), logits.detach()


def test_layercam_default_layer_and_formula(half):
    net, x = half
    assert resolve_layer(net, 4) is net.encoder.downs[0]
    want, logits = _layercam_by_hand(net, x, net.encoder.downs[0])
    with create("layercam", net) as e:
        maps, got_logits = e(x)
    assert torch.allclose(got_logits, logits, atol=1e-5)
    np.testing.assert_allclose(maps.numpy(), want.numpy(), atol=1e-4)
    # another layer by stride and by name give that layer's map
    want8, _ = _layercam_by_hand(net, x, net.encoder.downs[1])
    for layer in (8, "encoder.downs.1"):
        with create("layercam", net, layer=layer) as e:
            np.testing.assert_allclose(e(x)[0].numpy(), want8.numpy(), atol=1e-4)
    assert not any(p.grad is not None for p in net.parameters())  # no gradients left on the model


def test_layercam_fused_is_the_mean_of_normalized_layers(half):
    net, x = half
    singles = []  # each layer's map normalized at its own resolution, then upsampled
    for stride in (2, 4, 8):
        m, _ = _layercam_by_hand(net, x, resolve_layer(net, stride), renormalize=False)
        singles.append(m)
    want = minmax_normalize(torch.stack(singles).mean(0))
    with create("layercam_fused", net) as e:
        maps, _ = e(x)
    np.testing.assert_allclose(maps.numpy(), want.numpy(), atol=1e-4)


def test_full_network_uses_its_classifier_half(half):
    net, x = half
    full = FullNet.from_half(net).eval()
    assert encoder_layers(full)[4] is full.localization.encoder.downs[0]
    for name in ("layercam",):
        with create(name, net) as a, create(name, full) as b:
            ma, la = a(x)
            mb, lb = b(x)
        assert torch.equal(la, lb)
        np.testing.assert_allclose(ma.numpy(), mb.numpy(), atol=1e-6)


def test_layer_resolver_backbone_strides_and_errors(half):
    from hrcam.models.backbones import BackboneNet

    stages = [nn.Conv2d(3, 4, 3, stride=2, padding=1), nn.Conv2d(4, 4, 3, padding=1),
              nn.Conv2d(4, 6, 3, stride=2, padding=1), nn.Conv2d(6, 8, 3, stride=2, padding=1)]
    bb = BackboneNet(stages, nn.Linear(8, 3)).eval()
    layers = encoder_layers(bb)
    assert layers == {2: stages[1], 4: stages[2], 8: stages[3]}  # the deepest stage per stride
    with create("layercam", bb) as e:
        maps, logits = e(torch.rand(2, 3, 32, 32))
    assert maps.shape == (2, 32, 32) and logits.shape == (2, 3)
    net, _ = half
    with pytest.raises(ValueError, match="stride 3"):
        resolve_layer(net, 3)
    with pytest.raises(ValueError, match="no submodule"):
        resolve_layer(net, "encoder.nothing")
    with pytest.raises(ValueError, match="layer=<a module"):
        create("layercam", nn.Sequential(nn.Conv2d(3, 2, 1), nn.Flatten()))
