"""The rank-r decoder on a frozen backbone: factorization, maps, objectives, training, CLI, demo."""
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from hrcam.models.base import class_maps
from hrcam.models.pretrained.backbones import build_backbone
from hrcam.models.pretrained.decoder import DecoderNet, peak_activation_mb, rank_energy, rank_factorization
from hrcam.models.registry import load_network
from hrcam.train.decoder import DecoderModule, ImagesDataModule, decoder_consistency_loss
from hrcam.train.objectives import mask_fill


@pytest.fixture(scope="module")
def small_net():
    torch.manual_seed(0)
    return DecoderNet(build_backbone("resnet18"), rank=8, width=8)


def _random_orthogonal(n, k, gen):
    q, _ = torch.linalg.qr(torch.randn(n, k, generator=gen, dtype=torch.float64))
    return q


def test_rank_factorization_recovers_known_singular_values():
    gen = torch.Generator().manual_seed(0)
    s = torch.tensor([10.0, 5.0, 2.0, 1.0, 0.5], dtype=torch.float64)
    w = (_random_orthogonal(12, 5, gen) * s) @ _random_orthogonal(7, 5, gen).T  # 12×7, rank 5
    for r in (1, 2, 5):
        u, v = rank_factorization(w, r)
        assert u.shape == (12, r) and v.shape == (r, 7)
        expected = float(torch.sqrt((s[r:] ** 2).sum() / (s ** 2).sum()))
        assert rank_energy(w, r)["weight_rel_error"] == pytest.approx(expected, abs=1e-6)
        assert torch.allclose(v @ v.T, torch.eye(r), atol=1e-5)  # orthonormal rows
    u, v = rank_factorization(w, 5)
    assert torch.allclose((u @ v).double(), w, atol=1e-5)
    a = torch.randn(2, 7, 3, 3, dtype=torch.float64, generator=gen)
    assert rank_energy(w, 5, a)["cam_rel_error"] == pytest.approx(0.0, abs=1e-6)
    # rank 1 on maps of class 0 only: by hand, the centered error of W[0]·A vs (u v)[0]·A
    u1, v1 = rank_factorization(w, 1)
    full0 = torch.einsum("c,nchw->nhw", w[0], a)
    low0 = torch.einsum("c,nchw->nhw", (u1 @ v1).double()[0], a)
    centre = lambda m: m - m.mean(dim=(1, 2), keepdim=True)  # noqa: E731
    expected0 = float((centre(low0) - centre(full0)).norm() / centre(full0).norm())
    got0 = rank_energy(w, 1, a, classes=[0, 0])["class_centered_rel_error"]
    assert got0 == pytest.approx(expected0, rel=1e-4)
    with pytest.raises(ValueError, match="rank"):
        rank_factorization(w, 8)


def test_untrained_decoder_gives_upsampled_rank_r_low_maps_and_all_classes_equal_per_class(small_net):
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        out = small_net.forward_maps(x, high=True)
        a = small_net.backbone.features(x)
    assert out.high_features.shape == (2, 8, 64, 64) and out.low_features.shape == (2, 512, 2, 2)
    # residual start: A_high = upsample(V_r·A) exactly, so high[c] = upsample(U_r V_r A)[c]
    u, v = rank_factorization(small_net.backbone.head.weight, 8)
    low_r = torch.einsum("kc,nchw->nkhw", u @ v, a)
    expected = F.interpolate(low_r, size=(64, 64), mode="bilinear", align_corners=False)
    all_high = class_maps(small_net.high_weight, out.high_features)
    assert all_high.shape == (2, 1000, 64, 64)
    assert torch.allclose(all_high, expected, atol=1e-4)
    for c in (0, 7, 999):
        per = class_maps(small_net.high_weight, out.high_features, torch.tensor([c, c]))
        assert torch.allclose(per, all_high[:, c], atol=1e-5)
    # the lead's compute_cams (one pass) agrees for the predicted classes
    from hrcam.api.seed import compute_cams

    res = compute_cams(small_net, x, high=True)
    idx = torch.arange(2)
    assert torch.allclose(res.high, all_high[idx, res.classes], atol=1e-5)
    assert torch.equal(res.logits, small_net.backbone.forward_maps(x).logits)


