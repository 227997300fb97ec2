"""The demo's gallery: a grid of test images with their maps and ground truth (Matplotlib, no pyplot)."""
from __future__ import annotations

import numpy as np

#: the default columns and their headers
DEFAULT_COLUMNS = {"low": "low-res CAM", "high": "high-res CAM", "refined": "refined"}


def gallery_figure(examples: dict, path, n: int = 16, title: str = "", columns: dict | None = None):
    """Rows of test images: image (true/predicted class) | one heat-map overlay per map kind |
    ground truth (mask, box outlined).

    ``columns`` maps the kinds of ``examples`` to draw onto their headers (default: low-res,
    high-res, refined); kinds missing from ``examples`` are skipped.
    """
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from hrcam.viz.plotting import overlay

    columns = DEFAULT_COLUMNS if columns is None else columns
    kinds = [k for k in columns if k in examples]
    n = min(n, len(examples["image"]))
    cols = 1 + len(kinds) + 1
    fig = Figure(figsize=(1.6 * cols, 1.6 * n + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, cols))
    headers = ["image", *(columns[k] for k in kinds), "ground truth"]
    for r in range(n):
        img = np.clip(examples["image"][r], 0, 1)
        panels = [img] + [overlay(img, examples[k][r]) for k in kinds]
        mask = examples["mask"][r]
        gt = img * 0.35 + 0.65 * (mask[..., None] if mask is not None else 0)
        panels.append(np.clip(gt, 0, 1))
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(headers[c], fontsize=9)
        for x0, y0, x1, y1 in examples["boxes"][r]:
            axes[r, -1].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                            edgecolor="red", linewidth=1))
        axes[r, 0].set_ylabel(f"{examples['label'][r]} → {examples['pred'][r]}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=80)
    return fig
