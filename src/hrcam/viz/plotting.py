"""Figures: heat-map overlays and the seed's step-by-step post-processing figure.

Everything here builds :class:`matplotlib.figure.Figure` objects directly (no ``pyplot``), so it
works headless (Agg) and never changes the user's Matplotlib backend or global state.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from hrcam.normalization import minmax_normalize

__all__ = ["overlay", "save_overlay", "save_image", "pipeline_figure", "pipeline", "as_display_image"]


def as_display_image(img) -> np.ndarray:
    """One image (H×W×C, 1×H×W×C or H×W; uint8 or float in [0, 1]) as float H×W×3 in [0, 1]."""
    if hasattr(img, "detach"):
        img = img.detach().cpu().numpy()
    a = np.asarray(img)
    if a.ndim == 4 and a.shape[0] == 1:
        a = a[0]
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        a = np.repeat(a[..., None], 3, axis=-1)
    if a.ndim != 3 or a.shape[-1] not in (3, 4):
        raise ValueError(f"img must be H×W×3, 1×H×W×3 or H×W, got shape {np.shape(img)}")
    a = a[..., :3]
    if a.dtype == np.uint8:
        return a.astype(np.float64) / 255.0
    if not np.issubdtype(a.dtype, np.number):
        raise ValueError(f"img must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.isfinite(a).all():
        raise ValueError("img contains NaN or inf")
    return np.clip(a, 0.0, 1.0)


def _map_2d(cam, name: str, shape: tuple[int, int] | None = None) -> np.ndarray:
    if hasattr(cam, "detach"):
        cam = cam.detach().cpu().numpy()
    m = np.asarray(cam, dtype=np.float64)
    m = m.reshape(m.shape[-2:]) if m.ndim > 2 and all(s == 1 for s in m.shape[:-2]) else m
    if m.ndim != 2 or m.size == 0:
        raise ValueError(f"{name} must be a 2-D map, got shape {np.shape(cam)}")
    if not np.isfinite(m).all():
        raise ValueError(f"{name} contains NaN or inf")
    if shape is not None and m.shape != tuple(shape):
        from hrcam.postprocessing.filters import resize_bilinear

        m = resize_bilinear(m[None], shape)[0].astype(np.float64)
    return m


def overlay(img, cam, alpha: float = 0.5, cmap: str = "jet") -> np.ndarray:
    """Heat map of ``cam`` on ``img``: ``(1 − alpha)·img + alpha·cmap(norm(cam))``.

    ``cam`` (any size; resized bilinearly to the image) is min-max normalized (constant → 0).
    Returns float H×W×3 in [0, 1].
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float, np.floating)) or not 0 <= alpha <= 1:
        raise ValueError(f"alpha must be a number in [0, 1], got {alpha!r}")
    import matplotlib

    try:
        colormap = matplotlib.colormaps[cmap]
    except KeyError:
        raise ValueError(f"cmap must be a Matplotlib colormap name, got {cmap!r}") from None
    base = as_display_image(img)
    m = _map_2d(cam, "cam", base.shape[:2])
    m = minmax_normalize(m[None])[0]
    heat = colormap(m)[..., :3]
    return (1.0 - alpha) * base + alpha * heat


def save_overlay(path, img, cam, alpha: float = 0.5, cmap: str = "jet") -> Path:
    """Write :func:`overlay` as an 8-bit image file (format from the suffix, e.g. ``.png``)."""
    return save_image(path, overlay(img, cam, alpha=alpha, cmap=cmap))


