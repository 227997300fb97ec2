"""LightningModules for the neighbouring methods (DESIGN §5); each holds its network as ``net``
and implements ``export_state() -> (state_dict, metadata)`` for :func:`hrcam.train.runner.fit`.

- :class:`CAMModule` — CAM fine-tuning (seed 002): cross-entropy, Adam (lr 1e-3, betas
  (0.5, 0.999)); every ``log_every`` steps the CAM of class ``label`` on a fixed image is logged
  to TensorBoard as a heat-map overlay (``cam/label_<label>``). Best checkpoint by ``val_acc``.
- :class:`LCAMModule` — L-CAM (seed 004): only the attention mechanism trains, with the
  original code's optimizer: SGD lr 1e-4, momentum 0.9, Nesterov, weight decay 5e-4, biases at
  twice the learning rate, learning rate × 0.95 after every epoch (``optimizer="adam"``: Adam with
  the same groups, weight decay and decay, for short CPU runs). Best by ``val_loss``.
- :class:`CASMModule` — CASM (seed 003), manual optimization: SGD (lr 1e-3, momentum 0.9,
  weight decay 1e-4) for the classifier, Adam (lr 1e-3, weight decay 1e-4) for the masker,
  masker gradients clipped to norm 10. One step is :func:`casm_update`. Best by ``val_loss``
  (after the warm-up). Two additions against a collapsing mask (both off by default, the
  seed's recipe): ``warmup_epochs`` of classifier-only cross-entropy before the masker starts
  (with thinning F the classifier is frozen after them), and ``lambda_ramp_steps`` over which
  λ grows linearly from λ/ramp to λ. An epoch whose mean training mask area is below
  :data:`COLLAPSE_AREA` (1 %) raises a :class:`MaskCollapseWarning` (in the log). ``fill``:
  what replaces the masked-out pixels (:func:`hrcam.models.baselines.casm.mask_out`): ``'zero'``
  (black, the seed's) or ``'random'`` (one uniform colour per image, drawn anew each step from
  torch's global generator; at validation from a generator seeded per batch, so every epoch
  scores the same images with the same colours).
"""
from __future__ import annotations

import copy
import dataclasses
import random
import warnings

import lightning.pytorch as L
import torch
import torch.nn.functional as F
from torch import nn

from hrcam.models.baselines.camnet import CAMNet
from hrcam.models.baselines.casm import FILLS, CASMNet, ClassifierPool, mask_out, masker_loss, thinning
from hrcam.models.baselines.lcam import LCAMNet, lcam_loss
from hrcam.models.registry import model_metadata
from hrcam.train.memory_format import ChannelsLastFit

__all__ = ["COLLAPSE_AREA", "CAMModule", "LCAMModule", "CASMModule", "MaskCollapseWarning", "casm_update"]

#: mean mask area below which a CASM training epoch counts as collapsed
COLLAPSE_AREA = 0.01


class _Module(ChannelsLastFit, L.LightningModule):
    kind = ""

    def __init__(self, im_size: int, class_names):
        super().__init__()
        self.im_size = int(im_size)
        self.class_names = list(class_names) if class_names else None

    def training_metadata(self) -> dict:
        """Training settings recorded with the weights (the registry's writer puts them in ``arch``)."""
        return {}

    def export_state(self):
        """``(state_dict, metadata)`` for :func:`hrcam.train.runner.fit`."""
        return self.net.state_dict(), model_metadata(self.kind, self.net, self.im_size, self.class_names,
                                                     **self.training_metadata())

    def _acc(self, logits, y):
        return (logits.argmax(1) == y).float().mean()


# -- CAM ---------------------------------------------------------------------------------------
#: CAM's learning-rate schedules: the seed's constant rate, or cosine decay to 0 over the run
LR_SCHEDULES = ("constant", "cosine")


