"""LightningModules for the HR-CAM networks (DESIGN §3 training recipe, all overridable).

HalfModule — cross-entropy + L2 1e-4 on conv and linear weights, Adadelta (lr 1.0, rho 0.95),
ReduceLROnPlateau on the training loss (factor √0.1, patience 10, min lr 1e-5); best checkpoint
by validation accuracy.

FullModule — the classifier comes from trained half weights and is frozen; only the expansion
network and the reconstruction head train. Objectives:

- ``reconstruction`` (the seed's): ``mean((recon − x)²)``;
- ``consistency``: reconstruction ``+ λ · mean_{n,c,i,j}((avgpool_s(high[c]) − low[c])²)`` with
  ``s`` the low-res stride (16). By linearity ``avgpool_s(high[c]) − low[c] = W[c]·(avgpool_s(A_high)
  − A_low)``, so all classes cost one small einsum at low resolution;
- ``smoothness``: the edge-aware smoothness term of ``faithfulness`` alone (TV weighted by
  ``exp(−|∇I|/σ)``), plus ``λ`` · consistency unless the network is anchored;
- ``faithfulness``: the frozen classifier keeps the labelled class on the input masked by the
  normalized high-res map and loses it on the inverse, with a concave area and an edge-aware
  smoothness term (:mod:`hrcam.train.objectives`), plus ``λ`` · consistency unless the network's
  ``anchor`` already ties the cell means to the low-res CAM. Trained with Adam (lr 1e-3).

:data:`PRESETS` names the two recipes: ``seed`` (reconstruction, transposed convolutions,
Adadelta) and ``localize`` (faithfulness, resize-convolutions, the bilinear anchor, Adam): the
one that localizes, measured in the README's ablation.
"""
from __future__ import annotations

import dataclasses
import math

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn

from hrcam.models.hrcam.fcdensenet import set_memory_efficient
from hrcam.models.hrcam.nets import FullNet, HalfNet
from hrcam.models.registry import model_metadata
from hrcam.train.memory_format import ChannelsLastFit
from hrcam.train.objectives import FaithfulnessWeights, faithfulness_terms

OBJECTIVES = ("reconstruction", "consistency", "smoothness", "faithfulness")
OPTIMIZERS = ("adadelta", "adam")

#: decoder recipes: ``hrcam train full --preset NAME`` (explicit flags still override)
PRESETS = {
    "seed": {"objective": "reconstruction", "upsampling": "transposed", "anchor": "none", "optimizer": "adadelta",
             "weight_decay": 1e-4},
    # the seed's L2 stays: without it the demo measured high-res PxAP 0.372 (vs 0.374), guided-filtered
    # 0.484 (vs 0.501), and on the distractor variant 0.187 (vs 0.229), measured with the earlier black fill
    "localize": {"objective": "faithfulness", "upsampling": "resize", "anchor": "bilinear", "optimizer": "adam",
                 "weight_decay": 1e-4},
}
#: the learning rate each optimizer starts from when none is given
DEFAULT_LR = {"adadelta": 1.0, "adam": 1e-3}


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


class _Base(ChannelsLastFit, L.LightningModule):
    kind = "half"

    def __init__(self, lr: float, rho: float, weight_decay: float, class_names, im_size: int):
        super().__init__()
        self.class_names = list(class_names) if class_names else None
        self.im_size = im_size
        self.lr, self.rho, self.weight_decay = lr, rho, weight_decay

    optimizer_name = "adadelta"

    def configure_optimizers(self):
        params = [p for p in self.parameters() if p.requires_grad]
        if self.optimizer_name == "adam":
            opt = torch.optim.Adam(params, lr=self.lr)
        else:
            opt = torch.optim.Adadelta(params, lr=self.lr, rho=self.rho, eps=1e-7)
        sched = torch.optim.lr_scheduler.ReduceLROnPlateau(opt, mode="min", factor=math.sqrt(0.1),
                                                           patience=10, min_lr=1e-5)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "monitor": "train_loss",
                                                   "interval": "epoch"}}

    #: run the network through ``torch.compile`` during fit (``hrcam train --compile``)
    compile_net: bool = False

    def on_fit_start(self):
        super().on_fit_start()  # channels-last (ChannelsLastFit)
        if self.compile_net:
            # the compiler fuses BN → ReLU and recomputes on its own; the blocks' hand-written
            # recomputation (autograd Functions) would split its graph: measured slower
            set_memory_efficient(self.net, False)
            self.net.compile()
            if hasattr(self.net, "forward_all"):  # FullModule calls it directly, not through __call__
                self.net.forward_all = torch.compile(self.net.forward_all)

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
                 consistency_weight: float = 1.0, lr: float | None = None, rho: float = 0.95,
                 weight_decay: float = 1e-4, upsampling: str = "transposed", anchor: str = "none",
                 optimizer: str = "adadelta", faithfulness: dict | None = None):
        if optimizer not in OPTIMIZERS:
            raise ValueError(f"optimizer must be one of {', '.join(OPTIMIZERS)}, got {optimizer!r}")
        super().__init__(DEFAULT_LR[optimizer] if lr is None else lr, rho, weight_decay, class_names, im_size)
        if objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {', '.join(OBJECTIVES)}, got {objective!r}")
        if consistency_weight < 0:
            raise ValueError(f"consistency_weight must be >= 0, got {consistency_weight}")
        self.save_hyperparameters(ignore=["half_state", "class_names"])
        self.objective, self.consistency_weight, self.optimizer_name = objective, consistency_weight, optimizer
        self.weights = FaithfulnessWeights(**(faithfulness or {}))
        half = HalfNet(num_classes, in_channels, **(arch or {}))
        if half_state is not None:
            half.load_state_dict(half_state)
        self.net = FullNet.from_half(half, freeze=True, upsampling=upsampling, anchor=anchor)

    def _losses(self, x, y):
        """``(logits, total loss, {term: value})`` of one batch under the module's objective."""
        logits, a_low, a_high = self.net.forward_all(x)
        terms: dict[str, torch.Tensor] = {}
        if self.objective in ("reconstruction", "consistency"):
            terms["reconstruction"] = F.mse_loss(self.net.reconstruct_from(a_high), x)
        learned = self.objective in ("smoothness", "faithfulness")
        if self.objective == "consistency" or (learned and self.net.anchor == "none"):
            terms["consistency"] = self.consistency_weight * consistency_loss(self.net.low_weight, a_low, a_high)
        if learned:
            maps = torch.einsum("nk,nkhw->nhw", self.net.low_weight[y], a_high)
            weights = self.weights
            if self.objective == "smoothness":  # the edge-aware term alone
                weights = dataclasses.replace(weights, keep=0.0, delete=0.0, area=0.0)
            low = torch.einsum("nk,nkhw->nhw", self.net.low_weight[y], a_low)
            terms.update(faithfulness_terms(self.net.localization, x, maps, y, weights, low_maps=low))
        return logits, sum(terms.values()), terms

    def training_step(self, batch, _idx):
        x, y = batch
        logits, loss, terms = self._losses(x, y)
        loss = loss + self.weight_decay * l2_penalty(self.net)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, sync_dist=True)
        for name, value in terms.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, sync_dist=True)
        return loss

    def validation_step(self, batch, _idx):
        x, y = batch
        logits, loss, terms = self._losses(x, y)
        self.log("val_loss", loss, on_epoch=True, sync_dist=True)
        for name, value in terms.items():
            self.log(f"val_{name}", value, on_epoch=True, sync_dist=True)
        self._log_acc("val_acc", logits, y, sync_dist=True)
