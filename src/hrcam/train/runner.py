"""``fit``: one Lightning run with the seed's results layout.

    results/<results_name>/best_weights.safetensors   best checkpoint by ``monitor``
    results/<results_name>/last_weights.safetensors   weights after the last epoch
    results/<results_name>/checkpoints/{best,last}.ckpt   Lightning checkpoints (for --resume)
    logs/<results_name>/                               TensorBoard event files

``results_name`` may contain sub-folders (created when missing) but never escapes those roots.
"""
from __future__ import annotations

from pathlib import Path, PurePosixPath

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from hrcam.errors import UserError
from hrcam.quiet import quiet_third_party
from hrcam.weights import save_weights

__all__ = ["fit", "check_results_name", "run_paths"]


def check_results_name(name: str) -> str:
    """A relative, ``..``-free results name (sub-folders allowed)."""
    if not name or not str(name).strip():
        raise UserError("results_name must not be empty")
    p = PurePosixPath(str(name).replace("\\", "/"))
    if p.is_absolute() or str(name).startswith(("/", "~")) or ":" in p.parts[0]:
        raise UserError(f"results_name must be a relative name like 'half/run1', got {name!r}")
    if any(part == ".." for part in p.parts):
        raise UserError(f"results_name must not contain '..', got {name!r}")
    return str(p)


def run_paths(results_name: str, results_root="results", logs_root="logs") -> tuple[Path, Path]:
    """``(results folder, logs folder)`` of a run, after checking its name."""
    name = check_results_name(results_name)
    return Path(results_root) / name, Path(logs_root) / name


def _export(ckpt_path: str, out: Path, metadata: dict, module) -> None:
    state = torch.load(ckpt_path, map_location="cpu", weights_only=True)["state_dict"]
    state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    save_weights(out, state, metadata)


def fit(module: L.LightningModule, datamodule: L.LightningDataModule, results_name: str, *, epochs: int,
        results_root="results", logs_root="logs", monitor: str = "val_acc", mode: str = "max",
        devices="auto", num_nodes: int = 1, strategy="auto", accelerator="auto", resume: bool = False,
        progress: bool = True, max_steps: int = -1, seed: int = 0, limit_train_batches=None,
        limit_val_batches=None, callbacks=(), log_every_n_steps: int = 10, precision=None) -> dict:
    """Train ``module`` (which implements ``export_state()``) and export best/last weights.

    When there is no validation data, ``monitor`` falls back to ``train_loss`` (mode ``min``).
    Returns ``{"best": Path, "last": Path, "logs": Path (TensorBoard), "trainer": Trainer}``.
    """
    if epochs < 1:
        raise UserError(f"epochs must be >= 1, got {epochs}")
    results_dir, logs_dir = run_paths(results_name, results_root, logs_root)
    ckpt_dir = results_dir / "checkpoints"
    has_val = getattr(datamodule, "val_set", None) is not None
    if monitor.startswith("val_") and not has_val:
        monitor, mode = "train_loss", "min"
    ckpt_path = None
    if resume:
        last = ckpt_dir / "last.ckpt"
        if not last.is_file():
            raise UserError(f"nothing to resume: {last} does not exist")
        ckpt_path = str(last)
    L.seed_everything(seed, workers=True, verbose=False)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode=mode,
                                 save_top_k=1, save_last=True, enable_version_counter=False)
    logger = TensorBoardLogger(save_dir=str(Path(logs_root)), name=check_results_name(results_name),
                               version="", default_hp_metric=False)
    with quiet_third_party():  # Lightning's tips and advice that does not apply (hrcam.quiet)
        trainer = L.Trainer(
            max_epochs=epochs, max_steps=max_steps, accelerator=accelerator, devices=devices,
            num_nodes=num_nodes, strategy=strategy, logger=logger,
            callbacks=[checkpoint, *callbacks], enable_progress_bar=progress,
            enable_model_summary=False, default_root_dir=str(results_dir),
            limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
            log_every_n_steps=log_every_n_steps, num_sanity_val_steps=0, deterministic=False,
            **({"precision": precision} if precision else {}),
        )
        trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    best = results_dir / "best_weights.safetensors"
    last = results_dir / "last_weights.safetensors"
    if trainer.is_global_zero:
        _, metadata = module.export_state()
        state, _ = module.export_state()
        save_weights(last, state, metadata)
        best_ckpt = checkpoint.best_model_path
        if best_ckpt and Path(best_ckpt).is_file():
            _export(best_ckpt, best, metadata, module)
        else:
            save_weights(best, state, metadata)
    trainer.strategy.barrier()
    return {"best": best, "last": last, "logs": logs_dir, "trainer": trainer}
