"""``fit``: one Lightning run with the seed's results layout.

    results/<results_name>/best_weights.safetensors   best checkpoint by ``monitor``
    results/<results_name>/last_weights.safetensors   weights after the last epoch
    results/<results_name>/checkpoints/{best,last}.ckpt   Lightning checkpoints (for --resume)
    logs/<results_name>/                               TensorBoard event files

``results_name`` may contain sub-folders (created when missing) but never escapes those roots.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

import lightning.pytorch as L
import torch
from lightning.pytorch.callbacks import Callback, Checkpoint, ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger
from lightning.pytorch.plugins.io import TorchCheckpointIO

from hrcam.errors import UserError
from hrcam.quiet import quiet_third_party
from hrcam.weights import save_weights

__all__ = ["fit", "check_results_name", "run_paths", "AtomicCheckpointIO", "LastCheckpoint", "FiniteLoss"]


def check_results_name(name: str) -> str:
    """A relative, ``..``-free results name (sub-folders allowed)."""
    if not name or not str(name).strip():
        raise UserError("results_name must not be empty")
    p = PurePosixPath(str(name).replace("\\", "/"))
    if str(p) in (".", "") or not p.parts:
        raise UserError(f"results_name must name a run folder like 'half/run1', got {name!r}")
    if p.is_absolute() or str(name).startswith(("/", "~")) or ":" in p.parts[0]:
        raise UserError(f"results_name must be a relative name like 'half/run1', got {name!r}")
    if any(part == ".." for part in p.parts):
        raise UserError(f"results_name must not contain '..', got {name!r}")
    long = [part for part in p.parts if len(part.encode()) > 255]
    if long:
        raise UserError(f"results_name: the part {long[0][:40]!r}... is {len(long[0].encode())} bytes long "
                        "(at most 255 per folder name)")
    return str(p)


def _inside(root, name: str, what: str) -> Path:
    """``root/name``, refused when a parent is a file or a symlink leads it out of ``root``."""
    root = Path(root)
    path = root / name
    for parent in [*reversed(path.parents), path]:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"results_name {name!r}: {parent} is a file, not a folder")
    real_root = root.resolve()
    real = path.resolve()
    if real != real_root and real_root not in real.parents:
        raise UserError(f"results_name {name!r}: {path} leads out of {what} {root} (through a symlink) "
                        f"to {real}; give a name that stays inside")
    return path


def run_paths(results_name: str, results_root="results", logs_root="logs") -> tuple[Path, Path]:
    """``(results folder, logs folder)`` of a run, after checking its name (and where it leads)."""
    name = check_results_name(results_name)
    return _inside(results_root, name, "results root"), _inside(logs_root, name, "logs root")


def _export(ckpt_path, out: Path, metadata: dict, module) -> None:
    state = torch.load(str(ckpt_path), map_location="cpu", weights_only=True)["state_dict"]
    state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    save_weights(out, state, metadata)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning checkpoints written through :func:`hrcam.fileio.atomic_path`: a full disk or a
    kill during the write leaves the previous ``last.ckpt`` / ``best.ckpt`` intact."""

    def save_checkpoint(self, checkpoint, path, storage_options=None) -> None:  # noqa: D102
        from hrcam.fileio import atomic_path

        with atomic_path(path) as tmp:
            torch.save(checkpoint, str(tmp))


class LastCheckpoint(Checkpoint):
    """``last.ckpt`` after every epoch (Lightning's ``save_last`` follows top-k saves only).

    A :class:`~lightning.pytorch.callbacks.Checkpoint`, so Lightning runs it after the
    metric-monitoring ``best`` checkpoint: its file holds that callback's up-to-date state.
    """

    def __init__(self, path: Path):
        self.path = Path(path)

    def on_train_epoch_end(self, trainer, pl_module) -> None:  # noqa: D102
        if not trainer.sanity_checking:
            trainer.save_checkpoint(self.path)


class NonFiniteLoss(Exception):
    """Raised by :class:`FiniteLoss` (before the optimizer step) when the loss is NaN or infinite."""


class FiniteLoss(Callback):
    """Stop before a NaN / infinite loss reaches the weights (much cheaper than ``detect_anomaly``)."""

    def on_before_backward(self, trainer, pl_module, loss) -> None:  # noqa: D102
        if not bool(torch.isfinite(loss.detach()).all()):
            raise NonFiniteLoss(f"the training loss became {float(loss.detach().float().mean())} at epoch "
                                f"{trainer.current_epoch + 1}, step {trainer.global_step + 1}")


class _Interrupted(Callback):
    """Remembers a Ctrl-C that Lightning turns into ``sys.exit(1)``."""

    seen = False

    def on_exception(self, trainer, pl_module, exception) -> None:  # noqa: D102
        if isinstance(exception, KeyboardInterrupt):
            self.seen = True


def _rank_zero_process() -> bool:
    """False in the worker processes a multi-process strategy starts (they share rank 0's checks)."""
    return all(os.environ.get(k, "0") == "0" for k in ("LOCAL_RANK", "NODE_RANK", "RANK"))


