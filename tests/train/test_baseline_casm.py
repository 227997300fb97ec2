"""CASM: masker loss by hand, the classifier pool's snapshot schedule, thinning strategies, updates."""
import copy
import dataclasses
import math

import pytest
import torch

from hrcam.explain.registry import create
from hrcam.models.baselines.casm import THINNING, CASMNet, ClassifierPool, Masker, masker_loss, thinning
from hrcam.models.baselines.feature_backbones import build_feature_backbone
from hrcam.train.baselines import CASMModule, casm_update


def test_thinning_strategies_are_the_seeds():
    # (classifier frozen, probability of a pool snapshot, snapshot frequency, λ) from the seed's reproduce flags
    table = {k: (s.fixed_classifier, s.pool_prob, s.smf, s.lambda_r) for k, s in THINNING.items()}
    assert table == {"F": (True, 0.0, None, 2.5), "L": (False, 0.0, None, 14.0), "FL": (False, 0.5, None, 7.5),
                     "L100": (False, 0.5, 100, 10.0), "L1000": (False, 0.5, 1000, 10.0)}
    assert [k for k, s in THINNING.items() if s.uses_pool] == ["FL", "L100", "L1000"]
    with pytest.raises(ValueError, match="thinning must be one of"):
        thinning("L10")


def count_snapshots(smf, steps, max_size=30):
    model = torch.nn.Linear(2, 2)
    pool = ClassifierPool(max_size, smf, seed=0)
    taken = [i for i in range(steps) if pool.maybe_snapshot(i, model)]
    return taken, pool


@pytest.mark.parametrize("smf, steps, expected", [
    (3, 10, [0, 2, 5, 8]),        # the first step (empty pool), then after every 3rd step
    (100, 250, [0, 99, 199]),     # L100
    (1000, 2500, [0, 999, 1999]),  # L1000
    (None, 50, [0]),              # FL: the first classifier only
])
def test_snapshot_schedule(smf, steps, expected):
    taken, pool = count_snapshots(smf, steps)
    assert taken == expected and len(pool) == len(expected) == pool.saves


def test_pool_keeps_at_most_30_snapshots_and_copies_them():
    taken, pool = count_snapshots(1, 45)
    assert len(taken) == 45 and pool.saves == 45 and len(pool) == 30
    model = torch.nn.Linear(2, 2)
    pool = ClassifierPool(30, 10)
    pool.maybe_snapshot(0, model)
    before = model.weight.detach().clone()
    with torch.no_grad():
        model.weight.add_(1.0)
    assert torch.equal(pool.sample()["weight"], before)  # a copy, not the live tensor


