"""Decoder ablation: which objective / upsampling / anchor gives high-res CAMs that localize?

Trains one FullModel decoder per row on the frozen demo HalfModel (``make demo`` first, or pass
``--data`` and ``--half``), then scores the predicted class's maps on the demo test split:
PxAP and best-threshold mask IoU (threshold-free, Choe et al. 2020), the correlation of the
high-res map average-pooled to the low-res grid with the low-res CAM (does it still explain this
classifier?), deletion AUC (lower = more faithful; removed pixels set to zero as in RISE, and to the
image's mean colour, which can remove a black object), and the share of the map's energy above a
3×3 box filter (checkerboard); "high + guided" is the high-res map through the colour guided filter
(the ``hrcam_guided`` refinement). Rows are trained once and reused from ``--out`` (delete it, or
pass ``--force``, to retrain). Every row is measured in this run, side by side::

    .venv/bin/python benchmarks/bench_decoder_ablation.py                 # all rows
    .venv/bin/python benchmarks/bench_decoder_ablation.py --rows seed,localize --test 300

Prints a Markdown table (also written to ``OUT/ablation.md`` and ``OUT/ablation.json``).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

#: the masking game of the rows measured before the localize preset took the blurred fill and the
#: low-res mask (README, "Maps that localize")
MINMAX = {"fill": "random", "scale": "minmax"}

#: name → (label, train_full keyword arguments, epochs)
ROWS = {
    "seed": ("reconstruction (seed), transposed, 1 epoch", {"preset": "seed"}, 1),
    "seed_3ep": ("reconstruction (seed), transposed, 3 epochs", {"preset": "seed"}, 3),
    "consistency": ("consistency, transposed, 1 epoch", {"preset": "seed", "objective": "consistency"}, 1),
    "seed_resize": ("reconstruction, resize-conv, 1 epoch", {"preset": "seed", "upsampling": "resize"}, 1),
    "consistency_resize": ("consistency, resize-conv, 1 epoch",
                           {"preset": "seed", "objective": "consistency", "upsampling": "resize"}, 1),
    "smoothness": ("(a) edge-aware smoothness, resize-conv, anchored, 3 epochs",
                   {"preset": "localize", "objective": "smoothness", "faithfulness": MINMAX}, 3),
    "localize_1ep": ("(b) faithfulness, resize-conv, anchored, 1 epoch", {"preset": "localize", "faithfulness": MINMAX}, 1),
    "localize": ("(b) faithfulness, resize-conv, anchored, 3 epochs (the earlier localize preset)", {"preset": "localize", "faithfulness": MINMAX}, 3),
    "localize_black": ("(b) faithfulness with a black fill of hidden pixels, resize-conv, anchored, 3 epochs",
                       {"preset": "localize", "faithfulness": {**MINMAX, "fill": "zero"}}, 3),
    "localize_blur": ("(b) faithfulness with a blurred image as the fill of hidden pixels, resize-conv, anchored, 3 epochs",
                      {"preset": "localize", "faithfulness": {**MINMAX, "fill": "blur"}}, 3),
    "localize_lowscale": ("(b) faithfulness with the mask in the low-res CAM's units, resize-conv, anchored, 3 epochs",
                          {"preset": "localize", "faithfulness": {**MINMAX, "scale": "low"}}, 3),
    "localize_lowscale_blur": ("(b) faithfulness, mask in the low-res CAM's units, blurred-image fill, resize-conv, "
                               "anchored, 3 epochs (the localize preset)", {"preset": "localize"}, 3),
    "localize_2ep": ("(b) faithfulness, resize-conv, anchored, 2 epochs", {"preset": "localize", "faithfulness": MINMAX}, 2),
    "localize_noanchor": ("(b) faithfulness + consistency term, resize-conv, no anchor, 3 epochs",
                          {"preset": "localize", "anchor": "none", "faithfulness": MINMAX}, 3),
    "localize_transposed": ("(b) faithfulness, transposed, anchored, 3 epochs",
                            {"preset": "localize", "upsampling": "transposed", "faithfulness": MINMAX}, 3),
}


def _train(name: str, data_dir: Path, half: Path, out: Path, force: bool, seed: int = 0) -> tuple[Path, float]:
    from hrcam.train.recipes import FolderData, RunSettings, train_full

    weights = out / name / "last_weights.safetensors"
    if weights.is_file() and not force:
        return weights, float("nan")
    _, kwargs, epochs = ROWS[name]
    data = FolderData(data_dir, im_size=64, batch_size=16, augment=False, val_split=None)
    # a run interrupted after its last checkpoint resumes (and only exports); --force starts over
    resume = not force and (out / name / "checkpoints" / "last.ckpt").is_file()
    run = RunSettings(name, epochs=epochs, results_root=out, logs_root=out / "logs", progress=False, seed=seed,
                      resume=resume, overwrite=force)
    t0 = time.perf_counter()
    train_full(data, run, half, init_seed=seed, **kwargs)
    return weights, time.perf_counter() - t0


def _maps(weights: Path, images: torch.Tensor):
    from hrcam.api.seed import compute_cams
    from hrcam.models.registry import load_network

    net, _ = load_network(weights)
    lows, highs, preds = [], [], []
    with torch.no_grad():
        for i in range(0, len(images), 50):
            res = compute_cams(net, images[i:i + 50], high=True)
            lows.append(res.low)
            highs.append(res.high)
            preds.append(res.classes)
    return net, torch.cat(lows), torch.cat(highs), torch.cat(preds)


def _score(net, images, masks, low, high, pred) -> dict:
    import torch.nn.functional as F

    from hrcam.metrics.artifacts import high_frequency_share
    from hrcam.metrics.faithfulness import deletion_insertion
    from hrcam.metrics.localization import best_threshold_iou, pxap
    from hrcam.postprocessing.guided import default_radius, guided_refine
    from hrcam.postprocessing.refine import refined_maps

    s = high.shape[-1] // low.shape[-1]
    pooled = F.avg_pool2d(high[:, None], s)[:, 0]
    r = float(np.corrcoef(pooled.flatten().numpy(), low.flatten().numpy())[0, 1])
    imgs = images.permute(0, 2, 3, 1).numpy()
    refined = np.asarray(refined_maps(imgs, low.numpy(), high.numpy()))
    size = images.shape[-1]
    low_up = F.interpolate(low[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]
    guided = guided_refine(images, high, default_radius(size, low.shape[-1])).numpy()
    row = {"r_pooled_low": r}
    for kind, maps in (("high", high.numpy()), ("guided", guided), ("refined", refined), ("low", low_up.numpy())):
        iou = best_threshold_iou(maps, masks)
        row[f"{kind}_pxap"] = float(pxap(maps, masks))
        row[f"{kind}_best_iou"] = float(iou[0] if isinstance(iou, tuple) else iou)
    for tag, baseline in (("", "zero"), ("_mean", "mean")):
        row[f"high_deletion_auc{tag}"] = deletion_insertion(net, images, high, classes=pred,
                                                            baseline=baseline)["deletion_auc"]
        row[f"low_deletion_auc{tag}"] = deletion_insertion(net, images, low_up, classes=pred,
                                                           baseline=baseline)["deletion_auc"]
    row["high_freq_share"] = float(np.mean(high_frequency_share(high.numpy())))
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="data/demo")
    p.add_argument("--half", default="results/demo/half/settled/last_weights.safetensors")
    p.add_argument("--out", default="results/ablation")
    p.add_argument("--rows", default=",".join(ROWS), help="comma list of: " + ", ".join(ROWS))
    p.add_argument("--test", type=int, default=300, help="test images scored (spread over the split)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the decoders' initialization, data order and fills (use a new --out per seed)")
    p.add_argument("--force", action="store_true", help="retrain rows found in --out")
    p.add_argument("--train-only", action="store_true", help="train the rows, score nothing")
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    rows = [r.strip() for r in a.rows.split(",") if r.strip()]
    unknown = [r for r in rows if r not in ROWS]
    if unknown:
        p.error(f"unknown rows {unknown}; choose from {', '.join(ROWS)}")
    if not Path(a.half).is_file() or not (Path(a.data) / "annotations.json").is_file():
        print(f"skipped: needs the demo's data and HalfModel ({a.data}, {a.half}); run `make demo` first "
              "or pass --data and --half")
        return 0
    out = Path(a.out)
    trained = {}
    for name in rows:
        print(f"training {name}: {ROWS[name][0]}", flush=True)
        trained[name] = _train(name, Path(a.data), Path(a.half), out, a.force, a.seed)
    if a.train_only:
        return 0
    from hrcam.data.splits import load_ground_truth_for, load_split

    images, _, paths, _ = load_split(a.data, "test", 64, 3, a.test, 10)
    masks = np.asarray(load_ground_truth_for(a.data, "test", paths, 64)["masks"])
    results = {}
    for name in rows:
        net, low, high, pred = _maps(trained[name][0], images)
        results[name] = {"label": ROWS[name][0], "train_s": trained[name][1], **_score(net, images, masks, low,
                                                                                    high, pred)}
        print(name, json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in results[name].items()}),
              flush=True)
    lines = ["| decoder | high PxAP | high best-IoU | high + guided PxAP | high + guided best-IoU | refined PxAP "
             "| refined best-IoU | r(pool(high), low) | deletion AUC high / low | same, mean-colour fill "
             "| high-freq share |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for v in results.values():
        lines.append(f"| {v['label']} | {v['high_pxap']:.3f} | {v['high_best_iou']:.3f} | {v['guided_pxap']:.3f} "
                     f"| {v['guided_best_iou']:.3f} | {v['refined_pxap']:.3f} "
                     f"| {v['refined_best_iou']:.3f} | {v['r_pooled_low']:.3f} | {v['high_deletion_auc']:.3f} / "
                     f"{v['low_deletion_auc']:.3f} | {v['high_deletion_auc_mean']:.3f} / "
                     f"{v['low_deletion_auc_mean']:.3f} | {v['high_freq_share']:.4f} |")
    first = next(iter(results.values()))
    lines.append(f"| low-res CAM (bilinear), for reference | {first['low_pxap']:.3f} | {first['low_best_iou']:.3f} "
                 "| | | | | 1 | | | |")
    table = "\n".join(lines)
    print(table)
    out.mkdir(parents=True, exist_ok=True)
    (out / "ablation.md").write_text(table + "\n")
    (out / "ablation.json").write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
