"""compare_methods / write_table / ``hrcam compare`` on tiny models and data."""
import csv
import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from hrcam.evaluation.compare import FAITHFULNESS_KEYS, LOCALIZATION_KEYS, columns, compare_methods, write_table
from hrcam.explain import Explainer, register, registry

A = 4.0


def sig(z):
    return 1.0 / (1.0 + math.exp(-z))


class RegionModel(nn.Module):
    """logits = [A·mean_R(x), A·0.5], R = the top-left 4×4 of an 8×8 image."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, x):
        r = x[:, :, :4, :4].mean(dim=(1, 2, 3))
        return torch.stack([A * r, torch.full_like(r, A * 0.5)], dim=1)


class FixedMaps(Explainer):
    """Each image picks its map by a marker pixel the model ignores, ``k = round(10·x[0, 7, 7]) mod 4``:
    R-indicator, NaN, constant, complement of R (so the choice never depends on batching)."""

    name = "fixed"

    def raw_maps(self, x, targets):
        with torch.no_grad():
            logits = self.model(x)
        r = torch.zeros(8, 8)
        r[:4, :4] = 1.0
        bank = [r, torch.full((8, 8), float("nan")), torch.full((8, 8), 2.0), 1 - r]
        picks = (x[:, 0, 7, 7] * 10).round().long() % 4
        maps = torch.stack([bank[int(k)] for k in picks])
        return maps, logits, logits.argmax(1)


@pytest.fixture
def fixed_method():
    register("fixed_test", FixedMaps)
    yield "fixed_test"
    registry._REGISTRY.pop("fixed_test")


def test_closed_form_row_with_exclusions(fixed_method):
    model = RegionModel()
    x = torch.ones(4, 3, 8, 8)
    x[:, :, 7, 7] = torch.arange(4).float()[:, None] / 10  # marker: image i gets map i
    masks = np.zeros((4, 8, 8), dtype=bool)
    masks[:, :4, :4] = True
    gt = {"masks": list(masks), "boxes": [[[0, 0, 4, 4]]] * 4}
    rows = compare_methods(model, x, labels=[0, 0, 0, 0], methods=fixed_method, ground_truth=gt, batch_size=3)
    (row,) = rows
    assert row["method"] == fixed_method and row["images"] == 4 and row["scored"] == 2
    assert (row["excluded_nonfinite"], row["excluded_all_zero"], row["excluded_constant"]) == (1, 0, 1)
    y = sig(A * 0.5)  # clean: r = 1
    # image 0 keeps R (O = Y), image 3 keeps only the rest (r = 0 → O = σ(−A/2))
    assert row["AD@0"] == pytest.approx(100 * ((y - sig(-A * 0.5)) / y) / 2, rel=1e-5)
    assert row["IC@0"] == 0.0
    # masked-in of image 0 keeps R → class 0; of image 3 zeroes R → class 1
    assert row["masked_in_top1"] == pytest.approx(0.5) and row["masked_out_top1"] == pytest.approx(0.5)
    # localization: image 0's map is the mask (all hits), image 3's map is its complement (all misses)
    assert row["pointing_game"] == pytest.approx(0.5)
    assert row["mask_iou"] == pytest.approx(0.5)
    assert row["box_acc_cam"] == pytest.approx(0.5) and row["le_cam"] == pytest.approx(0.5)
    assert row["energy_pointing_game"] == pytest.approx(0.5)
    # set-level: 128 pooled pixels, 32 in masks; score 1 holds 16 of them and 48 others, score 0
    # the rest → AP = 0.25 · 0.5 + 0.25 · 0.5; best IoU at t = 0.01 (1 and 0); MaxBoxAccV2: the
    # complement's one L-shaped component has the whole image as box (IoU 0.25): 0.5 at every δ
    assert row["pxap"] == pytest.approx(0.25, abs=1e-9)
    assert row["best_iou"] == pytest.approx(0.5)
    assert row["max_box_acc_v2"] == pytest.approx(0.5)
    cols = columns(rows)
    assert cols.index("pxap") < cols.index("best_iou") < cols.index("max_box_acc_v2") < cols.index("pointing_game")
    assert row["ms_per_image"] > 0


def test_batch_size_does_not_change_numbers(fixed_method):
    model = RegionModel()
    x = torch.rand(7, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    a = compare_methods(model, x, methods=[fixed_method], batch_size=2)[0]
    b = compare_methods(model, x, methods=[fixed_method], batch_size=7)[0]
    for key in FAITHFULNESS_KEYS:
        assert a[key] == pytest.approx(b[key], rel=1e-5, abs=1e-6), key
    assert not any(k in a for k in LOCALIZATION_KEYS)  # no ground truth → no localization columns


def test_ready_made_explainer_objects(fixed_method):
    model = RegionModel()
    x = torch.rand(3, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    by_name = compare_methods(model, x, methods=[fixed_method])[0]
    obj = FixedMaps(model)
    row = compare_methods(model, x, methods=[obj])[0]
    assert row["method"] == "fixed"
    for key in FAITHFULNESS_KEYS:
        assert row[key] == pytest.approx(by_name[key], nan_ok=True), key
    with pytest.raises(ValueError, match="duplicate"):
        compare_methods(model, x, methods=[obj, FixedMaps(model)])


def test_removal_baseline_reaches_deletion_and_insertion(fixed_method):
    from hrcam.metrics.faithfulness import deletion_insertion

    model = RegionModel()
    x = torch.ones(2, 3, 8, 8)
    x[:, :, :4, :4] = 0.0  # R, the class-0 evidence, is black: zero fill cannot delete it
    x[:, 0, 7, 7] = 0.0  # marker 0: both images get the map of R
    r = torch.zeros(2, 8, 8)
    r[:, :4, :4] = 1.0
    seen = {}
    for removal in ("zero", "inpaint"):
        row = compare_methods(model, x, methods=fixed_method, removal=removal, batch_size=1, steps=4)[0]
        want = deletion_insertion(model, x, r, steps=4, baseline=removal)  # class 1, the prediction
        assert row["deletion_auc"] == pytest.approx(want["deletion_auc"]), removal
        assert row["insertion_auc"] == pytest.approx(want["insertion_auc"]), removal
        seen[removal] = row["deletion_auc"]
    assert seen["inpaint"] < seen["zero"] - 0.1  # R inpainted from white: p(1) falls as R goes
    with pytest.raises(ValueError, match="removal"):
        compare_methods(model, x, methods=fixed_method, removal="blur")


def test_bad_arguments(fixed_method):
    model = RegionModel()
    x = torch.ones(2, 3, 8, 8)
    with pytest.raises(ValueError, match="labels"):
        compare_methods(model, x, labels=[0], methods=fixed_method)
    with pytest.raises(ValueError, match="methods"):
        compare_methods(model, x, methods="nope")
    with pytest.raises(ValueError, match="ground_truth"):
        compare_methods(model, x, methods=fixed_method, ground_truth={"masks": [None]})
    with pytest.raises(ValueError, match="batch_size"):
        compare_methods(model, x, methods=fixed_method, batch_size=0)


def test_write_table(tmp_path, fixed_method):
    rows = compare_methods(RegionModel(), torch.ones(4, 3, 8, 8), methods=fixed_method)
    rows.append({**rows[0], "method": "copy", "AD@0": float("nan")})
    paths = write_table(rows, tmp_path / "out", meta={"note": "x"})
    data = json.loads(paths["json"].read_text())
    assert data["columns"] == columns(rows) and data["meta"] == {"note": "x"}
    assert data["rows"][1]["AD@0"] is None  # NaN → null, valid JSON
    with open(paths["csv"]) as fh:
        table = list(csv.reader(fh))
    assert table[0] == columns(rows) and len(table) == 3
    md = paths["md"].read_text().splitlines()
    assert md[0].startswith("| method |") and md[2].startswith("| fixed_test |") and md[3].startswith("| copy |")
    assert any("localization columns are left out" in line for line in md)


@pytest.fixture(scope="module")
def demo_setup(tmp_path_factory):
    from hrcam.api.seed import FullModel, HalfModel
    from hrcam.data.demo import build_demo_dataset
    from hrcam.models.hrcam.nets import FullNet

    root = tmp_path_factory.mktemp("cmp")
    data = build_demo_dataset(root / "data", size=32, train=10, test=4, progress=False)
    torch.manual_seed(0)
    net = FullNet(num_classes=10, init_filters=8, growth_rate=4, layers_per_block=1, aux_channels=4)
    full = root / "full" / "best_weights.safetensors"
    FullModel.from_network(net, im_size=32).save(full)
    half = root / "half" / "best_weights.safetensors"
    HalfModel.from_network(net.localization, im_size=32).save(half)
    return data, full, half


def test_cli_compare(tmp_path, demo_setup, capsys):
    from hrcam.cli import main

    data, full, _ = demo_setup
    out = tmp_path / "table"
    rc = main(["compare", "--data_dir", str(data), "--weights", str(full), "--methods", "cam,hrcam,gradcam",
               "--limit", "3", "--batch_size", "2", "--out", str(out), "--no_progress"])
    assert rc == 0
    rows = json.loads((out / "compare.json").read_text())
    assert [r["method"] for r in rows["rows"]] == ["cam", "hrcam", "gradcam"]
    assert rows["meta"]["images"] == 3 and rows["meta"]["ground_truth"] is True
    assert "pointing_game" in rows["columns"] and "deletion_auc" in rows["columns"]
    assert (out / "compare.md").is_file() and (out / "compare.csv").is_file()
    assert "| hrcam |" in capsys.readouterr().out


def test_load_split_limit_is_round_robin(demo_setup):
    from hrcam.data.splits import load_split

    data, _, _ = demo_setup
    x, y, paths, skipped = load_split(data, "test", 32, 3, limit=3, num_classes=10)
    assert x.shape == (3, 3, 32, 32) and skipped == 0
    assert len(set(y.tolist())) == 3  # three classes, not three images of the first class
    assert all(p.startswith(f"test/{int(c)}/") for p, c in zip(paths, y))


def test_cli_errors_are_one_line(tmp_path, demo_setup, capsys):
    from hrcam.cli import main

    data, _, half = demo_setup
    rc = main(["compare", "--data_dir", str(data), "--weights", str(half), "--methods", "hrcam",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "full-model weights" in err and len(err.strip().splitlines()) == 1
    rc = main(["compare", "--data_dir", str(data), "--weights", str(half), "--methods", "cam,bogus",
               "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert rc == 2 and "bogus" in err and len(err.strip().splitlines()) == 1
