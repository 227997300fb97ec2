"""L-CAM: the loss against a hand computation, the Fm / Img forward passes, training, maps."""
import math

import pytest
import torch
import torch.nn.functional as F

from hrcam.explain.registry import create
from hrcam.models.baselines.camnet import CAMNet
from hrcam.models.baselines.feature_backbones import build_feature_backbone
from hrcam.models.baselines.lcam import LCAMNet, area_loss, lcam_loss, total_variation
from hrcam.train.baselines import LCAMModule

A1 = [[1.0, 2.0, 0.0],
      [0.0, 1.0, 3.0],
      [2.0, 0.0, 1.0]]
A2 = [[0.5] * 3] * 3


def maps_tensor():
    return torch.tensor([A1, A2])


def test_total_variation_by_hand():
    # sample 1, vertical differences (row i+1 − row i): (−1, −1, 3), (2, −1, −2) → 1+1+9 + 4+1+4 = 20
    #           horizontal differences: (1, −2), (1, 2), (−2, 1) → 5 + 5 + 5 = 15
    #           border squares: top 1+4+0, bottom 4+0+1, left 1+0+4, right 0+9+1 → 25
    # sample 2 (constant 0.5): no differences; border 4 strips × 3 × 0.25 = 3
    # TV = (20 + 15 + 0.3·25 + 0 + 0.3·3) / (2·N), N = 2
    expected = (20 + 15 + 0.3 * 25 + 0.3 * 3) / 4
    assert math.isclose(total_variation(maps_tensor()).item(), expected, rel_tol=1e-6)
    assert expected == pytest.approx(10.85)


def test_selected_loss_by_hand():
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    labels = torch.tensor([0, 2])
    ce = (-(2 - math.log(math.exp(2) + 2)) - (0 - math.log(2 + math.e))) / 2
    values = [v for row in A1 for v in row] + [0.5] * 9
    area = sum((v + 0.0005) ** 0.3 for v in values) / 18
    tv = 10.85
    terms = lcam_loss(logits, labels, maps_tensor(), "selected")
    assert terms["loss"].item() == pytest.approx(1.5 * ce + 2 * area + 0.01 * tv, rel=1e-6)
    assert terms["ce"].item() == pytest.approx(1.5 * ce, rel=1e-6)
    assert area_loss(maps_tensor()).item() == pytest.approx(area, rel=1e-6)
    # the "A" models: plain cross-entropy
    assert lcam_loss(logits, labels, maps_tensor(), "ce")["loss"].item() == pytest.approx(ce, rel=1e-6)
    with pytest.raises(ValueError, match="loss must be one of"):
        lcam_loss(logits, labels, maps_tensor(), "dice")


def test_tv_uses_each_samples_own_map():
    # per-sample maps: the TV of a batch is the mean of the single-sample TVs (÷2N normalisation)
    m = torch.rand(3, 4, 5)
    singles = [total_variation(m[i:i + 1]).item() for i in range(3)]
    assert total_variation(m).item() == pytest.approx(sum(singles) / 3, rel=1e-6)


def lcam(variant="fm", classes=3):
    return LCAMNet(build_feature_backbone("resnet18", num_classes=classes), variant)


def set_attention(net, bias):
    with torch.no_grad():
        net.attention.conv.weight.zero_()
        net.attention.conv.bias.fill_(bias)


@pytest.mark.parametrize("variant", ["fm", "img"])
def test_forward_with_saturated_attention(variant):
    net = lcam(variant).eval()
    x = torch.rand(2, 3, 64, 64)
    y = torch.tensor([0, 2])
    with torch.no_grad():
        set_attention(net, 30.0)  # sigmoid ≈ 1: the attended input is the input
        logits, a = net.attend(x, y)
        assert a.shape == (2, 2, 2) and torch.allclose(a, torch.ones_like(a))
        assert torch.allclose(logits, net.classifier(x), atol=1e-5)
        set_attention(net, -30.0)  # sigmoid ≈ 0: features (Fm) or image (Img) are blanked
        logits, _ = net.attend(x, y)
        if variant == "fm":
            blank = net.classifier.head(torch.zeros(2, 512, 2, 2))
        else:
            blank = net.classifier(torch.zeros_like(x))
        assert torch.allclose(logits, blank, atol=1e-5)


def test_training_picks_each_samples_label_map():
    net = lcam().eval()
    x, y = torch.rand(2, 3, 64, 64), torch.tensor([2, 1])
    with torch.no_grad():
        feats = net.classifier.features(x)
        c = F.conv2d(feats, net.attention.conv.weight, net.attention.conv.bias)
        _, a = net.attend(x, y)
    assert torch.allclose(a[0], torch.sigmoid(c[0, 2])) and torch.allclose(a[1], torch.sigmoid(c[1, 1]))