def test_masker_loss_by_hand():
    clean = torch.tensor([[3.0, 0.0], [0.0, 3.0], [0.0, 2.0]])
    masked = torch.tensor([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    # correct on clean: (1, 0, 1); wrong on masked-out: (1, 1, 0) → non-trivially confused: (1, 0, 0)
    mask = torch.stack([torch.full((1, 2, 2), 0.25), torch.tensor([[[0.0, 1.0], [0.0, 1.0]]]),
                        torch.tensor([[[1.0, 1.0], [1.0, 0.0]]])])
    p1 = math.e / (1 + math.e)  # softmax([0, 1])
    neg_entropy = p1 * math.log(p1) + (1 - p1) * math.log(1 - p1)
    entropy_term = (neg_entropy + 0 + neg_entropy) / 3
    area_term = 2.0 * (0.25 + 0 + 0) / 3  # λ = 2, mask means 0.25, 0.5, 0.75
    terms = masker_loss(clean, masked, labels, mask, lambda_r=2.0)
    assert terms["entropy"].item() == pytest.approx(entropy_term, rel=1e-6)
    assert terms["area"].item() == pytest.approx(area_term, rel=1e-6)
    assert terms["loss"].item() == pytest.approx(entropy_term + area_term, rel=1e-6)
    assert terms["mask_mean"].item() == pytest.approx(0.5)


def test_masker_shapes_and_range():
    net = CASMNet(build_feature_backbone("resnet18", num_classes=3))
    assert len(net.masker.reduce) == 5  # stem, layer1..4
    logits, mask = net.logits_and_mask(torch.rand(2, 3, 32, 32))
    assert logits.shape == (2, 3) and mask.shape == (2, 1, 32, 32)
    assert mask.min() >= 0 and mask.max() <= 1
    with pytest.raises(ValueError, match="upsample"):
        Masker([4, 8], upsample="cubic")


def setup(name, smf=None, seed=0):
    torch.manual_seed(seed)
    net = CASMNet(build_feature_backbone("resnet18", num_classes=3))
    module = CASMModule(net, thinning_name=name, smf=smf, seed=seed)
    opts = module.configure_optimizers()
    opts = opts if isinstance(opts, list) else [opts]
    opt_c, opt_m = (None, opts[0]) if len(opts) == 1 else opts
    module.train()
    return module, net, opt_c, opt_m


def run(module, net, opt_c, opt_m, x, y, steps):
    out = []
    for i in range(steps):
        out.append(casm_update(net, x, y, strategy=module.strategy, lambda_r=module.lambda_r, opt_masker=opt_m,
                               opt_classifier=opt_c, pool=module.pool, rng=module.rng, step=i,
                               confuser=module.confuser()))
    return out


def test_frozen_classifier_stays_bit_identical_and_masker_loss_goes_down():
    module, net, opt_c, opt_m = setup("F")
    assert opt_c is None and module.pool is None and not net.classifier.training
    for g in opt_m.param_groups:
        g["lr"] = 1e-2
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        y = net.classifier(x).argmax(1)  # every clean prediction correct: the entropy term is active
    frozen = {k: v.clone() for k, v in net.classifier.state_dict().items()}
    masker = copy.deepcopy(net.masker.state_dict())
    out = run(module, net, opt_c, opt_m, x, y, 4)
    assert out[-1]["loss"] < out[0]["loss"]
    assert all(torch.equal(frozen[k], v) for k, v in net.classifier.state_dict().items())
    assert any(not torch.equal(masker[k], v) for k, v in net.masker.state_dict().items())


def test_training_strategies_update_without_in_place_errors_and_count_snapshots():
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    # L100 with a snapshot every 2 steps, over 5 steps: after steps 0 (empty pool), 1 and 3
    module, net, opt_c, opt_m = setup("L100", smf=2)
    assert isinstance(opt_c, torch.optim.SGD) and isinstance(opt_m, torch.optim.Adam)
    assert opt_c.defaults["lr"] == 1e-3 and opt_m.defaults["lr"] == 1e-3
    before = net.classifier.net.fc.weight.clone()
    out = run(module, net, opt_c, opt_m, x, y, 5)
    assert module.pool.saves == 3 and len(module.pool) == 3
    assert not torch.equal(before, net.classifier.net.fc.weight)
    assert all(torch.isfinite(o["loss"]) for o in out)
    # FL keeps the first classifier only
    module, net, opt_c, opt_m = setup("FL")
    run(module, net, opt_c, opt_m, x, y, 3)
    assert module.pool.saves == 1
    # L scores with the latest classifier only: no pool at all
    module, net, opt_c, opt_m = setup("L")
    out = run(module, net, opt_c, opt_m, x, y, 2)
    assert module.pool is None and all(o["used_pool"] == 0 for o in out)


def test_pool_scoring_leaves_the_classifier_out_of_the_masked_update():
    module, net, opt_c, opt_m = setup("L100", smf=1)
    module.strategy = dataclasses.replace(module.strategy, pool_prob=1.0)  # always score with a snapshot
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    out = run(module, net, opt_c, opt_m, x, y, 2)
    assert all(o["used_pool"] == 1 for o in out)
    # the confuser copy is not part of the network's state
    assert not any(k.startswith("_confuser") for k in module.state_dict())


def test_casm_explainer_maps_are_the_class_agnostic_mask():
    net = CASMNet(build_feature_backbone("resnet18", num_classes=3)).eval()
    x = torch.rand(2, 3, 32, 32)
    with create("casm", net) as expl:
        m0, logits = expl(x, targets=0)
        m2, _ = expl(x, targets=2)
        out = expl.explain(x)
    with torch.no_grad():
        _, mask = net.logits_and_mask(x)
    assert m0.shape == (2, 32, 32) and m0.min() >= 0 and m0.max() <= 1
    assert torch.equal(m0, m2)  # one mask for every class, by design
    assert torch.allclose(out.raw, mask[:, 0]) and torch.equal(out.targets, logits.argmax(1))


def test_seeded_runs_repeat():
    x, y = torch.rand(2, 3, 32, 32), torch.tensor([0, 1])
    losses = []
    for _ in range(2):
        module, net, opt_c, opt_m = setup("L100", smf=1, seed=3)
        losses.append([o["loss"].item() for o in run(module, net, opt_c, opt_m, x, y, 2)])
    assert losses[0] == losses[1]


# -- convergence aids (issue 13): warm-up, λ ramp, collapse detection ----------------------------
def test_masker_steps_lift_a_nearly_empty_mask_above_the_collapse_floor():
    # an easy set: every clean prediction is correct, so the entropy term (make the masked-out image
    # uncertain) drives the mask; it starts at 0.25 % area, below the 1 % floor
    from hrcam.train.baselines import COLLAPSE_AREA

    module, net, opt_c, opt_m = setup("F")
    with torch.no_grad():
        net.masker.final.bias.fill_(-6.0)
        net.masker.final.weight.zero_()
    for g in opt_m.param_groups:
        g["lr"] = 5e-2
    x = torch.rand(4, 3, 32, 32)
    with torch.no_grad():
        y = net.classifier(x).argmax(1)
    out = run(module, net, opt_c, opt_m, x, y, 6)
    assert out[0]["mask_mean"] < COLLAPSE_AREA
    assert out[-1]["mask_mean"] > COLLAPSE_AREA


def test_a_collapsed_epoch_is_warned_about_and_a_healthy_one_is_not():
    from hrcam.train.baselines import MaskCollapseWarning

    module, net, opt_c, opt_m = setup("L")
    with torch.no_grad():
        net.masker.final.weight.zero_()
        net.masker.final.bias.fill_(-20.0)  # forced collapse: mask ≈ 0 everywhere
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    for o in run(module, net, opt_c, opt_m, x, y, 2):  # the module's own per-epoch bookkeeping
        module._area[0] += float(o["mask_mean"])
        module._area[1] += 1
    with pytest.warns(MaskCollapseWarning, match="mean mask area 0.00 %"):
        module.on_train_epoch_end()
    assert module.collapsed_epochs == [0]
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert not module.check_collapse(0.2, 1)  # 20 % of the image: no warning
    assert module.collapsed_epochs == [0]


def test_lambda_ramp_and_warmup_optimizers():
    net = CASMNet(build_feature_backbone("resnet18", num_classes=3))
    module = CASMModule(net, thinning_name="L100", lambda_ramp_steps=4)
    lams = []
    for step in range(6):
        module.casm_steps = step
        lams.append(module.current_lambda())
    assert lams == [2.5, 5.0, 7.5, 10.0, 10.0, 10.0]  # λ = 10 for L100, reached after 4 masker steps
    assert CASMModule(net, thinning_name="F").current_lambda() == 2.5  # no ramp: the seed's λ at once
    # F with a warm-up trains its classifier first, so it gets a classifier optimizer too
    f = CASMModule(CASMNet(build_feature_backbone("resnet18", num_classes=3)), thinning_name="F", warmup_epochs=1)
    opts = f.configure_optimizers()
    assert isinstance(opts, list) and isinstance(opts[0], torch.optim.SGD)
    assert f.in_warmup() and all(p.requires_grad for p in f.net.classifier.parameters())
    with pytest.raises(ValueError, match="warmup_epochs"):
        CASMModule(net, warmup_epochs=-1)


def test_warmed_up_training_repeats_bit_identically(tmp_path):
    from tests.helpers import train_casm_twice

    states, _ = train_casm_twice(tmp_path, epochs=2, thinning="F", warmup_epochs=1)
    assert set(states[0]) == set(states[1])
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])


