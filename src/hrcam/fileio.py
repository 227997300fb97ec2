"""Writing files so that a crash, a full disk or Ctrl-C never leaves a half-written one behind.

Every file hrcam writes goes through :func:`atomic_path` (for writers that take a file name:
``torch.save``, safetensors, ``np.save``, PIL, Matplotlib) or :func:`atomic_open` (for text and
binary streams): the data goes to a temporary file in the target's folder, is flushed to disk
(``fsync``), and only then renamed over the target in one ``os.replace``. A failure on the way
(``ENOSPC``, ``EACCES``, an exception of the writer) removes the temporary file and leaves the
previous version of the target untouched; ``OSError`` becomes a one-line
:class:`~hrcam.errors.UserError` that names the file.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import tempfile
from pathlib import Path

from hrcam.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)

__all__ = ["atomic_path", "atomic_open", "write_text", "write_json", "check_writable_dir", "os_error_message"]


def os_error_message(err: OSError, path) -> str:
    """One line for an ``OSError`` met while writing ``path``."""
    if err.errno == errno.ENOSPC:
        return f"no space left on the device while writing {path}; the previous file (if any) is unchanged"
    reason = err.strerror or type(err).__name__
    return f"cannot write {path}: {reason}"


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def atomic_path(path, suffix: str | None = None):
    """Yield a temporary path next to ``path``; on success it replaces ``path`` atomically.

    ``suffix`` (default: ``path``'s own) keeps writers that look at the extension happy
    (``np.save`` adds ``.npy`` otherwise, PIL picks the format from it).
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.tmp-",
                                   suffix=path.suffix if suffix is None else suffix)
        os.close(fd)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp's 0600 would outlive the rename
    except OSError as err:
        raise UserError(os_error_message(err, path)) from None
    tmp = Path(tmp)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        raise UserError(os_error_message(err, path)) from None
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


@contextlib.contextmanager
def atomic_open(path, mode: str = "w", **kwargs):
    """``open(path, mode)`` whose result appears at ``path`` only once it is complete.

    ``mode`` is ``"w"`` / ``"wb"`` (text: ``newline`` and ``encoding`` pass through; UTF-8 by default).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes new files: mode 'w' or 'wb', got {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with atomic_path(path) as tmp:
        try:
            with open(tmp, mode, **kwargs) as fh:
                yield fh
        except OSError as err:
            raise UserError(os_error_message(err, path)) from None


def write_text(path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path, obj, indent: int | None = 2) -> Path:
    """Write ``obj`` as strict JSON to ``path`` atomically (NaN/inf are an error: use ``jsonio.json_safe``)."""
    return write_text(path, json.dumps(obj, indent=indent, allow_nan=False) + "\n")


def check_writable_dir(folder, what: str = "--out") -> Path:
    """Create ``folder`` if needed and check a file can be written there (before any long work)."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise UserError(f"{what}: {folder} exists and is not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=".hrcam-write-check.")
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise UserError(f"{what}: cannot write to {folder}: {err.strerror or err}") from None
    return folder
