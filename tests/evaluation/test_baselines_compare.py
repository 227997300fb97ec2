"""CAM / L-CAM / CASM as rows of the comparison table (the uniform explainer interface)."""
import math

import torch

from hrcam.evaluation.compare import compare_methods
from hrcam.models.baselines.camnet import CAMNet
from hrcam.models.baselines.casm import CASMNet
from hrcam.models.baselines.feature_backbones import build_feature_backbone
from hrcam.models.baselines.lcam import LCAMNet


def test_each_method_is_a_compare_row():
    x, y = torch.rand(2, 3, 64, 64), torch.tensor([0, 2])
    nets = {
        "camnet": CAMNet.build("resnet18", 3, extra_channels=8),
        "lcam": LCAMNet(build_feature_backbone("resnet18", num_classes=3), "fm"),
        "casm": CASMNet(build_feature_backbone("resnet18", num_classes=3)),
    }
    for name, net in nets.items():
        with torch.no_grad():  # the compared model's logits are the explained classifier's
            if name == "lcam":
                assert torch.equal(net.eval()(x), net.classifier(x))
            if name == "casm":
                assert torch.equal(net.eval()(x), net.logits_and_mask(x)[0])
        (row,) = compare_methods(net, x, y, [name], steps=4)
        assert row["method"] == name and row["images"] == 2
        assert math.isfinite(row["AD@0"]) and math.isfinite(row["deletion_auc"])


def test_cli_compare_loads_neighbour_weights(tmp_path, capsys):
    """`hrcam compare` on a CAM run's exported weights scores that method by default."""
    import json

    from tests.helpers import make_colour_dataset

    from hrcam.cli import main
    from hrcam.train.baselines import CAMModule
    from hrcam.weights import save_weights

    data = make_colour_dataset(tmp_path / "data", per_class=(1, 2))
    module = CAMModule(CAMNet.build("resnet18", 3, extra_channels=8), im_size=32, class_names=["c0", "c1", "c2"])
    state, meta = module.export_state()
    weights = save_weights(tmp_path / "cam" / "best_weights.safetensors", state, meta)
    out = tmp_path / "cmp"
    assert main(["compare", "--data_dir", str(data), "--weights", str(weights), "--out", str(out),
                 "--no_progress"]) == 0
    rows = json.loads((out / "compare.json").read_text())
    rows = rows["rows"] if isinstance(rows, dict) else rows
    assert [r["method"] for r in rows] == ["camnet"] and rows[0]["images"] == 6
    capsys.readouterr()
    assert main(["compare", "--data_dir", str(data), "--weights", str(weights), "--type", "full"]) == 2
    assert "--type applies to HR-CAM weights" in capsys.readouterr().err