def save_image(path, img) -> Path:
    """Write one image (any form :func:`as_display_image` takes) as an 8-bit file; no pyplot involved."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.round(as_display_image(img) * 255).astype(np.uint8)).save(path)
    return path


def _arrow(fig, ax_from, ax_to, horizontal: bool = True) -> None:
    from matplotlib.patches import ConnectionPatch

    a, b = ((1.0, 0.5), (0.0, 0.5)) if horizontal else ((0.5, 0.0), (0.5, 1.0))
    fig.add_artist(
        ConnectionPatch(xyA=a, coordsA=ax_from.transAxes, xyB=b, coordsB=ax_to.transAxes,
                        arrowstyle="->", color="0.3", lw=1.5, shrinkA=2, shrinkB=2)
    )


def pipeline_figure(img, low, high, save=None, figsize=(16, 10), cmap: str = "viridis", **params):
    """The seed's step-by-step figure of the post-processing pipeline; returns the Figure.

    (It draws what :func:`hrcam.postprocessing.pipeline` computes; ``plotting.pipeline`` is the
    same function under its earlier name.)

    Three rows, read left to right (arrows show the data flow):

    1. original image → high-res CAM → 1. blurred → 2. edges (Sobel) → histogram of the edges
       inside the ROI with the region-growing bounds (25th / 75th percentiles);
    2. low-res CAM → 3. resized → ROI → 5. focal points → the band ``lower ≤ edges ≤ upper``;
    3. 6. segmented (region growing) → 7. filled → 8. merged (the refined CAM) → 9. result →
       refined CAM over the image.

    ``params`` are the pipeline's (see :func:`hrcam.postprocessing.pipeline`); ``save`` is an
    optional path to write the figure to.
    """
    from matplotlib.figure import Figure

    from hrcam.postprocessing import pipeline as run_pipeline

    steps = run_pipeline(img, low, high, **params)
    image = as_display_image(img)
    lower, upper = steps["bounds"]
    edges, roi = steps["edges"], steps["roi"]

    fig = Figure(figsize=figsize, layout="constrained")
    axes = fig.subplots(3, 5, gridspec_kw={"wspace": 0.08, "hspace": 0.08})

    def show(ax, data, title, **kw):
        ax.imshow(data, **kw)
        ax.set_title(title, fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])

    show(axes[0, 0], image, "original image")
    show(axes[0, 1], np.asarray(high, dtype=float).reshape(edges.shape), "high-res CAM", cmap=cmap)
    show(axes[0, 2], steps["blurred"], "1. blurred (5×5 mean)", cmap=cmap)
    show(axes[0, 3], edges, "2. edges (Sobel)", cmap=cmap)
    hist_ax = axes[0, 4]
    values = edges[roi] if roi.any() else edges.ravel()
    hist_ax.hist(values, bins=40, color="0.55")
    for x, name in ((lower, "lower"), (upper, "upper")):
        hist_ax.axvline(x, color="C1", lw=1.5)
        hist_ax.annotate(name, (x, 1.0), xycoords=("data", "axes fraction"), ha="center",
                         va="bottom", color="C1", fontsize=8)
    hist_ax.set_title("4. edges in the ROI: bounds", fontsize=10, pad=14)
    hist_ax.set_yticks([])
    hist_ax.tick_params(labelsize=7)

    low_map = np.asarray(steps["low"])
    show(axes[1, 0], low_map, f"low-res CAM ({low_map.shape[0]}×{low_map.shape[1]})", cmap=cmap)
    show(axes[1, 1], steps["low_resized"], "3. resized (bilinear)", cmap=cmap)
    show(axes[1, 2], roi, "3. region of interest", cmap="gray")
    show(axes[1, 3], steps["low_resized"], "5. focal points", cmap=cmap, alpha=0.6)
    if steps["focal_points"]:
        xs, ys = zip(*steps["focal_points"])
        axes[1, 3].scatter(xs, ys, marker="x", s=18, c="red", linewidths=1)
    show(axes[1, 4], (edges >= lower) & (edges <= upper), "band: lower ≤ edges ≤ upper", cmap="gray")

    show(axes[2, 0], steps["segmented"], "6. region growing", cmap="gray")
    show(axes[2, 1], steps["full_segment"], "7. filled (+ strong ROI edges)", cmap="gray")
    show(axes[2, 2], steps["merged"], "8. merged = refined CAM", cmap=cmap, vmin=0, vmax=1)
    show(axes[2, 3], as_display_image(steps["result"]) if np.asarray(steps["result"]).dtype == np.uint8
         else np.clip(np.asarray(steps["result"], dtype=float), 0, 1), "9. result")
    show(axes[2, 4], overlay(image, steps["merged"]), "refined CAM on the image")

    for row in range(3):
        for col in range(4):
            _arrow(fig, axes[row, col], axes[row, col + 1])
    fig.suptitle("HR-CAM post-processing pipeline", fontsize=12)
    if save is not None:
        save = Path(save)
        save.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(save, dpi=100)
    return fig


#: the earlier name of :func:`pipeline_figure` (kept: scripts and the README call it)
pipeline = pipeline_figure
