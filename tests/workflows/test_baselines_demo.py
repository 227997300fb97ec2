"""The demo rows for CAM / L-CAM / CASM at micro scale (the real demo uses DEMO_SETTINGS)."""
import math

from hrcam.data.demo import build_demo_dataset
from hrcam.workflows.baselines_demo import DEMO_SETTINGS, neighbour_rows, train_neighbours


def test_train_and_score_the_three_methods_on_demo_data(tmp_path):
    data = build_demo_dataset(tmp_path / "demo", size=32, train=20, test=4, seed=0, progress=False)
    weights = train_neighbours(data, tmp_path / "out", backbone="resnet18", pretrained=False, im_size=32,
                               batch_size=10, epochs=1, extra_channels=8)
    assert set(weights) == {"cam", "lcam", "casm"}
    assert all((w / "best_weights.safetensors").is_file() for w in weights.values())
    rows = neighbour_rows(weights, data, limit=4, batch_size=4)
    assert [r["method"] for r in rows] == ["camnet", "lcam", "casm"]
    for r in rows:
        assert r["images"] == 4 and 0 <= r["clean_top1"] <= 1
        assert "pointing_game" in r and "energy_pointing_game" in r  # the demo's exact ground truth was used
        assert math.isfinite(r["AD@0"])
    assert DEMO_SETTINGS["backbone"] == "efficientnet_lite0" and DEMO_SETTINGS["pretrained"]
