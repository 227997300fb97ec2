"""A Lightning data module over the class-folder layout ``data_dir/{train,test}/<class>/*``."""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
from torch.utils.data import DataLoader

from hrcam.data.folders import ClassFolderDataset, dataset_classes, find_split
from hrcam.data.transforms import seed_augmentation


class EpochShuffle(torch.utils.data.Sampler):
    """A random order of ``n`` samples drawn from ``(seed, epoch)`` alone.

    Lightning calls :meth:`set_epoch` before every epoch, a resumed run included. Starting an
    epoch's iteration also seeds torch, NumPy and ``random`` from ``(seed, epoch)``, so the
    epoch's augmentation and dropout draws do not depend on what ran before: a run resumed from
    ``last.ckpt`` draws exactly what the uninterrupted run drew.
    """

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = int(n), int(seed), 0

    def set_epoch(self, epoch: int) -> None:  # noqa: D102 - Lightning's hook
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        import random

        import numpy as np

        s = int(np.random.SeedSequence([self.seed, self.epoch]).generate_state(1)[0])
        torch.manual_seed(s)
        np.random.seed(s)
        random.seed(s)
        order = torch.randperm(self.n, generator=torch.Generator().manual_seed(s))
        return iter(order.tolist())


class FolderDataModule(L.LightningDataModule):
    """Train on ``train/``, validate on ``val_split`` (``test/`` as in the seed) when present.

    Everything a user can get wrong (missing folders, no images) is checked in the constructor,
    so the CLI fails with one line before Lightning starts. ``num_classes``/``classes`` come from
    ``classes.txt`` or the train class folders, and the test split uses the same class order.
    """

    def __init__(self, data_dir, im_size: int, channels: int = 3, batch_size: int = 16,
                 augment: bool = True, num_workers: int = 0, seed: int = 0, val_split: str | None = "test"):
        super().__init__()
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.data_dir = Path(data_dir)
        self.train_dir = find_split(data_dir, "train")
        self.val_dir = None
        if val_split and (self.data_dir / val_split).is_dir():
            self.val_dir = find_split(data_dir, val_split)
        self.classes = dataset_classes(data_dir)
        self.im_size, self.channels = im_size, channels
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed
        self.augment = augment
        self.train_set = ClassFolderDataset(self.train_dir, im_size, channels,
                                            transform=seed_augmentation() if augment else None,
                                            classes=self.classes)
        self.val_set = (ClassFolderDataset(self.val_dir, im_size, channels, classes=self.classes)
                        if self.val_dir is not None else None)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def _loader(self, dataset, shuffle: bool) -> DataLoader:
        return DataLoader(
            dataset, batch_size=self.batch_size, sampler=EpochShuffle(len(dataset), self.seed) if shuffle else None,
            generator=torch.Generator().manual_seed(self.seed),
            num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
            # batch norm cannot train on a last batch of one image
            drop_last=shuffle and len(dataset) > self.batch_size and len(dataset) % self.batch_size == 1,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train_set, shuffle=True)

    def val_dataloader(self):
        return [] if self.val_set is None else self._loader(self.val_set, shuffle=False)
