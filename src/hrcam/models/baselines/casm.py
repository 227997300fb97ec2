"""CASM, classifier-agnostic saliency maps (seed 003): a classifier and a masker.

Masker: the classifier's detached stage features (ResNet: stem, ``layer1..4``) → for each
scale a 1×1 conv to 64 channels + BN + ReLU, bilinearly upsampled to the first stage's
resolution → concatenated → 3×3 conv → 1 channel → sigmoid → upsampled to the input size:
the mask ``m`` (N×1×H×W, 1 = salient). The masked-out input is ``x ⊙ (1 − m) + u ⊙ m``
(:func:`mask_out`): ``u`` = 0 (``fill='zero'``, the paper's ``x ⊙ (1 − m)``) or one uniform
random colour per image, drawn anew each step (``fill='random'``). A black fill cannot hide a
dark object (its pixels already equal the fill), so on dark digits the masker gains nothing
from covering them; a random colour, one of Dabkowski & Gal's (2017) alternatives, removes
them whatever their colour.

Masker loss, for a batch of N with labels y (``p`` = softmax of the scorer on the masked-out
image, ``c_i`` = the clean prediction is correct, ``nc_i`` = ``c_i`` and the masked-out
prediction is wrong, ``a_i`` = mean of ``m_i``)::

    L_mask = mean_i c_i · Σ_k p_ik log p_ik  +  λ · mean_i nc_i · a_i

Classifier pool and thinning strategies (:data:`THINNING`): with probability ``pool_prob``
the masked-out image is scored by a random past snapshot of the classifier, otherwise by the
current classifier. Snapshots (CPU copies of the state dict, at most ``pool_size`` = 30; when
full, a random slot is overwritten) are taken after the classifier's update at step ``i``
(0-based) when the pool is empty or ``(i + 1) % smf == 0``.

=========  ==================  ==========  ======  =====
strategy   classifier          pool_prob   smf     λ
=========  ==================  ==========  ======  =====
F          frozen (baseline)   0           —       2.5
L          trains, latest      0           —       14
FL         trains              0.5         —       7.5   (pool = the first snapshot only)
L100       trains              0.5         100     10
L1000      trains              0.5         1000    10
=========  ==================  ==========  ======  =====
"""
from __future__ import annotations

import random
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrcam.models.baselines.classifiers import build_classifier, classifier_config
from hrcam.models.registry import register_model

__all__ = ["FILLS", "THINNING", "ClassifierPool", "Masker", "CASMNet", "ThinningStrategy", "fill_colours",
           "mask_out", "masker_loss"]

#: fills of the masked-out pixels: ``zero`` (black, the paper's) and ``random`` (a colour per image)
FILLS = ("zero", "random")


def fill_colours(x: torch.Tensor, fill: str = "zero", generator: torch.Generator | None = None) -> torch.Tensor:
    """The N×C×1×1 colours that replace masked-out pixels: zeros, or uniform in [0, 1]^C per image.

    ``'random'`` draws from ``generator``, or from torch's global generator (seeded by the
    trainers, so seeded runs repeat) when None.
    """
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {', '.join(FILLS)}, got {fill!r}")
    shape = (x.shape[0], x.shape[1], 1, 1)
    if fill == "zero":
        return x.new_zeros(shape)
    u = torch.rand(shape, generator=generator, dtype=x.dtype, device="cpu" if generator is not None else x.device)
    return u.to(x.device)


def mask_out(x: torch.Tensor, mask: torch.Tensor, fill: str = "zero",
             generator: torch.Generator | None = None) -> torch.Tensor:
    """The masked-out image ``x ⊙ (1 − m) + u ⊙ m``, ``u`` from :func:`fill_colours`."""
    return x * (1 - mask) + fill_colours(x, fill, generator) * mask


@dataclass(frozen=True)
class ThinningStrategy:
    """How CASM keeps past classifiers: frozen classifier or not, and the snapshot schedule."""

    name: str
    fixed_classifier: bool
    pool_prob: float
    smf: int | None  #: snapshot every smf steps; None = only the first snapshot
    lambda_r: float

    @property
    def uses_pool(self) -> bool:
        return (not self.fixed_classifier) and self.pool_prob > 0


THINNING = {
    "F": ThinningStrategy("F", True, 0.0, None, 2.5),
    "L": ThinningStrategy("L", False, 0.0, None, 14.0),
    "FL": ThinningStrategy("FL", False, 0.5, None, 7.5),
    "L100": ThinningStrategy("L100", False, 0.5, 100, 10.0),
    "L1000": ThinningStrategy("L1000", False, 0.5, 1000, 10.0),
}


def thinning(name: str) -> ThinningStrategy:
    if name not in THINNING:
        raise ValueError(f"thinning must be one of {', '.join(THINNING)}, got {name!r}")
    return THINNING[name]


