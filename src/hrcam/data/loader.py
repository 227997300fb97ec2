"""Image files through a ``DataLoader`` for inference: decoded in worker processes, bad files counted.

    for batch in image_batches(paths, im_size=224, channels=3, batch_size=32, num_workers=2):
        batch.indices    # positions (in ``paths``) of the images in ``batch.images``
        batch.images     # len(indices)×C×S×S float32, or None when every file of the batch failed
        batch.failed     # [(position, "cannot identify image file ...")]: files that could not be decoded

Batches are formed from the positions *before* decoding (batch ``b`` holds positions
``b·B … b·B + B − 1``), and a file that fails to decode is dropped from its batch and reported in
``failed``: :class:`ImageFiles` returns a sentinel for it instead of raising, and
:func:`collate_decoded` separates the two. Counting happens in the process that iterates the
loader, so the counts are exact whatever ``num_workers`` is (a dataset object inside a worker is
a copy; counts kept there would be lost). The order is the order of ``paths``, with or without
workers.

Decoding is :func:`hrcam.data.folders.load_image` with ``decoder="auto"``: plain JPEG/PNG through
``torchvision.io.decode_image`` (the same pixels as PIL), everything else through PIL.
"""
from __future__ import annotations

import os
from typing import NamedTuple, Sequence

import torch

from hrcam.data.folders import load_image

__all__ = ["Batch", "ImageFiles", "collate_decoded", "image_batches"]


class Batch(NamedTuple):
    """One collated batch: the decoded images and the files that failed."""

    indices: list[int]  #: positions of the decoded images, in order
    images: torch.Tensor | None  #: ``len(indices)×C×H×W``; None when nothing in the batch decoded
    failed: list[tuple[int, str]]  #: ``(position, the decoder's error message)`` of undecodable files


class ImageFiles(torch.utils.data.Dataset):
    """Item ``k`` is ``(k, image, None)``, or ``(k, None, message)`` when file ``k`` cannot be
    decoded, ``message`` being the decoder's error text (never raises for a bad file).

    ``paths``: the files. ``im_size``: square output side (``None`` keeps each size; then the
    images of a batch must agree). ``channels``: 1 or 3. ``decoder``: see
    :func:`hrcam.data.folders.load_image`.
    """

    def __init__(self, paths: Sequence[str | os.PathLike], im_size: int | None, channels: int = 3,
                 decoder: str = "auto"):
        self.paths = [str(p) for p in paths]
        self.im_size, self.channels, self.decoder = im_size, channels, decoder

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, k: int):
        try:
            return k, load_image(self.paths[k], self.im_size, self.channels, decoder=self.decoder), None
        except Exception as err:  # noqa: BLE001 - any decoder error: reported, never fatal here
            return k, None, str(err) or type(err).__name__


def collate_decoded(items) -> Batch:
    """``DataLoader`` ``collate_fn`` for :class:`ImageFiles` items: stacks the decoded images and
    lists the failures (the sentinels) apart."""
    ok = [(k, x) for k, x, err in items if err is None]
    return Batch([k for k, _ in ok], torch.stack([x for _, x in ok]) if ok else None,
                 [(k, err) for k, _, err in items if err is not None])


class _Positions(torch.utils.data.Dataset):
    """``dataset`` seen through ``positions`` (items keep their own position numbers)."""

    def __init__(self, dataset: ImageFiles, positions: Sequence[int]):
        self.dataset, self.positions = dataset, list(positions)

    def __len__(self) -> int:
        return len(self.positions)

    def __getitem__(self, j: int):
        return self.dataset[self.positions[j]]


def image_batches(paths: Sequence[str | os.PathLike], im_size: int | None, channels: int = 3, batch_size: int = 32,
                  num_workers: int = 0, positions: Sequence[int] | None = None, decoder: str = "auto"):
    """A ``DataLoader`` of :class:`Batch` over ``paths`` (or over ``paths[positions]``, in that order).

    ``num_workers`` decoding processes (0: decode in this process). Each batch holds the next
    ``batch_size`` positions, less the ones that failed (listed in ``Batch.failed``).
    """
    if isinstance(num_workers, bool) or not isinstance(num_workers, int) or num_workers < 0:
        raise ValueError(f"num_workers must be an integer >= 0, got {num_workers!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    dataset = ImageFiles(paths, im_size, channels, decoder)
    source = dataset if positions is None else _Positions(dataset, positions)
    return torch.utils.data.DataLoader(source, batch_size=batch_size, shuffle=False, num_workers=num_workers,
                                       collate_fn=collate_decoded, persistent_workers=False)
