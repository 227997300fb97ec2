"""CASM's masked-out image: a black fill (the paper's) against one random colour per image."""
import argparse

import pytest
import torch

from hrcam.cli.train_baselines import register_train
from hrcam.models.baselines.casm import CASMNet, fill_colours, mask_out
from hrcam.models.baselines.feature_backbones import build_feature_backbone
from hrcam.train.baselines import CASMModule, casm_update


def dark_digit_batch(n=3, size=16):
    """Grey-ish backgrounds with a black square 'digit' in the middle, and the mask covering it."""
    x = torch.rand(n, 3, size, size) * 0.5 + 0.4
    obj = torch.zeros(1, 1, size, size)
    obj[..., 4:12, 4:12] = 1.0
    x = x * (1 - obj)  # the object's pixels are black
    return x, obj.expand(n, 1, size, size)


def test_a_black_fill_cannot_delete_a_black_object_and_a_random_one_does():
    x, mask = dark_digit_batch()
    assert torch.equal(mask_out(x, mask, "zero"), x)  # the paper's x ⊙ (1 − m): nothing hidden
    torch.manual_seed(0)
    out = mask_out(x, mask, "random")
    inside, outside = mask.expand_as(x).bool(), ~mask.expand_as(x).bool()
    assert torch.equal(out[outside], x[outside])  # the unmasked pixels are kept
    assert not torch.equal(out, x) and (out[inside] > 0).all()
    # one colour per image (the same in every hidden pixel), a different one per image, in [0, 1]
    colours = out[:, :, 4:12, 4:12].reshape(3, 3, -1)
    assert torch.equal(colours.amin(-1), colours.amax(-1))
    assert not torch.equal(colours[0, :, 0], colours[1, :, 0])
    assert 0 <= out.min() and out.max() <= 1
    with pytest.raises(ValueError, match="fill must be one of"):
        mask_out(x, mask, "grey")


def test_random_fills_repeat_with_the_seed_and_are_drawn_anew_each_call():
    x = torch.rand(4, 3, 8, 8)
    torch.manual_seed(7)
    a, b = fill_colours(x, "random"), fill_colours(x, "random")
    torch.manual_seed(7)
    assert torch.equal(fill_colours(x, "random"), a)
    assert not torch.equal(a, b)  # a new colour every step
    g1, g2 = torch.Generator().manual_seed(1), torch.Generator().manual_seed(1)
    assert torch.equal(fill_colours(x, "random", g1), fill_colours(x, "random", g2))
    assert torch.equal(fill_colours(x, "zero"), torch.zeros(4, 3, 1, 1))


def casm_steps(fill, seed=0, steps=3):
    torch.manual_seed(seed)
    net = CASMNet(build_feature_backbone("resnet18", num_classes=3))
    module = CASMModule(net, thinning_name="L", seed=seed, fill=fill)
    opt_c, opt_m = module.configure_optimizers()
    module.train()
    x, _ = dark_digit_batch(4, 32)
    y = torch.tensor([0, 1, 2, 0])
    losses = [casm_update(net, x, y, strategy=module.strategy, lambda_r=module.lambda_r, opt_masker=opt_m,
                          opt_classifier=opt_c, rng=module.rng, step=i, fill=module.fill)["loss"].item()
              for i in range(steps)]
    return losses, net.masker.state_dict()


def test_seeded_random_fill_training_repeats_and_differs_from_the_black_fill():
    (l1, s1), (l2, s2) = casm_steps("random"), casm_steps("random")
    assert l1 == l2 and all(torch.equal(s1[k], s2[k]) for k in s1)
    l0, _ = casm_steps("zero")
    assert l0 != l1  # the fill changes the masking game


def test_module_checks_records_and_validates_with_its_fill():
    net = CASMNet(build_feature_backbone("resnet18", num_classes=3))
    with pytest.raises(ValueError, match="fill must be one of"):
        CASMModule(net, fill="black")
    module = CASMModule(net, thinning_name="F", fill="random", seed=2)
    assert module.export_state()[1]["arch"]["fill"] == "random"
    assert CASMModule(net, thinning_name="F").fill == "zero"  # the paper's recipe by default
    logged = []
    module.log = lambda name, value, **kw: logged.append((name, float(value)))
    module.eval()
    batch = (torch.rand(2, 3, 32, 32), torch.tensor([0, 1]))
    with torch.no_grad():
        module.validation_step(batch, 0)
        module.validation_step(batch, 0)
    assert logged[: len(logged) // 2] == logged[len(logged) // 2:]  # validation colours are seeded per batch


def test_cli_fill_flag():
    p = argparse.ArgumentParser()
    register_train(p.add_subparsers(dest="cmd"))
    base = ["casm", "--data_dir", "d", "--results_name", "r"]
    assert p.parse_args(base).fill == "zero"
    assert p.parse_args([*base, "--casm_fill", "random"]).fill == "random"
    assert p.parse_args([*base, "--fill", "random"]).fill == "random"
    with pytest.raises(SystemExit):
        p.parse_args([*base, "--fill", "grey"])


def test_train_casm_records_its_fill_and_repeats_with_the_seed(tmp_path):
    from tests.helpers import train_casm_twice

    from hrcam.models.registry import load_network

    states, report = train_casm_twice(tmp_path, thinning="L", fill="random")
    assert all(torch.equal(states[0][k], states[1][k]) for k in states[0])
    assert load_network(report["last"])[1]["arch"]["fill"] == "random"
