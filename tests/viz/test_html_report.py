"""The self-contained HTML report: its markup (unit tests) and how it behaves in headless Chromium.

The browser tests skip when ``/usr/bin/chromium`` is missing, unless ``HRCAM_REQUIRE_BROWSER=1``
(``make test-browser``), where a missing browser fails. ``bash .ci/install-browser`` installs it.
"""
from __future__ import annotations

import base64
import errno
import io
import re
import subprocess
import sys
from html.parser import HTMLParser

import numpy as np
import pytest
from PIL import Image

from browser_check import Chromium, check_page, chromium_or_skip
from hrcam import fileio
from hrcam.errors import UserError
from hrcam.viz import html_report
from hrcam.viz.html_report import write_html_report

TABLES = [
    {"title": "Localization", "columns": ["map", "pointing game", "IoU"],
     "rows": [["low-res", 0.71, 0.2], ["high-res", 0.8, None], ["refined", 0.755, float("nan")],
              ["LayerCAM", 0.6, 0.31]],
     "note": "IoU at threshold 0.5"},
    {"title": "Classification", "columns": ["model", "accuracy"], "rows": [["hrcam", 0.9], ["cam", 0.85]]},
]
COLUMNS = ["image", "low-res CAM", "high-res CAM", "refined", "LayerCAM", "ground truth"]
SIZES = [(24, 32), (20, 20), (24, 32), (16, 40)]


def _gallery():
    rng = np.random.default_rng(0)
    rows = []
    for i, (h, w) in enumerate(SIZES):
        images = [rng.random((h, w, 3)) if j % 2 else rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                  for j in range(len(COLUMNS))]
        rows.append({"label": f"class {i}", "pred": f"class {i if i % 2 == 0 else 0}", "correct": i % 2 == 0,
                     "images": images, "scores": {"IoU": 0.1 * i, "energy": None}})
    rows[3]["label"] = "<script>alert(1)</script>"
    return {"columns": COLUMNS, "rows": rows}


def _write(path, **kw):
    return write_html_report(path, title="Demo <report> & co", tables=TABLES, gallery=_gallery(),
                             notes=["seed 0, 4 test images"], **kw)


class _TagChecker(HTMLParser):
    VOID = {"meta", "img", "input", "br", "hr", "link"}

    def __init__(self):
        super().__init__()
        self.stack, self.problems = [], []

    def handle_starttag(self, tag, attrs):
        if tag not in self.VOID:
            self.stack.append(tag)

    def handle_endtag(self, tag):
        if not self.stack or self.stack.pop() != tag:
            self.problems.append(tag)


def _data_uris(text):
    return re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)


