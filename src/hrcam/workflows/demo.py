"""The built-in demo (``make demo`` = ``hrcam demo run --out results/demo``).

The seed's whole workflow on the "digits on textures" data (:mod:`hrcam.data.demo`), whose
ground truth is exact:

1. ``data``       build the demo set in ``data_dir`` unless a matching one is there;
2. ``half``       train the HalfModel (classifier + low-res CAM) → ``OUT/half/``;
3. ``full_<obj>`` train the FullModel's expansion network on the frozen HalfModel, once per
                  decoder objective (``reconstruction`` = the seed's, ``consistency``) →
                  ``OUT/full_<obj>/``;
4. ``evaluate_<obj>`` classification of the test split and, for the predicted class, the
                  low-res CAM, the high-res CAM, the refined map (post-processing pipeline) and
                  a centre-prior reference, each scored with every localization metric;
5. ``report``     ``OUT/report.md``, ``OUT/metrics.json``, ``OUT/gallery_<obj>.png`` (16 test
                  images × image / low-res / high-res / refined / ground truth) and
                  ``OUT/pipeline.png`` (the pipeline's steps on one test image).

Opt-in extras (``DemoConfig.extras``, ``hrcam demo run --extras neighbours,pretrained``), after the
stages above, each with small settings of its own (:data:`EXTRA_SETTINGS`) and its wall time
reported:

- ``extra_pretrained``: the pretrained path (:mod:`hrcam.workflows.pretrained_demo`): frozen
  EfficientNet-Lite0, linear head fitted on the digits, a short decoder run; its low-res /
  high-res / refined maps become the "Lite0 …" rows of the localization table → ``OUT/extras/pretrained.json``;
- ``extra_neighbours``: CAM, L-CAM-Fm and CASM (:mod:`hrcam.workflows.baselines_demo`) trained on a
  subset of the demo data and scored like ``hrcam compare`` → a table under "Other methods",
  ``OUT/extras/neighbours.json``.

The demo preset keeps the FC-DenseNet of DESIGN §3 (4 dense blocks down, bottleneck, transposed-
conv decoder, aux 1×1 conv, GAP + linear) and changes only its parameters: image side 64,
``init_filters`` 16, ``growth_rate`` 8, ``layers_per_block`` 2, 4000 training images, 10 HalfModel
epochs (then 3 at 4× the batch), 1 FullModel epoch per objective, augmentation off (the seed's ±180° rotations and
flips would turn 6 into 9 and mirror digits), one torch thread. ``hrcam train`` keeps
the seed's defaults. Finished stages are recorded in ``OUT/stages.json`` with a key of their
settings and reused on the next run unless ``force``.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hrcam.jsonio import json_safe
from hrcam.metrics.columns import SUMMARY_LOCALIZATION, label_pairs

__all__ = ["DemoConfig", "DEMO_PRESET", "EXTRAS", "EXTRA_SETTINGS", "run_demo", "gallery_figure"]

#: opt-in extra stages of the demo
EXTRAS = ("neighbours", "pretrained")

#: their small settings, each extra ≤ 2.5 min on a busy 2-core CPU (measured: pretrained 78 s =
#: linear head 34 s + decoder 16 s + scoring 500 test images 28 s; neighbours 146 s = CAM 32 s +
#: L-CAM 7 s + CASM 67 s + scoring 100 test images 40 s); the report gives each run's own times
EXTRA_SETTINGS = {
    # CAM / L-CAM / CASM: keyword arguments of train_neighbours plus the image subset
    # (``train``/``test`` images spread over the splits) and the scoring batch
    "neighbours": {"backbone": "efficientnet_lite0", "pretrained": True, "im_size": 96, "batch_size": 32,
                   "epochs": 2, "extra_channels": 256, "lcam_lr": 1e-2, "thinning": "L100",
                   "train": 1000, "test": 100, "score_batch": 50},
    # keyword arguments of fit_pretrained_digits, plus ``test_limit`` (None = the demo's ``limit``)
    "pretrained": {"backbone": "efficientnet_lite0", "im_size": 224, "head_epochs": 100, "decoder_steps": 100,
                   "train_size": 128, "decoder_batch": 8, "objective": "consistency", "train_limit": 2000,
                   "test_limit": None},
}


@dataclass
class DemoConfig:
    """Settings of the demo run (defaults: the ``make demo`` preset)."""

    size: int = 64
    train: int = 4000
    test: int = 500
    seed: int = 0
    arch: dict = field(default_factory=lambda: {"init_filters": 16, "growth_rate": 8,
                                                "layers_per_block": 2})
    batch_size: int = 16
    half_epochs: int = 10
    # then a few epochs with 4× the batch (less gradient noise; settles the last-epoch weights,
    # which otherwise swing by ±3 % test accuracy from epoch to epoch). 0 = skip.
    half_settle_epochs: int = 3
    settle_batch_factor: int = 4
    full_epochs: int = 1
    objectives: tuple[str, ...] = ("reconstruction", "consistency")
    consistency_weight: float = 1.0
    augment: bool = False
    limit: int | None = None  # test images scored for localization (None = all)
    gallery: int = 16
    # ``hrcam compare`` on the primary FullModel: methods and number of test images (0 = skip)
    compare_methods: tuple[str, ...] = ("cam", "hrcam", "refined", "gradcam", "gradcampp")
    compare_limit: int = 100
    # torch threads: one thread avoids the large slow-down of OpenMP threads competing for cores
    # on a busy machine (measured: several times faster here); None leaves torch's setting.
    threads: int | None = 1
    # opt-in extra rows (see the module docstring): names from EXTRAS, and overrides of EXTRA_SETTINGS
    extras: tuple[str, ...] = ()
    neighbours_settings: dict = field(default_factory=dict)
    pretrained_settings: dict = field(default_factory=dict)

    def __post_init__(self):
        from hrcam.train.modules import OBJECTIVES

        if not self.objectives:
            raise ValueError("objectives must name at least one decoder objective")
        for obj in self.objectives:
            if obj not in OBJECTIVES:
                raise ValueError(f"objectives: {obj!r} is not one of {', '.join(OBJECTIVES)}")
        for name in ("half_epochs", "full_epochs", "batch_size", "size", "train", "test",
                     "settle_batch_factor"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        self.objectives = tuple(self.objectives)
        self.compare_methods = tuple(self.compare_methods)
        self.extras = tuple(self.extras)
        for name in self.extras:
            if name not in EXTRAS:
                raise ValueError(f"extras: {name!r} is not one of {', '.join(EXTRAS)}")
        for extra in EXTRAS:
            unknown = set(getattr(self, f"{extra}_settings")) - set(EXTRA_SETTINGS[extra])
            if unknown:
                raise ValueError(f"{extra}_settings: unknown keys {sorted(unknown)}; "
                                 f"known: {', '.join(EXTRA_SETTINGS[extra])}")

    def extra_settings(self, extra: str) -> dict:
        """EXTRA_SETTINGS[extra] with this config's overrides."""
        return {**EXTRA_SETTINGS[extra], **getattr(self, f"{extra}_settings")}

    def to_json(self) -> dict:
        return {**dataclasses.asdict(self), "objectives": list(self.objectives),
                "compare_methods": list(self.compare_methods), "extras": list(self.extras)}


