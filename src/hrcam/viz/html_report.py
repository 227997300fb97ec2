"""Self-contained HTML reports: sortable metric tables and a per-image gallery in one file.

The page needs no network: images are inline ``data:image/png;base64,`` URIs, and the few lines
of CSS and vanilla JavaScript (click a header to sort; "show only wrong predictions") are inline.
The gallery takes already-rendered RGB pictures (e.g. :func:`hrcam.viz.plotting.overlay`);
:func:`gallery_from_examples` renders them from the examples a gallery figure is drawn from
(image, label, prediction, mask, boxes, one map per kind), so new map kinds show up as new
columns. :func:`write_report_html` writes a Markdown report's blocks
(:func:`hrcam.viz.report.write_report`) as this page.

    from hrcam.viz.html_report import write_html_report
    write_html_report("results/demo/report.html", title="Demo",
                      tables=[{"title": "Localization", "columns": ["map", "pointing game"],
                               "rows": [["low-res", 0.71], ["high-res", 0.80]]}],
                      gallery={"columns": ["image", "high-res CAM"],
                               "rows": [{"label": "cat", "pred": "dog", "correct": False,
                                         "images": [img, heat_rgb], "scores": {"IoU": 0.4}}]})
"""
from __future__ import annotations

import base64
import io
import math
import re
from html import escape
from pathlib import Path

