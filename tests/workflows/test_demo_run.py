"""The demo workflow end to end at a micro scale (32 px, tiny data, one epoch each)."""
import json
import math

import pytest

from hrcam.workflows.demo import DemoConfig, run_demo

MAP_KEYS = ("pointing_game", "pointing_game_tol", "energy_pointing_game", "box_acc_cam",
            "box_acc_casm", "mask_iou")


@pytest.fixture(scope="module")
def micro(tmp_path_factory):
    root = tmp_path_factory.mktemp("demo_run")
    cfg = DemoConfig(size=32, train=20, test=10, half_epochs=1, full_epochs=1, batch_size=10,
                     arch={"init_filters": 8, "growth_rate": 4, "layers_per_block": 2},
                     objectives=("faithfulness", "consistency"), gallery=3, threads=1,
                     compare_methods=("cam", "refined"), compare_limit=4, half_settle_epochs=1)
    metrics = run_demo(root / "out", root / "data", cfg, progress=False)
    return root, cfg, metrics


def test_files_and_metrics(micro):
    root, cfg, metrics = micro
    out = root / "out"
    for name in ("report.md", "metrics.json", "gallery.png", "gallery_consistency.png",
                 "pipeline.png", "half/last_weights.safetensors", "half/settled/last_weights.safetensors",
                 "full_faithfulness/last_weights.safetensors", "stages.json"):
        assert (out / name).is_file(), name
    assert (root / "data/annotations.json").is_file()
    on_disk = json.loads((out / "metrics.json").read_text())
    assert on_disk["classification"]["accuracy"] == metrics["classification"]["accuracy"]
    assert 0.0 <= metrics["classification"]["accuracy"] <= 1.0
    for kind in ("low", "high", "refined", "high_consistency", "refined_consistency", "center"):
        for key in MAP_KEYS:
            v = on_disk["maps"][kind][key]
            assert v is not None and math.isfinite(v) and 0.0 <= v <= 1.0, (kind, key, v)
        assert on_disk["maps"][kind]["count"] == 10
    for stage in ("data", "train_half", "train_full_faithfulness", "evaluate_faithfulness", "maps_table"):
        assert on_disk["wall_time_s"][stage] >= 0.0
    # the headline table: every map and baseline on the same images, threshold-free
    scores = on_disk["threshold_free"]["scores"]
    for kind in ("low", "high", "refined", "guidedhigh", "layercam", "gradcam", "guided", "center", "colour",
                 "high@consistency"):
        for key in ("pxap", "best_iou", "maxboxacc_v2"):
            assert 0.0 <= scores[kind][key] <= 1.0, (kind, key)
    report = (out / "report.md").read_text()
    assert report.index("Localization, threshold-free") < report.index("Classification (test split)")
    assert "LayerCAM" in report and "gallery.png" in report and "high-res CAM" in report
    assert (out / "compare/compare.json").is_file() and "Explanation methods" in report


def test_rerun_reuses_finished_stages(micro):
    root, cfg, _ = micro
    stages_before = json.loads((root / "out/stages.json").read_text())
    weights = root / "out/half/last_weights.safetensors"
    mtime = weights.stat().st_mtime_ns
    from hrcam.viz.report import Table

    extra = Table("Faithfulness (extra)", ["method", "AD"], [["cam", 12.5]])
    run_demo(root / "out", root / "data", cfg, progress=False, extra_tables=[extra])
    assert weights.stat().st_mtime_ns == mtime  # not retrained
    assert json.loads((root / "out/stages.json").read_text()) == stages_before
    report = (root / "out/report.md").read_text()
    assert "## Other methods" in report and "| cam | 12.500 |" in report


def test_config_rejects_bad_objective():
    with pytest.raises(ValueError, match="objectives"):
        DemoConfig(objectives=("nonsense",))


