"""Saving and loading weights without unpickling arbitrary objects.

Exported weights are ``safetensors`` files whose metadata (string → string) records what is
needed to rebuild the network: ``hrcam_type`` (``half``/``full``/…), ``num_classes``,
``in_channels``, ``im_size``, ``arch`` (JSON of the architecture arguments) and, when known,
``class_names`` (JSON list). Other formats are read with ``torch.load(weights_only=True)``:
plain state dicts and Lightning checkpoints (their ``state_dict`` entry).
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import torch

from hrcam.errors import UserError

__all__ = ["save_weights", "load_weights", "read_metadata"]


def save_weights(path, state_dict: dict, metadata: dict | None = None) -> Path:
    """Write ``state_dict`` (tensors only) to ``path`` atomically, with string metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {str(k): v if isinstance(v, str) else json.dumps(v) for k, v in (metadata or {}).items()}
    tensors = {k: v.detach().cpu().contiguous() for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    tmp = path.with_name(path.name + ".tmp")
    save_file(tensors, str(tmp), metadata=meta)
    os.replace(tmp, path)  # never leave a half-written weights file behind
    return path


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
    return out


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
            raise UserError(f"cannot read weights file {path}: {err}") from None
        return state, read_metadata(path)
    try:
        obj = torch.load(str(path), map_location=map_location, weights_only=True)
    except Exception as err:
        raise UserError(f"cannot read weights file {path} (safetensors or a weights-only state dict "
                        f"expected): {str(err).splitlines()[0]}") from None
    meta = {}
    if isinstance(obj, dict) and "state_dict" in obj and isinstance(obj["state_dict"], dict):
        meta = dict(obj.get("hyper_parameters", {}) or {})
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"{path} does not hold a state dict of tensors")
    return obj, meta