def test_page_is_one_offline_file_with_tables_gallery_and_embedded_pngs(tmp_path):
    path = _write(tmp_path / "out" / "report.html")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    checker = _TagChecker()
    checker.feed(text)
    assert checker.problems == [] and checker.stack == []
    for table in TABLES:
        assert f"<h2>{table['title']}</h2>" in text
        for column in table["columns"]:
            assert f"<th title=\"click to sort\">{column}</th>" in text
    for column in COLUMNS:
        assert f"<th>{column}</th>" in text
    for label in ("class 0", "class 1", "class 2"):
        assert f"<b>{label}</b>" in text
    assert "IoU at threshold 0.5" in text and "seed 0, 4 test images" in text
    assert "http://" not in text and "https://" not in text and "<link" not in text
    assert 'src="' not in text.replace('src="data:image/png;base64,', "")  # nothing but inline images
    uris = _data_uris(text)
    assert len(uris) == len(SIZES) * len(COLUMNS)
    for k, uri in enumerate(uris):
        png = base64.b64decode(uri, validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n")
        with Image.open(io.BytesIO(png)) as im:
            h, w = SIZES[k // len(COLUMNS)]
            assert im.size == (w, h) and im.mode == "RGB"


def test_cells_are_formatted_and_numbers_carry_sort_keys(tmp_path):
    text = _write(tmp_path / "report.html").read_text(encoding="utf-8")
    assert '<td data-v="0.71">0.710</td>' in text and '<td data-v="0.755">0.755</td>' in text
    assert text.count("<td>–</td>") == 2  # None and NaN
    assert re.search(r">\s*(nan|none)\s*<", text, re.IGNORECASE) is None


def test_all_text_is_escaped(tmp_path):
    text = _write(tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "<title>Demo &lt;report&gt; &amp; co</title>" in text
    assert text.count("<script>") == 1  # only the page's own inline script


def test_rows_must_match_columns(tmp_path):
    with pytest.raises(ValueError, match="row 0 has 1 cells for 2 columns"):
        write_html_report(tmp_path / "r.html", title="t", tables=[{"title": "x", "columns": ["a", "b"],
                                                                   "rows": [[1]]}])
    gallery = _gallery()
    gallery["rows"][1]["images"].pop()
    with pytest.raises(ValueError, match="gallery row 1 has 5 images for 6 columns"):
        write_html_report(tmp_path / "r.html", title="t", tables=[], gallery=gallery)
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("where", ["encoding", "replace"])
def test_a_failed_write_leaves_the_old_report_untouched(tmp_path, monkeypatch, where):
    path = _write(tmp_path / "report.html")
    before = path.read_bytes()

    def boom(*args, **kwargs):
        raise OSError(errno.EIO, "disk on fire")

    if where == "encoding":
        monkeypatch.setattr(html_report, "png_data_uri", boom)
    else:
        monkeypatch.setattr(fileio.os, "replace", boom)
    with pytest.raises((OSError, UserError), match="disk on fire"):
        _write(path)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]  # no temporary file left behind


def test_importing_the_module_stays_light():
    code = ("import sys, hrcam.viz.html_report; "
            "print(sorted(m for m in ('torch', 'lightning', 'matplotlib', 'PIL') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --------------------------------------------------------------------------- real browser


@pytest.fixture(scope="module")
def browser():
    chromium_or_skip()
    with Chromium() as b:
        yield b


_COLUMN = "Array.from(document.querySelectorAll('table.sortable')[0].tBodies[0].rows).map(r => r.cells[{}].textContent)"


def test_browser_renders_every_image_without_errors_and_saves_a_screenshot(browser, tmp_path):
    path = _write(tmp_path / "report.html")
    shot = tmp_path / "report.png"
    report = check_page(browser, path, screenshot=shot)
    assert report.ok, report
    assert report.images == len(SIZES) * len(COLUMNS)
    with Image.open(shot) as im:
        assert im.format == "PNG" and im.size[0] == 1280 and im.size[1] > 300
        assert len(set(im.convert("RGB").getdata())) > 50  # a rendered page, not a blank one
    print(f"screenshot: {shot}")


def test_browser_sorts_a_column_on_header_clicks(browser, tmp_path):
    page = browser.open(_write(tmp_path / "report.html"))
    assert page.evaluate(_COLUMN.format(0)) == ["low-res", "high-res", "refined", "LayerCAM"]
    page.click("table.sortable th:nth-child(2)")  # pointing game, ascending
    assert page.evaluate(_COLUMN.format(0)) == ["LayerCAM", "low-res", "refined", "high-res"]
    page.click("table.sortable th:nth-child(2)")  # descending
    assert page.evaluate(_COLUMN.format(0)) == ["high-res", "refined", "low-res", "LayerCAM"]
    page.click("table.sortable th:nth-child(3)")  # IoU: numbers in order, missing values last
    assert page.evaluate(_COLUMN.format(2)) == ["0.200", "0.310", "–", "–"]
    page.click("table.sortable th:nth-child(1)")  # text column
    assert page.evaluate(_COLUMN.format(0)) == ["high-res", "LayerCAM", "low-res", "refined"]
    assert page.errors == []


def test_browser_filter_hides_correct_predictions(browser, tmp_path):
    page = browser.open(_write(tmp_path / "report.html"))
    visible = "Array.from(document.querySelectorAll('#gallery tbody tr')).map(r => r.getClientRects().length > 0)"
    assert page.evaluate(visible) == [True, True, True, True]
    page.click("#only-wrong")
    assert page.evaluate("document.getElementById('only-wrong').checked") is True
    assert page.evaluate(visible) == [False, True, False, True]  # rows 1 and 3 are the wrong ones
    assert page.evaluate("document.getElementById('shown').textContent") == "2"
    page.click("#only-wrong")
    assert page.evaluate(visible) == [True, True, True, True]
    assert page.errors == []


def test_browser_check_catches_a_broken_image_and_a_javascript_error(browser, tmp_path):
    text = _write(tmp_path / "good.html").read_text(encoding="utf-8")
    first = _data_uris(text)[0]
    broken = text.replace(first, "iVBORw0KGgoAAAANSUhEUgAAAAEAAAAB" + "corrupt" * 4, 1)
    broken = broken.replace("</body>", "<script>window.undefinedReportFunction();</script></body>")
    (tmp_path / "broken.html").write_text(broken, encoding="utf-8")
    report = check_page(browser, tmp_path / "broken.html")
    assert not report.ok
    assert len(report.broken_images) == 1 and report.broken_images[0].startswith("data:image/png;base64,iVBOR")
    assert report.images == len(SIZES) * len(COLUMNS)
    assert len(report.errors) == 1 and "undefinedReportFunction" in report.errors[0]

    (tmp_path / "console.html").write_text(text.replace("</body>", "<script>console.error('bad');</script></body>"))
    assert check_page(browser, tmp_path / "console.html").errors == ["console.error: bad"]
    # a missing image file is caught too
    (tmp_path / "missing.html").write_text("<!DOCTYPE html><body><img src='nowhere.png'></body>")
    missing = check_page(browser, tmp_path / "missing.html")
    assert not missing.ok and len(missing.broken_images) == 1


# --------------------------------------------------------------------------- report blocks, saved examples


def test_markdown_report_blocks_become_the_same_page(tmp_path):
    from hrcam.viz.html_report import write_report_html
    from hrcam.viz.report import Figure, Table

    Image.fromarray(np.full((6, 9, 3), 200, np.uint8)).save(tmp_path / "fig.png")
    blocks = ["Intro with **bold**, *italic* and `code`.\n\n- one\n- two", Table("Times", ["stage", "s"], [["a", 1.25]],
              digits=1, note="see `stages.json`"), Figure("fig.png", "A *figure*")]
    page = write_report_html(tmp_path / "report.html", "T", blocks, [Table("Extra", ["m", "v"], [["x", 0.5]])])
    text = page.read_text(encoding="utf-8")
    order = [text.index(s) for s in ("<p>Intro with <b>bold</b>, <i>italic</i> and <code>code</code>.</p>",
                                     "<ul><li>one</li><li>two</li></ul>", "<h2>Times</h2>", '<td data-v="1.25">1.2</td>',
                                     "see <code>stages.json</code>", "<figcaption>A <i>figure</i></figcaption>",
                                     "<h3>Other methods</h3>", "<h2>Extra</h2>")]
    assert order == sorted(order)
    (uri,) = _data_uris(text)
    assert base64.b64decode(uri) == (tmp_path / "fig.png").read_bytes()
    with pytest.raises(ValueError, match="figure 'gone.png': no such file"):
        write_report_html(tmp_path / "r2.html", "T", [Figure("gone.png")])


def test_gallery_from_examples_columns_scores_and_ground_truth():
    mask = np.zeros((8, 8), bool)
    mask[:4, :4] = True  # a quarter of the image
    inside = mask.astype(float)  # all of the map's mass in the mask
    flat = np.ones((8, 8))  # spread evenly: a quarter inside
    examples = {"image": np.full((2, 8, 8, 3), 0.5), "label": [1, 0], "pred": [1, 1],
                "mask": [mask, None], "boxes": [[[0, 0, 4, 4]], []], "low": np.stack([inside, flat]),
                "high": np.stack([flat, inside]), "unused": np.zeros((2, 8, 8))}
    g = html_report.gallery_from_examples(examples, {"low": "low-res", "high": "high-res", "missing": "x"},
                                          class_names=["cat", "dog"])
    assert g["columns"] == ["image", "low-res", "high-res", "ground truth"]
    r0, r1 = g["rows"]
    assert (r0["label"], r0["pred"], r0["correct"], r1["label"], r1["correct"]) == ("dog", "dog", True, "cat", False)
    assert r0["scores"] == pytest.approx({"energy PG, low-res": 1.0, "energy PG, high-res": 0.25})
    assert r1["scores"] == {}  # no mask, no score
    gt = r0["images"][-1]
    assert gt[0, 0].tolist() == [1.0, 0.0, 0.0] and gt[3, 3].tolist() == [1.0, 0.0, 0.0]  # box corners in red
    assert gt[2, 2] == pytest.approx([0.5 * 0.35 + 0.65] * 3) and gt[6, 6] == pytest.approx([0.5 * 0.35] * 3)
