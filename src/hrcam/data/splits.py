"""A split of a class-folder dataset as tensors, with its ground truth at model size.

    x, y, paths, skipped = load_split("data/demo", "test", 64, 3, limit=100, num_classes=10)
    gt = load_ground_truth_for("data/demo", "test", paths, 64)   # {"masks", "boxes"} or None

One subset rule everywhere: with ``limit``, images are taken round-robin over the classes.
"""
from __future__ import annotations

from pathlib import Path

import torch

from hrcam.data.annotations import load_ground_truth
from hrcam.data.folders import ClassFolderDataset, dataset_classes, find_split
from hrcam.errors import UserError

__all__ = ["load_split", "load_ground_truth_for", "round_robin"]


def round_robin(labels) -> list[int]:
    """The positions of ``labels`` in round-robin order over the classes.

    The first image of every class (in class order), then the second of every class, and so on;
    within a class the original order is kept. Any prefix of the result covers the classes as
    evenly as the data allows: this is the one subset rule (``order[:limit]``).

    Example:
        >>> round_robin([0, 0, 0, 1, 1, 2])
        [0, 3, 5, 1, 4, 2]
    """
    seen: dict[int, int] = {}
    rank = []
    for i, label in enumerate(labels):
        label = int(label)
        rank.append((seen.get(label, 0), label, i))
        seen[label] = seen.get(label, 0) + 1
    return [i for _, _, i in sorted(rank)]


def load_split(data_dir, split: str, im_size: int, channels: int, limit: int | None, num_classes: int,
               num_workers: int = 0, batch_size: int = 32):
    """``(images N×C×S×S, labels, relative paths, skipped)`` of ``data_dir/split``.

    With ``limit`` the images are taken round-robin over the classes (the first of every class,
    then the second, ...), so a small limit still covers the classes. A file that fails to decode
    is skipped and counted in ``skipped`` (with the non-images skipped at scan time), and the next
    image in that order takes its place. Decoding goes through a ``DataLoader`` with
    ``num_workers`` processes (:func:`hrcam.data.loader.image_batches`); the result does not
    depend on it.
    """
    from hrcam.data.loader import image_batches

    split_dir = find_split(data_dir, split)
    classes = dataset_classes(data_dir)
    if len(classes) != num_classes:
        raise UserError(f"the model has {num_classes} classes but {data_dir} has {len(classes)}")
    ds = ClassFolderDataset(split_dir, im_size, channels, classes=classes)
    images, labels, paths, skipped = [], [], [], ds.skipped
    order = round_robin([label for _, label in ds.samples]) if limit is not None else list(range(len(ds)))
    loader = image_batches([p for p, _ in ds.samples], im_size, channels, batch_size, num_workers, positions=order)
    root = Path(data_dir).resolve()
    for j, batch in enumerate(loader):  # batch j decodes order[j·B : (j+1)·B], less the failures
        decoded = dict(zip(batch.indices, batch.images)) if batch.images is not None else {}
        for i in order[j * batch_size : (j + 1) * batch_size]:
            if limit is not None and len(images) >= limit:
                break
            if i not in decoded:  # an undecodable file is counted, never fatal
                skipped += 1
                continue
            path, label = ds.samples[i]
            images.append(decoded[i])
            labels.append(label)
            paths.append(Path(path).resolve().relative_to(root).as_posix())
        if limit is not None and len(images) >= limit:
            break
    if not images:
        raise UserError(f"no readable images in {split_dir}")
    return torch.stack(images), torch.tensor(labels), paths, skipped


def load_ground_truth_for(data_dir, split: str, paths: list[str], size: int):
    """``{"masks", "boxes"}`` at ``size`` for the images in ``paths``, or None without any."""
    try:
        gts = load_ground_truth(data_dir, split)
    except ValueError:
        return None
    masks, boxes, found = [], [], 0
    for rel in paths:
        gt = gts.get(rel)
        if gt is None:
            masks.append(None)
            boxes.append([])
            continue
        found += 1
        b, m = gt.at_size((size, size))
        masks.append(m)
        boxes.append([list(map(float, row)) for row in b])
    return {"masks": masks, "boxes": boxes} if found else None
