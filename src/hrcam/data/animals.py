"""The ImageNet *Animals* subset of the seed: 398 ILSVRC-2012 synsets, and index ↔ wnid ↔ name.

The subset is the first 398 ILSVRC-2012 synsets in sorted order, ``n01440764`` (tench) …
``n02655020`` (puffer): 510,530 images, which the seed split 396,416 train : 114,114 test.
:func:`build_animals_subset` rebuilds it from a user's ImageNet folder with a seeded per-class
split; :class:`AnimalsMapper` maps class indices to WordNet ids and readable names.
"""
from __future__ import annotations

import json
import os
import shutil
import warnings
import zlib
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from hrcam.data.layout import dataset_classes, read_synset_file  # noqa: F401 - re-exported
from hrcam.errors import UserError

__all__ = [
    "ANIMAL_SYNSET_RANGE",
    "NUM_ANIMAL_CLASSES",
    "DEFAULT_TEST_FRACTION",
    "is_animal_wnid",
    "select_animal_wnids",
    "read_synset_file",
    "AnimalsMapper",
    "split_class",
    "build_animals_subset",
]

ANIMAL_SYNSET_RANGE = ("n01440764", "n02655020")
NUM_ANIMAL_CLASSES = 398
DEFAULT_TEST_FRACTION = 114114 / 510530  # the seed's split: 396,416 train / 114,114 test
_MODES = ("symlink", "copy", "hardlink")


def is_animal_wnid(wnid: str) -> bool:
    """True for a WordNet id inside :data:`ANIMAL_SYNSET_RANGE` (``n`` + 8 digits, inclusive)."""
    lo, hi = ANIMAL_SYNSET_RANGE
    return len(wnid) == 9 and wnid[0] == "n" and wnid[1:].isdigit() and lo <= wnid <= hi


def select_animal_wnids(wnids: Iterable[str]) -> list[str]:
    """The animal synsets among ``wnids``: those in the range, sorted, at most the first 398.

    For the 1000 ILSVRC-2012 synsets this is exactly the seed's 398 classes.
    """
    return sorted({w for w in wnids if is_animal_wnid(w)})[:NUM_ANIMAL_CLASSES]


def _first_name(description: str) -> str:
    return description.split(",")[0].strip()


class AnimalsMapper:
    """Class index ↔ WordNet id ↔ name.

    Parameters
    ----------
    synset_words:
        a ``wnid description`` file (ImageNet's ``synset_words.txt``) or a ``{wnid: description}``
        mapping; a class's *name* is the description's first entry before a comma
        (``n01440764 tench, Tinca tinca`` → ``"tench"``). Without it, names are the wnids.
    classes:
        the class order (index ``i`` ↔ ``classes[i]``): a sequence of folder names / wnids, a
        ``classes.txt`` file (its descriptions, if any, give names when ``synset_words`` is not
        given), or a dataset folder (:func:`hrcam.data.layout.dataset_classes`). Default: the
        animal synsets of ``synset_words`` (:func:`select_animal_wnids`; all its ids, sorted,
        when none is an animal).
    """

    def __init__(self, synset_words=None, classes=None):
        descriptions: dict[str, str] = {}
        if isinstance(synset_words, Mapping):
            descriptions = {str(k): str(v) for k, v in synset_words.items()}
        elif synset_words is not None:
            descriptions = read_synset_file(synset_words)
        if classes is None:
            if not descriptions:
                raise ValueError("AnimalsMapper needs synset_words= or classes=")
            wnids = select_animal_wnids(descriptions) or sorted(descriptions)
        elif isinstance(classes, (str, os.PathLike)):
            path = Path(classes)
            if path.is_file():
                listed = read_synset_file(path)
                wnids = list(listed)
                if synset_words is None:
                    descriptions = listed
            elif path.is_dir():
                wnids = dataset_classes(path)
                if synset_words is None and (path / "classes.txt").is_file():
                    descriptions = read_synset_file(path / "classes.txt")
            else:
                raise ValueError(f"classes: no such file or folder: {path}")
        else:
            wnids = [str(c) for c in classes]
        if not wnids:
            raise ValueError("AnimalsMapper: the class list is empty")
        if len(set(wnids)) != len(wnids):
            raise ValueError("AnimalsMapper: the class list has duplicates")
        self.wnids: list[str] = list(wnids)
        self.descriptions: list[str] = [descriptions.get(w, "") for w in self.wnids]
        self.names: list[str] = [_first_name(d) or w for d, w in zip(self.descriptions, self.wnids)]
        self.class_indices: dict[str, int] = {w: i for i, w in enumerate(self.wnids)}
        self._by_name: dict[str, int] = {}
        for i, name in enumerate(self.names):
            self._by_name.setdefault(name, i)
        self._by_synonym: dict[str, int] = {}
        for i, d in enumerate(self.descriptions):
            for syn in d.split(","):
                if syn.strip():
                    self._by_synonym.setdefault(syn.strip().lower(), i)

    @property
    def num_classes(self) -> int:
        return len(self.wnids)

    def __len__(self) -> int:
        return len(self.wnids)

    def _check(self, index) -> int:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise ValueError(f"class index must be an integer, got {index!r}")
        if not 0 <= index < len(self.wnids):
            raise ValueError(f"class index must be in [0, {len(self.wnids) - 1}], got {index}")
        return int(index)

    def name(self, index: int) -> str:
        """Readable name of class ``index`` (its wnid when no synset words were given)."""
        return self.names[self._check(index)]

    def wnid(self, index: int) -> str:
        """WordNet id (class folder name) of class ``index``."""
        return self.wnids[self._check(index)]

    def description(self, index: int) -> str:
        """The whole synset-words entry of class ``index`` (``""`` when unknown)."""
        return self.descriptions[self._check(index)]

    def index(self, name_or_wnid: str) -> int:
        """Class index of a wnid, a name, or any synonym of the description (case-insensitive).

        Looked up in that order; a name shared by two classes gives the lower index.
        """
        key = str(name_or_wnid)
        if key in self.class_indices:
            return self.class_indices[key]
        if key in self._by_name:
            return self._by_name[key]
        found = self._by_synonym.get(key.strip().lower())
        if found is None:
            raise ValueError(f"unknown class {name_or_wnid!r} (not a wnid or name of the {len(self)} classes)")
        return found

    def __repr__(self) -> str:
        return f"AnimalsMapper({len(self)} classes: {self.names[0]!r} … {self.names[-1]!r})"


