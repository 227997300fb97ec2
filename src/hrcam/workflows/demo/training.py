"""The demo's HR-CAM training: HalfModel then FullModel per objective, quietly, on the CPU."""
from __future__ import annotations

from pathlib import Path

from hrcam.train.recipes import FolderData, RunSettings, train_full, train_half
from hrcam.workflows.demo.config import DemoConfig


def _data(cfg: DemoConfig, data_dir: Path, batch_factor: int = 1, seed_offset: int = 0) -> FolderData:
    # No validation split during training: the test split is scored once, afterwards, with the
    # last weights (choosing the "best" epoch on the test split would flatter the accuracy).
    return FolderData(data_dir, im_size=cfg.size, batch_size=cfg.batch_size * batch_factor, augment=cfg.augment,
                      val_split=None, seed=cfg.seed + seed_offset)


def _run(cfg: DemoConfig, out: Path, name: str, epochs: int, progress: bool) -> RunSettings:
    return RunSettings(name, epochs=epochs, results_root=out, logs_root=out / "logs", progress=progress,
                       overwrite=True, seed=cfg.seed, distributed={"accelerator": "cpu", "devices": 1})


def _train_half(cfg: DemoConfig, data_dir: Path, out: Path, progress: bool) -> Path:
    """The HalfModel (:func:`hrcam.train.recipes.train_half`), then ``half_settle_epochs`` at a larger batch."""
    res = train_half(_data(cfg, data_dir), _run(cfg, out, "half", cfg.half_epochs, progress), arch=dict(cfg.net_arch),
                     init_seed=cfg.seed, monitor="train_loss", mode="min")
    if cfg.half_settle_epochs <= 0:
        return Path(res["last"])
    res = train_half(_data(cfg, data_dir, cfg.settle_batch_factor, 1),
                     _run(cfg, out, "half/settled", cfg.half_settle_epochs, progress), arch=dict(cfg.net_arch),
                     half_weights=res["last"], monitor="train_loss", mode="min")
    return Path(res["last"])


def _train_full(cfg: DemoConfig, data_dir: Path, out: Path, half_weights: Path, objective: str,
                progress: bool) -> Path:
    """The FullModel for one decoder ``objective`` (:func:`hrcam.train.recipes.train_full`)."""
    res = train_full(_data(cfg, data_dir), _run(cfg, out, f"full_{objective}", cfg.epochs_of(objective), progress),
                     half_weights, arch=dict(cfg.net_arch), consistency_weight=cfg.consistency_weight,
                     init_seed=cfg.seed, **cfg.recipe_of(objective))
    return Path(res["last"])
