"""How a dataset folder is laid out: ``<data_dir>/<split>/<class>/<image>`` plus ``classes.txt``.

The lowest data module (no dataset classes, no images read): finding a split, listing its class
folders, reading a ``wnid description`` synset file, and the class list shared by every split.
"""
from __future__ import annotations

import os
from pathlib import Path

from hrcam.errors import UserError

__all__ = ["DATA_DIR_ENV", "list_class_folders", "find_split", "dataset_classes", "read_synset_file"]

#: environment variable naming the default data directory
DATA_DIR_ENV = "HRCAM_DATA_DIR"


def _visible(name: str) -> bool:
    return not name.startswith(".")


def list_class_folders(split_dir: str | os.PathLike) -> list[str]:
    """Sorted names of the (non-hidden) sub-folders of ``split_dir``."""
    split_dir = Path(split_dir)
    return sorted(e.name for e in os.scandir(split_dir) if e.is_dir() and _visible(e.name))


def read_synset_file(path: str | os.PathLike) -> dict[str, str]:
    """Read ``wnid description`` lines (``synset_words.txt``, ``animal_synsets.txt``, ``classes.txt``).

    Returns ``{wnid: description}`` in file order; the description is everything after the first
    whitespace (``"tench, Tinca tinca"``), or ``""`` for a line with the id only. Blank lines and
    lines starting with ``#`` are skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"synset file not found: {path}")
    out: dict[str, str] = {}
    with open(path, encoding="utf-8") as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            parts = line.split(None, 1)
            out.setdefault(parts[0], parts[1].strip() if len(parts) > 1 else "")
    return out


def find_split(data_dir: str | os.PathLike | None, split: str) -> Path:
    """``data_dir/split`` after checking it holds ``<class>/<file>``; :class:`UserError` otherwise.

    The messages are one line each: missing ``data_dir``, missing split folder, no class folders,
    or no files in any class folder.
    """
    if data_dir is None or str(data_dir) == "":
        raise UserError(f"no data directory given (pass --data_dir or set {DATA_DIR_ENV})")
    data_dir = Path(data_dir).expanduser()
    if data_dir.exists() and not data_dir.is_dir():
        raise UserError(f"data directory {data_dir} is a file, not a folder "
                        f"(expected {data_dir}/{split}/<class>/<images>)")
    if not data_dir.is_dir():
        raise UserError(f"data directory not found: {data_dir}")
    split_dir = data_dir / split
    if not split_dir.is_dir():
        raise UserError(
            f"no {split}/ folder in {data_dir} (expected {data_dir}/{split}/<class>/<images>)"
        )
    classes = list_class_folders(split_dir)
    if not classes:
        raise UserError(f"no class folders in {split_dir} (expected {split_dir}/<class>/<images>)")
    for name in classes:
        with os.scandir(split_dir / name) as it:
            if any(_visible(e.name) and e.is_file() for e in it):
                return split_dir
    raise UserError(f"no images in the {len(classes)} class folders of {split_dir}")


def dataset_classes(data_dir: str | os.PathLike) -> list[str]:
    """The class list of a dataset, the same for every split.

    ``data_dir/classes.txt`` (first word of each line, as written by ``hrcam data animals``) when
    present, else the sorted class folders of ``train/``, else of ``test/``.
    """
    data_dir = Path(data_dir)
    listing = data_dir / "classes.txt"
    if listing.is_file():
        classes = list(read_synset_file(listing))
        if not classes:
            raise UserError(f"{listing} lists no classes (one 'name [description]' per line expected); "
                            "fill it in or delete it to use the class folders")
        return classes
    for split in ("train", "test"):
        if (data_dir / split).is_dir():
            classes = list_class_folders(data_dir / split)
            if classes:
                return classes
    raise UserError(f"no classes.txt, train/ or test/ class folders in {data_dir}")