def split_class(files: Sequence, wnid: str, test_fraction: float, seed: int) -> tuple[list, list]:
    """Deterministic train/test split of one class's files (given in a fixed, sorted order).

    The permutation comes from ``numpy.random.default_rng([seed, crc32(wnid)])``, so a class's
    split depends only on the seed, its wnid and its file list (not on the other classes).
    ``n_test = round(n · test_fraction)``, kept in ``[1, n − 1]`` when ``n ≥ 2``; a class with one
    image goes to train. Both halves keep the input order.
    """
    n = len(files)
    if n < 2:
        return list(files), []
    n_test = min(max(int(round(n * test_fraction)), 1), n - 1)
    rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, zlib.crc32(wnid.encode())])
    test_idx = set(rng.permutation(n)[:n_test].tolist())
    train = [f for i, f in enumerate(files) if i not in test_idx]
    test = [f for i, f in enumerate(files) if i in test_idx]
    return train, test


def _class_files(imagenet_dir: Path, wnid: str) -> list[tuple[Path, str]]:
    """``(source, output name)`` of a class's images in ``train/<wnid>`` then ``val/<wnid>``."""
    out: list[tuple[Path, str]] = []
    seen: set[str] = set()
    for part in ("train", "val"):
        folder = imagenet_dir / part / wnid
        if not folder.is_dir():
            continue
        for entry in sorted(os.scandir(folder), key=lambda e: e.name):
            if entry.name.startswith(".") or not entry.is_file():
                continue
            name = entry.name if entry.name not in seen else f"{part}_{entry.name}"
            seen.add(name)
            out.append((Path(entry.path), name))
    return out


def _place(src: Path, dst: Path, mode: str) -> None:
    if mode == "symlink":
        os.symlink(os.path.abspath(src), dst)
    elif mode == "hardlink":
        try:
            os.link(src, dst)
        except OSError as err:
            raise UserError(f"cannot hard-link {src} into {dst.parent} ({err.strerror}); use --mode copy or symlink") from err
    else:
        shutil.copy2(src, dst)


def _is_inside(a: Path, b: Path) -> bool:
    """True when ``a`` is ``b`` or lies under it."""
    try:
        a.relative_to(b)
        return True
    except ValueError:
        return False


