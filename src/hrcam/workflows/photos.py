"""``hrcam demo photos``: HR-CAM for a pretrained classifier on real photos, with no download.

The offline EfficientNet-Lite0 (ImageNet-1k) classifies scikit-image's bundled photos; its
high-res decoder (:class:`~hrcam.models.pretrained.decoder.DecoderNet`) is trained briefly on the same
photos under the seed's augmentation (plus, when given, more images such as the digits demo
data); then every photo gets its top-5 predictions with names, the low-res CAM, the high-res CAM
and the refined map of the post-processing pipeline, written as one PNG figure and an HTML page.
``animals=True`` is the seed's Animals view: predictions and maps restricted to the first 398
ImageNet classes.
"""
from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hrcam.api.pretrained import ANIMAL_CLASSES
from hrcam.fileio import write_text
from hrcam.models.pretrained.backbones import build_backbone
from hrcam.models.pretrained.decoder import DecoderNet, rank_energy
from hrcam.postprocessing.guided import default_radius, guided_refine
from hrcam.train.recipes import train_decoder_steps

__all__ = ["PHOTOS", "load_photos", "train_decoder_steps", "demo_decoder_options", "run_photo_demo", "decoder_detail",
           "loss_summary", "ANIMAL_CLASSES"]

#: scikit-image photos bundled with the package (no pooch download needed)
PHOTOS = ("chelsea", "coffee", "astronaut", "rocket", "stereo_motorcycle")
#: the seed's Animals subset = the first 398 ImageNet classes


def load_photos(names=PHOTOS, im_size: int = 224) -> tuple[torch.Tensor, list[str]]:
    """The photos as a float tensor N×3×S×S in [0, 1]: centre square crop, antialiased resize."""
    import skimage.data

    images = []
    for name in names:
        a = getattr(skimage.data, name)()
        if isinstance(a, tuple):  # stereo pairs: the left view
            a = a[0]
        a = np.asarray(a)[..., :3]
        h, w = a.shape[:2]
        s = min(h, w)
        top, left = (h - s) // 2, (w - s) // 2
        t = torch.from_numpy(np.ascontiguousarray(a[top:top + s, left:left + s])).permute(2, 0, 1).float() / 255.0
        images.append(F.interpolate(t[None], size=(im_size, im_size), mode="bilinear", align_corners=False,
                                    antialias=True)[0].clamp(0, 1))
    return torch.stack(images), [n.replace("stereo_", "") for n in names]


def demo_decoder_options(objective: str) -> dict:
    """The demos' decoder options: consistency (alone or under faithfulness) with the rank-r low maps as its target."""
    return {"consistency_target": "rank"} if objective in ("consistency", "faithfulness") else {}


@torch.no_grad()
def decoder_detail(net: DecoderNet, x: torch.Tensor) -> float:
    """``‖A_high − upsample(V_r·A)‖ / ‖upsample(V_r·A)‖``: how far the decoder moved the maps
    from the upsampled rank-r low-res maps it starts from (0 for an untrained residual decoder)."""
    out = net.forward_maps(x, high=True)
    base = F.interpolate(torch.einsum("rc,nchw->nrhw", net.head_v, out.low_features), size=x.shape[-2:],
                         mode="bilinear", align_corners=False)
    return float((out.high_features - base).norm() / base.norm())


