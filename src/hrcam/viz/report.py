"""Markdown reports: tables, figures and free text assembled into one page.

A report is a list of blocks — :class:`Table`, :class:`Figure` or plain Markdown strings —
rendered in order by :func:`render_report`. Other parts of hrcam (or users) extend a report by
passing more tables in ``extra_tables`` (e.g. ``hrcam compare``'s faithfulness table); they are
appended under their own headings.

    from hrcam.viz.report import Table, Figure, write_report
    t = Table("Localization", ["map", "pointing game"], [["low-res", 0.71], ["high-res", 0.80]])
    write_report("results/demo/report.md", "Demo", [t, Figure("gallery.png", "Test images")])
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Table", "Figure", "format_value", "markdown_table", "render_report", "write_report",
           "table_from_records"]


@dataclass
class Table:
    """A titled table: ``columns`` (header strings) and ``rows`` (one list of cells per row)."""

    title: str
    columns: list[str]
    rows: list[list] = field(default_factory=list)
    note: str = ""
    digits: int = 3

    def __post_init__(self):
        for i, row in enumerate(self.rows):
            if len(row) != len(self.columns):
                raise ValueError(
                    f"table {self.title!r}: row {i} has {len(row)} cells for {len(self.columns)} columns")

    def add_row(self, row: list) -> None:
        if len(row) != len(self.columns):
            raise ValueError(f"table {self.title!r}: a row needs {len(self.columns)} cells, got {len(row)}")
        self.rows.append(list(row))

    def to_dict(self) -> dict:
        return {"title": self.title, "columns": list(self.columns), "rows": [list(r) for r in self.rows],
                "note": self.note}


@dataclass
class Figure:
    """An image on the page: ``path`` relative to the report's folder, with a caption."""

    path: str
    caption: str = ""


def table_from_records(title: str, records: dict[str, dict], keys: list[tuple[str, str]],
                       first_column: str = "", note: str = "", digits: int = 3) -> Table:
    """A table with one row per record: ``records = {row name: {key: value}}``, ``keys`` the
    ``(key, column header)`` pairs to show (missing values print as "–")."""
    rows = [[name] + [rec.get(k) for k, _ in keys] for name, rec in records.items()]
    return Table(title, [first_column] + [h for _, h in keys], rows, note=note, digits=digits)


def format_value(v, digits: int = 3) -> str:
    """Cells: floats with ``digits`` decimals, NaN/None as "–", everything else ``str``."""
    if v is None:
        return "–"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        if math.isnan(v):
            return "–"
        return f"{v:.{digits}f}"
    try:
        import numpy as np

        if isinstance(v, np.floating):
            return format_value(float(v), digits)
        if isinstance(v, np.integer):
            return str(int(v))
    except ImportError:  # pragma: no cover
        pass
    return str(v).replace("|", "\\|").replace("\n", " ")


def markdown_table(table: Table, level: int = 3) -> str:
    """The table as a GitHub-flavoured Markdown block with its title as a heading."""
    lines = [f"{'#' * level} {table.title}", ""]
    lines.append("| " + " | ".join(format_value(c) for c in table.columns) + " |")
    lines.append("|" + "|".join(["---"] + ["---:"] * (len(table.columns) - 1)) + "|")
    for row in table.rows:
        lines.append("| " + " | ".join(format_value(c, table.digits) for c in row) + " |")
    if table.note:
        lines += ["", table.note]
    return "\n".join(lines) + "\n"


def render_report(title: str, blocks: list, extra_tables: list[Table] = (),
                  extra_title: str = "Other methods") -> str:
    """Markdown for ``blocks`` (tables, figures, strings) followed by ``extra_tables``."""
    out = [f"# {title}\n"]
    for block in blocks:
        if isinstance(block, Table):
            out.append(markdown_table(block))
        elif isinstance(block, Figure):
            out.append(f"![{block.caption}]({block.path})\n\n*{block.caption}*\n" if block.caption
                       else f"![]({block.path})\n")
        elif isinstance(block, str):
            out.append(block.rstrip() + "\n")
        else:
            raise ValueError(f"a report block must be a Table, Figure or str, got {type(block).__name__}")
    extra = list(extra_tables)
    if extra:
        out.append(f"## {extra_title}\n")
        out.extend(markdown_table(t) for t in extra)
    return "\n".join(out)


def write_report(path, title: str, blocks: list, extra_tables: list[Table] = (),
                 extra_title: str = "Other methods") -> Path:
    """Render and write the report atomically; returns its path (parent folders are created).

    :func:`hrcam.viz.html_report.write_report_html` writes the same blocks as one HTML page.
    """
    from hrcam.fileio import write_text

    path = Path(path)
    write_text(path, render_report(title, blocks, extra_tables, extra_title))
    return path
