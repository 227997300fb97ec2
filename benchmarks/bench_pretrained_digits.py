"""Localization of the pretrained path on the digits-on-textures demo data (issue 7, item 4).

EfficientNet-Lite0 (offline ImageNet weights) is frozen; only its linear head is fitted on the
demo digits (:func:`hrcam.train.linear_head.fit_linear_head`). Its low-res CAMs (7×7 at 224 px)
are scored against the exact masks/boxes; then the rank-10 decoder (exact for a 10-class head:
U_rV_r = W) is trained briefly on the training images (labels unused) and its high-res CAMs and
the pipeline's refined maps are scored the same way (the library code:
:mod:`hrcam.workflows.pretrained_demo`, also behind ``hrcam demo run --extras pretrained``).

    python benchmarks/bench_pretrained_digits.py [--data DIR] [--train 500] [--test 200] [--steps 60]
        [--objective faithfulness --anchor bilinear --no-augment --train_size 224]

Prints one JSON object (accuracy and DESIGN §6 localization means per map kind).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=None, help="existing demo data folder (default: generate one in a temp dir)")
    ap.add_argument("--train", type=int, default=500)
    ap.add_argument("--test", type=int, default=200)
    ap.add_argument("--size", type=int, default=64, help="demo image size on disk (default 64, the demo's)")
    ap.add_argument("--im_size", type=int, default=224, help="model input size (default 224)")
    ap.add_argument("--epochs", type=int, default=100, help="linear-head epochs on cached features")
    ap.add_argument("--steps", type=int, default=60, help="decoder steps (0: skip the decoder)")
    ap.add_argument("--train_size", type=int, default=128, help="decoder training image size")
    ap.add_argument("--objective", default="consistency")
    ap.add_argument("--anchor", default="none", choices=("none", "bilinear"),
                    help="tie the decoder's cell means to the low-res maps (the FullModel localize recipe's anchor)")
    ap.add_argument("--no-augment", dest="augment", action="store_false",
                    help="train the decoder on the images as they are (default: the seed's flips and rotations)")
    ap.add_argument("--fill", default="random", help="faithfulness: fill of hidden pixels (random, zero, blur)")
    ap.add_argument("--scale", default="low", help="faithfulness: map-to-mask scaling (minmax, low; default low)")
    ap.add_argument("--limit", type=int, default=None, help="test images scored (spread over the classes; default all)")
    ap.add_argument("--compare", type=int, default=0, metavar="N",
                    help="also score the explainers on N test images with hrcam.evaluation.compare (PxAP, "
                         "best IoU, deletion AUC, ...): hrcam and hrcam_guided on the decoder")
    ap.add_argument("--baselines", action="store_true",
                    help="with --compare: also cam, layercam and guided on the backbone alone")
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args()

    from hrcam.data.demo import build_demo_dataset
    from hrcam.workflows.pretrained_demo import fit_pretrained_digits, score_pretrained

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp()) / "digits"
    if not (data / "annotations.json").is_file():
        build_demo_dataset(data, size=args.size, train=args.train, test=args.test, seed=0, progress=False)
    net, info = fit_pretrained_digits(data, im_size=args.im_size, head_epochs=args.epochs,
                                      decoder_steps=args.steps, train_size=args.train_size,
                                      objective=args.objective, anchor=args.anchor, augment=args.augment,
                                      faithfulness={"fill": args.fill, "scale": args.scale})
    t0 = time.time()
    res = score_pretrained(net, data, args.im_size, limit=args.limit)
    result = {"data": str(data), "train": info["train_images"], "test": len(res.paths), "im_size": args.im_size,
              "head_fit": info["head_fit"], "seconds_head": info["seconds_head"], "decoder": info["decoder"],
              "accuracy": res.accuracy, "seconds_score": round(time.time() - t0, 1)}
    for kind in ("low", "high", "refined", "center"):
        if kind in res.summary:
            result[f"lite0_head_{kind}"] = res.summary[kind]
    if args.compare:
        result["compare"] = _compare(net, data, args.im_size, args.compare, args.baselines)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


def _compare(net, data, im_size: int, limit: int, baselines: bool) -> dict:
    """``{method: {pxap, best_iou, deletion_auc, insertion_auc}}`` on ``limit`` test images (predicted class)."""
    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.evaluation.compare import compare_methods

    backbone = getattr(net, "backbone", net)
    images, labels, paths, _ = load_split(data, "test", im_size, 3, limit, backbone.num_classes)
    gt = load_ground_truth_for(data, "test", paths, im_size)
    runs = [(backbone, ["cam", "layercam", "guided"])] if baselines else []
    if net is not backbone:
        runs.append((net, ["hrcam", "hrcam_guided"]))
    keep = ("pxap", "best_iou", "deletion_auc", "insertion_auc", "ms_per_image")
    return {row["method"]: {k: row[k] for k in keep} for model, methods in runs
            for row in compare_methods(model, images, labels, methods, ground_truth=gt, batch_size=25)}


if __name__ == "__main__":
    main()