def test_consistency_targets_have_the_same_gradient_and_differ_by_the_truncation_error(small_net):
    torch.manual_seed(1)
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():  # make the decoder output non-trivial
        small_net.to_rank.weight.normal_(0, 0.1)
    grads, values = {}, {}
    for target in ("low", "rank"):
        small_net.zero_grad(set_to_none=True)
        out = small_net.forward_maps(x, high=True)
        loss = decoder_consistency_loss(small_net, out.low_features, out.high_features, target)
        loss.backward()
        values[target] = float(loss.detach())
        grads[target] = [p.grad for p in small_net.decoder_parameters() if p.grad is not None]
    assert len(grads["low"]) == len(grads["rank"]) > 0
    for g_low, g_rank in zip(grads["low"], grads["rank"]):
        assert torch.allclose(g_low, g_rank, atol=1e-6, rtol=1e-4)
    with torch.no_grad():
        a = small_net.backbone.features(x).double()
        w = small_net.low_weight.double()
        resid = w - small_net.head_u.double() @ small_net.head_v.double()
        truncation = torch.einsum("kc,nchw->nkhw", resid, a).pow(2).mean()
    assert values["low"] - values["rank"] == pytest.approx(float(truncation), rel=1e-3)
    with pytest.raises(ValueError, match="consistency_target"):
        decoder_consistency_loss(small_net, out.low_features, out.high_features, "other")
    small_net.zero_grad()
    with torch.no_grad():
        small_net.to_rank.weight.zero_()


def _write_images(folder, n=3, size=48):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"im{i}.png")


def test_decoder_trains_on_cpu_with_the_backbone_bit_identical(tmp_path):
    from hrcam.train.runner import fit

    torch.manual_seed(0)
    net = DecoderNet(build_backbone("efficientnet_lite0"), rank=8, width=8)
    backbone_before = {k: v.clone() for k, v in net.backbone.state_dict().items()}
    decoder_before = {n: p.detach().clone() for n, p in net.named_parameters() if not n.startswith("backbone.")}
    x = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        logits_before = net.backbone(x)
    _write_images(tmp_path / "data" / "unlabelled")  # no class labels needed
    dm = ImagesDataModule(tmp_path / "data", im_size=64, batch_size=2)
    module = DecoderModule(net, objective="consistency", im_size=64)
    out = fit(module, dm, "dec/run", epochs=1, max_steps=2, results_root=tmp_path / "results",
              logs_root=tmp_path / "logs", monitor="train_loss", mode="min", progress=False,
              accelerator="cpu", devices=1)
    after = net.backbone.state_dict()
    assert all(torch.equal(backbone_before[k], after[k]) for k in backbone_before)
    assert all(not p.requires_grad for p in net.backbone.parameters())
    changed = [n for n, p in net.named_parameters() if n in decoder_before and not torch.equal(p, decoder_before[n])]
    assert "to_rank.weight" in changed and "reconstruction.weight" in changed
    with torch.no_grad():
        assert torch.equal(net.backbone(x), logits_before)
    assert out["best"].is_file() and out["last"].is_file()
    from hrcam.api.pretrained import load_decoder_model

    fm = load_decoder_model(out["best"])
    high, low, preds = fm.generate_cams(x)
    assert high.shape == (2, 64, 64) and low.shape == (2, 2, 2) and preds.shape == (2, 1000)
    loaded, meta = load_network(out["last"], expect=("decoder",))
    assert meta["backbone"] == "efficientnet_lite0" and meta["arch"]["rank"] == 8
    with torch.no_grad():
        assert torch.equal(loaded.forward_maps(x, high=True).high_features,
                           net.eval().forward_maps(x, high=True).high_features)


