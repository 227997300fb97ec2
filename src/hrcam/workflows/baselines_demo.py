"""CAM, L-CAM and CASM trained on the demo data, and each paper's headline comparison in miniature.

    weights = train_neighbours("data/demo", "results/demo/neighbours")
    tables = baseline_tables(weights, "data/demo", limit=100)   # {"cam", "lcam", "casm"}: rows
    verdicts(tables)                                             # one sentence per claim

Runs (:data:`DEMO_SETTINGS`; EfficientNet-Lite0 with its offline ImageNet weights, 96 px, no
augmentation): ``cam`` (the CAM network, also the frozen classifier L-CAM explains),
``lcam_fm`` and ``lcam_img`` on it, and one CASM per thinning strategy (``casm_F``,
``casm_L``, …), each with one warm-up epoch of its classifier alone.

The tables, every row on the same test images:

- ``cam`` (Zhou et al.): CAM against the centre prior and Grad-CAM on the same network, Grad-CAM
  at the backbone's last maps (the input of CAM's extra conv; at CAM's own layer Grad-CAM is
  ReLU(CAM) up to scale) — localization;
- ``lcam`` (Gkartzonika et al.): L-CAM-Img and L-CAM-Fm against Grad-CAM, Grad-CAM++ and
  Score-CAM on the same frozen classifier at the layer L-CAM reads — AD / IC with 100 / 50 / 15 %
  of the map kept;
- ``casm`` (Zolna et al.): CASM F (classifier-dependent) against L / L100 (classifier-agnostic) —
  localization error (CASM box rule), PxAP, masked-in / masked-out / inpainted accuracy.

PxAP, best-threshold IoU and MaxBoxAccV2 come from :mod:`hrcam.metrics.localization` through
:func:`set_scores` (the hook: an empty dict where they are not there); every table also has the
per-image metrics (mask IoU, pointing game, box accuracy, LE).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from hrcam.explain.base import Explainer, resolve_targets
from hrcam.workflows.demo.config import BASELINE_SETTINGS

__all__ = ["DEMO_SETTINGS", "METHODS", "train_neighbours", "baseline_tables", "split_accuracy", "set_scores",
           "verdicts"]

#: run name → (``hrcam train`` sub-command, explainer name)
METHODS = {"cam": ("cam", "camnet"), "lcam_fm": ("lcam", "lcam"), "lcam_img": ("lcam", "lcam"),
           **{f"casm_{t}": ("casm", "casm") for t in ("F", "L", "FL", "L100", "L1000")}}

#: the demo's training settings (keyword arguments of :func:`train_neighbours`, defined with the
#: demo's other settings); where they differ from the seeds, measured on the demo digits (README,
#: "Baselines"): CAM and L-CAM converge in a few hundred steps only with these rates, CASM's masks
#: collapse without a trained classifier
DEMO_SETTINGS = BASELINE_SETTINGS


def train_neighbours(data_dir, out_dir, *, backbone: str = DEMO_SETTINGS["backbone"],
                     pretrained: bool = DEMO_SETTINGS["pretrained"], im_size: int = DEMO_SETTINGS["im_size"],
                     batch_size: int = DEMO_SETTINGS["batch_size"], epochs: int = DEMO_SETTINGS["epochs"],
                     cam_lr: float = DEMO_SETTINGS["cam_lr"], extra_channels: int = DEMO_SETTINGS["extra_channels"],
                     cam_lr_schedule: str = DEMO_SETTINGS["cam_lr_schedule"],
                     lcam_epochs: int = DEMO_SETTINGS["lcam_epochs"], lcam_lr: float = DEMO_SETTINGS["lcam_lr"],
                     lcam_optimizer: str = DEMO_SETTINGS["lcam_optimizer"],
                     thinnings=DEMO_SETTINGS["thinnings"], casm_epochs: int = DEMO_SETTINGS["casm_epochs"],
                     casm_batches: int | None = DEMO_SETTINGS["casm_batches"],
                     casm_warmup_epochs: int = DEMO_SETTINGS["casm_warmup_epochs"],
                     casm_lr: float = DEMO_SETTINGS["casm_lr"],
                     lambda_ramp_steps: int = DEMO_SETTINGS["lambda_ramp_steps"],
                     casm_fill: str = DEMO_SETTINGS["casm_fill"],
                     progress: bool = False, seed: int = 0, seconds: dict | None = None,
                     side=None) -> dict[str, Path]:
    """Train CAM, L-CAM-Fm, L-CAM-Img (on the CAM network) and CASM per thinning strategy on ``data_dir``.

    Weights under ``out_dir/<run>/``, logs under ``out_dir/logs/``; the returned paths (and the
    classifier L-CAM and CASM start from) are each run's last-epoch weights (:func:`last_weights`). ``epochs`` are CAM's;
    ``casm_epochs`` (of at most ``casm_batches`` batches each; None = all) include the
    ``casm_warmup_epochs``. CASM's classifier starts as the CAM network (thinning F keeps it frozen);
    ``casm_fill`` replaces its masked-out pixels (``'zero'``: black, the seed's; ``'random'``: one
    random colour per image). Returns ``{run: last-epoch weights file}``;
    ``seconds``, when given, is filled with each run's training wall time.

    ``side`` (a :class:`~hrcam.workflows.side_process.SideProcess`, optional): after CAM, each run
    goes there when it is idle and is trained here otherwise, longest first (CASM runs whose
    classifier trains, then F, then L-CAM). Each run seeds itself, so the weights are the same
    either way (at the same torch thread count).
    """
    import dataclasses

    from hrcam.train.recipes import FolderData, RunSettings, train_cam, train_casm, train_lcam

    out = Path(out_dir)
    data = FolderData(data_dir, im_size=im_size, batch_size=batch_size, augment=False)
    backbone_args = {"backbone": backbone, "pretrained": pretrained}

    def run_settings(name: str, n_epochs: int, batches: int | None = None):
        return RunSettings(name, epochs=n_epochs, results_root=out, logs_root=out / "logs", progress=progress,
                           overwrite=True, seed=seed, num_maps=8, limit_train_batches=batches)

    timed = {"cam": _timed_run(train_cam, data, run_settings("cam", epochs), **backbone_args, lr=cam_lr,
                               extra_channels=extra_channels, lr_schedule=cam_lr_schedule)}
    # L-CAM's frozen classifier and CASM's starting one are the CAM network just trained (F keeps it frozen)
    later = {f"lcam_{v}": (train_lcam, data, run_settings(f"lcam_{v}", lcam_epochs),
                           {"classifier": last_weights(out, "cam"), "backbone": backbone, "variant": v,
                            "lr": lcam_lr, "optimizer": lcam_optimizer}) for v in ("fm", "img")}
    later.update({f"casm_{t}": (train_casm, data, run_settings(f"casm_{t}", casm_epochs, casm_batches),
                                {"classifier": last_weights(out, "cam"), "backbone": backbone, "thinning": t,
                                 "lr": casm_lr, "warmup_epochs": casm_warmup_epochs,
                                 "lambda_ramp_steps": lambda_ramp_steps, "fill": casm_fill}) for t in thinnings})
    def longest_first(name: str) -> int:
        return 2 if name.startswith("lcam_") else 1 if name == "casm_F" else 0

    order = sorted(later, key=longest_first)
    futures = {}
    for name in order:
        fn, d, r, kw = later[name]
        if side is not None and side.idle():  # no bars from the other process
            futures[name] = side.submit(_timed_run, fn, d, dataclasses.replace(r, progress=False), **kw)
        else:
            timed[name] = _timed_run(fn, d, r, **kw)
    for name, future in futures.items():
        timed[name] = future.result()
    if seconds is not None:
        seconds.update({name: timed[name] for name in ["cam", *later]})
    return {name: last_weights(out, name) for name in ["cam", *later]}


def _timed_run(recipe, data, run, **kwargs) -> float:
    """Train one run with ``recipe`` (a :mod:`hrcam.train.recipes` function); its wall time in seconds."""
    import time

    t0 = time.perf_counter()
    recipe(data, run, **kwargs)
    return round(time.perf_counter() - t0, 2)


def last_weights(out: Path, run: str) -> Path:
    """The last epoch's weights of ``run``. The recipes validate on the test split, so their "best"
    checkpoint is chosen on the images the tables score; the demo uses the last epoch instead."""
    return Path(out) / run / "last_weights.safetensors"


# -- scoring -----------------------------------------------------------------------------------
class _CentrePrior(Explainer):
    """The centred Gaussian of :func:`hrcam.evaluation.localization.center_prior`: no image, no class."""

    name = "center"

    def raw_maps(self, x, targets):
        from hrcam.evaluation.localization import center_prior

        with torch.no_grad():
            logits = self.model(x)
        prior = torch.as_tensor(center_prior(int(x.shape[-1])), dtype=torch.float32, device=x.device)
        return prior.expand(x.shape[0], -1, -1), logits, resolve_targets(targets, logits)


class _BackboneTap(nn.Module):
    """A CAMNet's logits, with the backbone's last maps (before CAM's extra conv) through ``tap``."""

    def __init__(self, net):
        super().__init__()
        self.net = net
        self.tap = nn.Identity()

    def forward(self, x):
        return self.net.head(self.net.cam_conv(self.tap(self.net.backbone.features(x))))


def set_scores(maps, masks, boxes) -> dict:
    """PxAP, best-threshold IoU, MaxBoxAccV2 of N×H×W maps (the hook: ``{}`` while the metrics are missing)."""
    import numpy as np

    try:
        from hrcam.workflows.demo.maps_table import score_maps
    except ImportError:
        return {}
    if masks is None or any(m is None for m in masks):
        return {}
    return score_maps({"m": np.asarray(maps)}, np.stack([np.asarray(m, dtype=bool) for m in masks]), boxes)["m"]


def _explain(explainer, x, batch_size: int):
    parts = [explainer.explain(x[i:i + batch_size]) for i in range(0, x.shape[0], batch_size)]
    return (torch.cat([p.maps.cpu() for p in parts]), torch.cat([p.raw.cpu() for p in parts]),
            torch.cat([p.logits.cpu() for p in parts]))


def _score(model, explainer, x, y, gt, batch_size: int, groups) -> dict:
    """The metrics of ``groups`` (``localization``, ``ad_ic``, ``masked``) for one explainer's maps."""
    import numpy as np

    from hrcam.metrics import faithfulness as faith
    from hrcam.metrics import localization as loc

    maps, raw, logits = _explain(explainer, x, batch_size)
    correct = (logits.argmax(1) == y).numpy()
    valid = [i for i, r in enumerate(faith.exclusion_reasons(raw)) if r is None]
    row: dict = {"images": int(x.shape[0]), "scored": len(valid), "clean_top1": float(correct.mean())}
    if "localization" in groups and gt is not None and valid:
        masks = None if gt.get("masks") is None else [gt["masks"][i] for i in valid]
        boxes = [list(np.asarray(gt["boxes"][i], dtype=np.float64).reshape(-1, 4)) for i in valid]
        per = loc.localization_metrics(maps[valid].numpy(), gt_masks=masks, gt_boxes=boxes, correct=correct[valid],
                                       image_size=int(x.shape[-1]))
        row.update(loc.summarize(per))
        row.update(set_scores(maps[valid].numpy(), masks, boxes))
        row["mask_area"] = float(maps[valid].mean())
    if "ad_ic" in groups:
        res = faith.average_drop_increase(model, x, raw, classes=logits.argmax(1), batch_size=batch_size)
        row.update({k: v for k, v in res.items() if k.startswith(("AD@", "IC@"))})
    if "masked" in groups:
        res = faith.masked_accuracy(model, x, raw, labels=y, batch_size=batch_size)
        row.update({k: v for k, v in res.items() if k.endswith("_top1")})
    return row


def baseline_tables(weights: dict, data_dir, split: str = "test", limit: int | None = None,
                    batch_size: int = 50, scorecam_batch: int = 64) -> dict[str, dict[str, dict]]:
    """The three comparisons (module docstring) as ``{"cam"|"lcam"|"casm": {row: metrics}}``.

    ``weights`` is :func:`train_neighbours`' result (a missing run leaves its rows out).
    """
    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.explain.gradcam import GradCAMExplainer
    from hrcam.explain.registry import create
    from hrcam.models.registry import load_network

    def data_for(net, meta):
        size = int(meta["im_size"])
        x, y, paths, _ = load_split(data_dir, split, size, 3, limit, net.num_classes)
        return x, y, load_ground_truth_for(data_dir, split, paths, size)

    tables: dict[str, dict[str, dict]] = {"cam": {}, "lcam": {}, "casm": {}}
    if "cam" in weights:
        cam, meta = load_network(weights["cam"])
        cam.eval()
        x, y, gt = data_for(cam, meta)
        loc_only = ("localization",)
        with create("camnet", cam) as e:
            tables["cam"]["CAM"] = _score(cam, e, x, y, gt, batch_size, loc_only)
        tables["cam"]["centre prior"] = _score(cam, _CentrePrior(cam), x, y, gt, batch_size, loc_only)
        tap = _BackboneTap(cam).eval()
        with GradCAMExplainer(tap, target_layer=tap.tap) as e:
            tables["cam"]["Grad-CAM (backbone maps)"] = _score(cam, e, x, y, gt, batch_size, loc_only)
        both = ("localization", "ad_ic")
        for run, label in (("lcam_img", "L-CAM-Img"), ("lcam_fm", "L-CAM-Fm")):
            if run in weights:
                lnet, _ = load_network(weights[run])
                with create("lcam", lnet.eval()) as e:
                    tables["lcam"][label] = _score(cam, e, x, y, gt, batch_size, both)
        if tables["lcam"]:
            for method, label in (("gradcam", "Grad-CAM"), ("gradcampp", "Grad-CAM++"), ("scorecam", "Score-CAM")):
                kw = {"batch_size": scorecam_batch} if method == "scorecam" else {}
                with create(method, cam, **kw) as e:
                    tables["lcam"][label] = _score(cam, e, x, y, gt, batch_size, both)
    for run in weights:
        if run.startswith("casm_"):
            net, meta = load_network(weights[run])
            net.eval()
            x, y, gt = data_for(net, meta)
            with create("casm", net) as e:
                tables["casm"][f"CASM {run[len('casm_'):]}"] = _score(net, e, x, y, gt, batch_size,
                                                                    ("localization", "masked"))
    return tables


def split_accuracy(weights: dict, data_dir, split: str = "test", batch_size: int = 100) -> dict[str, dict]:
    """Top-1 accuracy of each trained classifier on every image of ``data_dir/split``:
    ``{run: {"top1", "images"}}`` for ``cam`` (the classifier L-CAM and CASM F explain) and each
    ``casm_*`` run (whose classifier trains, except F's). The comparison tables score maps on a
    subset; a classifier's accuracy needs no maps, so it is measured on the whole split.
    """
    from hrcam.data.splits import load_split
    from hrcam.models.registry import load_network

    out = {}
    for run in (r for r in weights if r == "cam" or r.startswith("casm_")):
        net, meta = load_network(weights[run])
        net.eval()
        x, y, _, _ = load_split(data_dir, split, int(meta["im_size"]), 3, None, net.num_classes)
        with torch.no_grad():
            pred = torch.cat([net(x[i:i + batch_size]).argmax(1) for i in range(0, x.shape[0], batch_size)])
        out[run] = {"top1": float((pred == torch.as_tensor(y)).float().mean()), "images": int(x.shape[0])}
    return out


# -- verdicts ----------------------------------------------------------------------------------
def _loc_key(rows) -> str:
    return "pxap" if all("pxap" in r for r in rows) else "mask_iou"


def _verdict(wins) -> str:
    return "reproduces" if all(wins) else "reproduces in part" if any(wins) else "does not reproduce"


def verdicts(tables: dict) -> dict[str, str]:
    """One sentence per paper claim saying, with the numbers, whether it reproduces here."""
    out = {}
    cam = tables.get("cam") or {}
    if {"CAM", "centre prior"} <= set(cam):
        key = _loc_key(cam.values())
        c, p = cam["CAM"][key], cam["centre prior"][key]
        g = cam.get("Grad-CAM (backbone maps)", {}).get(key, float("nan"))
        wins = [c > p, c > g]  # a NaN comparison is never a win
        out["cam"] = (f"CAM {key} {c:.3f} against the centre prior {p:.3f} ({'better' if wins[0] else 'not better'}) "
                      f"and Grad-CAM {g:.3f} ({'better' if wins[1] else 'not better'}) — {_verdict(wins)}.")
    lcam = tables.get("lcam") or {}
    learned = [k for k in ("L-CAM-Img", "L-CAM-Fm") if k in lcam]
    others = [k for k in ("Grad-CAM", "Grad-CAM++", "Score-CAM") if k in lcam]
    if learned and others:
        parts, wins = [], {}
        for k in learned:
            cells = [(f"{m}@{q}", m) for q in ("0", "0.5", "0.85") for m in ("AD", "IC")]
            wins[k] = sum(lcam[k][c] < min(lcam[o][c] for o in others) if m == "AD"
                          else lcam[k][c] > max(lcam[o][c] for o in others) for c, m in cells)
            ad = " / ".join(f"{lcam[k][f'AD@{q}']:.1f}" for q in ("0", "0.5", "0.85"))
            ic = " / ".join(f"{lcam[k][f'IC@{q}']:.0f}" for q in ("0", "0.5", "0.85"))
            parts.append(f"{k} beats every one of them in {wins[k]} of {len(cells)} cells (AD {ad}, IC {ic})")
        ref = "; ".join(f"{o}: AD " + " / ".join(f"{lcam[o][f'AD@{q}']:.1f}" for q in ("0", "0.5", "0.85"))
                        for o in others)
        verdict = ("reproduces" if all(w == 6 for w in wins.values())
                   else "reproduces in part" if any(wins.values()) else "does not reproduce")
        out["lcam"] = (f"AD / IC at 100 / 50 / 15 % kept against {', '.join(others)}: " + "; ".join(parts)
                       + f" ({ref}) — {verdict}.")
    casm = tables.get("casm") or {}
    if "CASM F" in casm and len(casm) > 1:
        key = _loc_key(casm.values())
        f = casm["CASM F"]
        agn = [r for k, r in casm.items() if k != "CASM F"]
        wins = [all(r["le_casm"] < f["le_casm"] for r in agn), all(r[key] > f[key] for r in agn)]
        nums = "; ".join(f"{k}: LE {r['le_casm']:.3f}, {key} {r[key]:.3f}, masked-out acc. {r['masked_out_top1']:.2f}"
                         for k, r in casm.items())
        prior = cam.get("centre prior", {}).get(key)
        prior_text = f"; centre prior {key} {prior:.3f}" if prior is not None else ""
        out["casm"] = (f"classifier-agnostic (L/L100) against classifier-dependent F, lower LE and higher {key} "
                       f"expected: {nums}{prior_text} — {_verdict(wins)}.")
    return out
