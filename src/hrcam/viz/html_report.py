"""Self-contained HTML reports: sortable metric tables and a per-image gallery in one file.

The page needs no network: images are inline ``data:image/png;base64,`` URIs, and the few lines
of CSS and vanilla JavaScript (click a header to sort; "show only wrong predictions") are inline.
The gallery takes already-rendered RGB pictures (e.g. :func:`hrcam.viz.plotting.overlay`), so
this module knows nothing about maps.

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
from html import escape
from pathlib import Path

__all__ = ["render_html_report", "write_html_report", "png_data_uri"]

_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}
th,td{border:1px solid #ccc;padding:.3em .6em;text-align:right;vertical-align:top}
th:first-child,td:first-child{text-align:left}
table.sortable th{cursor:pointer;background:#f2f2f2;user-select:none}
th[aria-sort=ascending]::after{content:" \\25B2"}th[aria-sort=descending]::after{content:" \\25BC"}
#gallery td,#gallery th{text-align:center}#gallery td.info{text-align:left;white-space:nowrap}
#gallery img{width:128px;height:auto;image-rendering:pixelated}
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


def _table(t) -> str:
    t = t.to_dict() if hasattr(t, "to_dict") else t
    columns, rows = list(t["columns"]), list(t.get("rows", []))
    for i, row in enumerate(rows):
        if len(row) != len(columns):
            raise ValueError(f"table {t['title']!r}: row {i} has {len(row)} cells for {len(columns)} columns")
    out = [f"<h2>{escape(str(t['title']))}</h2>", '<table class="sortable"><thead><tr>']
    out += [f'<th title="click to sort">{escape(str(c))}</th>' for c in columns]
    out.append("</tr></thead><tbody>")
    out += ["<tr>" + "".join(_cell(v) for v in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    if t.get("note"):
        out.append(f'<p class="note">{escape(str(t["note"]))}</p>')
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


def render_html_report(*, title: str, tables, gallery: dict | None = None, notes=()) -> str:
    """The whole page as one string (see :func:`write_html_report` for the arguments)."""
    body = [f"<h1>{escape(str(title))}</h1>"]
    body += [f'<p class="note">{escape(str(n))}</p>' for n in notes]
    body += [_table(t) for t in tables]
    if gallery is not None:
        body.append(_gallery(gallery))
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{escape(str(title))}</title><style>{_CSS}</style></head>\n<body>\n"
            + "\n".join(body) + f"\n<script>{_JS}</script>\n</body></html>\n")


def write_html_report(path, *, title: str, tables, gallery: dict | None = None, notes=()) -> Path:
    """Write one self-contained HTML report to ``path`` atomically; returns the path.

    ``tables``: dicts ``{"title", "columns", "rows", "note"?}`` (or :class:`hrcam.viz.report.Table`);
    numbers print with 3 decimals, None/NaN as "–"; every table sorts by a click on its header.
    ``gallery``: ``{"columns": [method names], "rows": [{"label", "pred", "correct", "images":
    [one RGB picture per column], "scores": {name: float}}]}``, with a wrong-predictions filter.
    ``notes``: paragraphs under the title. All text is HTML-escaped. The page is rendered in
    full before anything is written, then replaces ``path`` atomically (:func:`hrcam.fileio.write_text`):
    a failure leaves an existing report untouched.
    """
    from hrcam.fileio import write_text

    text = render_html_report(title=title, tables=tables, gallery=gallery, notes=notes)
    return write_text(path, text)
