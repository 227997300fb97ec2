"""Localization of the pretrained path on the digits-on-textures demo data (issue 7, item 4).

EfficientNet-Lite0 (offline ImageNet weights) is frozen; only its linear head is fitted on the
demo digits (:func:`hrcam.train.linear_head.fit_linear_head`). Its low-res CAMs (7×7 at 224 px)
are scored against the exact masks/boxes; then the rank-10 decoder (exact for a 10-class head:
U_rV_r = W) is trained briefly on the training images (labels unused) and its high-res CAMs and
the pipeline's refined maps are scored the same way.

    python benchmarks/bench_pretrained_digits.py [--data DIR] [--train 500] [--test 200] [--steps 60]

Prints one JSON object (accuracy and DESIGN §6 localization means per map kind).
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


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
    ap.add_argument("--out", default=None, help="write the JSON here too")
    args = ap.parse_args()
    torch.manual_seed(0)

    from torch.utils.data import DataLoader

    from hrcam.cams import compute_cams
    from hrcam.data.annotations import load_ground_truth
    from hrcam.data.demo import build_demo_dataset
    from hrcam.data.folders import ClassFolderDataset
    from hrcam.demo_photos import decoder_detail, loss_summary, train_decoder_steps
    from hrcam.metrics.localization import localization_metrics, summarize
    from hrcam.models.backbones import build_backbone
    from hrcam.models.decoder import DecoderNet
    from hrcam.train.datamodule import FolderDataModule
    from hrcam.train.decoder import ImageListDataset
    from hrcam.train.linear_head import fit_linear_head

    data = Path(args.data) if args.data else Path(tempfile.mkdtemp()) / "digits"
    if not (data / "annotations.json").is_file():
        build_demo_dataset(data, size=args.size, train=args.train, test=args.test, seed=0, progress=False)
    t0 = time.time()
    dm = FolderDataModule(data, args.im_size, 3, batch_size=32, augment=False)
    net = build_backbone("efficientnet_lite0")
    head = fit_linear_head(net, dm, epochs=args.epochs, progress=False)
    t_head = time.time() - t0

    test = ClassFolderDataset(data / "test", args.im_size, 3, classes=dm.classes)
    gt = load_ground_truth(data, "test")
    masks, boxes = [], []
    for path, _ in test.samples:
        b, m = gt[str(Path(path).relative_to(data).as_posix())].at_size((args.im_size, args.im_size))
        boxes.append(b)
        masks.append(m)
    masks = np.stack(masks)

    def score(maps_fn) -> dict:
        maps, correct = [], []
        with torch.no_grad():
            for x, y in DataLoader(test, batch_size=32):
                m, pred = maps_fn(x)
                maps.append(m)
                correct.append((pred == y).numpy())
        per = localization_metrics(np.concatenate(maps), gt_masks=masks, gt_boxes=boxes,
                                   correct=np.concatenate(correct), image_size=args.im_size)
        return summarize(per)

    result = {"data": str(data), "train": len(dm.train_set), "test": len(test), "im_size": args.im_size,
              "head_fit": head, "seconds_head": round(t_head, 1)}

    def low_maps(x):
        r = compute_cams(net, x)
        return r.low.numpy(), r.classes
    result["lite0_head_low"] = score(low_maps)

    if args.steps > 0:
        t1 = time.time()
        dec = DecoderNet(net, rank=min(10, net.num_classes))
        items = [p for p, _ in dm.train_set.samples]
        from hrcam.data.transforms import seed_augmentation

        hist = train_decoder_steps(dec, ImageListDataset(items, args.train_size, seed_augmentation()), args.steps,
                                   batch_size=8, objective=args.objective, progress=False)
        result["decoder"] = {"steps": args.steps, "objective": args.objective, "train_size": args.train_size,
                             "loss_first_last": loss_summary(hist), "seconds": round(time.time() - t1, 1)}

        def high_maps(x):
            r = compute_cams(dec, x, high=True)
            return r.high.numpy(), r.classes
        result["lite0_head_high"] = score(high_maps)
        x0 = torch.stack([test[i][0] for i in range(min(32, len(test)))])
        result["decoder"]["detail"] = decoder_detail(dec, x0)
        try:
            from hrcam.postprocessing import pipeline_batch

            def refined_maps(x):
                r = compute_cams(dec, x, high=True)
                merged = pipeline_batch(x.permute(0, 2, 3, 1).numpy(), r.low.numpy(), r.high.numpy())["merged"]
                return np.asarray(merged), r.classes
            result["lite0_head_refined"] = score(refined_maps)
        except ImportError:
            pass
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