def test_a_cam_network_as_casms_classifier_round_trips(tmp_path):
    from hrcam.models.baselines.camnet import CAMNet
    from hrcam.models.registry import load_network, model_metadata
    from hrcam.weights import save_weights

    cam = CAMNet.build("resnet18", 3, extra_channels=8).eval()
    net = CASMNet(cam).eval()
    assert cam.stage_channels == [64, 64, 128, 256, 8]  # the deepest stage is CAM's extra conv
    x = torch.rand(2, 3, 32, 32)
    with torch.no_grad():
        logits, mask = net.logits_and_mask(x)
        assert torch.allclose(logits, cam(x), atol=1e-6) and torch.equal(cam.stages(x)[-1], cam.features(x))
    save_weights(tmp_path / "w.safetensors", net.state_dict(), model_metadata("casm", net, 32, ["a", "b", "c"]))
    back, _ = load_network(tmp_path / "w.safetensors")
    assert isinstance(back.classifier, CAMNet)
    with torch.no_grad():
        assert torch.allclose(back.eval().logits_and_mask(x)[1], mask, atol=1e-6)


def test_one_step_gives_each_network_the_gradient_of_its_own_loss():
    """L (no pool): the masker gets d(masker loss)/d(masker), the classifier d(CE on the masked-out
    image)/d(classifier) on top of its clean step, computed here independently with autograd.grad."""
    from hrcam.models.baselines.casm import mask_out, masker_loss

    module, net, opt_c, opt_m = setup("L")
    x, y = torch.rand(4, 3, 32, 32), torch.tensor([0, 1, 2, 0])
    ref = copy.deepcopy(net)
    # the reference: the clean pass and classifier step (SGD, as opt_c); the mask from that pass's
    # features, scored by the classifier after its step
    ref_opt = torch.optim.SGD(ref.classifier.parameters(), **opt_c.defaults)
    logits, stages = ref.classify(x)
    ref_opt.zero_grad()
    torch.nn.functional.cross_entropy(logits, y).backward()
    ref_opt.step()
    mask = ref.mask(stages, x.shape[-2:])
    masked_logits = ref.classifier(mask_out(x, mask, "zero"))
    loss = masker_loss(logits.detach(), masked_logits, y, mask, module.lambda_r)["loss"]
    m_params = list(ref.masker.parameters())
    c_params = list(ref.classifier.parameters())
    g_masker = torch.autograd.grad(loss, m_params, retain_graph=True)
    g_classifier = torch.autograd.grad(torch.nn.functional.cross_entropy(masked_logits, y), c_params)
    captured = {}
    step = opt_c.step
    opt_c.step = lambda: (captured.update(c=[p.grad.clone() for p in net.classifier.parameters()]), step())
    casm_update(net, x, y, strategy=module.strategy, lambda_r=module.lambda_r, opt_masker=opt_m,
                opt_classifier=opt_c, pool=None, rng=module.rng, step=0, clip=0.0)
    # the masker's gradient is still on its parameters after its (Adam) step
    for p, g in zip(net.masker.parameters(), g_masker):
        assert torch.allclose(p.grad, g, atol=1e-6), "masker gradient"
    for got, g in zip(captured["c"], g_classifier):
        assert torch.allclose(got, g, atol=1e-6), "classifier gradient"