def test_evaluate_localization_cli(micro, capsys):
    from hrcam.cli import main

    root, _, _ = micro
    out = root / "loc"
    rc = main(["evaluate", "localization", "--data_dir", str(root / "data"), "--weights",
               str(root / "out/full_faithfulness/last_weights.safetensors"), "--limit", "4",
               "--out", str(out), "--no_progress"])
    assert rc == 0
    rec = json.loads((out / "localization.json").read_text())
    assert rec["count"] == 4 and set(rec["maps"]) == {"low", "high", "refined", "center", "colour"}
    md = (out / "localization.md").read_text()
    assert "high-res CAM" in md and "colour distance (no model)" in md
    assert md.index("PxAP") < md.index("MaxBoxAccV2") < md.index("pointing game")  # set-level first
    assert 0.0 <= rec["maps"]["high"]["pxap"] <= 1.0 and "best_iou_threshold" in rec["maps"]["high"]
    # a half model has only low-res maps
    rc = main(["evaluate", "localization", "--data_dir", str(root / "data"), "--weights",
               str(root / "out/half/last_weights.safetensors"), "--out", str(out / "half"),
               "--no_progress"])
    assert rc == 0
    assert set(json.loads((out / "half/localization.json").read_text())["maps"]) == {"low", "center", "colour"}
    # user errors: one line, exit code 2
    assert main(["evaluate", "localization", "--data_dir", str(root / "missing"), "--weights",
                 str(root / "out/half/last_weights.safetensors")]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_data_demo_cli(tmp_path, capsys):
    from hrcam.cli import main

    assert main(["data", "demo", "--out", str(tmp_path / "d"), "--size", "32", "--train", "10",
                 "--test", "10", "--no-progress"]) == 0
    assert (tmp_path / "d/test/9/00009.png").is_file()
    assert main(["data", "demo", "--out", str(tmp_path / "e"), "--size", "8"]) == 2
    assert "size" in capsys.readouterr().err


def test_same_seed_same_numbers(micro, tmp_path):
    """A second run from scratch (same data, same seed) gives the same weights-derived numbers."""
    root, cfg, metrics = micro
    import dataclasses

    again = run_demo(tmp_path / "out", root / "data",
                     dataclasses.replace(cfg, objectives=("faithfulness",), compare_limit=0),
                     progress=False)
    assert again["classification"] == metrics["classification"]
    for kind in ("low", "high", "refined"):
        assert again["maps"][kind] == metrics["maps"][kind], kind


def test_extras_add_rows(micro):
    """--extras neighbours,pretrained at micro scale: Lite0 rows in the localization table, the
    three neighbours in an 'Other methods' table, finite numbers, times recorded, stages reused."""
    import argparse
    import dataclasses

    from hrcam.cli.demo import add_run

    root, cfg, _ = micro
    ecfg = dataclasses.replace(
        cfg, extras=("neighbours", "pretrained"),
        neighbours_settings={"backbone": "resnet18", "pretrained": False, "im_size": 32, "batch_size": 8,
                             "epochs": 1, "extra_channels": 8, "casm_batches": 2, "train": 10, "test": 4,
                             "score_batch": 4},
        pretrained_settings={"im_size": 32, "head_epochs": 2, "decoder_steps": 2, "train_size": 32,
                             "decoder_batch": 4, "train_limit": 10, "test_limit": 4})
    metrics = run_demo(root / "out", root / "data", ecfg, progress=False)
    on_disk = json.loads((root / "out/metrics.json").read_text())
    for kind in ("lite0_low", "lite0_high", "lite0_refined"):
        assert on_disk["maps"][kind]["count"] == 4
        for key in MAP_KEYS:
            v = on_disk["maps"][kind][key]
            assert v is not None and math.isfinite(v) and 0.0 <= v <= 1.0, (kind, key, v)
        assert on_disk["map_labels"][kind].startswith("Lite0 ")
    tables = on_disk["extras"]["neighbours"]["tables"]
    assert list(tables["cam"]) == ["CAM", "centre prior", "Grad-CAM (backbone maps)"]
    assert list(tables["casm"]) == ["CASM F", "CASM L"] and "L-CAM-Img" in tables["lcam"]
    for rows in tables.values():
        assert all(r["images"] == 4 for r in rows.values())
    # a micro network may give flat maps (excluded from every metric); CAM's and the prior's are scored
    assert math.isfinite(tables["cam"]["CAM"]["pointing_game"]) and tables["cam"]["centre prior"]["scored"] == 4
    assert math.isfinite(tables["lcam"]["L-CAM-Fm"]["AD@0"])
    assert set(on_disk["extras"]["neighbours"]["verdicts"]) == {"cam", "lcam", "casm"}
    # classifier accuracy on the demo's whole test split (10 images), beside the table's 4
    acc = on_disk["extras"]["neighbours"]["accuracy"]
    assert acc["cam"]["images"] == 10 and tables["cam"]["CAM"]["test_top1"] == acc["cam"]["top1"]
    assert tables["casm"]["CASM L"]["test_top1"] == acc["casm_L"]["top1"]
    assert set(on_disk["extras"]["neighbours"]["seconds"]) == {"cam", "lcam_fm", "lcam_img", "casm_F", "casm_L",
                                                               "score"}
    assert set(on_disk["extras"]["pretrained"]["seconds"]) == {"linear_head", "decoder", "score"}
    assert on_disk["wall_time_s"]["extra_pretrained"] > 0 and on_disk["wall_time_s"]["extra_neighbours"] > 0
    assert on_disk["best_map"] == metrics["best_map"] and not any(
        v.startswith("lite0") for v in on_disk["best_map"].values())
    report = (root / "out/report.md").read_text()
    loc = report.split("### Localization at fixed thresholds")[1].split("###")[0]
    assert "| Lite0 high-res CAM (32 px) |" in loc and "| Lite0 refined (32 px) |" in loc
    other = report.split("## Other methods")[1]
    assert "| CAM |" in other and "| centre prior |" in other and "| L-CAM-Fm |" in other and "| CASM L |" in other
    assert other.count("reproduce") >= 3  # each table says whether its paper's claim holds
    # a second run reuses both extra stages
    stages = json.loads((root / "out/stages.json").read_text())
    run_demo(root / "out", root / "data", ecfg, progress=False)
    assert json.loads((root / "out/stages.json").read_text()) == stages
    # the CLI flag parses and unknown names are refused
    parser = argparse.ArgumentParser()
    add_run(parser.add_subparsers())
    assert parser.parse_args(["run", "--extras", "pretrained"]).extras == "pretrained"
    assert parser.parse_args(["run"]).parallel_extras and not parser.parse_args(
        ["run", "--no-parallel-extras"]).parallel_extras
    with pytest.raises(ValueError, match="extras"):
        DemoConfig(extras=("bogus",))
    with pytest.raises(ValueError, match="pretrained_settings"):
        DemoConfig(pretrained_settings={"bogus": 1})


def test_report_html_has_the_report_tables_and_a_gallery_row_per_example(micro):
    import re

    root, cfg, _ = micro
    md = (root / "out/report.md").read_text()
    html = (root / "out/report.html").read_text(encoding="utf-8")
    titles = re.findall(r"^### (.+)$", md, re.MULTILINE)  # every Markdown table, in order
    assert titles and re.findall(r"<h2>([^<]+)</h2>", html)[: len(titles)] == [
        t.replace("&", "&amp;") for t in titles]
    assert html.count('<table class="sortable">') == len(titles)
    header = re.findall(r"<th>([^<]+)</th>", html)
    assert header[:2] == ["class / prediction", "image"] and header[-1] == "ground truth" and "low-res CAM" in header
    assert len(re.findall(r'<tr class="(?:correct|wrong)"', html)) == cfg.gallery
    assert "http://" not in html and "https://" not in html


def test_report_html_renders_in_a_browser(micro):
    from browser_check import Chromium, check_page, chromium_or_skip

    chromium_or_skip()
    with Chromium() as browser:
        report = check_page(browser, micro[0] / "out/report.html")
    assert report.ok, report
    assert report.images > 3 * 4  # the gallery's pictures and the embedded figures


def test_headline_maps_explain_the_true_class_on_request(micro):
    import numpy as np
    import torch
    import torch.nn.functional as F

    from hrcam.api.seed import compute_cams
    from hrcam.models.registry import load_network
    from hrcam.workflows.demo.maps_table import collect_maps

    root, cfg, _ = micro
    weights = {"faithfulness": root / "out/full_faithfulness/last_weights.safetensors"}
    runs = {mc: collect_maps(weights, root / "data", cfg.size, None, "faithfulness", baselines=("gradcam",),
                             progress=False, map_class=mc) for mc in ("predicted", "true")}
    (pmaps, images, labels, preds, _, _), (tmaps, _, tlabels, tpreds, _, _) = runs["predicted"], runs["true"]
    assert np.array_equal(labels, tlabels) and np.array_equal(preds, tpreds)  # same images, same predictions
    net = load_network(weights["faithfulness"])[0]
    x = torch.from_numpy(images).permute(0, 3, 1, 2).contiguous()
    for maps, classes in ((pmaps, preds), (tmaps, labels)):
        with torch.no_grad():
            res = compute_cams(net, x, classes=torch.from_numpy(classes), high=True)
        low = F.interpolate(res.low[:, None], size=(cfg.size, cfg.size), mode="bilinear", align_corners=False)[:, 0]
        np.testing.assert_allclose(maps["low"], low.numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(maps["high"], res.high.numpy(), rtol=1e-5, atol=1e-6)
    wrong = preds != labels
    if wrong.any():  # a misclassified image: its maps differ between the two protocols
        assert not np.allclose(pmaps["gradcam"][wrong], tmaps["gradcam"][wrong])
    with pytest.raises(ValueError, match="map_class"):
        DemoConfig(map_class="best")


def test_architecture_follows_the_data_unless_given():
    """The distractor variant trains the wider preset; an explicit ``arch`` wins; bad keys are refused."""
    from hrcam.workflows.demo.config import DEMO_ARCH, DISTRACTOR_ARCH

    assert DEMO_ARCH != DISTRACTOR_ARCH
    assert DemoConfig().net_arch == DEMO_ARCH
    assert DemoConfig(distractors=2).net_arch == DISTRACTOR_ARCH
    given = {"init_filters": 8, "growth_rate": 4, "layers_per_block": 1}
    assert DemoConfig(distractors=2, arch=given).net_arch == given
    assert DemoConfig(distractors=2).to_json()["arch"] == DISTRACTOR_ARCH
    with pytest.raises(ValueError, match="unknown keys"):
        DemoConfig(arch={"growth": 4})
    with pytest.raises(ValueError, match="growth_rate"):
        DemoConfig(arch={"growth_rate": 0})


def test_cli_architecture_override(monkeypatch, tmp_path):
    """``--growth-rate`` etc. override the data's preset; the rest of the preset stays."""
    import hrcam.workflows.demo as demo_pkg
    from hrcam.cli import main
    from hrcam.workflows.demo.config import DISTRACTOR_ARCH

    seen = {}

    def fake_run(out, data, cfg, **_kw):
        seen["cfg"] = cfg
        return {"classification": {"accuracy": 0.5}}

    monkeypatch.setattr(demo_pkg, "run_demo", fake_run)
    assert main(["demo", "run", "--out", str(tmp_path / "o"), "--distractors", "2", "--growth-rate", "12"]) == 0
    assert seen["cfg"].net_arch == {**DISTRACTOR_ARCH, "growth_rate": 12}
    assert seen["cfg"].distractors == 2


def test_distractor_decoder_epochs():
    """The distractor variant trains its faithfulness decoder longer unless --full-epochs says otherwise."""
    from hrcam.workflows.demo.config import DISTRACTOR_FULL_EPOCHS, FULL_EPOCHS

    assert DemoConfig().epochs_of("faithfulness") == FULL_EPOCHS["faithfulness"]
    assert DemoConfig(distractors=1).epochs_of("faithfulness") == DISTRACTOR_FULL_EPOCHS["faithfulness"]
    assert DISTRACTOR_FULL_EPOCHS["faithfulness"] != FULL_EPOCHS["faithfulness"]
    assert DemoConfig(distractors=1).epochs_of("reconstruction") == FULL_EPOCHS["reconstruction"]
    assert DemoConfig(distractors=1, full_epochs=3).epochs_of("faithfulness") == 3