__all__ = ["render_html_report", "write_html_report", "write_report_html", "png_data_uri", "gallery_from_examples",
           "ground_truth_panel"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
table.sortable th{cursor:pointer;background:#f2f2f2;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
#gallery td,#gallery th{text-align:center}#gallery td.info{text-align:left;white-space:nowrap}
#gallery img{width:128px;height:auto;image-rendering:pixelated}
img.figure{max-width:100%}figcaption{color:#555;font-size:.9em}code{background:#f4f4f4;padding:0 .2em}
tr.wrong td.info{background:#fde8e8}.ok{color:#17803d}.bad{color:#c0262d;font-weight:bold}
.note{color:#555;font-size:.9em}
"""

_JS = """
(function(){
function key(td){var v=td.getAttribute("data-v");if(v!==null)return{n:parseFloat(v)};
  var t=td.textContent.trim();return t===""||t==="\\u2013"?{m:1}:{s:t};}
function cmp(a,b){if(a.n!==undefined&&b.n!==undefined)return a.n-b.n;
  if(a.n!==undefined)return -1;if(b.n!==undefined)return 1;
  return a.s.localeCompare(b.s,undefined,{numeric:true});}
document.querySelectorAll("table.sortable th").forEach(function(th){
  th.addEventListener("click",function(){
    var table=th.closest("table"),body=table.tBodies[0],i=th.cellIndex;
    var asc=th.getAttribute("aria-sort")!=="ascending";
    table.querySelectorAll("th").forEach(function(h){h.removeAttribute("aria-sort");});
    th.setAttribute("aria-sort",asc?"ascending":"descending");
    var rows=Array.prototype.slice.call(body.rows);
    rows.sort(function(r1,r2){var a=key(r1.cells[i]),b=key(r2.cells[i]);
      if(a.m||b.m)return(a.m?1:0)-(b.m?1:0);return asc?cmp(a,b):cmp(b,a);});
    rows.forEach(function(r){body.appendChild(r);});});});
var box=document.getElementById("only-wrong");
if(box){var apply=function(){var shown=0;
  document.querySelectorAll("#gallery tbody tr").forEach(function(r){
    r.hidden=box.checked&&r.getAttribute("data-correct")==="1";if(!r.hidden)shown++;});
  document.getElementById("shown").textContent=shown;};
  box.addEventListener("change",apply);apply();}
})();
"""


def _number(v) -> float | None:
    """``v`` as a float when it is a real number (not bool), else None."""
    import numpy as np

    return float(v) if isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) else None


def _cell(v, digits: int = 3, tag: str = "td") -> str:
    """One escaped cell; finite numbers carry their value in ``data-v`` for the sort."""
    from hrcam.viz.report import format_value

    x = _number(v)
    if x is not None and math.isfinite(x):
        return f'<{tag} data-v="{x!r}">{escape(format_value(v, digits))}</{tag}>'
    text = v if isinstance(v, str) else format_value(v, digits)  # None and NaN → "–"
    return f"<{tag}>{escape(text)}</{tag}>"


def png_data_uri(image) -> str:
    """An image (H×W×3 / H×W, uint8 or float in [0, 1]) as a ``data:image/png;base64,`` URI."""
    import numpy as np
    from PIL import Image

    from hrcam.viz.plotting import as_display_image

    rgb = np.round(as_display_image(image) * 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def _inline(text: str) -> str:
    """Escaped text with the little Markdown hrcam's reports use: **bold**, *italic*, `code`."""
    out = escape(str(text))
    out = re.sub(r"\*\*(.+?)\*\*", r"<b>\1</b>", out)
    out = re.sub(r"(?<![\w*])\*([^*\s][^*]*?)\*(?![\w*])", r"<i>\1</i>", out)
    return re.sub(r"`([^`]+)`", r"<code>\1</code>", out)


def _markdown(text: str) -> str:
    """A Markdown text block as HTML: headings (#), bullet lists (- ) and paragraphs."""
    out = []
    for para in re.split(r"\n\s*\n", str(text).strip()):
        lines = [ln.strip() for ln in para.splitlines() if ln.strip()]
        if not lines:
            continue
        heading = re.match(r"(#{1,4})\s+(.*)", lines[0])
        if heading and len(lines) == 1:
            level = min(len(heading.group(1)) + 1, 4)  # the page title is the only <h1>
            out.append(f"<h{level}>{_inline(heading.group(2))}</h{level}>")
        elif all(ln.startswith("- ") for ln in lines):
            out.append("<ul>" + "".join(f"<li>{_inline(ln[2:])}</li>" for ln in lines) + "</ul>")
        else:
            out.append("<p>" + "<br>".join(_inline(ln) for ln in lines) + "</p>")
    return "\n".join(out)


def _figure(fig, figures_dir) -> str:
    """A report Figure (``path`` relative to ``figures_dir``, ``caption``) embedded as a data URI."""
    path = Path(figures_dir or ".") / fig.path
    if not path.is_file():
        raise ValueError(f"figure {fig.path!r}: no such file {path}")
    uri = "data:image/png;base64," + base64.b64encode(path.read_bytes()).decode("ascii")
    caption = f"<figcaption>{_inline(fig.caption)}</figcaption>" if fig.caption else ""
    return f'<figure><img class="figure" alt="{escape(str(fig.path))}" src="{uri}">{caption}</figure>'


def _block(block, figures_dir) -> str:
    if isinstance(block, str):
        return _markdown(block)
    if hasattr(block, "path") and hasattr(block, "caption"):
        return _figure(block, figures_dir)
    return _table(block)


def _table(t) -> str:
    digits = getattr(t, "digits", None)
    t = t.to_dict() if hasattr(t, "to_dict") else t
    digits = t.get("digits", 3) if digits is None else digits
    columns, rows = list(t["columns"]), list(t.get("rows", []))
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"table {t['title']!r}: row {i} has {len(row)} cells for {len(columns)} columns")
    out = [f"<h2>{escape(str(t['title']))}</h2>", '<table class="sortable"><thead><tr>']
    out += [f'<th title="click to sort">{escape(str(c))}</th>' for c in columns]
    out.append("</tr></thead><tbody>")
    out += ["<tr>" + "".join(_cell(v, digits) for v in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    if t.get("note"):
        out.append(f'<p class="note">{_inline(t["note"])}</p>')
    return "\n".join(out)


def _gallery(g: dict) -> str:
    columns = [str(c) for c in g["columns"]]
    rows = list(g.get("rows", []))
    wrong = sum(1 for r in rows if not r.get("correct", True))
    out = ["<h2>Gallery</h2>",
           f'<p><label><input type="checkbox" id="only-wrong"> show only wrong predictions</label>'
           f' — showing <span id="shown">{len(rows)}</span> of {len(rows)} images ({wrong} wrong)</p>',
           '<table id="gallery"><thead><tr><th>class / prediction</th>'
           + "".join(f"<th>{escape(c)}</th>" for c in columns) + "</tr></thead><tbody>"]
    for i, r in enumerate(rows):
        images = list(r.get("images", []))
        if len(images) != len(columns):
            raise ValueError(f"gallery row {i} has {len(images)} images for {len(columns)} columns")
        ok = bool(r.get("correct", True))
        scores = "".join(f"<br>{escape(str(k))}: {_cell(v, tag='b')}"
                         for k, v in dict(r.get("scores", {})).items())
        info = (f'<td class="info"><b>{escape(str(r.get("label", "")))}</b><br>'
                f'pred: {escape(str(r.get("pred", "")))} '
                f'<span class="{"ok" if ok else "bad"}">{"✓" if ok else "✗ wrong"}</span>{scores}</td>')
        cells = "".join(f'<td><img alt="{escape(c)}" src="{png_data_uri(im)}"></td>'
                        for c, im in zip(columns, images))
        out.append(f'<tr class="{"correct" if ok else "wrong"}" data-correct="{int(ok)}">{info}{cells}</tr>')
    out.append("</tbody></table>")
    return "\n".join(out)


def ground_truth_panel(image, mask=None, boxes=()):
    """The ground-truth picture of the galleries: the image dimmed, the mask bright, boxes in red."""
    import numpy as np

    from hrcam.viz.plotting import as_display_image

    img = as_display_image(image)
    img = img if img.ndim == 3 else np.repeat(img[..., None], 3, axis=2)
    panel = img * 0.35 + (0.65 * np.asarray(mask, dtype=np.float64)[..., None] if mask is not None else 0.0)
    panel = np.clip(panel, 0.0, 1.0)
    h, w = panel.shape[:2]
    for box in boxes if boxes is not None else ():
        x0, y0, x1, y1 = (int(round(float(v))) for v in box)
        x0, x1 = max(0, min(x0, w - 1)), max(0, min(x1 - 1, w - 1))
        y0, y1 = max(0, min(y0, h - 1)), max(0, min(y1 - 1, h - 1))
        panel[y0:y1 + 1, [x0, x1]] = (1.0, 0.0, 0.0)
        panel[[y0, y1], x0:x1 + 1] = (1.0, 0.0, 0.0)
    return panel


def gallery_from_examples(examples: dict, columns: dict, n: int | None = None, class_names=None) -> dict:
    """The ``gallery`` argument of :func:`write_html_report` from a gallery's saved examples.

    ``examples``: ``{"image": N×H×W×3 in [0, 1], "label": N, "pred": N, "mask": N masks (or
    None), "boxes": N lists of [x0, y0, x1, y1], <kind>: N maps}`` — the dict
    :func:`hrcam.viz.gallery.gallery_figure` draws. ``columns``: ``{kind: header}``; kinds
    missing from ``examples`` are skipped. Columns: image, one heat-map overlay
    (:func:`hrcam.viz.plotting.overlay`) per kind, ground truth. Per-image scores: the energy
    pointing game (share of the map inside the mask) of every kind, where a mask exists.
    """
    import numpy as np

    from hrcam.metrics.localization import energy_pointing_game
    from hrcam.viz.plotting import overlay

    kinds = [k for k in columns if k in examples]
    count = len(examples["image"]) if n is None else min(n, len(examples["image"]))
    masks = examples.get("mask")
    boxes = examples.get("boxes")

    def name(c) -> str:
        c = int(c)
        return str(class_names[c]) if class_names is not None and 0 <= c < len(class_names) else str(c)

    rows = []
    for i in range(count):
        img = np.clip(np.asarray(examples["image"][i], dtype=np.float64), 0.0, 1.0)
        mask = None if masks is None or masks[i] is None else np.asarray(masks[i], dtype=bool)
        scores = {}
        if mask is not None and mask.any():
            for k in kinds:
                scores[f"energy PG, {columns[k]}"] = float(energy_pointing_game(np.asarray(examples[k][i])[None],
                                                                               mask[None])[0])
        label, pred = int(examples["label"][i]), int(examples["pred"][i])
        rows.append({"label": name(label), "pred": name(pred), "correct": label == pred,
                     "images": [img, *(overlay(img, examples[k][i]) for k in kinds),
                                ground_truth_panel(img, mask, boxes[i] if boxes is not None else ())],
                     "scores": scores})
    return {"columns": ["image", *(columns[k] for k in kinds), "ground truth"], "rows": rows}


def render_html_report(*, title: str, tables, gallery: dict | None = None, notes=(), figures_dir=None) -> str:
    """The whole page as one string (see :func:`write_html_report` for the arguments)."""
    body = [f"<h1>{escape(str(title))}</h1>"]
    body += [f'<p class="note">{escape(str(n))}</p>' for n in notes]
    body += [_block(t, figures_dir) for t in tables]
    if gallery is not None:
        body.append(_gallery(gallery))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(str(title))}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{_JS}</script>\n</body></html>\n")


def write_html_report(path, *, title: str, tables, gallery: dict | None = None, notes=(), figures_dir=None) -> Path:
    """Write one self-contained HTML report to ``path`` atomically; returns the path.

    ``tables``: dicts ``{"title", "columns", "rows", "note"?, "digits"?}`` or
    :class:`hrcam.viz.report.Table`; numbers print with 3 decimals (or ``digits``), None/NaN as
    "–"; every table sorts by a click on its header. The list may also hold the other blocks of a
    Markdown report (:func:`hrcam.viz.report.render_report`), in page order: Markdown strings
    (headings, lists, paragraphs; **bold**, *italic*, `code`) and :class:`hrcam.viz.report.Figure`
    pictures, read from ``figures_dir`` and embedded.
    ``gallery``: ``{"columns": [method names], "rows": [{"label", "pred", "correct", "images":
    [one RGB picture per column], "scores": {name: float}}]}``, with a wrong-predictions filter.
    ``notes``: paragraphs under the title. All text is HTML-escaped. The page is rendered in
    full before anything is written, then replaces ``path`` atomically (:func:`hrcam.fileio.write_text`):
    a failure leaves an existing report untouched.
    """
    from hrcam.fileio import write_text

    text = render_html_report(title=title, tables=tables, gallery=gallery, notes=notes, figures_dir=figures_dir)
    return write_text(path, text)


def write_report_html(path, title: str, blocks: list, extra_tables=(), extra_title: str = "Other methods",
                      gallery: dict | None = None) -> Path:
    """A Markdown report's blocks (:func:`hrcam.viz.report.write_report`'s arguments) as one page.

    Same order as the Markdown: tables (sortable), Markdown strings, figures (read from the
    page's folder and embedded), then ``extra_tables`` under ``extra_title``; ``gallery`` (e.g.
    from :func:`gallery_from_examples`) last. ``report.md`` → ``report.html`` next to it.
    """
    path = Path(path)
    extra = list(extra_tables)
    return write_html_report(path, title=title, figures_dir=path.parent, gallery=gallery,
                             tables=[*blocks, *([f"## {extra_title}", *extra] if extra else [])])
