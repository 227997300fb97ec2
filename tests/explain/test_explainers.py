"""Explainers on tiny networks, checked against maps written out by hand from the formulas."""
import gc
import tracemalloc

import pytest
import torch
import torch.nn.functional as TF
from torch import nn

from hrcam.explain import Explainer, available, create, register, registry
from hrcam.explain.cam import CAMExplainer
from hrcam.explain.gradcam import GradCAMExplainer
from hrcam.models.base import CAMNetwork, MapOutputs


class TinyNet(CAMNetwork):
    """conv → ReLU → 2×2 avg-pool (A_low, 4×h/2×w/2) → GAP → linear; A_high = 1×1 conv of x."""

    has_high_res = True

    def __init__(self, k=5, high=True):
        super().__init__()
        self.has_high_res = high
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AvgPool2d(2)
        self.fc = nn.Linear(4, k)
        self.hi = nn.Conv2d(3, 4, 1)

    def forward_maps(self, x, high=False):
        a = self.pool(torch.relu(self.conv(x)))
        return MapOutputs(self.fc(a.mean(dim=(2, 3))), a, self.hi(x) if high and self.has_high_res else None)

    @property
    def low_weight(self):
        return self.fc.weight


class TorchvisionStyle(nn.Module):
    """A ResNet-like classifier: features module, GAP, fc (not a CAMNetwork)."""

    def __init__(self, net: TinyNet):
        super().__init__()
        self.features = nn.Sequential(net.conv, nn.ReLU(), net.pool)
        self.fc = net.fc

    def forward(self, x):
        return self.fc(self.features(x).mean(dim=(2, 3)))


def hand_norm(m):
    out = []
    for a in m:
        lo, hi = a.min(), a.max()
        out.append((a - lo) / (hi - lo) if hi > lo else torch.zeros_like(a))
    return torch.stack(out)


def up(m, size):
    return TF.interpolate(m[:, None], size=size, mode="bilinear", align_corners=False)[:, 0]


def hand_cam(weight, feats, classes):
    """cam[n](i,j) = Σ_k W[c_n, k] · A[n, k, i, j], written as an explicit loop over k."""
    maps = torch.zeros(feats.shape[0], *feats.shape[2:])
    for n, c in enumerate(classes):
        for k in range(feats.shape[1]):
            maps[n] += weight[c, k] * feats[n, k]
    return maps


@pytest.fixture
def net():
    torch.manual_seed(3)
    return TinyNet().eval()


@pytest.fixture
def x():
    return torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))


def test_cam_matches_hand_computation(net, x):
    with torch.no_grad():
        a = net.forward_maps(x).low_features
        logits = net(x)
    pred = logits.argmax(1).tolist()
    want = hand_norm(up(hand_cam(net.fc.weight, a, pred), (16, 16)))
    with create("cam", net) as cam:
        maps, out_logits = cam(x)
    assert maps.shape == (3, 16, 16) and maps.dtype == torch.float32
    assert torch.allclose(maps, want, atol=1e-5)
    assert torch.allclose(out_logits, logits, atol=1e-6)
    # explicit targets, one per image and one for all
    maps2, _ = CAMExplainer(net)(x, targets=[1, 2, 0])
    assert torch.allclose(maps2, hand_norm(up(hand_cam(net.fc.weight, a, [1, 2, 0]), (16, 16))), atol=1e-5)
    exp = CAMExplainer(net).explain(x, targets=4)
    assert exp.targets.tolist() == [4, 4, 4]


def test_cam_on_torchvision_style_model_uses_hooks_and_releases_them(net, x):
    tv = TorchvisionStyle(net).eval()
    with CAMExplainer(tv, features=tv.features, classifier=tv.fc) as cam:
        assert len(tv.features._forward_hooks) == 1
        maps, _ = cam(x, targets=[0, 1, 2])
    assert len(tv.features._forward_hooks) == 0
    a = tv.features(x)
    want = hand_norm(up(hand_cam(net.fc.weight, a, [0, 1, 2]), (16, 16)))
    assert torch.allclose(maps, want, atol=1e-5)
    with pytest.raises(ValueError, match="features/classifier"):
        CAMExplainer(tv)
    with pytest.raises(ValueError, match="features/classifier"):
        CAMExplainer(tv, features=tv.features)


def test_hrcam_high_res_is_w_times_a_high(net, x):
    with torch.no_grad():
        a_high = net.hi(x)
        pred = net(x).argmax(1).tolist()
    with create("hrcam", net) as e:
        maps, _ = e(x)
    assert torch.allclose(maps, hand_norm(hand_cam(net.fc.weight, a_high, pred)), atol=1e-5)
    with pytest.raises(ValueError, match="high-resolution"):
        create("hrcam", TinyNet(high=False))
    with pytest.raises(ValueError, match="high-resolution"):
        create("refined", TorchvisionStyle(net))


