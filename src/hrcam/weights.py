"""Saving and loading weights without unpickling arbitrary objects.

Exported weights are ``safetensors`` files whose metadata (string → string) records what is
needed to rebuild the network: ``hrcam_type`` (``half``/``full``/…), ``num_classes``,
``in_channels``, ``im_size``, ``arch`` (JSON of the architecture arguments) and, when known,
``class_names`` (JSON list). Other formats are read with ``torch.load(weights_only=True)``:
plain state dicts and Lightning checkpoints (their ``state_dict`` entry; the ``net.`` prefix of
hrcam's own checkpoints is removed). Files holding other pickled objects are refused.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch

from hrcam.errors import UserError

__all__ = ["save_weights", "load_weights", "read_metadata", "check_metadata", "first_line",
           "state_dict_mismatch", "warn_non_finite", "torch_load_safe"]


def save_weights(path, state_dict: dict, metadata: dict | None = None) -> Path:
    """Write ``state_dict`` (tensors only) to ``path`` atomically, with string metadata.

    The file is written next to ``path``, flushed to disk and renamed over it
    (:func:`hrcam.fileio.atomic_path`): a full disk leaves the previous file intact.
    """
    from safetensors.torch import save_file

    from hrcam.fileio import atomic_path

    path = Path(path)
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=meta)
    return path


def first_line(err: BaseException) -> str:
    """A one-line description of ``err``: its message's first non-empty line, else its type."""
    for line in str(err).splitlines():
        if line.strip():
            return line.strip()
    return type(err).__name__


def state_dict_mismatch(err: BaseException, limit: int = 400) -> str:
    """``load_state_dict``'s multi-line error as one line (what is missing, unexpected, mis-sized)."""
    lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
    if len(lines) > 1 and lines[0].startswith("Error(s) in loading state_dict"):
        lines = lines[1:]
    text = "; ".join(lines) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


#: metadata fields and the Python types they must have
_META_TYPES = {"num_classes": int, "in_channels": int, "im_size": int, "arch": dict, "class_names": list,
               "hrcam_type": str}


def check_metadata(meta: dict, path) -> dict:
    """``meta`` after checking the fields hrcam rebuilds networks from (one-line :class:`UserError`)."""
    for key, kind in _META_TYPES.items():
        if key not in meta or meta[key] is None:
            continue
        value = meta[key]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise UserError(f"{path}: metadata field {key!r} must be a {'JSON ' if kind in (dict, list) else ''}"
                            f"{kind.__name__}, got {value!r:.80}")
        if kind is int and value < 1:
            raise UserError(f"{path}: metadata field {key!r} must be a positive integer, got {value}")
    return meta


def warn_non_finite(state: dict, path) -> None:
    """One warning when ``state`` holds NaN or infinite values (e.g. weights of a diverged run)."""
    bad = [k for k, v in state.items() if isinstance(v, torch.Tensor) and v.is_floating_point()
           and not bool(torch.isfinite(v).all())]
    if bad:
        import warnings

        warnings.warn(f"{path}: {len(bad)} tensor(s) hold NaN or infinite values (e.g. {bad[0]}); "
                      "its maps and predictions will be meaningless", RuntimeWarning, stacklevel=3)


def read_metadata(path) -> dict:
    """The metadata of a safetensors file (JSON values decoded); ``{}`` for other formats."""
    path = Path(path)
    if path.suffix != ".safetensors":
        return {}
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            raw = f.metadata() or {}
    except Exception as err:  # corrupt header, not a safetensors file
        raise UserError(f"cannot read weights file {path}: {err}") from None
    out = {}
    for k, v in raw.items():
        try:
            out[k] = json.loads(v)
        except (json.JSONDecodeError, TypeError):
            out[k] = v
    return check_metadata(out, path)


def load_weights(path, map_location="cpu") -> tuple[dict, dict]:
    """``(state_dict, metadata)`` from a safetensors file, a state dict or a Lightning checkpoint."""
    path = Path(path)
    if path.is_dir():
        for name in ("best_weights.safetensors", "last_weights.safetensors"):
            if (path / name).is_file():
                path = path / name
                break
        else:
            raise UserError(f"no best_weights.safetensors or last_weights.safetensors in {path}")
    if not path.is_file():
        raise UserError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            state = load_file(str(path), device=str(map_location))
        except Exception as err:
            raise UserError(f"cannot read weights file {path}: {first_line(err)}") from None
        meta = read_metadata(path)
        warn_non_finite(state, path)
        return state, meta
    obj = torch_load_safe(path, map_location)
    meta = {}
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta = {k: v for k, v in dict(obj.get("hyper_parameters", {}) or {}).items() if k in _META_TYPES}
        obj = obj["state_dict"]
        # hrcam's own Lightning checkpoints keep the network under the module's ``net`` attribute
        if obj and all(k.startswith("net.") for k in obj):
            obj = {k.removeprefix("net."): v for k, v in obj.items()}
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    warn_non_finite(obj, path)
    return obj, check_metadata(meta, path)


def torch_load_safe(path, map_location="cpu"):
    """``torch.load(weights_only=True)`` with one-line errors (and never torch's advice to unpickle)."""
    import pickle

    path = Path(path)
    if path.stat().st_size == 0:
        raise UserError(f"cannot read weights file {path}: the file is empty")
    try:
        return torch.load(str(path), map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        if "global" in str(err).lower():  # a class or function: code hrcam refuses to run
            raise UserError(f"cannot read weights file {path}: it holds pickled Python objects, which hrcam "
                            "never loads (give safetensors or a weights-only state dict)") from None
        raise UserError(f"cannot read weights file {path}: not a safetensors file or a weights-only "
                        "torch state dict") from None
    except Exception as err:
        reason = "" if "weights_only" in str(err) else f": {first_line(err)}"
        raise UserError(f"cannot read weights file {path} (safetensors or a weights-only state dict "
                        f"expected){reason}") from None
