"""The demo's HR-CAM training: HalfModel then FullModel per objective, quietly, on the CPU."""
from __future__ import annotations

from pathlib import Path

from hrcam.workflows.demo.config import DemoConfig


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