def test_gradcam_equals_relu_cam_on_gap_linear_net(net, x):
    # ∂y_c/∂A_kij = W[c,k]/(h·w) → Grad-CAM weights ∝ W[c] → map = ReLU(CAM) up to scale
    with torch.no_grad():
        a = net.forward_maps(x).low_features
    targets = [0, 3, 4]
    cam = hand_cam(net.fc.weight, a, targets)
    want = hand_norm(up(torch.relu(cam), (16, 16)))
    with create("gradcam", net) as e:
        maps, logits = e(x, targets=targets)
    assert torch.allclose(maps, want, atol=1e-4)
    assert not any(p.grad is not None for p in net.parameters())  # no .grad left on the model
    assert all(p.requires_grad for p in net.parameters())


def test_gradcampp_closed_form_on_gap_linear_net(net, x):
    # constant gradient g_k = W[c,k]/(hw): α_k = hw · ReLU(g_k) · g_k² / (2 g_k² + S_k g_k³), S_k = Σ_ij A_k
    with torch.no_grad():
        a = net.forward_maps(x).low_features
    hw = a.shape[2] * a.shape[3]
    targets = [1, 2, 3]
    maps = torch.zeros(3, *a.shape[2:])
    for n, c in enumerate(targets):
        for k in range(a.shape[1]):
            g = float(net.fc.weight[c, k].detach()) / hw
            s = float(a[n, k].sum())
            alpha = hw * max(g, 0.0) * g * g / (2 * g * g + s * g**3 + 1e-6) if g != 0 else 0.0
            maps[n] += alpha * a[n, k]
    want = hand_norm(up(torch.relu(maps), (16, 16)))
    with create("gradcampp", net) as e:
        got, _ = e(x, targets=targets)
    assert torch.allclose(got, want, atol=1e-4)


def test_scorecam_closed_form(net, x):
    # α = softmax_k(y_c(x ⊙ norm(up_k))), up = bilinear with aligned corners (as the package does)
    with torch.no_grad():
        a = net.forward_maps(x).low_features
        targets = [2, 0, 1]
        want = []
        for n, c in enumerate(targets):
            upk = TF.interpolate(a[n : n + 1], size=(16, 16), mode="bilinear", align_corners=True)[0]
            scores = []
            for k in range(a.shape[1]):
                m = upk[k]
                m = (m - m.min()) / (m.max() - m.min() + 1e-8)
                scores.append(net(x[n : n + 1] * m)[0, c])
            alpha = torch.softmax(torch.stack(scores), 0)
            want.append(torch.relu((alpha[:, None, None] * a[n]).sum(0)))
        want = hand_norm(up(torch.stack(want), (16, 16)))
    with create("scorecam", net) as e:
        got, _ = e(x, targets=targets)
    assert torch.allclose(got, want, atol=1e-4)


def test_gradcam_needs_target_layer_for_other_models(net, x):
    tv = TorchvisionStyle(net).eval()
    with pytest.raises(ValueError, match="target_layer"):
        GradCAMExplainer(tv)
    with GradCAMExplainer(tv, target_layer=tv.features) as e:
        maps, _ = e(x)
        assert len(tv.features._forward_hooks) == 2
    assert len(tv.features._forward_hooks) == 0
    assert maps.shape == (3, 16, 16) and float(maps.max()) == pytest.approx(1.0)


@pytest.mark.parametrize("method", ["cam", "hrcam", "gradcam", "gradcampp", "scorecam"])
def test_bad_targets(net, x, method):
    with create(method, net) as e:
        with pytest.raises(ValueError, match="targets"):
            e(x, targets=[0, 1])
        with pytest.raises(ValueError, match="targets"):
            e(x, targets=7)


@pytest.mark.parametrize("method", ["cam", "hrcam", "gradcam", "gradcampp", "scorecam"])
def test_every_method_answers_the_same_call(net, x, method):
    with create(method, net) as e:
        assert isinstance(e, Explainer) and e.name == method
        maps, logits = e(x.permute(0, 2, 3, 1).numpy())  # seed form N×H×W×C works too
        exp = e.explain(x)
    assert maps.shape == (3, 16, 16) and logits.shape == (3, 5)
    assert float(maps.min()) >= 0 and float(maps.max()) <= 1
    assert torch.equal(exp.targets, logits.argmax(1))
    assert exp.raw.shape == (3, 16, 16)


def test_refined_uses_pipeline_merged(net, x):
    pp = pytest.importorskip("hrcam.postprocessing")
    if not hasattr(pp, "pipeline_batch"):
        pytest.skip("pipeline_batch not available yet")
    with torch.no_grad():
        out = net.forward_maps(x, high=True)
        pred = out.logits.argmax(1).tolist()
        low = hand_cam(net.fc.weight, out.low_features, pred)
        high = hand_cam(net.fc.weight, out.high_features, pred)
    steps = pp.pipeline_batch(x.permute(0, 2, 3, 1).numpy(), low.numpy(), high.numpy())
    want = hand_norm(torch.as_tensor(steps["merged"]).float().reshape(3, 16, 16))
    with create("refined", net) as e:
        got, _ = e(x)
    assert torch.allclose(got, want, atol=1e-5)