class CAMModule(_Module):
    """Fine-tunes a :class:`CAMNet` (optionally with a frozen backbone)."""

    kind = "camnet"

    def __init__(self, net: CAMNet, lr: float = 1e-3, beta1: float = 0.5, freeze_backbone: bool = False,
                 label: int | None = None, log_every: int = 100, cam_image: torch.Tensor | None = None,
                 im_size: int = 224, class_names=None, lr_schedule: str = "constant"):
        super().__init__(im_size, class_names)
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if lr_schedule not in LR_SCHEDULES:
            raise ValueError(f"lr_schedule must be one of {', '.join(LR_SCHEDULES)}, got {lr_schedule!r}")
        if not 0 <= beta1 < 1:
            raise ValueError(f"beta1 must be in [0, 1), got {beta1}")
        if log_every < 1:
            raise ValueError(f"log_every must be >= 1, got {log_every}")
        if label is not None and not 0 <= int(label) < net.num_classes:
            raise ValueError(f"label must be a class index in 0..{net.num_classes - 1}, got {label}")
        self.save_hyperparameters(ignore=["net", "cam_image", "class_names"])
        self.net = net
        self.lr, self.beta1, self.lr_schedule = lr, beta1, lr_schedule
        self.freeze_backbone = freeze_backbone
        if freeze_backbone:
            self.net.backbone.requires_grad_(False)
        self.label, self.log_every = label, log_every
        self.cam_image = cam_image

    def train(self, mode: bool = True):
        super().train(mode)
        if self.freeze_backbone:
            self.net.backbone.eval()  # frozen batch-norm statistics stay as they are
        return self

    def configure_optimizers(self):
        """Adam (the seed's betas); with ``lr_schedule='cosine'`` the rate falls to 0 over the run's steps
        (per step, Loshchilov & Hutter 2017), so the last-epoch weights settle instead of swinging
        from epoch to epoch."""
        params = [p for p in self.net.parameters() if p.requires_grad]
        opt = torch.optim.Adam(params, lr=self.lr, betas=(self.beta1, 0.999))
        if self.lr_schedule == "constant":
            return opt
        steps = max(1, int(self.trainer.estimated_stepping_batches))
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def training_step(self, batch, _idx):
        x, y = batch
        if self.label is not None and self.cam_image is None:
            self.cam_image = x[0].detach().clone()
        logits = self.net(x)
        loss = F.cross_entropy(logits, y)
        self.log("train_loss", loss, on_step=True, on_epoch=True, prog_bar=True)
        self.log("train_acc", self._acc(logits, y), on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def validation_step(self, batch, _idx):
        x, y = batch
        logits = self.net(x)
        self.log("val_loss", F.cross_entropy(logits, y), on_epoch=True)
        self.log("val_acc", self._acc(logits, y), on_epoch=True, prog_bar=True)

    def cam_picture(self) -> torch.Tensor | None:
        """Overlay (3×H×W) of the CAM of ``label`` on the fixed image, or None without one."""
        from hrcam.explain.base import normalize_maps
        from hrcam.models.base import class_maps
        from hrcam.train.baseline_maps import heatmap_overlay

        if self.label is None or self.cam_image is None:
            return None
        was_training = self.net.training
        self.net.eval()
        try:
            with torch.no_grad():
                x = self.cam_image[None].to(self.device)
                feats = self.net.features(x)
                cam = class_maps(self.net.low_weight, feats, torch.tensor([self.label]))
                cam = F.interpolate(cam[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)[:, 0]
        finally:
            self.net.train(was_training)
            if self.freeze_backbone:
                self.net.backbone.eval()
        return heatmap_overlay(x[0], normalize_maps(cam)[0])

    def on_train_batch_end(self, outputs, batch, batch_idx):
        step = int(self.global_step)
        if self.label is None or step % self.log_every:
            return
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image"):
            return
        picture = self.cam_picture()
        if picture is not None:
            experiment.add_image(f"cam/label_{self.label}", picture, step)


# -- L-CAM -------------------------------------------------------------------------------------
class LCAMModule(_Module):
    """Trains the attention mechanism of an :class:`LCAMNet` (classifier frozen)."""

    kind = "lcam"

    def __init__(self, net: LCAMNet, loss: str = "selected", lr: float = 1e-4, momentum: float = 0.9,
                 weight_decay: float = 5e-4, lr_decay: float = 0.95, im_size: int = 224, class_names=None,
                 optimizer: str = "sgd"):
        super().__init__(im_size, class_names)
        if loss not in ("selected", "ce"):
            raise ValueError(f"loss must be 'selected' or 'ce', got {loss!r}")
        if optimizer not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
        self.optimizer_name = optimizer
        if lr <= 0:
            raise ValueError(f"lr must be > 0, got {lr}")
        if not 0 < lr_decay <= 1:
            raise ValueError(f"lr_decay must be in (0, 1], got {lr_decay}")
        self.save_hyperparameters(ignore=["net", "class_names"])
        self.net = net
        self.loss_kind = loss
        self.lr, self.momentum, self.weight_decay, self.lr_decay = lr, momentum, weight_decay, lr_decay

    def training_metadata(self) -> dict:
        """The loss, recorded in ``arch``."""
        return {"loss": self.loss_kind}

    def configure_optimizers(self):
        att = self.net.attention.conv
        groups = [{"params": [att.weight], "lr": self.lr}, {"params": [att.bias], "lr": 2 * self.lr}]
        if self.optimizer_name == "adam":
            opt = torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)
        else:
            opt = torch.optim.SGD(groups, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay,
                                  nesterov=True)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.lr_decay)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}

    def _step(self, batch, prefix: str):
        x, y = batch
        logits, a = self.net.attend(x, y)
        terms = lcam_loss(logits, y, a, self.loss_kind)
        on_step = prefix == "train"
        self.log(f"{prefix}_loss", terms["loss"], on_step=on_step, on_epoch=True, prog_bar=True)
        for k in ("ce", "area", "tv"):
            self.log(f"{prefix}_{k}", terms[k], on_step=False, on_epoch=True)
        self.log(f"{prefix}_acc", self._acc(logits, y), on_step=False, on_epoch=True)
        return terms["loss"]

    def training_step(self, batch, _idx):
        return self._step(batch, "train")

    def validation_step(self, batch, _idx):
        self._step(batch, "val")


