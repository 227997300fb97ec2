"""Training the expansion network of a frozen pretrained backbone (:class:`DecoderNet`).

Objectives (labels are never used, so unlabelled images are enough):

- ``reconstruction`` (the seed's autoencoder objective): ``mean((recon(A_high) − x)²)``;
- ``consistency`` (DESIGN §3): reconstruction ``+ λ · mean_{n,c,i,j}((avgpool(high[c]) − low[c])²)``
  over all K classes, ``avgpool`` averaging each S/h × S/w block of the high-res map down to the
  low-res grid. With the rank-r head, ``high[c] = U_r[c]·A_high``, so by linearity
  ``avgpool(high[c]) = U_r[c]·avgpool(A_high)`` — all classes cost one einsum at low resolution.

  The target ``low`` is either the true low-res CAMs ``W·A`` (``consistency_target='low'``, the
  default) or their rank-r part ``U_rV_r·A`` (``'rank'``). Both give the *same gradient*:
  ``W − U_rV_r = Σ_{i>r} s_i u_i v_iᵀ`` is orthogonal to the columns of ``U_r``, so
  ``‖U_r P − W A‖² = ‖U_r(P − V_r A)‖² + ‖(W − U_rV_r)A‖²`` and the second term does not depend on
  the decoder. The ``'low'`` loss is larger by that constant (the truncation error), which makes
  it the honest number to log; ``'rank'`` can reach zero.
- ``faithfulness`` (issue 11, as for the FullModel in :mod:`hrcam.train.objectives`): the class to
  explain is the frozen classifier's *predicted* class ``ĉ = argmax f(x)`` (no labels needed, no
  gradient through the argmax); its high-res map ``high[ĉ] = U_r[ĉ]·A_high``, put in the units of
  the low-res CAM ``W[ĉ]·A`` (0 at its minimum, 1 at its maximum, clipped: ``scale='low'``, the
  default here; with ``'minmax'`` the decoder learns to push one corner pixel hundreds of units
  down so that the min-max mask is ≈ 1 everywhere) to give ``m``, plays the keep/delete masking game on the frozen backbone (``f(m ⊙ x)`` keeps ``ĉ``,
  ``f((1 − m) ⊙ x)`` loses it; masking in [0, 1] image space, the backbone normalizes with the
  ImageNet statistics after it) with the concave area and edge-aware smoothness terms, plus
  ``λ`` · the consistency term above (unless anchored, ``DecoderNet(anchor='bilinear')``, the
  residual start ties ``A_high`` to the upsampled low-res maps only at initialization). No
  reconstruction term.

The backbone is frozen (no gradients, batch norms in eval mode); only the decoder and the
reconstruction head train, with Adam.
"""
from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset

from hrcam.models.pretrained.backbones import build_backbone
from hrcam.models.pretrained.decoder import DecoderNet
from hrcam.models.registry import model_metadata
from hrcam.train.memory_format import ChannelsLastFit
from hrcam.train.objectives import FaithfulnessWeights, faithfulness_terms

__all__ = [
    "DecoderModule",
    "decoder_consistency_loss",
    "ImageListDataset",
    "ImagesDataModule",
    "find_images",
    "OBJECTIVES",
    "CONSISTENCY_TARGETS",
]

OBJECTIVES = ("reconstruction", "consistency", "faithfulness")
CONSISTENCY_TARGETS = ("low", "rank")


def decoder_consistency_loss(net: DecoderNet, a_low: torch.Tensor, a_high: torch.Tensor,
                             target: str = "low") -> torch.Tensor:
    """``mean((avgpool(U_r·A_high) − low)²)`` over all classes (see the module docstring)."""
    if target not in CONSISTENCY_TARGETS:
        raise ValueError(f"consistency_target must be one of {', '.join(CONSISTENCY_TARGETS)}, got {target!r}")
    pooled = F.adaptive_avg_pool2d(a_high, a_low.shape[-2:])  # N×r×h×w
    if target == "rank":
        diff = pooled - torch.einsum("rc,nchw->nrhw", net.head_v, a_low)
        return torch.einsum("kr,nrhw->nkhw", net.head_u, diff).pow(2).mean()
    high_pooled = torch.einsum("kr,nrhw->nkhw", net.head_u, pooled)
    low = torch.einsum("kc,nchw->nkhw", net.low_weight, a_low)
    return (high_pooled - low).pow(2).mean()


