"""The guided-filter CAM (He et al.), checked against per-pixel loops of the gray and colour filters."""
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


def _colour_guided_loop(I: np.ndarray, p: np.ndarray, r: int, eps: float) -> np.ndarray:
    """He et al. (2010), eq. 14 (C×H×W colour guide), one window at a time with numpy's solver."""
    c, h, w = I.shape
    mI = np.stack([_box_loop(I[k], r) for k in range(c)])
    mp = _box_loop(p, r)
    mIp = np.stack([_box_loop(I[u] * p, r) for u in range(c)])
    mII = np.array([[_box_loop(I[u] * I[v], r) for v in range(c)] for u in range(c)])
    a = np.zeros((c, h, w))
    for i in range(h):
        for j in range(w):
            sigma = mII[:, :, i, j] - np.outer(mI[:, i, j], mI[:, i, j])
            cov = mIp[:, i, j] - mI[:, i, j] * mp[i, j]
            a[:, i, j] = np.linalg.solve(sigma + eps * np.eye(c), cov)
    b = mp - (a * mI).sum(axis=0)
    return sum(_box_loop(a[k], r) * I[k] for k in range(c)) + _box_loop(b, r)


def test_colour_guided_filter_matches_per_pixel_loop_and_sees_equal_brightness_edges():
    rng = np.random.default_rng(3)
    I = rng.random((1, 3, 5, 6))
    p = rng.random((1, 5, 6))
    q = guided_filter(torch.from_numpy(I), torch.from_numpy(p), 1, 0.05).numpy()
    np.testing.assert_allclose(q[0], _colour_guided_loop(I[0], p[0], 1, 0.05), atol=1e-9)
    # red | green: the same gray level on both sides, a map that steps at the colour edge
    img = torch.zeros(1, 3, 8, 8, dtype=torch.float64)
    img[0, 0, :, :4] = 1.0
    img[0, 1, :, 4:] = 1.0
    step = torch.zeros(1, 8, 8, dtype=torch.float64)
    step[0, :, :4] = 1.0
    colour = guided_filter(img, step, 2, 1e-3)[0]
    gray = guided_filter(img.mean(dim=1), step, 2, 1e-3)[0]
    assert float((colour[:, :4].min() - colour[:, 4:].max())) > 0.9  # the step survives
    assert float((gray[:, 3] - gray[:, 4]).mean()) < 0.5  # the gray guide blurs it
    with pytest.raises(ValueError, match="N×C×H×W"):
        guided_filter(img, step[:, :4], 1)


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
    with create("guided", net) as e:  # default radius: half a low-res cell; colour guide
        exp = e.explain(x)
    assert torch.equal(exp.logits, out.logits)
    want = minmax_normalize(_colour_guided_loop(x[0].double().numpy(), p[0], stride // 2, 1e-2)[None])[0]
    np.testing.assert_allclose(exp.maps[0].numpy(), want, atol=2e-5)
    with create("guided", net, colour=False) as e:
        exp = e.explain(x)
    for k in range(len(x)):
        want = minmax_normalize(_guided_loop(gray[k], p[k], stride // 2, 1e-2)[None])[0]
        np.testing.assert_allclose(exp.maps[k].numpy(), want, atol=2e-5)
    with create("guided", net, radius=1, eps=0.5, colour=False) as e:
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
