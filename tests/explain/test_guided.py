"""The guided-filter CAM (He et al.), checked against a per-pixel loop of the filter."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrcam.explain import create
from hrcam.models.hrcam.nets import FullNet
from hrcam.normalization import minmax_normalize
from hrcam.postprocessing.guided import guided_filter


def _box_loop(a: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)² window at every pixel, indices clamped (replicated border)."""
    h, w = a.shape
    out = np.zeros_like(a)
    for i in range(h):
        for j in range(w):
            s = 0.0
            for di in range(-r, r + 1):
                for dj in range(-r, r + 1):
                    s += a[min(max(i + di, 0), h - 1), min(max(j + dj, 0), w - 1)]
            out[i, j] = s / (2 * r + 1) ** 2
    return out


def _guided_loop(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. (2010), Algorithm 1, one pixel at a time."""
    mI, mp = _box_loop(I, r), _box_loop(p, r)
    a = (_box_loop(I * p, r) - mI * mp) / (_box_loop(I * I, r) - mI * mI + eps)
    b = mp - a * mI
    return _box_loop(a, r) * I + _box_loop(b, r)


@pytest.mark.parametrize("r", [1, 2])
def test_guided_filter_matches_per_pixel_loop(r):
    rng = np.random.default_rng(r)
    I = rng.random((2, 6, 7))
    I[:, :, 4:] += 1.0  # an edge
    p = rng.random((2, 6, 7))
    q = guided_filter(torch.from_numpy(I), torch.from_numpy(p), r, 0.05).numpy()
    for k in range(2):
        np.testing.assert_allclose(q[k], _guided_loop(I[k], p[k], r, 0.05), atol=1e-10)
    # ε → ∞: a → 0, b = f(p), q = f(f(p)): the box-filtered (twice) input
    q_inf = guided_filter(torch.from_numpy(I), torch.from_numpy(p), r, 1e12).numpy()
    np.testing.assert_allclose(q_inf[0], _box_loop(_box_loop(p[0], r), r), atol=1e-9)


def test_guided_cam_explainer_is_the_filtered_bilinear_cam(half):
    net, x = half
    with torch.no_grad():
        out = net.forward_maps(x)
    t = out.logits.argmax(1)
    cam = torch.einsum("nk,nkhw->nhw", net.fc.weight[t], out.low_features)  # Σ_k W[c,k]·A_k
    up = F.interpolate(cam[:, None], size=(32, 32), mode="bilinear", align_corners=False)[:, 0]
    p = minmax_normalize(up).detach().double().numpy()
    gray = x.double().mean(dim=1).numpy()
    stride = 32 // out.low_features.shape[-1]
    with create("guided", net) as e:  # default radius: half a low-res cell
        exp = e.explain(x)
    assert torch.equal(exp.logits, out.logits)
    for k in range(len(x)):
        want = minmax_normalize(_guided_loop(gray[k], p[k], stride // 2, 1e-2)[None])[0]
        np.testing.assert_allclose(exp.maps[k].numpy(), want, atol=2e-5)
    with create("guided", net, radius=1, eps=0.5) as e:
        other = e(x)[0]
    want = minmax_normalize(_guided_loop(gray[0], p[0], 1, 0.5)[None])[0]
    np.testing.assert_allclose(other[0].numpy(), want, atol=2e-5)
    with pytest.raises(ValueError, match="eps"):
        create("guided", net, eps=0)
    with pytest.raises(ValueError, match="radius"):
        create("guided", net, radius=0)


def test_guided_on_a_full_network_is_its_half_networks(half):
    net, x = half
    full = FullNet.from_half(net).eval()
    with create("guided", net) as a, create("guided", full) as b:
        ma, la = a(x)
        mb, lb = b(x)
    assert torch.equal(la, lb)
    np.testing.assert_allclose(ma.numpy(), mb.numpy(), atol=1e-6)