def test_anchored_decoder_keeps_the_cell_means_of_the_rank_r_low_maps_and_round_trips(tmp_path):
    """``anchor='bilinear'``: whatever the decoder adds, each S/32 cell's mean of A_high stays
    close to V_r·A (an unanchored decoder with the same weights drifts far from it)."""
    from hrcam.models.registry import model_metadata
    from hrcam.weights import save_weights

    torch.manual_seed(0)
    backbone = build_backbone("resnet18")
    free, anchored = DecoderNet(backbone, rank=8, width=8), DecoderNet(backbone, rank=8, width=8, anchor="bilinear")
    with torch.no_grad():  # a decoder that has learnt something large: random output weights
        free.to_rank.weight.normal_(0, 5.0)
        free.to_rank.bias.normal_(0, 5.0)
    anchored.load_state_dict(free.state_dict())
    x = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        a = backbone.features(x)
        target = torch.einsum("rc,nchw->nrhw", free.head_v, a)  # V_r·A, 4×4 at 128 px
        out_free = free.forward_maps(x, high=True)
        out_anch = anchored.forward_maps(x, high=True)
    assert torch.equal(out_free.logits, out_anch.logits)  # classification untouched

    def gap(out):
        pooled = F.avg_pool2d(out.high_features, 32)
        return float((pooled - target).norm() / target.norm())

    assert gap(out_anch) < 0.1 and gap(out_free) > 0.5  # measured: 0.05 and 1.3
    assert not torch.allclose(out_anch.high_features, out_free.high_features)
    with pytest.raises(ValueError, match="anchor"):
        DecoderNet(backbone, rank=8, width=8, anchor="nearest")
    path = tmp_path / "anchored.safetensors"
    save_weights(path, anchored.state_dict(), model_metadata("decoder", anchored, 128))
    loaded, info = load_network(path, expect=("decoder",))
    assert info["arch"]["anchor"] == "bilinear" and loaded.anchor == "bilinear"
    with torch.no_grad():
        assert torch.equal(loaded.forward_maps(x, high=True).high_features, out_anch.high_features)


def test_activation_memory_per_224px_image_is_under_50mb():
    net = DecoderNet(build_backbone("efficientnet_lite0"), rank=128)  # the default
    assert peak_activation_mb(net, torch.rand(1, 3, 224, 224)) <= 50


def test_cli_train_decoder_help_and_run(tmp_path, monkeypatch, capsys):
    import hrcam.cli.train as train_cli
    from hrcam.cli import main

    if "hrcam.cli.pretrained" not in train_cli.TRAIN_MODULES:
        monkeypatch.setattr(train_cli, "TRAIN_MODULES", [*train_cli.TRAIN_MODULES, "hrcam.cli.pretrained"])
    with pytest.raises(SystemExit):
        main(["train", "decoder", "--help"])
    assert "Unlabelled images are enough" in capsys.readouterr().out
    _write_images(tmp_path / "imgs", n=2)
    args = ["train", "decoder", "--backbone", "resnet18", "--data_dir", str(tmp_path / "imgs"),
            "--results_name", "d", "--results_root", str(tmp_path / "r"), "--logs_root", str(tmp_path / "l"),
            "--rank", "4", "--width", "8", "--im_size", "64", "--batch_size", "2", "--epochs", "1",
            "--max_steps", "1", "--objective", "reconstruction", "--no_progress", "--accelerator", "cpu",
            "--anchor", "bilinear"]
    assert main(args) == 0
    best = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["best"]
    assert best.endswith("best_weights.safetensors")
    from hrcam.api.pretrained import load_decoder_model

    assert load_decoder_model(best).net.anchor == "bilinear"  # the anchor is saved with the weights
    bad = list(args)
    bad[bad.index("--rank") + 1] = "600"  # more than resnet18's 512 channels
    assert main(bad) == 2
    assert "rank must be in 1..512" in capsys.readouterr().err


