"""Rank-r decoder on EfficientNet-Lite0: CAM energy kept by rank r, activation memory, speed.

For each rank r: the relative Frobenius error of the head (‖W − U_rV_r‖/‖W‖) and of the low-res
CAMs of all 1000 classes on scikit-image's bundled photos (also after removing each map's mean,
and for the top-1 class only),
the peak activation memory of one inference pass per 224 px image (PyTorch profiler), and the
inference time of a batch.

    python benchmarks/bench_pretrained_decoder.py
"""
from __future__ import annotations

import json
import time

import torch


def main() -> None:
    from hrcam.models.pretrained.backbones import build_backbone
    from hrcam.models.pretrained.decoder import DecoderNet, peak_activation_mb, rank_energy
    from hrcam.workflows.photos import load_photos

    torch.manual_seed(0)
    backbone = build_backbone("efficientnet_lite0")
    photos, _ = load_photos(im_size=224)
    with torch.no_grad():
        features = backbone.features(photos)
        top1 = backbone(photos).argmax(1)
    rows = []
    for rank in (8, 16, 32, 64, 128, 256):
        net = DecoderNet(backbone, rank=rank).eval()
        energy = rank_energy(backbone.head.weight, rank, features, classes=top1)
        mem = peak_activation_mb(net, photos[:2])
        with torch.no_grad():
            t = time.perf_counter()
            net.forward_maps(photos, high=True)
            dt = (time.perf_counter() - t) / photos.shape[0]
        rows.append({"rank": rank, **{k: round(v, 4) for k, v in energy.items() if k != "rank"},
                     "peak_activation_mb_per_image": round(mem, 1), "seconds_per_image": round(dt, 3),
                     "threads": torch.get_num_threads()})
    print(json.dumps({"backbone": "efficientnet_lite0", "im_size": 224, "photos": photos.shape[0],
                      "backbone_only_peak_mb": round(peak_activation_mb(backbone, photos[:2], high=False), 1),
                      "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
