"""CAM, L-CAM and CASM on the demo data with small settings, as rows of a comparison table.

    weights = train_neighbours("data/demo", "results/demo/neighbours")
    rows = neighbour_rows(weights, "data/demo", limit=100)      # hrcam.evaluation.compare rows

Small settings (:data:`DEMO_SETTINGS`): EfficientNet-Lite0 with its offline ImageNet weights,
128 px, batch 32, 2 epochs, no augmentation; CAM then L-CAM-Fm on the trained CAM classifier
(lr 1e-2 instead of the seed's 1e-4: two epochs are too short for the seed's rate), then CASM
with the L100 thinning strategy. Measured on the 2-core CPU shared with other jobs (600 train
/ 100 test images, 64 px files): CAM 354 s, L-CAM 117 s, CASM 473 s; the three compare rows
on 100 test images ≈ 670 s (faithfulness metrics dominate).
"""
from __future__ import annotations

from pathlib import Path

__all__ = ["DEMO_SETTINGS", "METHODS", "train_neighbours", "neighbour_rows"]

#: run name → (``hrcam train`` sub-command, explainer name)
METHODS = {"cam": ("cam", "camnet"), "lcam": ("lcam", "lcam"), "casm": ("casm", "casm")}

DEMO_SETTINGS = {
    "backbone": "efficientnet_lite0", "pretrained": True, "im_size": 128, "batch_size": 32, "epochs": 2,
    "lcam_lr": 1e-2, "thinning": "L100",
}


def train_neighbours(data_dir, out_dir, *, backbone: str = DEMO_SETTINGS["backbone"],
                     pretrained: bool = DEMO_SETTINGS["pretrained"], im_size: int = DEMO_SETTINGS["im_size"],
                     batch_size: int = DEMO_SETTINGS["batch_size"], epochs: int = DEMO_SETTINGS["epochs"],
                     lcam_lr: float = DEMO_SETTINGS["lcam_lr"], thinning: str = DEMO_SETTINGS["thinning"],
                     progress: bool = False, extra_channels: int = 1024, seed: int = 0,
                     seconds: dict | None = None) -> dict[str, Path]:
    """Train the three methods on ``data_dir``; weights under ``out_dir/<run>/``, logs under ``out_dir/logs/``.

    Returns ``{run: results folder}`` (``cam``, ``lcam``, ``casm``); ``seconds``, when given, is
    filled with each run's training wall time.
    """
    import time

    from hrcam.train.recipes import FolderData, RunSettings, train_cam, train_casm, train_lcam

    out = Path(out_dir)
    data = FolderData(data_dir, im_size=im_size, batch_size=batch_size, augment=False)
    backbone_args = {"backbone": backbone, "pretrained": pretrained}
    recipes = {
        "cam": lambda run: train_cam(data, run, **backbone_args, extra_channels=extra_channels),
        # the frozen classifier is the CAM network just trained
        "lcam": lambda run: train_lcam(data, run, classifier=out / "cam", backbone=backbone, lr=lcam_lr),
        "casm": lambda run: train_casm(data, run, **backbone_args, thinning=thinning),
    }
    results = {}
    for name, recipe in recipes.items():
        run = RunSettings(name, epochs=epochs, results_root=out, logs_root=out / "logs", progress=progress,
                          seed=seed, num_maps=8)
        t0 = time.perf_counter()
        recipe(run)
        if seconds is not None:
            seconds[name] = round(time.perf_counter() - t0, 2)
        results[name] = out / name
    return results


def neighbour_rows(weights: dict, data_dir, split: str = "test", limit: int | None = None,
                   batch_size: int = 50, progress: bool = False) -> list[dict]:
    """One :func:`hrcam.evaluation.compare.compare_methods` row per trained method, with ground truth when
    ``data_dir`` has it; each row also gets ``clean_top1`` (the explained classifier's accuracy)."""
    import torch

    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.evaluation.compare import compare_methods
    from hrcam.models.registry import load_network

    rows = []
    for run, folder in weights.items():
        method = METHODS[run][1]
        net, meta = load_network(folder)
        size = int(meta["im_size"])
        x, y, paths, _ = load_split(data_dir, split, size, 3, limit, net.num_classes)
        gt = load_ground_truth_for(data_dir, split, paths, size)
        with torch.no_grad():
            acc = float((net.eval()(x).argmax(1) == y).float().mean())
        (row,) = compare_methods(net, x, y, [method], gt, batch_size=batch_size, progress=progress)
        row["clean_top1"] = acc
        rows.append(row)
    return rows
