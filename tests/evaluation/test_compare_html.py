"""``hrcam compare``'s report.html: the comparison table and a per-image gallery, one column per method."""
from __future__ import annotations

import re

import numpy as np
import pytest
import torch

from browser_check import Chromium, check_page, chromium_or_skip
from hrcam.evaluation.compare import columns, compare_methods, write_html
from hrcam.models.hrcam.nets import HalfNet

MICRO = {"init_filters": 8, "growth_rate": 4, "layers_per_block": 1}


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    torch.manual_seed(0)
    net = HalfNet(2, 3, **MICRO).eval()
    x = torch.rand(5, 3, 32, 32)
    labels = [0, 1, 0, 1, 0]
    masks = [np.zeros((32, 32), bool) for _ in range(5)]
    for m in masks:
        m[8:20, 4:16] = True
    gt = {"masks": masks, "boxes": [[[4, 8, 16, 20]]] * 5}
    examples: dict = {}
    rows = compare_methods(net, x, labels, ["cam", "gradcam"], gt, batch_size=2, steps=4, examples=examples,
                           examples_count=3)
    out = tmp_path_factory.mktemp("compare_html")
    path = write_html(rows, out, x, labels, gt, examples, meta={"images": 5}, class_names=["cat", "dog"])
    return rows, examples, x, path, net


def test_examples_hold_the_first_maps_and_predictions(compared):
    rows, examples, x, *_ = compared
    assert set(examples["maps"]) == {"cam", "gradcam"}
    for maps in examples["maps"].values():
        assert maps.shape == (3, 32, 32) and np.isfinite(maps).all()
    with torch.no_grad():
        logits = compared[4].forward_maps(x[:3]).logits
    assert examples["pred"].tolist() == logits.argmax(1).tolist()  # the model's own predictions


def test_page_has_the_table_and_one_gallery_column_per_method(compared):
    rows, examples, _, path, _ = compared
    text = path.read_text(encoding="utf-8")
    assert path.name == "report.html"
    for c in columns(rows):
        assert f'<th title="click to sort">{c}</th>' in text
    assert re.findall(r"<th>([^<]+)</th>", text) == ["class / prediction", "image", "cam", "gradcam", "ground truth"]
    assert len(re.findall(r'<tr class="(?:correct|wrong)"', text)) == 3
    assert text.count('src="data:image/png;base64,') == 3 * 4
    labels = re.findall(r'<td class="info"><b>([^<]+)</b><br>pred: (\w+)', text)
    assert [lab for lab, _ in labels] == ["cat", "dog", "cat"]
    assert [p for _, p in labels] == [["cat", "dog"][int(k)] for k in examples["pred"]]
    assert text.count("energy PG, cam:") == 3 and text.count("energy PG, gradcam:") == 3


def test_page_renders_in_a_browser(compared, tmp_path):
    chromium_or_skip()
    with Chromium() as browser:
        report = check_page(browser, compared[3], screenshot=tmp_path / "compare.png")
    assert report.ok, report
    assert report.images == 3 * 4