# -- CASM --------------------------------------------------------------------------------------
def casm_update(net: CASMNet, x: torch.Tensor, y: torch.Tensor, *, strategy, lambda_r: float,
                opt_masker, opt_classifier=None, pool: ClassifierPool | None = None, rng: random.Random,
                step: int, confuser: nn.Module | None = None, backward=None, clip: float = 10.0,
                fill: str = "zero") -> dict:
    """One CASM training step (seed 003), ordered so no tensor is changed in place before its backward.

    1. clean pass; unless the classifier is frozen: CE backward and classifier step, then maybe a
       pool snapshot (after step ``step``);
    2. mask from the detached features, masked-out image ``x ⊙ (1 − m) + u ⊙ m`` (``u``: the
       ``fill``, black or one random colour per image);
    3. scorer: a random pool snapshot (probability ``strategy.pool_prob``) or the current
       classifier;
    4. masker loss backward into the masker only (graph kept when the classifier also learns
       from the masked-out image); CE on the masked-out image backward into the classifier only;
       masker gradients clipped; then both optimizer steps.
    """
    backward = backward or (lambda loss, **kw: loss.backward(**kw))
    if pool is not None and strategy.pool_prob > 0 and confuser is None:
        raise ValueError("confuser: a copy of the classifier is needed to score with pool snapshots")
    if not strategy.fixed_classifier and opt_classifier is None:
        raise ValueError("opt_classifier: needed unless the classifier is frozen (strategy F)")
    classifier, masker = net.classifier, net.masker
    if strategy.fixed_classifier:
        with torch.no_grad():
            logits, stages = net.classify(x)
        clean_ce = F.cross_entropy(logits, y)
    else:
        logits, stages = net.classify(x)
        clean_ce = F.cross_entropy(logits, y)
        opt_classifier.zero_grad()
        backward(clean_ce)
        opt_classifier.step()
        if pool is not None:
            pool.maybe_snapshot(step, classifier)
    mask = net.mask(stages, x.shape[-2:])
    x_masked = mask_out(x, mask, fill)
    use_pool = pool is not None and len(pool) > 0 and rng.random() < strategy.pool_prob
    if use_pool:
        confuser.load_state_dict(pool.sample())
        confuser.eval()
        masked_logits = confuser(x_masked)
        update_classifier = False
    else:
        masked_logits = classifier(x_masked)
        update_classifier = not strategy.fixed_classifier
    terms = masker_loss(logits, masked_logits, y, mask, lambda_r)
    opt_masker.zero_grad()
    # each backward reaches only the parameters its loss trains (``inputs``): no classifier weight
    # gradients from the masker's loss, no pass back into the masker from the classifier's
    masker_params = [p for p in masker.parameters() if p.requires_grad]
    backward(terms["loss"], retain_graph=update_classifier, inputs=masker_params or None)
    masked_ce = F.cross_entropy(masked_logits.detach(), y)
    if update_classifier:
        opt_classifier.zero_grad()
        masked_ce = F.cross_entropy(masked_logits, y)
        backward(masked_ce, inputs=[p for p in classifier.parameters() if p.requires_grad] or None)
    if clip:
        torch.nn.utils.clip_grad_norm_(masker.parameters(), clip)
    opt_masker.step()
    if update_classifier:
        opt_classifier.step()
    return {**terms, "clean_ce": clean_ce.detach(), "masked_ce": masked_ce.detach(),
            "acc": (logits.argmax(1) == y).float().mean(), "acc_masked": (masked_logits.argmax(1) == y).float().mean(),
            "used_pool": torch.tensor(float(use_pool))}


