"""The pretrained path on the digits-on-textures demo data (issue 7, item 4).

EfficientNet-Lite0 (offline ImageNet weights) stays frozen; only its linear head is fitted on
the demo digits (:func:`hrcam.train.linear_head.fit_linear_head`, cached pooled features). Its
low-res CAMs (S/32 × S/32) are the HalfModel maps. Then a rank-r decoder
(:class:`hrcam.models.pretrained.decoder.DecoderNet`, r = min(10, K): exact for a 10-class head, U_r V_r = W)
is trained for a few steps on the training images (labels unused, the seed's augmentation) and
gives the high-res CAMs; the post-processing pipeline gives the refined maps. All three are scored
by :func:`hrcam.evaluation.localization.evaluate_localization`, exactly like the FC-DenseNet maps
of the demo (predicted class, same metrics, ground truth resized to the model input).

    net, info = fit_pretrained_digits("data/demo", im_size=224, decoder_steps=100, train_limit=2000)
    res = score_pretrained(net, "data/demo", im_size=224)      # LocalizationResult

Used by ``hrcam demo run --extras pretrained`` (settings: ``hrcam.workflows.demo.EXTRA_SETTINGS``)
and ``benchmarks/bench_pretrained_digits.py``.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["PretrainedModel", "fit_pretrained_digits", "score_pretrained"]

@dataclass
class PretrainedModel:
    """What :func:`~hrcam.evaluation.localization.evaluate_localization` reads: ``net`` (a
    :class:`~hrcam.models.pretrained.backbones.BackboneNet` or :class:`~hrcam.models.pretrained.decoder.DecoderNet`)
    and the input side ``im_size``."""

    net: torch.nn.Module
    im_size: int


class _Subset:
    """The training loader of a :class:`FolderDataModule` restricted to ``limit`` images spread over
    the split (what :func:`fit_linear_head` reads: ``train_dataloader``, ``num_classes``, ``classes``)."""

    def __init__(self, dm, limit: int | None, batch_size: int = 32):
        from hrcam.evaluation.localization import select_indices

        self.dm, self.classes, self.num_classes = dm, dm.classes, dm.num_classes
        self.indices = select_indices(len(dm.train_set), limit).tolist()
        self.batch_size = batch_size

    def train_dataloader(self):
        from torch.utils.data import DataLoader, Subset

        return DataLoader(Subset(self.dm.train_set, self.indices), batch_size=self.batch_size, shuffle=False)


def fit_pretrained_digits(data_dir, *, backbone: str = "efficientnet_lite0", im_size: int = 128,
                          head_epochs: int = 100, decoder_steps: int = 100, train_size: int = 128,
                          decoder_batch: int = 8, objective: str = "consistency",
                          train_limit: int | None = None, rank: int | None = None, anchor: str = "none",
                          augment: bool = True, faithfulness: dict | None = None, seed: int = 0,
                          progress: bool = False) -> tuple[torch.nn.Module, dict]:
    """Fit the linear head of the frozen ``backbone`` on ``data_dir/train`` (``train_limit`` images
    spread over the split, None = all), then train the decoder for ``decoder_steps`` steps
    (0 = no decoder: the returned network has only low-res maps). ``anchor`` is the decoder's
    (:class:`DecoderNet`); ``augment`` applies the seed's augmentation to the decoder's training
    images (its flips and ±180° rotations turn many digits into images the head misclassifies,
    which matters for the ``faithfulness`` objective, whose class is the predicted one);
    ``faithfulness`` holds that objective's options (:class:`~hrcam.train.objectives.FaithfulnessWeights`).

    Returns ``(network, info)``: the :class:`DecoderNet` (or the :class:`BackboneNet` when
    ``decoder_steps == 0``) and ``{"head_fit", "train_images", "seconds_head", "decoder"}``.
    """
    from hrcam.data.transforms import seed_augmentation
    from hrcam.models.pretrained.backbones import build_backbone
    from hrcam.models.pretrained.decoder import DecoderNet
    from hrcam.train.datamodule import FolderDataModule
    from hrcam.train.decoder import ImageListDataset
    from hrcam.train.linear_head import fit_linear_head
    from hrcam.train.recipes import train_decoder_steps
    from hrcam.workflows.photos import decoder_detail, demo_decoder_options, loss_summary

    if decoder_steps < 0:
        raise ValueError(f"decoder_steps must be >= 0, got {decoder_steps}")
    torch.manual_seed(seed)
    t0 = time.perf_counter()
    dm = FolderDataModule(data_dir, im_size, 3, batch_size=32, augment=False, seed=seed, val_split=None)
    subset = _Subset(dm, train_limit)
    net = build_backbone(backbone)
    head = fit_linear_head(net, subset, epochs=head_epochs, seed=seed, progress=progress)
    info = {"backbone": backbone, "im_size": im_size, "head_fit": head, "train_images": len(subset.indices),
            "seconds_head": round(time.perf_counter() - t0, 2), "decoder": None}
    if decoder_steps == 0:
        return net, info
    t1 = time.perf_counter()
    dec = DecoderNet(net, rank=rank or min(10, net.num_classes), anchor=anchor)
    items = [dm.train_set.samples[i][0] for i in subset.indices]
    hist = train_decoder_steps(dec, ImageListDataset(items, train_size, seed_augmentation() if augment else None),
                               decoder_steps,
                               batch_size=decoder_batch, objective=objective, seed=seed, progress=progress,
                               faithfulness=faithfulness, **demo_decoder_options(objective))
    x0 = torch.stack([ImageListDataset(items[:32], im_size)[i][0] for i in range(min(32, len(items)))])
    info["decoder"] = {"steps": decoder_steps, "objective": objective, "train_size": train_size,
                       "rank": dec.rank, "anchor": anchor, "augment": bool(augment),
                       "faithfulness": dict(faithfulness or {}),
                       "loss_first_last": loss_summary(hist),
                       "detail": decoder_detail(dec, x0), "seconds": round(time.perf_counter() - t1, 2)}
    return dec, info


def score_pretrained(net: torch.nn.Module, data_dir, im_size: int, split: str = "test",
                     limit: int | None = None, progress: bool = False, keep_examples: int = 0):
    """:func:`~hrcam.evaluation.localization.evaluate_localization` of ``net`` at ``im_size``:
    ``low`` (and with a decoder ``high``, ``refined``) plus the centre prior, predicted class."""
    from hrcam.evaluation.localization import evaluate_localization

    return evaluate_localization(PretrainedModel(net, int(im_size)), Path(data_dir), split, limit=limit,
                                 progress=progress, keep_examples=keep_examples)