def test_photo_demo_writes_figure_and_page_and_animals_view(tmp_path):
    from hrcam.workflows.photos import run_photo_demo

    _write_images(tmp_path / "extra" / "3", n=2)
    out = run_photo_demo(tmp_path / "demo", animals=True, steps=1, im_size=64, rank=8,
                         names=("chelsea", "coffee"), batch_size=2, progress=False, extra_dir=tmp_path / "extra")
    assert out["figure"].stat().st_size > 0 and out["html"].is_file()
    info = json.loads(out["summary"].read_text())
    assert info["view"].startswith("Animals") and info["decoder_detail"] > 0  # one step moved the maps
    for entry in info["photos"]:
        assert len(entry["top5"]) == 5
        assert all(0 <= p["class"] < 398 for p in entry["top5"])
    page = out["html"].read_text()
    assert "chelsea" in page and "coffee" in page and info["photos"][0]["top5"][0]["name"] in page
    # photo, low-res, high-res, refined and the guided-filter refinement side by side
    from PIL import Image

    with Image.open(out["figure"].parent / "chelsea.png") as strip:
        assert strip.size == (5 * 64, 64)


def test_faithfulness_steps_lower_the_loss_and_move_the_predicted_class_map():
    from hrcam.workflows.photos import load_photos

    torch.manual_seed(0)
    # the offline ImageNet Lite0 on two real photos: a random-init classifier has no evidence to find
    net = DecoderNet(build_backbone("efficientnet_lite0"), rank=4, width=8)
    x, _ = load_photos(("chelsea", "coffee"), 48)
    module = DecoderModule(net, objective="faithfulness", im_size=48)
    module.train()
    with torch.no_grad():
        logits = net.backbone(x)
        pred = logits.argmax(dim=1)
        torch.manual_seed(1)  # the random fill of the hidden pixels (the same one for first and last)
        first = module.losses(x)
        maps0 = class_maps(net.high_weight, net.forward_maps(x, high=True).high_features, pred)
    assert set(first) == {"consistency", "keep", "delete", "area", "tv", "loss"}  # no reconstruction term
    # the keep term is the cross-entropy of the *predicted* class on the [0, 1] image masked by the
    # high-res map of that class in the units of its low-res CAM (0 at the CAM's minimum, 1 at its
    # maximum, clipped), hidden pixels filled with one random colour per image (the backbone
    # normalizes after the masking)
    with torch.no_grad():
        low = torch.einsum("nc,nchw->nhw", net.backbone.head.weight[pred], net.backbone.features(x))
    lo, hi = low.amin(dim=(1, 2), keepdim=True), low.amax(dim=(1, 2), keepdim=True)
    m = ((maps0 - lo) / (hi - lo + 1e-6)).clamp(0, 1)
    m = m[:, None]
    torch.manual_seed(1)
    u = mask_fill(x, "random")
    with torch.no_grad():
        keep = F.cross_entropy(net.backbone(x * m + u * (1 - m)), pred)
    assert float(first["keep"]) == pytest.approx(float(keep), rel=1e-4)
    opt = module.configure_optimizers()
    recon_before = net.reconstruction.weight.detach().clone()
    for _ in range(4):
        terms = module.losses(x)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
    with torch.no_grad():
        torch.manual_seed(1)
        last = module.losses(x)
        maps1 = class_maps(net.high_weight, net.forward_maps(x, high=True).high_features, pred)
        assert torch.equal(net.backbone(x), logits)  # the classifier is untouched
    assert float(last["loss"]) < float(first["loss"])
    assert (maps1 - maps0).abs().max() > 1e-3 * maps0.abs().max()
    assert torch.equal(net.reconstruction.weight, recon_before)  # not part of this objective
    with pytest.raises(ValueError, match="faithfulness weight tv"):
        DecoderModule(net, objective="faithfulness", faithfulness={"tv": -1.0})