class MaskCollapseWarning(UserWarning):
    """A CASM epoch whose mean mask area fell below :data:`COLLAPSE_AREA`."""


class CASMModule(_Module):
    """Trains a :class:`CASMNet` with a thinning strategy (``F``, ``L``, ``FL``, ``L100``, ``L1000``).

    ``warmup_epochs``: epochs of classifier-only cross-entropy (SGD, ``lr_classifier``) before
    the masker trains; ``lambda_ramp_steps``: masker steps over which λ ramps up linearly;
    ``fill``: ``'zero'`` or ``'random'``, what replaces the masked-out pixels (module docstring).
    """

    kind = "casm"

    def __init__(self, net: CASMNet, thinning_name: str = "L1000", lambda_r: float | None = None,
                 pool_size: int = 30, pool_prob: float | None = None, smf: int | None = None,
                 lr_classifier: float = 1e-3, lr_masker: float = 1e-3, momentum: float = 0.9,
                 weight_decay: float = 1e-4, seed: int = 0, im_size: int = 224, class_names=None,
                 warmup_epochs: int = 0, lambda_ramp_steps: int = 0, fill: str = "zero"):
        super().__init__(im_size, class_names)
        base = thinning(thinning_name)
        if fill not in FILLS:
            raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
        if pool_prob is not None and not 0 <= pool_prob <= 1:
            raise ValueError(f"pool_prob must be in [0, 1], got {pool_prob}")
        if int(warmup_epochs) < 0:
            raise ValueError(f"warmup_epochs must be >= 0, got {warmup_epochs}")
        if int(lambda_ramp_steps) < 0:
            raise ValueError(f"lambda_ramp_steps must be >= 0, got {lambda_ramp_steps}")
        self.save_hyperparameters(ignore=["net", "class_names"])
        self.automatic_optimization = False
        self.net = net
        self.strategy = dataclasses.replace(
            base, pool_prob=base.pool_prob if pool_prob is None else float(pool_prob),
            smf=base.smf if smf is None else int(smf))
        self.lambda_r = base.lambda_r if lambda_r is None else float(lambda_r)
        self.pool = ClassifierPool(pool_size, self.strategy.smf, seed=seed) if self.strategy.uses_pool else None
        self.rng = random.Random(seed)
        self.fill, self.seed = fill, int(seed)
        self.lr_classifier, self.lr_masker = lr_classifier, lr_masker
        self.momentum, self.weight_decay = momentum, weight_decay
        self.warmup_epochs, self.lambda_ramp_steps = int(warmup_epochs), int(lambda_ramp_steps)
        self.casm_steps = 0
        self.collapsed_epochs: list[int] = []
        self._area = [0.0, 0]  # this epoch's sum of batch mask means, masker steps
        if self.strategy.fixed_classifier and not self.warmup_epochs:
            self.net.classifier.requires_grad_(False)
        self._confuser = None

    def training_metadata(self) -> dict:
        """The thinning strategy and mask-area weight, recorded in ``arch``."""
        return {"thinning": self.strategy.name, "lambda_r": self.lambda_r, "fill": self.fill}

    def in_warmup(self) -> bool:
        """Whether the current epoch trains the classifier alone."""
        return int(self.current_epoch) < self.warmup_epochs

    def _classifier_frozen(self) -> bool:
        return self.strategy.fixed_classifier and not self.in_warmup()

    def current_lambda(self) -> float:
        """λ of the next masker step: ramped linearly over ``lambda_ramp_steps`` masker steps."""
        if not self.lambda_ramp_steps:
            return self.lambda_r
        return self.lambda_r * min(1.0, (self.casm_steps + 1) / self.lambda_ramp_steps)

    def train(self, mode: bool = True):
        super().train(mode)
        if self._classifier_frozen():
            self.net.classifier.eval()
        return self

    def configure_optimizers(self):
        opt_m = torch.optim.Adam(self.net.masker.parameters(), lr=self.lr_masker, weight_decay=self.weight_decay)
        if self.strategy.fixed_classifier and not self.warmup_epochs:
            return opt_m
        opt_c = torch.optim.SGD(self.net.classifier.parameters(), lr=self.lr_classifier, momentum=self.momentum,
                                weight_decay=self.weight_decay)
        return [opt_c, opt_m]

    def confuser(self) -> nn.Module | None:
        """A copy of the classifier that pool snapshots are loaded into (not part of the state)."""
        if self.pool is None:
            return None
        if self._confuser is None:
            c = copy.deepcopy(self.net.classifier).requires_grad_(False).eval()
            object.__setattr__(self, "_confuser", c)  # keep it out of the module tree / checkpoints
        return self._confuser.to(self.device)

    def _warmup_step(self, x, y, opt_c):
        logits = self.net.classifier(x)
        loss = F.cross_entropy(logits, y)
        opt_c.zero_grad()
        self.manual_backward(loss)
        opt_c.step()
        self.log("train_clean_ce", loss.detach(), on_step=False, on_epoch=True)
        self.log("train_acc", self._acc(logits, y), on_step=False, on_epoch=True)

    def on_train_epoch_start(self):
        if self.strategy.fixed_classifier and self.warmup_epochs and not self.in_warmup():
            self.net.classifier.requires_grad_(False)  # F: the warmed-up classifier is frozen from here on
            self.net.classifier.eval()
        self._area = [0.0, 0]

    def training_step(self, batch, _idx):
        x, y = batch
        opts = self.optimizers()
        opts = opts if isinstance(opts, list) else [opts]
        opt_c, opt_m = (None, opts[0]) if len(opts) == 1 else (opts[0], opts[1])
        if self.in_warmup():
            return self._warmup_step(x, y, opt_c)
        if self.strategy.fixed_classifier:
            opt_c = None
        out = casm_update(self.net, x, y, strategy=self.strategy, lambda_r=self.current_lambda(), opt_masker=opt_m,
                          opt_classifier=opt_c, pool=self.pool, rng=self.rng, step=self.casm_steps,
                          confuser=self.confuser(), backward=self.manual_backward, fill=self.fill)
        self.casm_steps += 1
        self._area[0] += float(out["mask_mean"])
        self._area[1] += 1
        self.log("train_loss", out["loss"].detach(), on_step=True, on_epoch=True, prog_bar=True)
        for k in ("entropy", "area", "mask_mean", "clean_ce", "masked_ce", "acc", "acc_masked"):
            self.log(f"train_{k}", out[k].detach(), on_step=False, on_epoch=True)
        if self.pool is not None:
            self.log("pool_size", float(len(self.pool)), on_step=True, on_epoch=False)

    def on_train_epoch_end(self):
        total, steps = self._area
        if steps:
            self.check_collapse(total / steps, int(self.current_epoch))

    def check_collapse(self, mean_area: float, epoch: int) -> bool:
        """Warn (:class:`MaskCollapseWarning`) when an epoch's mean mask area is below :data:`COLLAPSE_AREA`."""
        if mean_area >= COLLAPSE_AREA:
            return False
        self.collapsed_epochs.append(epoch)
        warnings.warn(f"CASM mask collapse: epoch {epoch} mean mask area {100 * mean_area:.2f} % < "
                      f"{100 * COLLAPSE_AREA:g} % (the area term wins; try --warmup_epochs, "
                      f"--lambda_ramp_steps or a smaller --lambda_r)", MaskCollapseWarning, stacklevel=2)
        return True

    def validation_step(self, batch, idx):
        x, y = batch
        logits, mask = self.net.logits_and_mask(x)
        gen = torch.Generator().manual_seed(self.seed * 100_003 + int(idx)) if self.fill == "random" else None
        masked_logits = self.net.classifier(mask_out(x, mask, self.fill, gen))
        terms = masker_loss(logits, masked_logits, y, mask, self.lambda_r)
        # no masker yet during the warm-up: such an epoch must not become the best checkpoint
        loss = terms["loss"] if not self.in_warmup() else torch.tensor(float("inf"))
        self.log("val_loss", loss, on_epoch=True, prog_bar=True)
        self.log("val_acc", self._acc(logits, y), on_epoch=True)
        self.log("val_acc_masked", self._acc(masked_logits, y), on_epoch=True)
        self.log("val_mask_mean", terms["mask_mean"], on_epoch=True)