class ClassifierPool:
    """Past classifier snapshots (CPU state dicts) for scoring masked-out images."""

    def __init__(self, max_size: int = 30, smf: int | None = 1000, seed: int = 0):
        if int(max_size) < 1:
            raise ValueError(f"pool_size must be >= 1, got {max_size}")
        if smf is not None and int(smf) < 1:
            raise ValueError(f"smf must be >= 1, got {smf}")
        self.max_size = int(max_size)
        self.smf = None if smf is None else int(smf)
        self.snapshots: list[dict[str, torch.Tensor]] = []
        self.saves = 0  #: snapshots taken so far (including overwritten ones)
        self._rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.snapshots)

    def due(self, step: int) -> bool:
        """Whether a snapshot is taken after step ``step`` (0-based)."""
        return len(self.snapshots) == 0 or (self.smf is not None and (step + 1) % self.smf == 0)

    def maybe_snapshot(self, step: int, model: nn.Module) -> bool:
        if not self.due(step):
            return False
        snap = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
        if len(self.snapshots) < self.max_size:
            self.snapshots.append(snap)
        else:
            self.snapshots[self._rng.randrange(len(self.snapshots))] = snap
        self.saves += 1
        return True

    def sample(self) -> dict[str, torch.Tensor]:
        if not self.snapshots:
            raise ValueError("the classifier pool is empty")
        return self.snapshots[self._rng.randrange(len(self.snapshots))]


class Masker(nn.Module):
    """Multi-scale features → mask in [0, 1] at input resolution (see the module docstring)."""

    def __init__(self, in_channels: list[int], width: int = 64, upsample: str = "nearest"):
        super().__init__()
        if upsample not in ("nearest", "bilinear"):
            raise ValueError(f"upsample must be 'nearest' or 'bilinear', got {upsample!r}")
        self.upsample = upsample
        self.reduce = nn.ModuleList(
            nn.Sequential(nn.Conv2d(int(c), width, kernel_size=1, bias=False), nn.BatchNorm2d(width), nn.ReLU())
            for c in in_channels
        )
        self.final = nn.Conv2d(width * len(in_channels), 1, kernel_size=3, padding=1, bias=True)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, stages: list[torch.Tensor], size) -> torch.Tensor:
        if len(stages) != len(self.reduce):
            raise ValueError(f"masker expects {len(self.reduce)} feature maps, got {len(stages)}")
        base = stages[0].shape[-2:]
        parts = []
        for f, reduce in zip(stages, self.reduce):
            r = reduce(f)
            if r.shape[-2:] != base:
                r = F.interpolate(r, size=base, mode="bilinear", align_corners=False)
            parts.append(r)
        m = torch.sigmoid(self.final(torch.cat(parts, dim=1)))
        kw = {} if self.upsample == "nearest" else {"align_corners": False}
        return F.interpolate(m, size=tuple(size), mode=self.upsample, **kw)


def masker_loss(clean_logits: torch.Tensor, masked_logits: torch.Tensor, labels: torch.Tensor,
                mask: torch.Tensor, lambda_r: float) -> dict[str, torch.Tensor]:
    """``mean_i c_i Σ_k p_ik log p_ik + λ mean_i nc_i a_i`` (module docstring); returns the terms."""
    correct = (clean_logits.detach().argmax(1) == labels).float()
    fooled = (masked_logits.detach().argmax(1) != labels).float()
    nontrivial = correct * fooled
    logp = F.log_softmax(masked_logits, dim=1)
    neg_entropy = (logp.exp() * logp).sum(1)
    area = mask.reshape(mask.shape[0], -1).mean(1)
    entropy_term = (correct * neg_entropy).mean()
    area_term = float(lambda_r) * (nontrivial * area).mean()
    return {"loss": entropy_term + area_term, "entropy": entropy_term, "area": area_term,
            "mask_mean": area.mean().detach()}


class CASMNet(nn.Module):
    """The classifier (a torchvision backbone with its classifier) and the masker."""

    def __init__(self, classifier: nn.Module, width: int = 64, upsample: str = "nearest"):
        super().__init__()
        for attr in ("stages", "head", "stage_channels", "num_classes"):
            if not hasattr(classifier, attr):
                raise ValueError(f"classifier needs `{attr}` (a torchvision backbone with its classifier)")
        self.classifier = classifier
        self.masker = Masker(classifier.stage_channels, width=width, upsample=upsample)
        self._config = {"width": int(width), "upsample": upsample}

    @property
    def num_classes(self) -> int:
        return int(self.classifier.num_classes)

    def config(self) -> dict:
        return dict(self._config)

    def classify(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """``(logits, stage features)`` of one classifier pass."""
        stages = self.classifier.stages(x)
        return self.classifier.head(stages[-1]), stages

    def mask(self, stages: list[torch.Tensor], size) -> torch.Tensor:
        """Mask N×1×H×W from (detached) stage features."""
        return self.masker([s.detach() for s in stages], size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The classifier's logits (the model being explained)."""
        return self.classifier(x)

    def logits_and_mask(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(clean logits, mask N×1×H×W)`` from one classifier pass."""
        logits, stages = self.classify(x)
        return logits, self.mask(stages, x.shape[-2:])


def _casm_fields(net: CASMNet, **training) -> dict:
    return {"arch": {"classifier": classifier_config(net.classifier), **net.config(), **training}}


@register_model("casm", fields=_casm_fields, family="baseline")
def _build_casm(meta: dict) -> CASMNet:
    arch = dict(meta.get("arch") or {})
    return CASMNet(build_classifier(arch["classifier"]), width=int(arch.get("width", 64)),
                   upsample=arch.get("upsample", "nearest"))