def build_animals_subset(
    imagenet_dir: str | os.PathLike,
    out: str | os.PathLike,
    synsets_file: str | os.PathLike | None = None,
    test_fraction: float = DEFAULT_TEST_FRACTION,
    seed: int = 0,
    mode: str = "symlink",
    progress: bool = True,
    overwrite: bool = False,
) -> dict:
    """Build ``out/train/<wnid>/``, ``out/test/<wnid>/`` and ``out/classes.txt`` from ImageNet.

    Reads ``imagenet_dir/train/<wnid>/*`` and, if present, ``imagenet_dir/val/<wnid>/*`` (pooled
    with train; a val file whose name is already used in the class is renamed ``val_<name>``).
    Classes: the animal synsets (:func:`select_animal_wnids`) of ``synsets_file`` when given, else
    of the folders found; missing ones are skipped with a warning. Each class is split by
    :func:`split_class` (same seed → same split). Files are placed by ``mode``: ``symlink``
    (absolute links, no extra space), ``hardlink`` (same file system only) or ``copy``.

    ``out`` must be missing or empty; with ``overwrite=True`` its ``train/``, ``test/``,
    ``classes.txt`` and ``split.json`` are replaced and nothing else is touched. ``classes.txt``
    holds one ``wnid description`` line per class (index order); ``split.json`` the settings
    and counts. Returns a summary dict (``out``, ``classes``, ``num_classes``, ``num_train``,
    ``num_test``, ``missing``, ``per_class``).
    """
    from tqdm.auto import tqdm

    imagenet_dir = Path(imagenet_dir).expanduser()
    out = Path(out).expanduser()
    if mode not in _MODES:
        raise UserError(f"mode must be one of {', '.join(_MODES)}, got {mode!r}")
    if not (isinstance(test_fraction, (int, float)) and 0.0 < float(test_fraction) < 1.0):
        raise UserError(f"test_fraction must be a number in (0, 1), got {test_fraction!r}")
    if not imagenet_dir.is_dir():
        raise UserError(f"ImageNet folder not found: {imagenet_dir}")
    if not (imagenet_dir / "train").is_dir():
        raise UserError(f"no train/ folder in {imagenet_dir} (expected {imagenet_dir}/train/<wnid>/<images>)")
    src_root, out_root = imagenet_dir.resolve(), out.resolve()
    if _is_inside(out_root, src_root) or _is_inside(src_root, out_root):
        raise UserError(f"--out {out} must lie outside the ImageNet folder {imagenet_dir} (and not contain it)")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise UserError(f"output folder {out} is not empty; choose another --out or pass --overwrite")
        for name in ("train", "test"):
            if (out / name).is_symlink() or (out / name).is_file():
                (out / name).unlink()
            elif (out / name).is_dir():
                shutil.rmtree(out / name)
        for name in ("classes.txt", "split.json"):
            if (out / name).exists():
                (out / name).unlink()

    present = {p.name for p in (imagenet_dir / "train").iterdir() if p.is_dir()}
    val_dir = imagenet_dir / "val"
    if val_dir.is_dir():
        val_classes = {p.name for p in val_dir.iterdir() if p.is_dir()}
        loose = sum(1 for p in val_dir.iterdir() if p.is_file() and not p.name.startswith("."))
        if loose:
            warnings.warn(
                f"{loose} files lie directly in {val_dir} (flat ImageNet val layout) and are not used; "
                "move them into val/<wnid>/ to include them",
                UserWarning,
                stacklevel=2,
            )
        present |= val_classes
    descriptions: dict[str, str] = {}
    if synsets_file is not None:
        descriptions = read_synset_file(synsets_file)
        wanted = select_animal_wnids(descriptions)
        if not wanted:
            raise UserError(
                f"no animal synsets ({ANIMAL_SYNSET_RANGE[0]} … {ANIMAL_SYNSET_RANGE[1]}) listed in {synsets_file}"
            )
    else:
        wanted = select_animal_wnids(present)
        if not wanted:
            raise UserError(
                f"no animal synset folders ({ANIMAL_SYNSET_RANGE[0]} … {ANIMAL_SYNSET_RANGE[1]}) in {imagenet_dir / 'train'}"
            )

    missing = [w for w in wanted if w not in present]
    sources: dict[str, list[tuple[Path, str]]] = {}
    for wnid in wanted:
        if wnid in present:
            files = _class_files(imagenet_dir, wnid)
            if files:
                sources[wnid] = files
            else:
                missing.append(wnid)
    missing.sort()
    if not sources:
        raise UserError(f"none of the {len(wanted)} animal synsets has images in {imagenet_dir}")
    classes = sorted(sources)
    if len(classes) < NUM_ANIMAL_CLASSES:
        warnings.warn(
            f"building the Animals subset from {len(classes)} of the {NUM_ANIMAL_CLASSES} animal synsets"
            + (f" ({len(missing)} listed synsets have no images)" if missing else ""),
            UserWarning,
            stacklevel=2,
        )

    per_class: dict[str, list[int]] = {}
    for wnid in tqdm(classes, desc="animals", unit="class", disable=not progress):
        train, test = split_class(sources[wnid], wnid, float(test_fraction), seed)
        for part, files in (("train", train), ("test", test)):
            folder = out / part / wnid
            folder.mkdir(parents=True, exist_ok=True)
            for src, name in files:
                _place(src, folder / name, mode)
        per_class[wnid] = [len(train), len(test)]

    with open(out / "classes.txt", "w", encoding="utf-8") as f:
        for wnid in classes:
            desc = descriptions.get(wnid, "")
            f.write(f"{wnid} {desc}\n" if desc else f"{wnid}\n")
    num_train = sum(c[0] for c in per_class.values())
    num_test = sum(c[1] for c in per_class.values())
    summary = {
        "out": str(out),
        "classes": classes,
        "num_classes": len(classes),
        "num_train": num_train,
        "num_test": num_test,
        "missing": missing,
        "per_class": per_class,
    }
    settings = {"imagenet_dir": str(src_root), "seed": int(seed), "test_fraction": float(test_fraction), "mode": mode}
    with open(out / "split.json", "w", encoding="utf-8") as f:
        json.dump({**settings, **summary}, f, indent=1)
    return summary
