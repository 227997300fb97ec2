"""LightningModules for the HR-CAM networks (DESIGN §3 training recipe, all overridable).

HalfModule — cross-entropy + L2 1e-4 on conv and linear weights, Adadelta (lr 1.0, rho 0.95),
ReduceLROnPlateau on the training loss (factor √0.1, patience 10, min lr 1e-5); best checkpoint
by validation accuracy.

FullModule — the classifier comes from trained half weights and is frozen; only the expansion
network and the reconstruction head train. Objectives:

- ``reconstruction`` (the seed's): ``mean((recon − x)²)``;
- ``consistency``: reconstruction ``+ λ · mean_{n,c,i,j}((avgpool_s(high[c]) − low[c])²)`` with
  ``s`` the low-res stride (16). By linearity ``avgpool_s(high[c]) − low[c] = W[c]·(avgpool_s(A_high)
  − A_low)``, so all classes cost one small einsum at low resolution.
"""
from __future__ import annotations

import math

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn

from hrcam.models.hrcam.nets import FullNet, HalfNet
from hrcam.models.registry import model_metadata

OBJECTIVES = ("reconstruction", "consistency")


def l2_penalty(module: nn.Module) -> torch.Tensor:
    """Σ w² over the trainable weights of convolutions and linear layers (not biases, not BN)."""
    total = None
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)) and m.weight.requires_grad:
            s = m.weight.pow(2).sum()
            total = s if total is None else total + s
    return total if total is not None else torch.zeros(())


def consistency_loss(weight: torch.Tensor, a_low: torch.Tensor, a_high: torch.Tensor) -> torch.Tensor:
    """``mean((avgpool_s(high) − low)²)`` over all classes, computed at low resolution."""
    stride = a_high.shape[-1] // a_low.shape[-1]
    diff = F.avg_pool2d(a_high, stride) - a_low
    return torch.einsum("kc,nchw->nkhw", weight, diff).pow(2).mean()


class _Base(L.LightningModule):
    kind = "half"

    def __init__(self, lr: float, rho: float, weight_decay: float, class_names, im_size: int):
        super().__init__()
        self.class_names = list(class_names) if class_names else None
        self.im_size = im_size
        self.lr, self.rho, self.weight_decay = lr, rho, weight_decay

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        opt = torch.optim.Adadelta(params, lr=self.lr, rho=self.rho, eps=1e-7)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=math.sqrt(0.1),
                                                           patience=10, min_lr=1e-5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "train_loss",
                                                   "interval": "epoch"}}

    def export_state(self):
        return self.net.state_dict(), model_metadata(self.kind, self.net, self.im_size, self.class_names)

    def _log_acc(self, name, logits, y, **kw):
        self.log(name, (logits.argmax(1) == y).float().mean(), on_step=False, on_epoch=True, **kw)


class HalfModule(_Base):
    """Trains :class:`HalfNet` for classification."""

    def __init__(self, num_classes: int, in_channels: int = 3, im_size: int = 224, arch: dict | None = None,
                 class_names=None, lr: float = 1.0, rho: float = 0.95, weight_decay: float = 1e-4):
        super().__init__(lr, rho, weight_decay, class_names, im_size)
        self.save_hyperparameters(ignore=["class_names"])
        self.net = HalfNet(num_classes, in_channels, **(arch or {}))

    def training_step(self, batch, _idx):
        x, y = batch
        logits = self.net(x)
        ce = F.cross_entropy(logits, y)
        loss = ce + self.weight_decay * l2_penalty(self.net)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train_ce", ce, on_step=False, on_epoch=True, sync_dist=True)
        self._log_acc("train_acc", logits, y, prog_bar=True, sync_dist=True)
        return loss

    def validation_step(self, batch, _idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True, sync_dist=True)
        self._log_acc("val_acc", logits, y, prog_bar=True, sync_dist=True)


class FullModule(_Base):
    """Trains the expansion network of :class:`FullNet` on top of a frozen, trained half network."""

    kind = "full"

    def __init__(self, half_state: dict | None, num_classes: int, in_channels: int = 3, im_size: int = 224,
                 arch: dict | None = None, class_names=None, objective: str = "reconstruction",
                 consistency_weight: float = 1.0, lr: float = 1.0, rho: float = 0.95, weight_decay: float = 1e-4):
        super().__init__(lr, rho, weight_decay, class_names, im_size)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if consistency_weight < 0:
            raise ValueError(f"consistency_weight must be >= 0, got {consistency_weight}")
        self.save_hyperparameters(ignore=["half_state", "class_names"])
        self.objective, self.consistency_weight = objective, consistency_weight
        half = HalfNet(num_classes, in_channels, **(arch or {}))
        if half_state is not None:
            half.load_state_dict(half_state)
        self.net = FullNet.from_half(half, freeze=True)

    def _losses(self, x):
        logits, a_low, a_high = self.net.forward_all(x)
        recon = F.mse_loss(self.net.reconstruct_from(a_high), x)
        loss = recon
        cons = None
        if self.objective == "consistency":
            cons = consistency_loss(self.net.low_weight, a_low, a_high)
            loss = loss + self.consistency_weight * cons
        return logits, loss, recon, cons

    def training_step(self, batch, _idx):
        x, y = batch
        logits, loss, recon, cons = self._losses(x)
        loss = loss + self.weight_decay * l2_penalty(self.net)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        self.log("train_reconstruction", recon, on_step=False, on_epoch=True, sync_dist=True)
        if cons is not None:
            self.log("train_consistency", cons, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, _idx):
        x, y = batch
        logits, loss, recon, cons = self._losses(x)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True)
        self.log("val_reconstruction", recon, on_epoch=True, sync_dist=True)
        self._log_acc("val_acc", logits, y, sync_dist=True)
