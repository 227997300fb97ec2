"""Is the CAM of sub-cell-shifted inputs a finer map to distil? (decoder objective (c), measured).

The Jitter-CAM idea (Hartley et al., BMVC 2021) as a decoder target: a stride-s classifier's CAM
cell (i, j) of the input shifted by (dy, dx) sees the pixels ``[i·s + dy, (i+1)·s + dy) ×
[j·s + dx, ...)``. With shifts of ``s/k`` in both directions, the k² low-res CAMs interleave into
a ``kh × kw`` grid whose sample m sits at ``m·s/k + s/2``: the map the classifier would give at
stride ``s/k``. A decoder could learn to predict it in one pass, but only if that map localizes
better than the plain low-res CAM. This script measures exactly that, before any decoder is
trained on it: PxAP, best-threshold IoU and zero-fill deletion AUC of the interleaved CAM for
each k, beside the bilinear low-res CAM, on the demo test split.

Two oracle rows check the construction itself: the exact object mask, average-pooled to the
s×s grid (what a perfectly shift-equivariant classifier with the mask as its evidence would
give), bilinear, and the same pooled from the k² shifted masks. If the interleaved oracle beats
the plain one but the interleaved CAM loses to the plain CAM, the classifier's CAMs are not
samples of one finer map (a strided CNN is not equivariant to sub-cell shifts), and the target
would teach the decoder the aliasing::

    .venv/bin/python benchmarks/bench_shift_cam_target.py            # after `make demo`
    .venv/bin/python benchmarks/bench_shift_cam_target.py --weights W --data D --test 300 --k 2 4 8

Prints a Markdown table and the seconds each k costs (k² forward passes of the classifier).
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from _demo_inputs import add_demo_model_args, load_test_split, missing_inputs

PAD_MODES = ("replicate", "reflect", "circular", "constant")


def shifted(x: torch.Tensor, s: int, dy: int, dx: int, pad: str) -> torch.Tensor:
    """``out[..., r, c] = x[..., r + dy, c + dx]``, with ``s`` pixels of ``pad`` past the edges."""
    h, w = x.shape[-2:]
    xp = F.pad(x, (s, s, s, s), mode=pad)
    return xp[..., s + dy: s + dy + h, s + dx: s + dx + w]


def interleaved(low_map, x: torch.Tensor, s: int, k: int, pad: str) -> torch.Tensor:
    """The k² low-res maps of the inputs shifted by multiples of ``s/k``, interleaved and resized
    bilinearly to the input, each sample at its true centre ``m·s/k + s/2`` (N×H×W)."""
    step = s // k
    h, w = x.shape[-2] // s, x.shape[-1] // s
    fine = torch.zeros(x.shape[0], h * k, w * k)
    for a in range(k):
        for b in range(k):
            fine[:, a::k, b::k] = low_map(shifted(x, s, a * step, b * step, pad))
    up = F.interpolate(fine[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
    lag = (s - step) // 2  # interpolate puts sample m at m·step + step/2; move it to m·step + s/2
    return F.pad(up, (lag, 0, lag, 0), mode="replicate")[:, 0, :x.shape[-2], :x.shape[-1]]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_model_args(p, "HalfModel or FullModel weights (default: the demo FullModel, whose low-res CAM is "
                           "its HalfModel's)", test=300)
    p.add_argument("--k", type=int, nargs="+", default=[2, 4], help="shifts per cell side (default: 2 4)")
    p.add_argument("--pad", choices=PAD_MODES, default="replicate", help="what the shift brings in at the edges")
    a = p.parse_args(argv)
    if (why := missing_inputs(a)) is not None:
        print(why)
        return 0
    from hrcam.metrics.faithfulness import deletion_insertion
    from hrcam.metrics.localization import best_threshold_iou, pxap
    from hrcam.models.base import class_maps
    from hrcam.normalization import minmax_normalize

    net, size, images, labels, gt = load_test_split(a)
    masks = torch.as_tensor(gt).float()
    with torch.no_grad():
        out = net.forward_maps(images, high=False)
        pred = out.logits.argmax(1)
        low = class_maps(net.low_weight, out.low_features, pred)
    s = size // low.shape[-1]
    bad = [k for k in a.k if k < 1 or s % k]
    if bad:
        p.error(f"--k: each k must divide the low-res cell side {s}, got {bad}")

    def cam_of(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return class_maps(net.low_weight, net.forward_maps(x, high=False).low_features, pred)

    def mask_cells(m: torch.Tensor) -> torch.Tensor:  # N×1×H×W → N×h×w
        return F.avg_pool2d(m, s)[:, 0]

    def bilinear(m: torch.Tensor) -> torch.Tensor:
        return F.interpolate(m[:, None], size=(size, size), mode="bilinear", align_corners=False)[:, 0]

    maps: dict[str, torch.Tensor] = {f"low-res CAM ({low.shape[-1]}×{low.shape[-1]}, bilinear)": bilinear(low)}
    seconds = {}
    for k in a.k:
        t0 = time.perf_counter()
        maps[f"CAMs of inputs shifted by s/{k}, interleaved ({k * low.shape[-1]}×{k * low.shape[-1]})"] = \
            interleaved(cam_of, images, s, k, a.pad)
        seconds[k] = time.perf_counter() - t0
    oracle = {"oracle: mask cell means, bilinear": bilinear(mask_cells(masks[:, None]))}
    for k in a.k:
        oracle[f"oracle: mask cell means of shifts by s/{k}, interleaved"] = \
            interleaved(mask_cells, masks[:, None], s, k, a.pad)

    rows = {}
    for label, m in {**maps, **oracle}.items():
        m = minmax_normalize(m.float())
        row = {"pxap": float(pxap(m.numpy(), gt)), "iou": best_threshold_iou(m.numpy(), gt).value}
        if label in maps:
            row["deletion"] = deletion_insertion(net, images, m, classes=pred, steps=a.steps)["deletion_auc"]
        rows[label] = row
        print(f"{label}: " + ", ".join(f"{key} {v:.3f}" for key, v in row.items()), flush=True)

    acc = float((pred == torch.as_tensor(labels)).float().mean())
    print(f"\n{len(images)} test images of {a.data} at {size} px, cell side s = {s}, maps of the predicted class "
          f"(accuracy {acc:.3f}), pad {a.pad}; weights {a.weights}\n")
    print("| map | PxAP | best-threshold IoU | deletion AUC (zero fill) ↓ |")
    print("|---|---:|---:|---:|")
    for label, row in rows.items():
        dele = f"{row['deletion']:.3f}" if "deletion" in row else ""
        print(f"| {label} | {row['pxap']:.3f} | {row['iou']:.3f} | {dele} |")
    print("\nseconds for the shifted CAMs: " + ", ".join(f"k={k} {t:.1f}" for k, t in seconds.items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
