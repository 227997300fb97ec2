"""CASM training length on the demo digits: the extras' own length (2 epochs × 63 batches) against another.

Per seed: the baselines of ``hrcam demo run --extras baselines`` are trained on the extras'
subset (``EXTRA_SETTINGS["neighbours"]``: 2000 train / 100 test images, EfficientNet-Lite0 at
96 px), CAM first; then CASM F and L once more from the same CAM network with ``--epochs`` ×
``--batches`` steps. Every CASM run and the centre prior are scored on the same test images
(:func:`hrcam.workflows.baselines_demo.baseline_tables`: PxAP, best-threshold IoU, CASM's
localization error, masked-out accuracy).

    python benchmarks/bench_casm_length.py [--data DIR] [--seeds 0,1] [--epochs 2] [--batches 45]

Prints one JSON line per seed (rows and training seconds), then the means over the seeds.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

METRICS = ("clean_top1", "pxap", "best_iou", "le_casm", "masked_out_top1")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="existing demo data folder (default: build one in a temp dir)")
    ap.add_argument("--seeds", default="0,1", help="comma list of seeds (default 0,1)")
    ap.add_argument("--epochs", type=int, default=2, help="epochs of the longer CASM runs (default 2)")
    ap.add_argument("--batches", type=int, default=45, help="batches per epoch of the longer runs (default 45)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from hrcam.data.demo import build_demo_dataset
    from hrcam.train.recipes import FolderData, RunSettings, train_casm
    from hrcam.workflows.baselines_demo import baseline_tables, last_weights, train_neighbours
    from hrcam.workflows.demo.config import EXTRA_SETTINGS
    from hrcam.workflows.demo.extras import _subset_data

    torch.set_num_threads(args.threads)
    root = Path(tempfile.mkdtemp(prefix="bench_casm_"))
    data = Path(args.data) if args.data else build_demo_dataset(root / "data", progress=False)
    nb = EXTRA_SETTINGS["neighbours"]
    sub = _subset_data(data, root / "sub", nb["train"], nb["test"])
    train_kw = {k: v for k, v in nb.items() if k not in ("train", "test", "score_batch")}
    longer = f"x{args.epochs * args.batches}"
    all_rows = []
    for seed in (int(s) for s in args.seeds.split(",")):
        out = root / f"seed{seed}"
        seconds: dict = {}
        weights = train_neighbours(sub, out, seed=seed, seconds=seconds, **train_kw)
        data_mod = FolderData(sub, im_size=nb["im_size"], batch_size=nb["batch_size"], augment=False)
        for t in nb["thinnings"]:
            name = f"casm_{t}{longer}"
            run = RunSettings(name, epochs=args.epochs, results_root=out, logs_root=out / "logs", progress=False,
                              overwrite=True, seed=seed, num_maps=8, limit_train_batches=args.batches)
            t0 = time.perf_counter()
            train_casm(data_mod, run, classifier=last_weights(out, "cam"), backbone=nb["backbone"], thinning=t,
                       lr=nb["casm_lr"], warmup_epochs=nb["casm_warmup_epochs"],
                       lambda_ramp_steps=nb["lambda_ramp_steps"], fill=nb["casm_fill"])
            seconds[name] = round(time.perf_counter() - t0, 1)
            weights[name] = last_weights(out, name)  # not the epoch that scored best on the test split
        tables = baseline_tables({k: v for k, v in weights.items() if k == "cam" or k.startswith("casm")}, sub,
                                 batch_size=nb["score_batch"])
        rows = {r: {m: tables[g][r].get(m) for m in METRICS} for g in ("cam", "casm") for r in tables[g]}
        all_rows.append(rows)
        print(json.dumps({"seed": seed, "rows": rows, "seconds": seconds}), flush=True)
    means = {r: {m: sum(rows[r][m] for rows in all_rows) / len(all_rows)
                 for m in METRICS if all(rows[r][m] is not None for rows in all_rows)}
             for r in all_rows[0]}
    print(json.dumps({"mean_over_seeds": means, "casm_steps": {"extras": nb["casm_epochs"] * nb["casm_batches"],
                                                               "longer": args.epochs * args.batches}}))


if __name__ == "__main__":
    main()
