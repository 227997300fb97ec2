"""Classification evaluation of a trained model on a class-folder split (``hrcam evaluate``)."""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from hrcam.data.folders import ClassFolderDataset, dataset_classes, find_split
from hrcam.errors import UserError
from hrcam.metrics.classification import ClassificationAccumulator


def evaluate_classification(model, data_dir, split: str = "test", batch_size: int = 32, limit: int | None = None,
                            num_workers: int = 0, progress: bool = True) -> dict:
    """Top-1/top-5, macro/micro P/R/F1, per-class report and confusion matrix of ``model``
    (a :class:`~hrcam.api.seed.HalfModel`/:class:`~hrcam.api.seed.FullModel`) on ``data_dir/split``."""
    split_dir = find_split(data_dir, split)
    classes = dataset_classes(data_dir)
    if len(classes) != model.num_classes:
        raise UserError(f"the model has {model.num_classes} classes but {data_dir} has {len(classes)}")
    channels = model.net.config.in_channels if hasattr(model.net, "config") else 3
    ds = ClassFolderDataset(split_dir, model.im_size, channels, classes=classes)
    indices = range(min(limit, len(ds))) if limit is not None else range(len(ds))
    # no substitution: an image that fails to decode is left out (and counted), never scored twice
    loader = DataLoader(_Decoded(ds, indices), batch_size=batch_size, shuffle=False, num_workers=num_workers)
    acc = ClassificationAccumulator(len(classes), classes)
    net = model.net.eval()
    failed: list[str] = []
    with torch.no_grad():
        for x, y, ok, index in tqdm(loader, desc=f"evaluating {split}", disable=not progress, unit="batch"):
            failed += [ds.samples[int(i)][0] for i in index[~ok]]
            if ok.any():
                acc.update(y[ok].numpy(), net(x[ok].to(model.device)).cpu().numpy())
    if len(failed) == len(indices):
        raise UserError(f"none of the {len(indices)} images in {split_dir} could be decoded")
    out = acc.compute()
    out["skipped_files"] = ds.skipped + len(failed)  # not images at scan time + failed to decode
    out["skipped_at_scan"] = ds.skipped
    out["decode_failures"] = len(failed)
    out["failed_files"] = failed
    return out


class _Decoded(torch.utils.data.Dataset):
    """``(image, label, decoded, index)`` of ``indices`` of a class-folder dataset; a zero image
    and ``decoded=False`` for a file that fails to decode."""

    def __init__(self, ds: ClassFolderDataset, indices):
        self.ds, self.indices = ds, list(indices)
        self.shape = (ds.channels, ds.im_size, ds.im_size)

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k):
        i = self.indices[k]
        label = self.ds.samples[i][1]
        try:
            return self.ds.load(i), label, True, i
        except Exception:  # any decoder error: left out of the scores
            return torch.zeros(self.shape), label, False, i
