"""Figures: the heat-map overlay (values by hand) and the pipeline figure (structure, saving)."""
from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from PIL import Image

from hrcam.viz import plotting


def test_overlay_blends_image_and_colormap_by_hand():
    img = np.full((2, 3, 3), 0.2)
    cam = np.array([[0.0, 1.0, 2.0], [2.0, 2.0, 0.0]])  # norm → 0, .5, 1, ...
    jet = matplotlib.colormaps["jet"]
    out = plotting.overlay(img, cam, alpha=0.25)
    assert out.shape == (2, 3, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out[0, 0], 0.75 * 0.2 + 0.25 * np.array(jet(0.0)[:3]))
    np.testing.assert_allclose(out[0, 1], 0.75 * 0.2 + 0.25 * np.array(jet(0.5)[:3]))
    np.testing.assert_allclose(out[1, 0], 0.75 * 0.2 + 0.25 * np.array(jet(1.0)[:3]))


def test_overlay_alpha_ends_and_uint8_and_seed_shapes():
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (1, 8, 6, 3), dtype=np.uint8)  # seed form, uint8
    np.testing.assert_allclose(plotting.overlay(img8, rng.random((8, 6)), alpha=0), img8[0] / 255)
    out = plotting.overlay(img8, np.ones((2, 2)), alpha=1.0, cmap="gray")  # constant map → 0 → black
    np.testing.assert_allclose(out, 0.0)
    small = plotting.overlay(img8[0], rng.random((2, 3)))  # low-res map is resized to the image
    assert small.shape == (8, 6, 3) and 0 <= small.min() and small.max() <= 1


@pytest.mark.parametrize("kw,match", [({"alpha": 1.5}, "alpha"), ({"cmap": "nope"}, "cmap")])
def test_overlay_rejects_bad_options(kw, match):
    with pytest.raises(ValueError, match=match):
        plotting.overlay(np.zeros((4, 4, 3)), np.zeros((4, 4)), **kw)


def test_overlay_rejects_nan_maps():
    cam = np.zeros((4, 4))
    cam[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        plotting.overlay(np.zeros((4, 4, 3)), cam)


def test_save_overlay_writes_the_8bit_overlay(tmp_path):
    img = np.full((5, 7, 3), 0.5)
    path = plotting.save_overlay(tmp_path / "sub" / "o.png", img, np.zeros((5, 7)), alpha=0.0)
    back = np.asarray(Image.open(path))
    assert back.shape == (5, 7, 3) and np.all(back == 128)


def test_pipeline_figure_has_every_step_and_saves(tmp_path):
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    img = rng.random((32, 40, 3))
    high = ndi.gaussian_filter(rng.standard_normal((32, 40)), 2)
    low = rng.random((2, 3))
    fig = plotting.pipeline(img, low, high, save=tmp_path / "fig.png", focal_scope="local", figsize=(8, 5))
    titles = [ax.get_title() for ax in fig.axes]
    assert len(fig.axes) == 15
    for step in ("original image", "high-res CAM", "1. blurred", "2. edges", "4. edges in the ROI",
                 "low-res CAM", "3. resized", "3. region of interest", "5. focal points",
                 "6. region growing", "7. filled", "8. merged", "9. result"):
        assert any(t.startswith(step) for t in titles), step
    hist = fig.axes[4]
    lines = [ln.get_xdata()[0] for ln in hist.lines]  # the lower and upper bounds
    from hrcam import pipeline

    assert lines == pytest.approx(list(pipeline(img, low, high, focal_scope="local")["bounds"]))
    assert (tmp_path / "fig.png").stat().st_size > 10_000


def test_pipeline_figure_validates_parameters():
    with pytest.raises(ValueError, match="merge_type"):
        plotting.pipeline(np.zeros((8, 8, 3)), np.ones((2, 2)), np.ones((8, 8)), merge_type="x")


def test_import_hrcam_stays_light():
    import subprocess
    import sys

    code = "import sys, hrcam; hrcam.__version__; print('matplotlib' in sys.modules, 'skimage' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


def test_pipeline_figure_keeps_its_earlier_name():
    # plotting.pipeline draws; postprocessing.pipeline computes: the figure has its own name now
    from hrcam.postprocessing import pipeline as compute

    assert plotting.pipeline is plotting.pipeline_figure and plotting.pipeline_figure is not compute
