"""The baselines extra at micro scale: CAM / L-CAM-Fm / L-CAM-Img / CASM F+L, the three paper tables, verdicts."""
import json
import math

from hrcam.data.demo import build_demo_dataset
from hrcam.workflows.baselines_demo import DEMO_SETTINGS, baseline_tables, split_accuracy, train_neighbours, verdicts


def test_train_and_score_the_baselines_on_demo_data(tmp_path):
    data = build_demo_dataset(tmp_path / "demo", size=32, train=20, test=4, seed=0, progress=False)
    seconds = {}
    weights = train_neighbours(data, tmp_path / "out", backbone="resnet18", pretrained=False, im_size=32,
                               batch_size=10, epochs=1, extra_channels=8, thinnings=("F", "L"), casm_epochs=2,
                               seconds=seconds)
    assert set(weights) == set(seconds) == {"cam", "lcam_fm", "lcam_img", "casm_F", "casm_L"}
    assert all(w.name == "last_weights.safetensors" and w.is_file() for w in weights.values())
    tables = baseline_tables(weights, data, limit=4, batch_size=4, scorecam_batch=8)
    assert list(tables["cam"]) == ["CAM", "centre prior", "Grad-CAM (backbone maps)"]
    assert list(tables["lcam"]) == ["L-CAM-Img", "L-CAM-Fm", "Grad-CAM", "Grad-CAM++", "Score-CAM"]
    assert list(tables["casm"]) == ["CASM F", "CASM L"]
    for rows in tables.values():
        for r in rows.values():
            assert r["images"] == 4 and 0 <= r["clean_top1"] <= 1
    # every row of a table explains the same classifier on the same images
    assert len({r["clean_top1"] for r in (*tables["cam"].values(), *tables["lcam"].values())}) == 1
    assert "mask_iou" in tables["cam"]["CAM"] and math.isfinite(tables["lcam"]["L-CAM-Fm"]["AD@0.85"])
    assert all("IC@0.5" in r for r in tables["lcam"].values())
    assert {"le_casm", "masked_out_top1", "inpainted_top1"} <= set(tables["casm"]["CASM L"])
    # accuracy on the whole split: the CAM classifier and each CASM run's own, on all 4 test images here
    acc = split_accuracy(weights, data)
    assert set(acc) == {"cam", "casm_F", "casm_L"} and all(a["images"] == 4 for a in acc.values())
    assert acc["cam"]["top1"] == tables["cam"]["CAM"]["clean_top1"]  # the same images, counted independently
    assert acc["casm_F"]["top1"] == acc["cam"]["top1"]  # F keeps CAM's classifier frozen
    assert acc["casm_L"]["top1"] == tables["casm"]["CASM L"]["clean_top1"]
    v = verdicts(tables)
    assert set(v) == {"cam", "lcam", "casm"}
    assert all(("reproduce" in s) for s in v.values())
    assert DEMO_SETTINGS["backbone"] == "efficientnet_lite0" and DEMO_SETTINGS["pretrained"]


def test_verdicts_follow_the_numbers():
    nan = float("nan")
    tables = {"cam": {"CAM": {"mask_iou": 0.5}, "centre prior": {"mask_iou": 0.2},
                      "Grad-CAM (backbone maps)": {"mask_iou": 0.6}},
              "casm": {"CASM F": {"le_casm": 0.5, "mask_iou": 0.3, "masked_out_top1": 0.5},
                       "CASM L": {"le_casm": 0.4, "mask_iou": 0.4, "masked_out_top1": 0.3}},
              "lcam": {}}
    v = verdicts(tables)
    assert v["cam"].endswith("reproduces in part.") and "centre prior 0.200 (better)" in v["cam"]
    assert v["casm"].endswith("— reproduces.") and "centre prior mask_iou 0.200" in v["casm"]
    tables["cam"]["Grad-CAM (backbone maps)"]["mask_iou"] = nan
    assert "Grad-CAM nan (not better)" in verdicts(tables)["cam"]  # a missing comparison never counts as a win
    tables["cam"]["Grad-CAM (backbone maps)"]["mask_iou"] = 0.1
    assert verdicts(tables)["cam"].endswith("— reproduces.")
    tables["cam"]["centre prior"]["mask_iou"] = 0.9
    assert verdicts(tables)["cam"].endswith("— reproduces in part.")
    tables["casm"]["CASM L"].update(le_casm=0.6, mask_iou=0.1)
    assert verdicts(tables)["casm"].endswith("— does not reproduce.")


def test_runs_in_a_side_process_give_the_same_weights(tmp_path):
    """train_neighbours(side=...) trains whichever run is next in another process when that one is
    idle: each run seeds itself, so every weight file is bit-identical to the one-process run's."""
    from safetensors.torch import load_file

    from hrcam.workflows.demo.extras import _score_tables
    from hrcam.workflows.side_process import SideProcess

    data = build_demo_dataset(tmp_path / "demo", size=32, train=12, test=2, seed=0, progress=False)
    kw = dict(backbone="resnet18", pretrained=False, im_size=32, batch_size=6, epochs=1, extra_channels=8,
              lcam_epochs=1, thinnings=("F", "L"), casm_epochs=1)
    alone = train_neighbours(data, tmp_path / "alone", **kw)
    seconds = {}
    with SideProcess(threads=1) as side:
        beside = train_neighbours(data, tmp_path / "beside", side=side, seconds=seconds, **kw)
        assert side.idle() and side._futures  # the first run after CAM went there
        # the CAM / L-CAM tables scored there, the CASM ones here: the tables of one process
        split = _score_tables(beside, data, 2, side)
    assert json.dumps(split, sort_keys=True) == json.dumps(baseline_tables(beside, data, batch_size=2), sort_keys=True)
    assert set(seconds) == set(beside) == set(alone) and list(beside) == list(alone)
    for run in alone:
        a, b = load_file(alone[run]), load_file(beside[run])
        assert a.keys() == b.keys() and all(a[k].equal(b[k]) for k in a), run
