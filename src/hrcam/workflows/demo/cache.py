"""Finished demo stages, recorded in ``OUT/stages.json`` with a key of their settings, and the saved gallery examples."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from hrcam.fileio import write_text


def _log(msg: str, progress: bool) -> None:
    if progress:
        print(f"[demo] {msg}", flush=True)

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
        write_text(self.path, json.dumps(self.done, indent=1))

    def seconds(self, name: str) -> float:
        return float(self.done.get(name, {}).get("seconds", float("nan")))

def _save_examples(path: Path, examples: dict) -> None:
    arrays = {k: np.asarray(v) for k, v in examples.items() if k not in ("mask", "boxes")}
    arrays["mask"] = np.asarray([m if m is not None else np.zeros(arrays["image"].shape[1:3], bool)
                                 for m in examples["mask"]])
    (path.parent).mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **arrays)
    write_text(path.with_suffix(".boxes.json"), json.dumps(examples["boxes"]))

def _load_examples(path: Path) -> dict:
    with np.load(path) as z:
        ex = {k: z[k] for k in z.files}
    ex["boxes"] = json.loads(path.with_suffix(".boxes.json").read_text())
    ex["label"] = ex["label"].tolist()
    ex["pred"] = ex["pred"].tolist()
    return ex