class DecoderModule(ChannelsLastFit, L.LightningModule):
    """Lightning module for :class:`DecoderNet` (the runner's ``fit`` exports ``self.net``).

    ``faithfulness`` takes the :class:`~hrcam.train.objectives.FaithfulnessWeights` fields as a
    dict (default: their defaults, except ``fill="random"``); it is used by ``objective="faithfulness"`` only.
    """

    def __init__(self, net: DecoderNet | None = None, *, backbone: str = "efficientnet_lite0",
                 backbone_weights: str | None = None, num_classes: int | None = None, rank: int = 128,
                 width: int = 32, anchor: str = "none", objective: str = "reconstruction",
                 consistency_weight: float = 1.0,
                 consistency_target: str = "low", lr: float = 1e-3, im_size: int = 224,
                 faithfulness: dict | None = None):
        super().__init__()
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if consistency_target not in CONSISTENCY_TARGETS:
            raise ValueError(f"consistency_target must be one of {', '.join(CONSISTENCY_TARGETS)}, "
                             f"got {consistency_target!r}")
        if not consistency_weight >= 0:
            raise ValueError(f"consistency_weight must be >= 0, got {consistency_weight}")
        if not lr > 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        # the random fill: the one measured on this path with the low-res mask (README, pretrained)
        weights = FaithfulnessWeights(**{"fill": "random", **(faithfulness or {})})
        self.save_hyperparameters(ignore=["net"])
        if net is None:
            net = DecoderNet(build_backbone(backbone, backbone_weights=backbone_weights, num_classes=num_classes),
                             rank=rank, width=width, anchor=anchor)
        self.net = net
        self.objective, self.consistency_weight = objective, float(consistency_weight)
        self.consistency_target, self.lr, self.im_size = consistency_target, float(lr), int(im_size)
        self.weights = weights

    def train(self, mode: bool = True):
        super().train(mode)
        self.net.backbone.eval()  # frozen BN stays in eval mode
        return self

    def losses(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The loss terms of one batch of [0, 1] images and their total (``"loss"``).

        ``reconstruction`` and ``consistency`` are logged unweighted (the total adds
        ``consistency_weight`` · consistency); the ``faithfulness`` terms (``keep``, ``delete``,
        ``area``, ``tv``) come already weighted.
        """
        out = self.net.forward_maps(x, high=True)
        losses: dict[str, torch.Tensor] = {}
        total = 0
        if self.objective in ("reconstruction", "consistency"):
            losses["reconstruction"] = F.mse_loss(self.net.reconstruct_from(out.high_features), x)
            total = losses["reconstruction"]
        if self.objective in ("consistency", "faithfulness"):
            cons = decoder_consistency_loss(self.net, out.low_features, out.high_features, self.consistency_target)
            losses["consistency"] = cons
            total = total + self.consistency_weight * cons
        if self.objective == "faithfulness":
            pred = out.logits.detach().argmax(dim=1)  # the class the frozen classifier predicts
            maps = torch.einsum("nr,nrhw->nhw", self.net.head_u[pred], out.high_features)
            low = torch.einsum("nc,nchw->nhw", self.net.low_weight[pred], out.low_features)
            terms = faithfulness_terms(self.net.backbone, x, maps, pred, self.weights, low_maps=low)
            losses.update(terms)
            total = total + sum(terms.values())
        losses["loss"] = total
        return losses

    @staticmethod
    def _images(batch) -> torch.Tensor:
        return batch[0] if isinstance(batch, (list, tuple)) else batch

    def training_step(self, batch, _idx):
        losses = self.losses(self._images(batch))
        n = self._images(batch).shape[0]
        self.log("train_loss", losses["loss"], on_step=False, on_epoch=True, prog_bar=True, batch_size=n,
                 sync_dist=True)
        for name, value in losses.items():
            if name != "loss":
                self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=n, sync_dist=True)
        return losses["loss"]

    def configure_optimizers(self):
        return torch.optim.Adam(self.net.decoder_parameters(), lr=self.lr)

    def export_state(self):
        return self.net.state_dict(), model_metadata("decoder", self.net, self.im_size, objective=self.objective)


# -- data: images without labels ----------------------------------------------------------------

def find_images(root, skipped: list | None = None) -> list[Path]:
    """Image files under ``root`` (recursively, sorted; hidden files and folders skipped).

    As in :class:`~hrcam.data.folders.ClassFolderDataset`, every file's header is opened (no
    decoding): files PIL does not recognise, and decompression bombs, are left out and appended
    to ``skipped`` when given.
    """
    from hrcam.data.folders import _is_image_header

    root = Path(root)
    found = []
    for p in sorted(root.rglob("*")):
        if not p.is_file() or any(part.startswith(".") for part in p.relative_to(root).parts):
            continue
        if _is_image_header(p):
            found.append(p)
        elif skipped is not None:
            skipped.append(p)
    return found


class ImageListDataset(Dataset):
    """Images (files or in-memory C×H×W tensors in [0, 1]) resized to ``im_size``, optionally augmented.

    Returns ``(image, 0)`` pairs so class-folder and unlabelled data share one batch format.
    A file that fails to decode is counted (``decode_failures``, ``failed_files``), named in a
    warning and replaced by the next readable one, as in :class:`~hrcam.data.folders.ClassFolderDataset`.
    """

    def __init__(self, items, im_size: int, transform=None):
        if not items:
            raise ValueError("no images given")
        self.items, self.im_size, self.transform = list(items), int(im_size), transform
        self.decode_failures, self.failed_files, self._bad = 0, [], set()

    def __len__(self) -> int:
        return len(self.items)

    def _load(self, item) -> torch.Tensor:
        from hrcam.data.folders import load_image

        if isinstance(item, torch.Tensor):
            t = item.float()
            if tuple(t.shape[-2:]) != (self.im_size, self.im_size):
                t = F.interpolate(t[None], size=(self.im_size, self.im_size), mode="bilinear",
                                  align_corners=False, antialias=True)[0].clamp(0, 1)
            return t
        return load_image(item, self.im_size, 3)

    def __getitem__(self, i):
        import warnings

        n = len(self.items)
        for k in range(n):
            j = (i + k) % n
            if j in self._bad:
                continue
            try:
                x = self._load(self.items[j])
                break
            except Exception as err:  # any decoder error (OSError, DecompressionBombError, ValueError, ...)
                self._bad.add(j)
                self.decode_failures += 1
                self.failed_files.append(str(self.items[j]))
                warnings.warn(f"hrcam: could not decode {self.items[j]} ({type(err).__name__}: {err}); "
                              "using the next image instead", RuntimeWarning, stacklevel=2)
        else:
            from hrcam.errors import UserError

            raise UserError(f"none of the {n} training images could be decoded")
        if self.transform is not None:
            x = self.transform(x)
        return x, 0


class ImagesDataModule(L.LightningDataModule):
    """Training images for the decoder: every image under ``data_dir/train`` (or ``data_dir``).

    Class folders are allowed and ignored; labels are not needed. ``extra`` adds in-memory images
    (C×H×W tensors in [0, 1]). There is no validation split (checkpoints by training loss).
    """

    def __init__(self, data_dir=None, im_size: int = 224, batch_size: int = 8, augment: bool = True,
                 num_workers: int = 0, seed: int = 0, extra=(), repeat: int = 1):
        super().__init__()
        from hrcam.data.transforms import seed_augmentation
        from hrcam.errors import UserError

        items: list = []
        self.skipped_files: list[str] = []
        if data_dir is not None:
            root = Path(data_dir).expanduser()
            if not root.is_dir():
                raise UserError(f"data directory not found: {root}")
            if (root / "train").is_dir():
                root = root / "train"
            skipped: list = []
            items = find_images(root, skipped)
            self.skipped_files = [str(p) for p in skipped]
            if skipped:
                print(f"hrcam: skipped {len(skipped)} file(s) under {root} that are not readable images "
                      f"(e.g. {skipped[0]})")
            if not items and not extra:
                raise UserError(f"no images found under {root}"
                                + (f" ({len(skipped)} file(s) that are not readable images)" if skipped else ""))
        items += list(extra)
        if not items:
            raise UserError("no training images: give data_dir or extra images")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.train_set = ImageListDataset(items * max(1, int(repeat)), im_size,
                                          seed_augmentation() if augment else None)
        self.val_set = None
        self.batch_size, self.num_workers, self.seed = batch_size, num_workers, seed

    def train_dataloader(self) -> DataLoader:
        from hrcam.train.datamodule import EpochShuffle

        return DataLoader(self.train_set, batch_size=self.batch_size,
                          sampler=EpochShuffle(len(self.train_set), self.seed),
                          generator=torch.Generator().manual_seed(self.seed), num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0)