DEMO_PRESET = DemoConfig()


def _key(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


class _Stages:
    """``OUT/stages.json``: which stages finished, with which settings key, in how long."""

    def __init__(self, out: Path, force: bool):
        self.path = out / "stages.json"
        self.force = force
        self.done: dict = {}
        if self.path.is_file() and not force:
            try:
                self.done = json.loads(self.path.read_text())
            except ValueError:
                self.done = {}

    def fresh(self, name: str, key: str, outputs: list[Path]) -> bool:
        rec = self.done.get(name)
        return (not self.force and rec is not None and rec.get("key") == key
                and all(Path(p).exists() for p in outputs))

    def cached_json(self, name: str, key: str, path: Path, progress: bool, what: str) -> dict | None:
        """The JSON a finished stage wrote to ``path`` (logging that it is reused), or None."""
        if not self.fresh(name, key, [path]):
            return None
        _log(f"reusing {what}", progress)
        return json.loads(path.read_text())

    def record(self, name: str, key: str, seconds: float, **info) -> None:
        self.done[name] = {"key": key, "seconds": round(seconds, 2), **info}
        self.path.write_text(json.dumps(self.done, indent=1))

    def seconds(self, name: str) -> float:
        return float(self.done.get(name, {}).get("seconds", float("nan")))


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[demo] {msg}", flush=True)


def _quiet_fit(*args, **kwargs):
    """``hrcam.train.runner.fit`` without Lightning's notices that do not apply here (no
    validation loader on purpose; a deprecation inside Lightning)."""
    import warnings

    from hrcam.train.runner import fit

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*Total length of .* across ranks is zero.*")
        warnings.filterwarnings("ignore", message=".*LeafSpec.*")
        return fit(*args, **kwargs)


def _train_half(cfg: DemoConfig, data_dir: Path, out: Path, progress: bool) -> Path:
    import torch

    from hrcam.train.datamodule import FolderDataModule
    from hrcam.train.modules import HalfModule

    dm = FolderDataModule(data_dir, cfg.size, 3, batch_size=cfg.batch_size, augment=cfg.augment,
                          seed=cfg.seed, val_split=None)
    torch.manual_seed(cfg.seed)  # the initial weights, too, come from the seed
    module = HalfModule(dm.num_classes, 3, im_size=cfg.size, arch=dict(cfg.arch), class_names=dm.classes)
    # No validation split during training: the test split is scored once, afterwards, with the
    # last weights (choosing the "best" epoch on the test split would flatter the accuracy).
    res = _quiet_fit(module, dm, "half", epochs=cfg.half_epochs, results_root=out, logs_root=out / "logs",
                     monitor="train_loss", mode="min", progress=progress, seed=cfg.seed,
                     accelerator="cpu", devices=1)
    if cfg.half_settle_epochs <= 0:
        return Path(res["last"])
    from hrcam.weights import load_weights

    state, _ = load_weights(res["last"])
    dm = FolderDataModule(data_dir, cfg.size, 3, batch_size=cfg.batch_size * cfg.settle_batch_factor,
                          augment=cfg.augment, seed=cfg.seed + 1, val_split=None)
    module = HalfModule(dm.num_classes, 3, im_size=cfg.size, arch=dict(cfg.arch), class_names=dm.classes)
    module.net.load_state_dict(state)
    res = _quiet_fit(module, dm, "half/settled", epochs=cfg.half_settle_epochs, results_root=out,
                     logs_root=out / "logs", monitor="train_loss", mode="min", progress=progress,
                     seed=cfg.seed, accelerator="cpu", devices=1)
    return Path(res["last"])


def _train_full(cfg: DemoConfig, data_dir: Path, out: Path, half_weights: Path, objective: str,
                progress: bool) -> Path:
    import torch

    from hrcam.train.datamodule import FolderDataModule
    from hrcam.train.modules import FullModule
    from hrcam.weights import load_weights

    state, _ = load_weights(half_weights)
    dm = FolderDataModule(data_dir, cfg.size, 3, batch_size=cfg.batch_size, augment=cfg.augment,
                          seed=cfg.seed, val_split=None)
    torch.manual_seed(cfg.seed)
    module = FullModule(state, dm.num_classes, 3, im_size=cfg.size, arch=dict(cfg.arch),
                        class_names=dm.classes, objective=objective,
                        consistency_weight=cfg.consistency_weight)
    res = _quiet_fit(module, dm, f"full_{objective}", epochs=cfg.full_epochs, results_root=out,
              logs_root=out / "logs", monitor="train_loss", mode="min", progress=progress,
              seed=cfg.seed, accelerator="cpu", devices=1)
    return Path(res["last"])


def gallery_figure(examples: dict, path, n: int = 16, title: str = ""):
    """Rows of test images: image (true/predicted class) | low-res | high-res | refined | ground
    truth (mask, box outlined). Maps are drawn as heat-map overlays on the image."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    from hrcam.viz.plotting import overlay

    kinds = [k for k in ("low", "high", "refined") if k in examples]
    n = min(n, len(examples["image"]))
    cols = 1 + len(kinds) + 1
    fig = Figure(figsize=(1.6 * cols, 1.6 * n + 0.4), layout="constrained")
    axes = np.atleast_2d(fig.subplots(n, cols))
    headers = ["image", *(("low-res CAM", "high-res CAM", "refined")[("low", "high", "refined").index(k)]
                           for k in kinds), "ground truth"]
    for r in range(n):
        img = np.clip(examples["image"][r], 0, 1)
        panels = [img] + [overlay(img, examples[k][r]) for k in kinds]
        mask = examples["mask"][r]
        gt = img * 0.35 + 0.65 * (mask[..., None] if mask is not None else 0)
        panels.append(np.clip(gt, 0, 1))
        for c, panel in enumerate(panels):
            ax = axes[r, c]
            ax.imshow(panel, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(headers[c], fontsize=9)
        for x0, y0, x1, y1 in examples["boxes"][r]:
            axes[r, -1].add_patch(Rectangle((x0 - 0.5, y0 - 0.5), x1 - x0, y1 - y0, fill=False,
                                            edgecolor="red", linewidth=1))
        axes[r, 0].set_ylabel(f"{examples['label'][r]} → {examples['pred'][r]}", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.savefig(path, dpi=80)
    return fig


def _save_examples(path: Path, examples: dict) -> None:
    arrays = {k: np.asarray(v) for k, v in examples.items() if k not in ("mask", "boxes")}
    arrays["mask"] = np.asarray([m if m is not None else np.zeros(arrays["image"].shape[1:3], bool)
                                 for m in examples["mask"]])
    (path.parent).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    path.with_suffix(".boxes.json").write_text(json.dumps(examples["boxes"]))


def _load_examples(path: Path) -> dict:
    with np.load(path) as z:
        ex = {k: z[k] for k in z.files}
    ex["boxes"] = json.loads(path.with_suffix(".boxes.json").read_text())
    ex["label"] = ex["label"].tolist()
    ex["pred"] = ex["pred"].tolist()
    return ex


#: ``(key, label)`` of the localization columns in the report (declared in :mod:`hrcam.metrics.columns`)
METRIC_COLUMNS = label_pairs(SUMMARY_LOCALIZATION)


def run_demo(out="results/demo", data_dir="data/demo", config: DemoConfig | None = None,
             force: bool = False, progress: bool = True, extra_tables: list = ()) -> dict:
    """Run (or resume) the demo and return the ``metrics.json`` content. See the module docstring."""
    import torch

    cfg = config or DemoConfig()
    threads = torch.get_num_threads()
    if cfg.threads:
        torch.set_num_threads(int(cfg.threads))
    try:
        return _run(Path(out), Path(data_dir), cfg, force, progress, extra_tables)
    finally:
        torch.set_num_threads(threads)


def _run(out: Path, data_dir: Path, cfg: DemoConfig, force: bool, progress: bool, extra_tables) -> dict:
    from hrcam.data.demo import FORMAT_VERSION, build_demo_dataset, demo_dataset_exists
    from hrcam.metrics.classification import classification_metrics
    from hrcam.metrics.localization import pointing_tolerance
    from hrcam.evaluation.localization import MAP_LABELS, evaluate_localization

    out.mkdir(parents=True, exist_ok=True)
    stages = _Stages(out, force)
    start = time.perf_counter()

    # 1. data -------------------------------------------------------------------------------
    data_key = _key(cfg.size, cfg.train, cfg.test, cfg.seed, FORMAT_VERSION)
    t0 = time.perf_counter()
    if not demo_dataset_exists(data_dir, cfg.size, cfg.train, cfg.test, cfg.seed):
        _log(f"building the demo data in {data_dir}", progress)
        build_demo_dataset(data_dir, size=cfg.size, train=cfg.train, test=cfg.test, seed=cfg.seed,
                           progress=progress)
        stages.record("data", data_key, time.perf_counter() - t0, path=str(data_dir))
    else:
        _log(f"reusing the demo data in {data_dir}", progress)
        if "data" not in stages.done:
            stages.record("data", data_key, 0.0, path=str(data_dir), reused=True)

    # 2. HalfModel --------------------------------------------------------------------------
    half_key = _key(data_key, cfg.arch, cfg.batch_size, cfg.half_epochs, cfg.augment,
                    cfg.half_settle_epochs, cfg.settle_batch_factor)
    half_weights = out / "half" / ("settled" if cfg.half_settle_epochs > 0 else "") / "last_weights.safetensors"
    if not stages.fresh("train_half", half_key, [half_weights]):
        _log(f"training the HalfModel ({cfg.half_epochs} epochs)", progress)
        t0 = time.perf_counter()
        half_weights = _train_half(cfg, data_dir, out, progress)
        stages.record("train_half", half_key, time.perf_counter() - t0, weights=str(half_weights))
    else:
        _log("reusing the trained HalfModel", progress)

    # 3.–4. FullModel per objective, evaluation ----------------------------------------------
    from hrcam.api.seed import load_model

    results: dict[str, dict] = {}
    classification = None
    for obj in cfg.objectives:
        full_key = _key(half_key, obj, cfg.full_epochs, cfg.consistency_weight)
        weights = out / f"full_{obj}" / "last_weights.safetensors"
        if not stages.fresh(f"train_full_{obj}", full_key, [weights]):
            _log(f"training the FullModel decoder, objective '{obj}' ({cfg.full_epochs} epochs)", progress)
            t0 = time.perf_counter()
            weights = _train_full(cfg, data_dir, out, half_weights, obj, progress)
            stages.record(f"train_full_{obj}", full_key, time.perf_counter() - t0, weights=str(weights))
        else:
            _log(f"reusing the FullModel trained with '{obj}'", progress)

        eval_key = _key(full_key, cfg.limit, cfg.gallery)
        eval_json = out / "evaluation" / f"{obj}.json"
        examples_path = out / "evaluation" / f"{obj}_examples.npz"
        if not stages.fresh(f"evaluate_{obj}", eval_key, [eval_json, examples_path]):
            _log(f"evaluating maps of the '{obj}' FullModel on the test split", progress)
            t0 = time.perf_counter()
            model = load_model(weights)
            res = evaluate_localization(model, data_dir, "test", limit=cfg.limit, progress=progress,
                                        keep_examples=cfg.gallery)
            cls = classification_metrics(res.labels, res.logits, model.num_classes, model.class_names)
            record = {"summary": json_safe(res.summary), "classification": json_safe(cls),
                      "count": len(res.paths)}
            eval_json.parent.mkdir(parents=True, exist_ok=True)
            eval_json.write_text(json.dumps(record, indent=1))
            _save_examples(examples_path, res.examples)
            stages.record(f"evaluate_{obj}", eval_key, time.perf_counter() - t0)
        else:
            _log(f"reusing the evaluation of the '{obj}' FullModel", progress)
            record = json.loads(eval_json.read_text())
        results[obj] = record
        classification = classification or record["classification"]

    # 5. explanation methods side by side (hrcam compare) on the primary FullModel ------------
    primary = cfg.objectives[0]
    compare_table = None
    if cfg.compare_methods and cfg.compare_limit > 0:
        primary_key = stages.done[f"train_full_{primary}"]["key"]
        cmp_key = _key(primary_key, cfg.compare_methods, cfg.compare_limit)
        cmp_json = out / "compare" / "compare.json"
        if not stages.fresh("compare", cmp_key, [cmp_json]):
            _log(f"comparing explanation methods ({', '.join(cfg.compare_methods)}) on "
                 f"{cfg.compare_limit} test images", progress)
            t0 = time.perf_counter()
            _compare(out, data_dir, cfg, out / f"full_{primary}" / "last_weights.safetensors", progress)
            stages.record("compare", cmp_key, time.perf_counter() - t0)
        else:
            _log("reusing the method comparison", progress)
        compare_table = _compare_table(json.loads(cmp_json.read_text()), cfg)

    # 5b. opt-in extras ----------------------------------------------------------------------
    extras: dict[str, dict] = {}
    if "pretrained" in cfg.extras:
        extras["pretrained"] = _extra_pretrained(out, data_dir, cfg, stages, data_key, progress)
    if "neighbours" in cfg.extras:
        extras["neighbours"] = _extra_neighbours(out, data_dir, cfg, stages, data_key, progress)

    # 6. figures and report --------------------------------------------------------------------
    t0 = time.perf_counter()
    figures = []
    for obj in cfg.objectives:
        ex = _load_examples(out / "evaluation" / f"{obj}_examples.npz")
        gallery_figure(ex, out / f"gallery_{obj}.png", n=cfg.gallery,
                       title=f"decoder objective: {obj}")
        figures.append((obj, f"gallery_{obj}.png"))
        if obj == primary:
            from hrcam.viz.plotting import pipeline as pipeline_figure

            pipeline_figure(ex["image"][0], ex["low"][0], ex["high"][0], save=out / "pipeline.png")

    maps: dict[str, dict] = {}
    for obj in cfg.objectives:
        for kind, summary in results[obj]["summary"].items():
            if kind in ("low", "center"):
                maps.setdefault(kind, summary)
            else:
                maps[kind if obj == primary else f"{kind}_{obj}"] = summary
    labels = {k: _kind_label(k, MAP_LABELS) for k in maps}
    if "pretrained" in extras:
        size = extras["pretrained"]["settings"]["im_size"]
        for kind in ("low", "high", "refined"):
            if kind in extras["pretrained"]["summary"]:
                maps[f"lite0_{kind}"] = extras["pretrained"]["summary"][kind]
                labels[f"lite0_{kind}"] = f"Lite0 {PRETRAINED_LABELS[kind]} ({size} px)"
    wall = {name: stages.seconds(name) for name in stages.done  # extras of earlier runs: only if asked for
            if not name.startswith("extra_") or name[len("extra_"):] in cfg.extras}
    wall["figures_report"] = round(time.perf_counter() - t0, 2)
    metrics = {
        "classification": {"accuracy": classification["top1"], "top5": classification["top5"],
                           "macro_f1": classification["macro"]["f1"],
                           "num_samples": classification["num_samples"]},
        "maps": maps,
        "map_labels": labels,
        "primary_objective": primary,
        "pointing_tolerance_px": pointing_tolerance(cfg.size),
        "config": cfg.to_json(),
        "wall_time_s": wall,
    }
    metrics["best_map"] = _best_maps({k: v for k, v in maps.items() if not k.startswith("lite0_")})
    if extras:
        metrics["extras"] = {name: {k: v for k, v in rec.items() if k != "summary"} for name, rec in extras.items()}
    stage_total = sum(v for v in wall.values() if math.isfinite(v))
    wall["all_stages"] = round(stage_total, 2)
    wall["this_run"] = round(time.perf_counter() - start, 2)
    (out / "metrics.json").write_text(json.dumps(json_safe(metrics), indent=1))
    extra = ([compare_table] if compare_table is not None else [])
    if "neighbours" in extras:
        extra.append(_neighbours_table(extras["neighbours"]))
    extra += list(extra_tables)
    _write_report(out, cfg, metrics, classification, figures, extra)
    _log(f"wrote {out / 'report.md'} and {out / 'metrics.json'}", progress)
    return metrics


PRETRAINED_LABELS = {"low": "low-res CAM", "high": "high-res CAM", "refined": "refined"}
NEIGHBOUR_NAMES = {"camnet": "CAM (Zhou et al., camnet)", "lcam": "L-CAM-Fm", "casm": "CASM"}


def _extra_pretrained(out: Path, data_dir: Path, cfg: DemoConfig, stages: _Stages, data_key: str,
                      progress: bool) -> dict:
    """Stage ``extra_pretrained``: frozen Lite0 + linear head + decoder, scored like the demo maps."""
    from hrcam.metrics.classification import classification_metrics
    from hrcam.workflows.pretrained_demo import fit_pretrained_digits, score_pretrained

    ps = cfg.extra_settings("pretrained")
    limit = ps["test_limit"] if ps["test_limit"] is not None else cfg.limit
    key = _key(data_key, ps, limit, cfg.seed)
    path = out / "extras" / "pretrained.json"
    cached = stages.cached_json("extra_pretrained", key, path, progress, "the pretrained-path evaluation")
    if cached is not None:
        return cached
    _log(f"extra 'pretrained': {ps['backbone']} frozen, linear head on the digits, decoder "
         f"{ps['decoder_steps']} steps, {ps['im_size']} px", progress)
    t0 = time.perf_counter()
    fit = {k: v for k, v in ps.items() if k != "test_limit"}
    net, info = fit_pretrained_digits(data_dir, seed=cfg.seed, progress=progress, **fit)
    t1 = time.perf_counter()
    res = score_pretrained(net, data_dir, ps["im_size"], limit=limit, progress=progress)
    backbone = getattr(net, "backbone", net)
    cls = classification_metrics(res.labels, res.logits, backbone.num_classes, backbone.class_names)
    seconds = {"linear_head": info["seconds_head"],
               "decoder": (info["decoder"] or {}).get("seconds", 0.0),
               "score": round(time.perf_counter() - t1, 2)}
    record = {"settings": ps, "summary": json_safe(res.summary), "count": len(res.paths),
              "accuracy": cls["top1"], "top5": cls["top5"], "info": json_safe(info), "seconds": seconds}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record, indent=1))
    stages.record("extra_pretrained", key, time.perf_counter() - t0, **{f"seconds_{k}": v for k, v in seconds.items()})
    return record


def _subset_data(data_dir: Path, dest: Path, train: int, test: int) -> Path:
    """A copy of ``train`` / ``test`` images spread over each split (so over the classes), same
    relative paths, with their ground truth (``annotations.json`` entries and mask files)."""
    import shutil

    from hrcam.data.folders import ClassFolderDataset, dataset_classes
    from hrcam.evaluation.localization import select_indices

    if dest.exists():
        shutil.rmtree(dest)
    annotations = json.loads((data_dir / "annotations.json").read_text())
    kept = {}
    classes = dataset_classes(data_dir)
    for split, n in (("train", train), ("test", test)):
        ds = ClassFolderDataset(data_dir / split, 8, 3, classes=classes)
        for i in select_indices(len(ds), n):
            rel = Path(ds.samples[int(i)][0]).resolve().relative_to(data_dir.resolve()).as_posix()
            files = [rel]
            if rel in annotations:
                kept[rel] = annotations[rel]
                files += [annotations[rel]["mask"]] if annotations[rel].get("mask") else []
            for f in files:
                (dest / f).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(data_dir / f, dest / f)
    (dest / "annotations.json").write_text(json.dumps(kept))
    return dest


def _extra_neighbours(out: Path, data_dir: Path, cfg: DemoConfig, stages: _Stages, data_key: str,
                      progress: bool) -> dict:
    """Stage ``extra_neighbours``: CAM, L-CAM and CASM on a subset of the demo data, scored with
    ``hrcam compare``'s metrics on the subset's test images."""
    from hrcam.workflows.baselines_demo import neighbour_rows, train_neighbours

    nb = cfg.extra_settings("neighbours")
    key = _key(data_key, nb, cfg.seed)
    path = out / "extras" / "neighbours.json"
    cached = stages.cached_json("extra_neighbours", key, path, progress, "CAM / L-CAM / CASM")
    if cached is not None:
        return cached
    _log(f"extra 'neighbours': CAM, L-CAM, CASM on {nb['backbone']}, {nb['train']} train / {nb['test']} "
         f"test images, {nb['im_size']} px, {nb['epochs']} epochs", progress)
    t0 = time.perf_counter()
    sub = _subset_data(data_dir, out / "extras" / "neighbours_data", nb["train"], nb["test"])
    seconds: dict = {}
    train_kw = {k: v for k, v in nb.items() if k not in ("train", "test", "score_batch")}
    weights = train_neighbours(sub, out / "extras" / "neighbours", seed=cfg.seed, progress=progress,
                               seconds=seconds, **train_kw)
    t1 = time.perf_counter()
    rows = neighbour_rows(weights, sub, batch_size=nb["score_batch"], progress=progress)
    seconds["score"] = round(time.perf_counter() - t1, 2)
    record = {"settings": nb, "rows": json_safe(rows), "seconds": seconds}
    path.write_text(json.dumps(record, indent=1))
    stages.record("extra_neighbours", key, time.perf_counter() - t0, **{f"seconds_{k}": v for k, v in seconds.items()})
    return record


def _neighbours_table(record: dict):
    from hrcam.viz.report import table_from_records

    nb, sec = record["settings"], record["seconds"]
    rows = {NEIGHBOUR_NAMES.get(r["method"], r["method"]): r for r in record["rows"]}
    times = ", ".join(f"{k} {v:.0f} s" for k, v in sec.items())
    return table_from_records(
        f"CAM / L-CAM / CASM trained on the demo data ({nb['train']} train / {nb['test']} test images)",
        rows, [("clean_top1", "classifier acc."), *COMPARE_COLUMNS], "method",
        note=(f"Small settings: {nb['backbone']}{' (offline ImageNet weights)' if nb['pretrained'] else ''}, "
              f"{nb['im_size']} px, batch {nb['batch_size']}, {nb['epochs']} epochs, CAM extra conv "
              f"{nb['extra_channels']} channels, L-CAM-Fm on the trained CAM classifier (lr {nb['lcam_lr']}), "
              f"CASM thinning {nb['thinning']}. Wall time: {times}. Each method explains its own "
              "classifier, so these rows are not on the FullModel above; same columns as the "
              "comparison table."))


def _compare(out: Path, data_dir: Path, cfg: DemoConfig, weights: Path, progress: bool) -> None:
    """``hrcam compare`` on ``cfg.compare_limit`` test images (round-robin over the classes)."""
    import torch

    from hrcam.api.seed import load_model
    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.evaluation.compare import compare_methods, write_table

    model = load_model(weights)
    x, labels, paths, _ = load_split(data_dir, "test", cfg.size, 3, cfg.compare_limit, model.num_classes)
    gt = load_ground_truth_for(data_dir, "test", paths, cfg.size)
    rows = compare_methods(model.net, x, labels, cfg.compare_methods, ground_truth=gt, progress=progress)
    write_table(rows, out / "compare", meta={"images": len(labels), "weights": str(weights)})


COMPARE_COLUMNS = [("ms_per_image", "ms / image"), ("pointing_game", "pointing game"),
                   ("energy_pointing_game", "energy PG"), ("box_acc_cam", "box acc. (CAM)"),
                   ("mask_iou", "mask IoU"), ("AD@0", "AD@0 ↓"), ("IC@0", "IC@0 ↑"),
                   ("deletion_auc", "deletion AUC ↓"), ("insertion_auc", "insertion AUC ↑")]


def _compare_table(payload: dict, cfg: DemoConfig):
    from hrcam.viz.report import table_from_records

    records = {row.get("method", f"method {i}"): row for i, row in enumerate(payload["rows"])}
    return table_from_records(
        f"Explanation methods on the same FullModel ({payload.get('meta', {}).get('images', '?')} test images)",
        records, COMPARE_COLUMNS, "method",
        note=("From `hrcam compare` (all columns in compare/compare.md, .json, .csv). AD/IC in %, "
              "with the map applied in image space; deletion/insertion: 20 steps."))


def _kind_label(kind: str, labels: dict) -> str:
    base, _, obj = kind.partition("_")
    return labels.get(base, base) + (f" [{obj}]" if obj else "")


def _beats(a, b, lower_is_better: bool) -> bool:
    if a is None or b is None:
        return False
    return a < b if lower_is_better else a > b


def _best_maps(maps: dict) -> dict:
    """For each metric, the map kind with the highest mean (lowest for OM/LE); the centre prior
    is a reference and does not compete."""
    best = {}
    for key, _ in METRIC_COLUMNS:
        lower = key.startswith(("om_", "le_"))
        scored = [(v[key], k) for k, v in maps.items()
                  if k != "center" and isinstance(v.get(key), (int, float)) and v.get(key) is not None]
        if scored:
            best[key] = (min if lower else max)(scored)[1]
    return best


def _write_report(out: Path, cfg: DemoConfig, metrics: dict, classification: dict, figures, extra_tables):
    from hrcam.viz.report import Figure, Table, table_from_records, write_report

    maps = metrics["maps"]
    records = {metrics["map_labels"][k]: v for k, v in maps.items()}
    loc = table_from_records(
        "Localization on the test split (mean over images)", records, METRIC_COLUMNS, "map",
        note=(f"{maps[next(iter(maps))].get('count', '?')} test images, maps of the predicted class, "
              f"{cfg.size}×{cfg.size} px. Pointing-game tolerance ±{metrics['pointing_tolerance_px']:.1f} px "
              "(15 px at 224, scaled). Box accuracy: IoU ≥ 0.5 (CAM rule: ≥ 20 % of max, largest "
              "8-connected component) / IoU > 0.5 (CASM rule: mean-fraction of pixels, largest "
              "4-connected component). Mask IoU: normalized map ≥ 0.5. OM = 1 − box hit · correct "
              "(lower is better). The centre prior is a fixed Gaussian that ignores the image."
              + (" Lite0 rows: scored at their own input size (ground truth resized with the image, "
                 "tolerance scaled the same way); see below." if any(k.startswith("lite0_") for k in maps)
                 else "")),
    )
    best = metrics["best_map"]
    wins = []
    for kind in [k for k in maps if k not in ("low", "center") and not k.startswith("lite0_")]:
        better = [h for key, h in METRIC_COLUMNS
                  if _beats(maps[kind].get(key), maps["low"].get(key), key.startswith(("om_", "le_")))]
        wins.append(f"{metrics['map_labels'][kind]} beats the low-res CAM on {len(better)} of "
                    f"{len(METRIC_COLUMNS)} metrics" + (f" ({', '.join(better)})" if better else ""))
    verdict = ", ".join(f"{dict(METRIC_COLUMNS)[k]}: **{metrics['map_labels'][v]}**" for k, v in best.items())
    cls = Table("Classification (test split)", ["metric", "value"], [
        ["top-1 accuracy", classification["top1"]],
        [f"top-{classification.get('top_k', 5)} accuracy", classification["top5"]],
        ["macro F1", classification["macro"]["f1"]],
        ["images", classification["num_samples"]],
    ])
    wall = Table("Wall time per stage (seconds)", ["stage", "seconds"],
                 [[k, v] for k, v in metrics["wall_time_s"].items()], digits=1,
                 note=("Stages reused from an earlier run keep the time they took then; `all_stages` "
                       "is their sum, `this_run` the wall time of the run that wrote this report."))
    arch = ", ".join(f"{k}={v}" for k, v in cfg.arch.items())
    blocks = [
        ("The seed's workflow on the built-in *digits on textures* data (real handwritten digits "
         "from scikit-learn on scikit-image texture photos; exact masks and boxes): train the "
         "HalfModel, then the FullModel's decoder on the frozen classifier, classify the test "
         "split, compute low-res CAMs, high-res CAMs and refined maps, and score them.\n\n"
         f"Preset: {cfg.size}×{cfg.size} px, {cfg.train} train / {cfg.test} test images, "
         f"FC-DenseNet of DESIGN §3 with {arch}, batch {cfg.batch_size}, "
         f"{cfg.half_epochs} HalfModel epochs (+{cfg.half_settle_epochs} at batch "
         f"{cfg.batch_size * cfg.settle_batch_factor}), {cfg.full_epochs} FullModel epochs per decoder "
         f"objective ({', '.join(cfg.objectives)}; plain kinds use '{metrics['primary_objective']}'), "
         "augmentation off, last-epoch weights."),
        cls,
        loc,
        f"Best map per metric (centre prior excluded): {verdict}.\n\n" + ";\n".join(wins) + ".\n",
        *([_pretrained_text(metrics)] if "pretrained" in metrics.get("extras", {}) else []),
        wall,
    ]
    for obj, path in figures:
        blocks.append(Figure(path, f"Test images, decoder objective '{obj}': image (true → predicted "
                                   "class), low-res CAM, high-res CAM, refined map, ground truth "
                                   "(mask, box in red)."))
    blocks.append(Figure("pipeline.png", "The post-processing pipeline on the first test image."))
    write_report(out / "report.md", "hrcam demo: HR-CAM on digits on textures", blocks, list(extra_tables))


def _pretrained_text(metrics: dict) -> str:
    """The paragraph under the localization table that explains the Lite0 rows."""
    rec = metrics["extras"]["pretrained"]
    ps, info, sec = rec["settings"], rec["info"], rec["seconds"]
    maps = metrics["maps"]
    lower = [k for k in ("lite0_high", "lite0_refined") if k in maps]
    wins = []
    for kind in lower:
        better = [h for key, h in METRIC_COLUMNS
                  if _beats(maps[kind].get(key), maps["lite0_low"].get(key), key.startswith(("om_", "le_")))]
        wins.append(f"{metrics['map_labels'][kind]} beats the Lite0 low-res CAM on {len(better)} of "
                    f"{len(METRIC_COLUMNS)} metrics")
    dec = info.get("decoder") or {}
    return (f"**Lite0 rows** (pretrained path, not FC-DenseNet): {ps['backbone']} with its offline "
            f"ImageNet weights, frozen; only the linear head fitted on {info['train_images']} training "
            f"digits ({ps['head_epochs']} epochs on cached features) at {ps['im_size']} px "
            f"(low-res maps {ps['im_size'] // 32}×{ps['im_size'] // 32}); then the rank-{dec.get('rank', '–')} decoder, "
            f"'{ps['objective']}' objective, {ps['decoder_steps']} steps of batch {ps['decoder_batch']} "
            f"at {ps['train_size']} px. Test accuracy of this classifier: {rec['accuracy']:.3f} on "
            f"{rec['count']} images. Wall time: linear head {sec['linear_head']:.0f} s, decoder "
            f"{sec['decoder']:.0f} s, scoring {sec['score']:.0f} s. "
            + ("; ".join(wins) + "." if wins else "") + "\n")