def test_training_updates_only_the_attention_and_loss_goes_down():
    net = lcam("fm")
    module = LCAMModule(net, lr=0.05)
    opt = module.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"]
    assert [g["lr"] for g in opt.param_groups] == [0.05, 0.1]  # biases at twice the rate
    assert opt.defaults["momentum"] == 0.9 and opt.defaults["weight_decay"] == 5e-4
    frozen = {k: v.clone() for k, v in net.classifier.state_dict().items()}
    att = net.attention.conv.weight.clone()
    module.train()
    assert not net.classifier.training
    x, y = torch.rand(4, 3, 64, 64), torch.tensor([0, 1, 2, 0])
    losses = _steps(net, opt, x, y, 6)
    assert losses[-1] < losses[0]
    after = net.classifier.state_dict()
    assert all(torch.equal(frozen[k], after[k]) for k in frozen)  # weights and BN statistics
    assert not torch.equal(att, net.attention.conv.weight)


def test_default_optimizer_is_the_documented_one():
    opt = LCAMModule(lcam()).configure_optimizers()["optimizer"]
    assert [g["lr"] for g in opt.param_groups] == [1e-4, 2e-4]


def test_explanations_are_pre_sigmoid_maps_of_the_target_class():
    net = lcam("img").eval()
    x = torch.rand(2, 3, 64, 64)
    with create("lcam", net) as expl:
        out = expl.explain(x, targets=[1, 2])
        m0, logits = expl(x, targets=0)
    with torch.no_grad():
        c = F.conv2d(net.classifier.features(x), net.attention.conv.weight, net.attention.conv.bias)
        assert torch.allclose(logits, net.classifier(x), atol=1e-5)
    expected = F.interpolate(torch.stack([c[0, 1], c[1, 2]])[:, None], size=(64, 64), mode="bilinear",
                             align_corners=False)[:, 0]
    assert torch.allclose(out.raw, expected, atol=1e-5)
    assert out.maps.shape == (2, 64, 64) and out.maps.min() >= 0 and out.maps.max() <= 1
    assert not torch.allclose(out.maps, m0)


def test_vgg16_fm_reads_conv5_3_maps_and_the_7x7_variant_the_maps_after_pool5():
    bb = build_feature_backbone("vgg16", num_classes=3)
    net = LCAMNet(bb, "fm").eval()
    assert net.attention.conv.in_channels == 512
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        logits, a = net.attend(x, torch.tensor([1]))
        clean = bb(x)
    assert a.shape == (1, 4, 4) and logits.shape == (1, 3)  # S/16 maps
    # the seed's VGG16_7x7 models: the same weights, the attention on the S/32 maps after pool5
    pooled = build_feature_backbone("vgg16", weights=bb.net.state_dict(), after_pool=True).eval()
    net7 = LCAMNet(pooled, "img").eval()
    with torch.no_grad():
        c, logits7 = net7.explain(x)
        assert torch.allclose(logits7, clean, atol=1e-5)  # head and features still compose to the classifier
    assert c.shape == (1, 3, 2, 2)
    from hrcam.models.baselines.classifiers import build_classifier, classifier_config

    assert classifier_config(pooled)["after_pool"] and build_classifier(classifier_config(pooled)).after_pool
    with pytest.raises(ValueError, match="after_pool"):
        build_feature_backbone("resnet18", after_pool=True)


def test_adam_steps_lower_the_loss_and_make_the_class_maps_differ():
    cam = CAMNet.build("resnet18", 3, extra_channels=8).eval()
    net = LCAMNet(cam, "fm")
    set_attention(net, 0.0)  # every class starts with the same (flat) map
    module = LCAMModule(net, optimizer="adam", lr=1e-2)
    opt = module.configure_optimizers()["optimizer"]
    assert isinstance(opt, torch.optim.Adam) and [g["lr"] for g in opt.param_groups] == [1e-2, 2e-2]
    module.train()
    x, y = torch.rand(6, 3, 64, 64), torch.tensor([0, 1, 2, 0, 1, 2])
    losses = _steps(net, opt, x, y, 8)
    assert losses[-1] < losses[0]
    with torch.no_grad():
        c, _ = net.eval().explain(x[:1])
    assert not torch.allclose(c[0, 0], c[0, 1], atol=1e-3) and not torch.allclose(c[0, 1], c[0, 2], atol=1e-3)
    with pytest.raises(ValueError, match="optimizer"):
        LCAMModule(net, optimizer="rmsprop")


def test_cam_network_as_the_frozen_classifier():
    cam = CAMNet.build("resnet18", 3, extra_channels=8).eval()
    net = LCAMNet(cam, "fm")
    assert net.attention.conv.in_channels == 8 and net.num_classes == 3
    with pytest.raises(ValueError, match="no classification head"):
        LCAMNet(build_feature_backbone("resnet18", with_classifier=False))
    with pytest.raises(ValueError, match="variant"):
        LCAMNet(cam, "both")


def _steps(net, opt, x, y, n: int) -> list[float]:
    """``n`` optimizer steps of the L-CAM loss on one batch; the losses before each step."""
    losses = []
    for _ in range(n):
        logits, a = net.attend(x, y)
        loss = lcam_loss(logits, y, a)["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses
