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
    if limit is not None:
        ds = torch.utils.data.Subset(ds, range(min(limit, len(ds))))
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers)
    acc = ClassificationAccumulator(len(classes), classes)
    net = model.net.eval()
    with torch.no_grad():
        for x, y in tqdm(loader, desc=f"evaluating {split}", disable=not progress, unit="batch"):
            acc.update(y.numpy(), net(x.to(model.device)).cpu().numpy())
    out = acc.compute()
    base = ds.dataset if isinstance(ds, torch.utils.data.Subset) else ds
    out["skipped_files"] = base.skipped + base.decode_failures
    return out