def loss_summary(history: list[dict[str, float]], window: int = 10) -> dict[str, list[float]]:
    """``{term: [mean of the first window steps, mean of the last window steps]}``."""
    if not history:
        return {}
    w = max(1, min(window, len(history) // 2 or 1))
    return {k: [float(np.mean([h[k] for h in history[:w]])), float(np.mean([h[k] for h in history[-w:]]))]
            for k in history[0]}


def _refine(images: np.ndarray, lows: np.ndarray, highs: np.ndarray):
    """The pipeline's refined (``merged``) maps, or None while the pipeline is not available."""
    try:
        from hrcam.postprocessing.refine import refined_maps
    except ImportError:
        return None
    return refined_maps(images, lows, highs)


def run_photo_demo(out_dir, *, animals: bool = False, steps: int = 300, im_size: int = 224, train_size: int = 128,
                   rank: int = 128, objective: str = "faithfulness", anchor: str = "bilinear", extra_dir=None,
                   names=PHOTOS, batch_size: int = 4, seed: int = 0, progress: bool = True) -> dict[str, Path]:
    """Run the photo demo; returns the paths of the figure, the HTML page and the JSON summary.

    The decoder is fully convolutional: it trains on ``train_size`` crops (cheaper on a CPU) and
    the maps are computed at ``im_size``. The default decoder is the FullModel's ``localize``
    recipe (``faithfulness``, bilinear anchor) with the mask in the low-res CAM's units (the
    pretrained decoder's default, :class:`~hrcam.train.decoder.DecoderModule`).
    """
    import json

    from matplotlib.figure import Figure

    from hrcam.api.seed import compute_cams
    from hrcam.train.decoder import ImageListDataset, find_images
    from hrcam.viz.plotting import overlay, save_image

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    photos, labels = load_photos(names, im_size)
    backbone = build_backbone("efficientnet_lite0")
    if animals:
        backbone = backbone.with_classes(range(ANIMAL_CLASSES))
    net = DecoderNet(backbone, rank=min(rank, backbone.num_classes), anchor=anchor)

    from hrcam.data.transforms import seed_augmentation

    items: list = list(photos)
    if extra_dir is not None:
        files = find_images(extra_dir)
        cap = 8 * len(photos)  # the photos stay the larger share of the training data
        items += files[:: max(1, len(files) // cap)][:cap]  # spread over all class folders
    repeat = max(1, (steps * batch_size) // max(1, len(items)))
    dataset = ImageListDataset(items * min(repeat, 50), min(train_size, im_size), seed_augmentation())
    # consistency against the rank-r low maps: the same gradient as against the true ones (see
    # hrcam.train.decoder), and the logged value leaves out the batch-dependent truncation error,
    # so the first and last steps compare
    history = train_decoder_steps(net, dataset, steps, batch_size=batch_size, objective=objective, seed=seed,
                                  progress=progress, **demo_decoder_options(objective))

    with torch.no_grad():
        res = compute_cams(net, photos, high=True)
        energy = rank_energy(net.low_weight, net.rank, net.backbone.features(photos), classes=res.classes)
        detail = decoder_detail(net, photos)
    probs = res.probs
    top = probs.topk(5, dim=1)
    images = photos.permute(0, 2, 3, 1).numpy()
    lows, highs = res.low.numpy(), res.high.numpy()
    refined = _refine(images, lows, highs)
    # the edge-aware refinement of the digits demo (the hrcam_guided explainer): the high-res map
    # through the colour guided filter, a window of one low-res cell
    guided = guided_refine(photos, res.high, default_radius(im_size, lows.shape[-1])).numpy()

    columns = (["photo", "low-res CAM", "high-res CAM"] + (["refined"] if refined is not None else [])
               + ["high-res + guided filter"])
    fig = Figure(figsize=(3 * len(columns), 3.1 * len(labels)))
    axes = fig.subplots(len(labels), len(columns), squeeze=False)
    summary = []
    strips = []
    for i, label in enumerate(labels):
        preds = [(int(c), net.class_names[int(c)], float(p)) for p, c in zip(top.values[i], top.indices[i])]
        summary.append({"photo": label, "top5": [{"class": c, "name": n, "prob": p} for c, n, p in preds]})
        panels = [images[i], overlay(images[i], lows[i]), overlay(images[i], highs[i])]
        if refined is not None:
            panels.append(overlay(images[i], refined[i]))
        panels.append(overlay(images[i], guided[i]))
        for j, (panel, title) in enumerate(zip(panels, columns)):
            ax = axes[i, j]
            ax.imshow(np.clip(panel, 0, 1))
            ax.set_xticks([])
            ax.set_yticks([])
            if j == 0:
                ax.set_title(label, fontsize=9)
                top5 = "\n".join(f"{p:.0%} {n[:22]}" for _, n, p in preds)
                ax.text(0.02, 0.98, top5, transform=ax.transAxes, fontsize=6.5, va="top", ha="left",
                        bbox={"facecolor": "white", "alpha": 0.75, "edgecolor": "none", "pad": 2})
            else:
                ax.set_title(title, fontsize=9)
        strip = out_dir / f"{label}.png"
        save_image(strip, np.clip(np.concatenate(panels, axis=1), 0, 1))
        strips.append(strip)
    view = "Animals (first 398 ImageNet classes)" if animals else "ImageNet-1k"
    fig.suptitle(f"EfficientNet-Lite0, {view}: CAMs of the top-1 class; decoder {objective}, rank {net.rank}, "
                 f"{steps} steps", fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    figure = out_dir / "photos.png"
    fig.savefig(figure, dpi=90)

    info = {"view": view, "objective": objective, "anchor": anchor, "rank": net.rank, "steps": steps,
            "train_size": min(train_size, im_size), "loss_first_last": loss_summary(history),
            "rank_energy": energy, "decoder_detail": detail,
            "refined": refined is not None, "photos": summary}
    summary_path = out_dir / "photos.json"
    write_text(summary_path, json.dumps(info, indent=2))
    page = out_dir / "index.html"
    write_text(page, _html(info, strips, columns))
    return {"figure": figure, "html": page, "summary": summary_path}


def _html(info: dict, strips: list[Path], columns: list[str]) -> str:
    e = info["rank_energy"]
    rows = []
    for entry, strip in zip(info["photos"], strips):
        preds = "".join(f"<li>{html.escape(p['name'])} (#{p['class']}): {p['prob']:.1%}</li>" for p in entry["top5"])
        rows.append(f"<tr><td><b>{html.escape(entry['photo'])}</b><ol>{preds}</ol></td>"
                    f"<td><img src=\"{html.escape(strip.name)}\" height=\"200\"></td></tr>")
    losses = "; ".join(f"{k} {a:.4g} → {b:.4g}" for k, a, b in
                       ((k, *v) for k, v in (info.get("loss_first_last") or {}).items()))
    note = "" if info["refined"] else "<p>(refined maps: the post-processing pipeline is not installed)</p>"
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>hrcam: pretrained photo demo</title>
<style>body{{font-family:sans-serif;margin:2em}} td{{vertical-align:top;padding:6px}}</style></head>
<body><h1>HR-CAM for a pretrained classifier</h1>
<p>EfficientNet-Lite0 (offline ImageNet weights), view: {html.escape(info['view'])}.
Decoder objective <b>{html.escape(info['objective'])}</b>, rank {info['rank']}, {info['steps']} training steps
on the bundled photos (augmented). Rank-{info['rank']} head: relative Frobenius error of W
{e['weight_rel_error']:.3f}, of the low-res CAMs {e.get('cam_rel_error', float('nan')):.3f}
(after removing each map's mean: {e.get('cam_centered_rel_error', float('nan')):.3f}; for the
top-1 maps shown: {e.get('class_centered_rel_error', float('nan')):.3f}).
The decoder moved the high-res maps by {info['decoder_detail']:.3f} (relative norm) from the
upsampled rank-{info['rank']} low-res maps it starts from.</p>
<p>Decoder loss terms (mean of the first and of the last steps): {html.escape(losses)}.</p>
<p>Columns: {html.escape(', '.join(columns))} — maps of the top-1 class.</p>{note}
<table>{''.join(rows)}</table>
<p><img src="photos.png"></p></body></html>
"""
