"""CAM (Zhou et al.) on a torchvision backbone: head structure, maps, fine-tuning."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hrcam.explain.camnet import CAMNetExplainer
from hrcam.explain.registry import create
from hrcam.models.baselines.camnet import CAMNet
from hrcam.train.baselines import CAMModule


def small_net(**kw):
    return CAMNet.build("resnet18", 3, extra_channels=kw.pop("extra_channels", 16), **kw)


def test_head_structure_follows_the_seed():
    net = CAMNet.build("resnet18", 5)
    conv = net.cam_conv[0]
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.padding == (1, 1)
    assert (conv.in_channels, conv.out_channels) == (512, 1024)
    assert isinstance(net.cam_conv[1], nn.ReLU)
    assert net.fc.bias is None and net.fc.weight.shape == (5, 1024)
    assert net.dropout.p == 0.5
    assert not hasattr(net.backbone.net, "fc")  # the backbone's own classifier is dropped
    plain = CAMNet.build("resnet18", 5, extra_conv=False)
    assert plain.fc.weight.shape == (5, 512)


def test_vgg19_cam_maps_at_stride_16():
    net = CAMNet.build("vgg19", 4, extra_channels=8).eval()
    out = net.forward_maps(torch.rand(1, 3, 32, 32))
    assert out.low_features.shape == (1, 8, 2, 2) and out.logits.shape == (1, 4)


def test_cam_mean_equals_logit():
    # GAP is linear and the linear layer has no bias: mean_ij cam[c] = W[c]·GAP(A) = logit c
    net = small_net().eval()
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = net.forward_maps(x)
        w = net.fc.weight
        for n in range(2):
            for c in range(3):
                cam = sum(w[c, k] * out.low_features[n, k] for k in range(w.shape[1]))
                assert torch.allclose(cam.mean(), out.logits[n, c], atol=1e-5)


def test_explainer_maps_shape_range_and_class_dependence():
    net = small_net().eval()
    x = torch.rand(3, 3, 64, 64)
    with create("camnet", net) as expl:
        assert isinstance(expl, CAMNetExplainer)
        m0, logits = expl(x, targets=0)
        m1, _ = expl(x, targets=1)
    assert m0.shape == (3, 64, 64) and logits.shape == (3, 3)
    assert m0.min() >= 0 and m0.max() <= 1 and torch.isclose(m0.amax(dim=(1, 2)), torch.ones(3)).all()
    assert not torch.allclose(m0, m1)
    with pytest.raises(ValueError, match="expected a CAMNet"):
        CAMNetExplainer(nn.Linear(2, 2))


def run_steps(module, x, y, steps):
    opt = module.configure_optimizers()
    module.train()
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(module.net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def test_fine_tuning_optimizer_and_loss_goes_down():
    net = small_net(dropout=0.0)
    module = CAMModule(net)
    opt = module.configure_optimizers()
    assert isinstance(opt, torch.optim.Adam)
    assert opt.defaults["lr"] == 1e-3 and opt.defaults["betas"] == (0.5, 0.999)
    x, y = torch.rand(6, 3, 32, 32), torch.tensor([0, 1, 2, 0, 1, 2])
    losses = run_steps(module, x, y, 8)
    assert losses[-1] < 0.5 * losses[0]


def test_frozen_backbone_stays_bit_identical():
    net = small_net()
    module = CAMModule(net, freeze_backbone=True, lr=1e-2)
    before = {k: v.clone() for k, v in net.backbone.state_dict().items()}  # BN running stats included
    head_before = net.fc.weight.clone()
    run_steps(module, torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0]), 3)
    after = net.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert not net.backbone.training and not torch.equal(head_before, net.fc.weight)


def test_cam_picture_for_the_label():
    net = small_net().eval()
    module = CAMModule(net, label=2, log_every=5, cam_image=torch.rand(3, 64, 64))
    pic = module.cam_picture()
    assert pic.shape == (3, 64, 64) and pic.min() >= 0 and pic.max() <= 1
    other = CAMModule(net, label=1, cam_image=module.cam_image).cam_picture()
    assert not torch.allclose(pic, other)
    with pytest.raises(ValueError, match="label"):
        CAMModule(net, label=3)


def test_cosine_schedule_decays_the_rate_to_zero_over_the_fit(tmp_path):
    from tests.helpers import make_colour_dataset

    from hrcam.train.datamodule import FolderDataModule
    from hrcam.train.runner import fit

    with pytest.raises(ValueError, match="lr_schedule"):
        CAMModule(small_net(), lr_schedule="step")
    dm = FolderDataModule(make_colour_dataset(tmp_path / "data", per_class=(4, 2)), im_size=32, batch_size=4,
                          augment=False)
    rates = {}
    for schedule in ("constant", "cosine"):
        module = CAMModule(CAMNet.build("resnet18", dm.num_classes, extra_channels=8), lr_schedule=schedule,
                           im_size=32, class_names=dm.classes)
        seen, step = [], module.training_step
        module.training_step = lambda batch, batch_idx: (seen.append(
            module.trainer.optimizers[0].param_groups[0]["lr"]), step(batch, batch_idx))[1]
        fit(module, dm, schedule, epochs=2, results_root=tmp_path / "results", logs_root=tmp_path / "logs",
            progress=False, accelerator="cpu", devices=1)
        rates[schedule] = seen
    assert len(rates["cosine"]) == 6 and set(rates["constant"]) == {1e-3}
    assert rates["cosine"][0] == 1e-3 and all(a > b for a, b in zip(rates["cosine"], rates["cosine"][1:]))
    # cosine over 6 steps: the last step runs at lr * (1 + cos(5π/6)) / 2
    assert rates["cosine"][-1] == pytest.approx(1e-3 * (1 + math.cos(5 * math.pi / 6)) / 2)
