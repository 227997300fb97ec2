"""The one place where third-party noise is silenced: Lightning's tips and banners, known
deprecation warnings of our dependencies, advice that does not apply to hrcam's runs.

Every filter is narrow (a message pattern, and a category or logger), so anything new still
shows. ``hrcam --verbose`` (or ``HRCAM_VERBOSE=1``, inherited by DDP worker processes) turns
them all off::

    with quiet_third_party():
        trainer.fit(...)

Light on purpose: importing this module imports neither torch nor Lightning.
"""
from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings

__all__ = ["VERBOSE_ENV", "is_verbose", "set_verbose", "quiet_third_party"]

#: set to "1" by ``hrcam --verbose``; child processes (DDP workers) inherit it
VERBOSE_ENV = "HRCAM_VERBOSE"

#: (message regex, category): warnings that are noise in hrcam's runs
WARNINGS = [
    # torch >= 2.9 deprecates LeafSpec; Lightning's own pytree helper still builds one per batch
    (r"`isinstance\(treespec, LeafSpec\)` is deprecated", FutureWarning),
    # Lightning's advice on loader workers and logging intervals; our runs choose both on purpose
    (r".*does not have many workers", Warning),
    (r".*log_every_n_steps", Warning),
    # resuming and re-running write into the same checkpoint folder on purpose
    (r".*Checkpoint directory .* exists and is not empty", Warning),
    # FullModule keeps its frozen classifier in eval mode on purpose
    (r".*module\(s\) in eval mode", Warning),
    # the demo's modules move batches themselves (on_after_batch_transfer) with a DataModule
    (r"You have overridden `on_after_batch_transfer` in `LightningModule` but have passed in a "
     r"`LightningDataModule`", Warning),
    # an empty validation split is allowed (training falls back to train_loss)
    (r"Total length of `.*` across ranks is zero", Warning),
]

#: Lightning's info lines that are not about the run: tips, the hardware banner, why fit stopped,
#: and the note that a full checkpoint (with optimizer state, for --resume) is being written
LOG_LINES = re.compile(r"💡 Tip:|(GPU|TPU|HPU) available: |LOCAL_RANK: \d+ - |`Trainer\.fit` stopped: "
                       r"|`weights_only` was not set, defaulting to `False`")
LOGGERS = ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero",
           "lightning.pytorch.trainer.connectors.checkpoint_connector")


def is_verbose() -> bool:
    """True when every third-party message should show (``hrcam --verbose``)."""
    return os.environ.get(VERBOSE_ENV) == "1"


def set_verbose(on: bool) -> None:
    """Turn verbose mode on or off for this process and the processes it starts."""
    if on:
        os.environ[VERBOSE_ENV] = "1"
    else:
        os.environ.pop(VERBOSE_ENV, None)


class _DropLines(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return LOG_LINES.search(record.getMessage()) is None


@contextlib.contextmanager
def quiet_third_party():
    """Inside the block, the known third-party noise is not shown (nothing changes when verbose)."""
    if is_verbose():
        yield
        return
    drop = _DropLines()
    loggers = [logging.getLogger(name) for name in LOGGERS]
    with warnings.catch_warnings():
        for message, category in WARNINGS:
            warnings.filterwarnings("ignore", message=message, category=category)
        for log in loggers:
            log.addFilter(drop)
        try:
            yield
        finally:
            for log in loggers:
                log.removeFilter(drop)
