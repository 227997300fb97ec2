"""Deletion / insertion AUC under each removal baseline, with the exact object mask as a map.

Deletion AUC ranks pixels by a map and removes the top ones; what "removed" means decides what
it measures. Black (RISE's zero baseline, DESIGN §6) or a flat mean colour leave the removed
region's *shape* in the image: delete exactly a digit's pixels and its silhouette is still there
for a shape-reading classifier (Rong et al., ICML 2022, ROAD). Inpainting the removed pixels
from the kept ones around them (``baseline="inpaint"``, OpenCV Telea) removes the outline too.

This script scores, on one trained FullModel and the demo test split, every map hrcam ships
(low-res CAM, high-res CAM, high-res + guided filter, LayerCAM, Grad-CAM, guided-filter CAM)
and two maps no explainer can beat at localization: the exact object mask (its pixels first,
ties broken by the low-res CAM) and the mask dilated by 5 px. If the exact mask loses to the
coarse CAM under a baseline, that baseline rewards removing the object's surroundings, not the
object. All rows are measured in this run, on the same images and predicted classes::

    .venv/bin/python benchmarks/bench_removal_baselines.py            # after `make demo`
    .venv/bin/python benchmarks/bench_removal_baselines.py --weights W --data D --test 300

Prints a Markdown table (PxAP, deletion and insertion AUC per baseline, seconds per baseline).
"""
from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from _demo_inputs import add_demo_model_args, load_test_split, missing_inputs

BASELINES = ("zero", "mean", "inpaint")
EXPLAINERS = (("low-res CAM (bilinear)", "cam"), ("high-res CAM", "hrcam"),
              ("high-res CAM + guided filter", "hrcam_guided"), ("LayerCAM", "layercam"),
              ("Grad-CAM", "gradcam"), ("guided-filter CAM", "guided"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_model_args(p, "FullModel weights (default: the demo's faithfulness decoder)", test=200)
    a = p.parse_args(argv)
    if (why := missing_inputs(a)) is not None:
        print(why)
        return 0
    from scipy.ndimage import maximum_filter

    from hrcam.explain.registry import create
    from hrcam.metrics.faithfulness import deletion_insertion
    from hrcam.metrics.localization import pxap
    from hrcam.normalization import minmax_normalize

    net, size, images, labels, masks = load_test_split(a)
    with torch.no_grad():
        pred = net(images).argmax(1)
    maps: dict[str, torch.Tensor] = {}
    for label, name in EXPLAINERS:
        with create(name, net) as ex:
            m, _ = ex(images, targets=pred)
        maps[label] = minmax_normalize(torch.as_tensor(m).float())
    low = maps["low-res CAM (bilinear)"]
    exact = torch.as_tensor(masks).float()
    dilated = torch.as_tensor(maximum_filter(masks.astype(np.float32), size=(1, 5, 5)))
    maps["object mask (exact), ties by low-res CAM"] = minmax_normalize(exact + 0.5 * low)
    maps["object mask dilated 5 px, ties by low-res CAM"] = minmax_normalize(dilated + 0.5 * low)

    rows, seconds = {}, dict.fromkeys(BASELINES, 0.0)
    for label, m in maps.items():
        row = {"pxap": float(pxap(m.numpy(), masks))}
        for b in BASELINES:
            t0 = time.perf_counter()
            r = deletion_insertion(net, images, m, classes=pred, steps=a.steps, baseline=b)
            seconds[b] += time.perf_counter() - t0
            row[f"del_{b}"], row[f"ins_{b}"] = r["deletion_auc"], r["insertion_auc"]
        rows[label] = row
        print(f"{label}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)

    print(f"\n{len(images)} test images of {a.data} at {size} px, maps of the predicted class "
          f"(accuracy {float((pred == torch.as_tensor(labels)).float().mean()):.3f}), {a.steps} steps; "
          f"weights {a.weights}\n")
    head = "| map | PxAP | " + " | ".join(f"deletion AUC, {b} ↓" for b in BASELINES) + " | " + \
        " | ".join(f"insertion AUC, {b} ↑" for b in BASELINES) + " |"
    print(head)
    print("|---|" + "---:|" * (1 + 2 * len(BASELINES)))
    for label, row in rows.items():
        vals = [row["pxap"]] + [row[f"del_{b}"] for b in BASELINES] + [row[f"ins_{b}"] for b in BASELINES]
        print(f"| {label} | " + " | ".join(f"{v:.3f}" for v in vals) + " |")
    print("\nseconds per baseline, all maps: " + ", ".join(f"{b} {s:.1f}" for b, s in seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