def test_registry_one_line_registration():
    class Ones(Explainer):
        name = "ones"

        def raw_maps(self, x, targets):
            logits = self.model(x)
            return torch.ones(x.shape[0], 2, 2), logits, logits.argmax(1)

    register("ones_test", Ones)
    try:
        assert "ones_test" in available()
        with pytest.raises(ValueError, match="already registered"):
            register("ones_test", CAMExplainer)
        maps, _ = create("ones_test", TinyNet())(torch.rand(1, 3, 8, 8))
        assert torch.equal(maps, torch.zeros(1, 8, 8))  # constant map → zeros, never NaN
    finally:
        registry._REGISTRY.pop("ones_test")
    register("lazy_test", "hrcam.explain.cam:CAMExplainer")
    try:
        assert isinstance(create("lazy_test", TinyNet()), CAMExplainer)
    finally:
        registry._REGISTRY.pop("lazy_test")
    with pytest.raises(ValueError, match="unknown explainer"):
        create("nope", TinyNet())
    assert registry.parse_methods(" cam, hrcam,cam ") == ["cam", "hrcam"]
    with pytest.raises(ValueError, match="methods"):
        registry.parse_methods("cam,bogus")
    assert {"cam", "hrcam", "refined", "gradcam", "gradcampp", "scorecam"} <= set(available())


def test_import_is_light():
    import subprocess
    import sys

    code = "import sys, hrcam.explain; print('pytorch_grad_cam' in sys.modules, 'cv2' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def _live_tensors():
    return sum(1 for o in gc.get_objects() if type(o) in (torch.Tensor, nn.Parameter))


def _hook_count(model):
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def test_thousand_calls_do_not_grow_memory(net):
    tv = TorchvisionStyle(net).eval()
    x = torch.rand(2, 3, 8, 8)
    explainers = [
        CAMExplainer(tv, features=tv.features, classifier=tv.fc),
        GradCAMExplainer(net),  # the low-feature tap used for CAMNetworks
    ]
    for e in explainers:
        for _ in range(50):  # warm-up: caches, allocator pools
            e(x)
    gc.collect()
    tensors_before = _live_tensors()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for e in explainers:
        for _ in range(1000):
            e(x)
    gc.collect()
    grown = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    # tensor storage is not traced by tracemalloc: count live tensors too (a leak of one per call shows)
    assert _live_tensors() - tensors_before < 20
    assert grown < 64 * 1024, f"Python memory grew by {grown} bytes over 2000 calls"
    assert _hook_count(tv) > 0  # the hooked explainers are still live here
    for e in explainers:
        e.close()
    assert _hook_count(tv) == 0 and _hook_count(net) == 0
    # creating and closing explainers in a loop leaves no hooks behind either
    for _ in range(200):
        with CAMExplainer(tv, features=tv.features, classifier=tv.fc) as e:
            e(x)
        with GradCAMExplainer(tv, target_layer=tv.features) as e:
            e(x)
    assert _hook_count(tv) == 0


def test_gradcam_package_mode_and_frozen_models(net, x):
    with torch.no_grad():
        a = net.forward_maps(x).low_features
    want = hand_norm(up(torch.relu(hand_cam(net.fc.weight, a, [0, 1, 2])), (16, 16)))
    with GradCAMExplainer(net, freeze_parameters=False) as e:  # the package as shipped
        got, _ = e(x, targets=[0, 1, 2])
    assert torch.allclose(got, want, atol=1e-4)
    assert net.fc.weight.grad is not None  # parameter gradients were computed, as the package does
    net.zero_grad(set_to_none=True)
    for p in net.parameters():  # a model frozen by its user (like FullNet's classifier)
        p.requires_grad_(False)
    for freeze in (True, False):
        with GradCAMExplainer(net, freeze_parameters=freeze) as e:
            got, _ = e(x, targets=[0, 1, 2])
        assert torch.allclose(got, want, atol=1e-4)
    assert not any(p.requires_grad for p in net.parameters())  # left as the user set it


def test_refined_keeps_nan_maps_for_non_finite_cams(net, x):
    pytest.importorskip("hrcam.postprocessing")

    class NaNHigh(TinyNet):
        def forward_maps(self, x, high=False):
            out = super().forward_maps(x, high)
            if high:
                out.high_features[1] = float("nan")  # image 1's high-res features are broken
            return out

    bad = NaNHigh().eval()
    bad.load_state_dict(net.state_dict())
    with create("refined", bad) as e:
        exp = e.explain(x)
    assert torch.isnan(exp.raw[1]).all() and torch.isfinite(exp.raw[[0, 2]]).all()
    with create("refined", net) as e:
        good = e.explain(x)
    assert torch.allclose(exp.raw[[0, 2]], good.raw[[0, 2]])