def test_linear_head_fine_tuning_keeps_the_backbone_frozen():
    from hrcam.train.linear_head import fit_linear_head

    torch.manual_seed(0)
    net = build_backbone("resnet18")
    before = {k: v.clone() for k, v in net.state_dict().items() if not k.startswith("head.")}
    # two separable "classes": dark and bright images
    xs = torch.cat([torch.rand(6, 3, 32, 32) * 0.3, 0.7 + torch.rand(6, 3, 32, 32) * 0.3])
    ys = torch.tensor([0] * 6 + [1] * 6)

    class DM:
        num_classes, classes = 2, ["dark", "bright"]

        def train_dataloader(self):
            return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys), batch_size=4)

        def val_dataloader(self):
            return self.train_dataloader()

    stats = fit_linear_head(net, DM(), epochs=60, progress=False)
    assert net.num_classes == 2 and net.class_names == ["dark", "bright"]
    assert stats["train_acc"] == 1.0 and stats["val_acc"] == 1.0
    after = net.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_demo_photos_subcommand_parses(tmp_path):
    import argparse

    from hrcam.cli.pretrained import register_demo, run_demo_photos

    parser = argparse.ArgumentParser()
    register_demo(parser.add_subparsers(dest="demo_command"))
    args = parser.parse_args(["photos", "--out", str(tmp_path), "--animals", "--steps", "3"])
    assert args.func is run_demo_photos and args.animals and args.steps == 3 and args.out == str(tmp_path)
    assert parser.parse_args(["photos"]).animals is False
    assert parser.parse_args(["photos", "--objective", "faithfulness"]).objective == "faithfulness"


def test_cli_decoder_objectives_are_the_modules():
    from hrcam.cli.pretrained import DECODER_OBJECTIVES
    from hrcam.train.decoder import OBJECTIVES

    assert DECODER_OBJECTIVES == OBJECTIVES


def test_demo_photos_is_reachable_from_the_hrcam_command():
    from hrcam.cli import build_parser

    args = build_parser().parse_args(["demo", "photos", "--out", "x", "--animals", "--steps", "3"])
    assert args.animals and args.steps == 3 and args.out == "x"
    assert args.func.__name__ == "run_demo_photos"


def test_cli_masking_game_choices_are_the_objectives():
    from hrcam.cli import build_parser
    from hrcam.cli.train import masking_game
    from hrcam.train.objectives import FILLS, SCALES

    parser = build_parser()
    for command in (["train", "full", "--data_dir", "d", "--results_name", "r", "--half_weight_dir", "h"],
                    ["train", "decoder", "--data_dir", "d", "--results_name", "r"]):
        for fill in FILLS:
            assert parser.parse_args([*command, "--mask_fill", fill]).mask_fill == fill
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--mask_fill", "grey"])
        for scale in SCALES:
            args = parser.parse_args([*command, "--mask_scale", scale, "--mask_fill", "zero"])
            assert masking_game(args) == {"fill": "zero", "scale": scale}
        with pytest.raises(SystemExit):
            parser.parse_args([*command, "--mask_scale", "max"])
        assert masking_game(parser.parse_args(command)) == {}  # the trainer's own defaults


def test_faithfulness_defaults_and_the_anchor_flag_reaches_the_net(small_net):
    from hrcam.cli import build_parser
    from hrcam.train.decoder import DecoderModule

    net = small_net
    weights = DecoderModule(net, objective="faithfulness").weights
    assert (weights.scale, weights.fill) == ("low", "random")  # the pretrained path's measured game
    assert DecoderModule(net, objective="faithfulness", faithfulness={"scale": "minmax"}).weights.scale == "minmax"
    # the FullModel's localize recipe: the low-res mask and the blurred fill (README ablation)
    from hrcam.train.objectives import FaithfulnessWeights

    assert (FaithfulnessWeights().scale, FaithfulnessWeights().fill) == ("low", "blur")
    parser = build_parser()
    base = ["train", "decoder", "--data_dir", "d", "--results_name", "r"]
    assert parser.parse_args([*base, "--anchor", "bilinear"]).anchor == "bilinear"
    assert parser.parse_args(base).anchor == "none"
    assert parser.parse_args(["demo", "photos", "--anchor", "none"]).anchor == "none"


def test_photo_demo_cli_defaults_are_the_workflows():
    import inspect

    from hrcam.cli.pretrained import PHOTO_DEMO
    from hrcam.workflows.photos import run_photo_demo

    params = inspect.signature(run_photo_demo).parameters
    assert PHOTO_DEMO == {k: params[k].default for k in PHOTO_DEMO}