def _existing_run(results_dir: Path, logs_dir: Path) -> list[Path]:
    found = [p for p in (results_dir / "best_weights.safetensors", results_dir / "last_weights.safetensors")
             if p.exists()]
    if (results_dir / "checkpoints").is_dir() and any((results_dir / "checkpoints").iterdir()):
        found.append(results_dir / "checkpoints")
    if logs_dir.is_dir():
        found += sorted(logs_dir.glob("events.out.tfevents.*"))
    return found


def _clear_run(results_dir: Path, logs_dir: Path) -> None:
    """Remove what a previous run wrote (weights, checkpoints, event files), nothing else."""
    import shutil

    for p in _existing_run(results_dir, logs_dir):
        if p.is_dir():
            shutil.rmtree(p)
        else:
            p.unlink()


class _RunLock:
    """An exclusive lock on ``results_dir/.hrcam.lock`` for the length of a run (released on exit,
    kill -9 included: it is an ``flock``)."""

    def __init__(self, results_dir: Path, name: str):
        self.path, self.name, self.fh = results_dir / ".hrcam.lock", name, None

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX: no lock
            return self
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.fh = open(self.path, "a+")
        except OSError as err:
            raise UserError(f"cannot write to {self.path.parent}: {err.strerror or err}") from None
        try:
            fcntl.flock(self.fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            self.fh.close()
            self.fh = None
            raise UserError(f"another training is running on results_name {self.name!r} ({self.path} is "
                            "locked); wait for it or choose another --results_name") from None
        return self

    def __exit__(self, *exc):
        if self.fh is not None:
            self.fh.close()
        return False


def fit(module: L.LightningModule, datamodule: L.LightningDataModule, results_name: str, *, epochs: int,
        results_root="results", logs_root="logs", monitor: str = "val_acc", mode: str = "max",
        devices="auto", num_nodes: int = 1, strategy="auto", accelerator="auto", resume: bool = False,
        overwrite: bool = False, progress: bool = True, max_steps: int = -1, seed: int = 0,
        limit_train_batches=None, limit_val_batches=None, callbacks=(), log_every_n_steps: int = 10,
        precision=None) -> dict:
    """Train ``module`` (which implements ``export_state()``) and export best/last weights.

    When there is no validation data, ``monitor`` falls back to ``train_loss`` (mode ``min``).
    A run folder that already holds a run is refused unless ``resume`` (continue it from
    ``checkpoints/last.ckpt``) or ``overwrite`` (replace it); two runs on one folder at once are
    refused (a lock file). ``last.ckpt`` is written after every epoch, atomically. A NaN or
    infinite loss stops the run with a :class:`UserError`, keeping the last finite weights.
    Returns ``{"best": Path, "last": Path, "logs": Path (TensorBoard), "trainer": Trainer}``.
    """
    if epochs < 1:
        raise UserError(f"epochs must be >= 1, got {epochs}")
    if max_steps == 0 or max_steps < -1:
        raise UserError(f"max_steps must be a positive number of steps (or -1: no limit), got {max_steps}")
    results_dir, logs_dir = run_paths(results_name, results_root, logs_root)
    if not _rank_zero_process():
        return _fit(module, datamodule, results_name, results_dir, logs_dir, epochs=epochs, logs_root=logs_root,
                    monitor=monitor, mode=mode, devices=devices, num_nodes=num_nodes, strategy=strategy,
                    accelerator=accelerator, resume=resume, progress=progress, max_steps=max_steps, seed=seed,
                    limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
                    callbacks=callbacks, log_every_n_steps=log_every_n_steps, precision=precision)
    with _RunLock(results_dir, results_name):
        if resume and overwrite:
            raise UserError("give --resume or --overwrite, not both")
        if not resume:
            found = _existing_run(results_dir, logs_dir)
            if found and not overwrite:
                raise UserError(f"results_name {results_name!r} already holds a run ({found[0]}); give --resume "
                                "to continue it or --overwrite to replace it")
            if found:
                _clear_run(results_dir, logs_dir)
        return _fit(module, datamodule, results_name, results_dir, logs_dir, epochs=epochs, logs_root=logs_root,
                    monitor=monitor, mode=mode, devices=devices, num_nodes=num_nodes, strategy=strategy,
                    accelerator=accelerator, resume=resume, progress=progress, max_steps=max_steps, seed=seed,
                    limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
                    callbacks=callbacks, log_every_n_steps=log_every_n_steps, precision=precision)


def _check_resume(last: Path, module) -> None:
    """A one-line error for a ``last.ckpt`` that cannot continue this run (read without unpickling)."""
    from hrcam.weights import first_line

    if not last.is_file():
        raise UserError(f"nothing to resume: {last} does not exist")
    if last.stat().st_size == 0:
        raise UserError(f"cannot resume: {last} is empty")
    try:
        ckpt = torch.load(str(last), map_location="cpu", weights_only=True)
    except Exception as err:
        reason = "it holds pickled Python objects hrcam never loads" if "GLOBAL" in str(err) else (
            "" if "weights_only" in str(err) else first_line(err))
        raise UserError(f"cannot resume: {last} is not a readable checkpoint"
                        f"{' (' + reason + ')' if reason else ''}; start again with --overwrite") from None
    if not isinstance(ckpt, dict) or not isinstance(ckpt.get("state_dict"), dict):
        raise UserError(f"cannot resume: {last} is not a Lightning checkpoint; start again with --overwrite")
    expected = module.state_dict()
    state = ckpt["state_dict"]
    bad = [k for k in expected if k not in state or not hasattr(state[k], "shape")
           or tuple(state[k].shape) != tuple(expected[k].shape)]
    extra = [k for k in state if k not in expected]
    if bad or extra:
        key = (bad or extra)[0]
        got = tuple(state[key].shape) if key in state and hasattr(state[key], "shape") else "missing"
        want = tuple(expected[key].shape) if key in expected else "not in this model"
        hint = " (a different number of classes?)" if key.endswith("fc.weight") or key.endswith("fc.bias") else ""
        raise UserError(f"cannot resume from {last}: it does not match this model and data: {key} is {got} "
                        f"there, {want} here{hint}; check the data and architecture flags, or start again "
                        "with --overwrite")


def _fit(module, datamodule, results_name, results_dir: Path, logs_dir: Path, *, epochs, logs_root, monitor,
         mode, devices, num_nodes, strategy, accelerator, resume, progress, max_steps, seed,
         limit_train_batches, limit_val_batches, callbacks, log_every_n_steps, precision) -> dict:
    ckpt_dir = results_dir / "checkpoints"
    has_val = getattr(datamodule, "val_set", None) is not None
    if monitor.startswith("val_") and not has_val:
        monitor, mode = "train_loss", "min"
    ckpt_path = None
    if resume:
        last = ckpt_dir / "last.ckpt"
        _check_resume(last, module)
        ckpt_path = str(last)
    L.seed_everything(seed, workers=True, verbose=False)
    checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor=monitor, mode=mode,
                                 save_top_k=1, save_last=False, enable_version_counter=False)
    interrupted = _Interrupted()
    logger = TensorBoardLogger(save_dir=str(Path(logs_root)), name=check_results_name(results_name),
                               version="", default_hp_metric=False)
    with quiet_third_party():  # Lightning's tips and advice that does not apply (hrcam.quiet)
        trainer = L.Trainer(
            max_epochs=epochs, max_steps=max_steps, accelerator=accelerator, devices=devices,
            num_nodes=num_nodes, strategy=strategy, logger=logger,
            callbacks=[FiniteLoss(), interrupted, *callbacks, checkpoint,
                       LastCheckpoint(ckpt_dir / "last.ckpt")],
            enable_progress_bar=progress, plugins=[AtomicCheckpointIO()],
            enable_model_summary=False, default_root_dir=str(results_dir),
            limit_train_batches=limit_train_batches, limit_val_batches=limit_val_batches,
            log_every_n_steps=log_every_n_steps, num_sanity_val_steps=0, deterministic=False,
            **({"precision": precision} if precision else {}),
        )
        try:
            trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
        except NonFiniteLoss as err:
            kept = _keep_finite(trainer, module, results_dir, ckpt_dir)
            raise UserError(f"training diverged: {err} (try a smaller --lr); {kept}") from None
        except SystemExit:
            if interrupted.seen:
                raise KeyboardInterrupt from None
            raise
    best = results_dir / "best_weights.safetensors"
    last = results_dir / "last_weights.safetensors"
    if trainer.is_global_zero:
        state, metadata = module.export_state()
        save_weights(last, state, metadata)
        best_ckpt = checkpoint.best_model_path
        if best_ckpt and Path(best_ckpt).is_file():
            _export(best_ckpt, best, metadata, module)
        else:
            save_weights(best, state, metadata)
    trainer.strategy.barrier()
    return {"best": best, "last": last, "logs": logs_dir, "trainer": trainer}


def _finite(state: dict) -> bool:
    return all(bool(torch.isfinite(v).all()) for v in state.values()
               if isinstance(v, torch.Tensor) and v.is_floating_point())


def _keep_finite(trainer, module, results_dir: Path, ckpt_dir: Path) -> str:
    """After a non-finite loss: export the last finite weights; say what was kept."""
    if not trainer.is_global_zero:
        return ""
    state, metadata = module.export_state()
    last = results_dir / "last_weights.safetensors"
    if _finite(state):
        save_weights(last, state, metadata)
        kept = f"the last finite weights are in {last}"
    elif (ckpt_dir / "last.ckpt").is_file():
        _export(ckpt_dir / "last.ckpt", last, metadata, module)
        kept = f"the weights of the last finished epoch are in {last}"
    else:
        return "no finite weights to keep (it diverged in the first epoch)"
    best_ckpt = ckpt_dir / "best.ckpt"
    if best_ckpt.is_file():
        _export(best_ckpt, results_dir / "best_weights.safetensors", metadata, module)
    return kept
