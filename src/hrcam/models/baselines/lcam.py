"""L-CAM (seed 004): an attention mechanism learned on top of a frozen classifier.

The frozen classifier is anything with ``features(x) -> N×C×h×w`` (its last conv maps),
``head(features) -> logits``, ``out_channels`` and ``num_classes``: a
:class:`~hrcam.models.baselines.feature_backbones.TorchvisionBackbone` with its classifier (VGG-16
after conv5_3's ReLU, ResNet-50 ``layer4``) or a trained :class:`~hrcam.models.baselines.camnet.CAMNet`.

Attention mechanism: one 1×1 conv with bias, C → K, giving pre-sigmoid maps ``c`` (N×K×h×w);
``a = sigmoid(c)``. Training selects each sample's label map ``A_n = a[n, y_n]`` (h×w) and

- **L-CAM-Fm**: ``logits = head(features ⊙ A)``;
- **L-CAM-Img**: ``logits = classifier(x ⊙ up(A))``, ``up`` bilinear to the input size, ``x``
  the [0, 1] image.

Loss (``loss="selected"``), with N the batch size and A the per-sample selected maps::

    L = 1.5 · CE(logits, y) + 2 · mean((A + 0.0005)^0.3) + 0.01 · TV(A)
    TV(A) = ( Σ_n Σ_ij (A[n,i+1,j] − A[n,i,j])² + Σ_n Σ_ij (A[n,i,j+1] − A[n,i,j])²
              + 0.3 · Σ_n (Σ_j A[n,0,j]² + Σ_j A[n,h−1,j]² + Σ_i A[n,i,0]² + Σ_i A[n,i,w−1]²) ) / (2N)

(the border sum runs over the four border strips, so corner pixels count twice). The "A"
variants (``loss="ce"``) use plain ``CE(logits, y)``.

Explanation: the pre-sigmoid map ``c[n, t_n]`` of the target class (default: the classifier's
prediction on the unmodified image); the explainer min-max normalizes and upsamples it.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hrcam.models.baselines.classifiers import build_classifier, classifier_config
from hrcam.models.registry import register_model

__all__ = [
    "AREA_EPS", "AREA_POWER", "BORDER_PENALTY", "LCAM_LOSSES", "LCAM_VARIANTS", "LOSS_WEIGHTS",
    "AttentionMechanism", "LCAMNet", "area_loss", "lcam_loss", "total_variation",
]

LCAM_VARIANTS = ("fm", "img")
LCAM_LOSSES = ("selected", "ce")
#: (cross-entropy, area, total variation) weights of the selected loss
LOSS_WEIGHTS = (1.5, 2.0, 0.01)
AREA_EPS = 0.0005
AREA_POWER = 0.3
BORDER_PENALTY = 0.3


def area_loss(maps: torch.Tensor, power: float = AREA_POWER, eps: float = AREA_EPS) -> torch.Tensor:
    """``mean((A + eps)^power)`` over all samples and pixels (eps keeps the gradient finite at 0)."""
    return ((maps + eps) ** power).mean()


def total_variation(maps: torch.Tensor, border_penalty: float = BORDER_PENALTY) -> torch.Tensor:
    """TV of N×h×w maps, each sample's own map (formula in the module docstring)."""
    if maps.ndim != 3:
        raise ValueError(f"total_variation expects N×h×w maps, got shape {tuple(maps.shape)}")
    vertical = (maps[:, 1:, :] - maps[:, :-1, :]).pow(2).sum()
    horizontal = (maps[:, :, 1:] - maps[:, :, :-1]).pow(2).sum()
    sq = maps.pow(2)
    border = sq[:, 0, :].sum() + sq[:, -1, :].sum() + sq[:, :, 0].sum() + sq[:, :, -1].sum()
    return (vertical + horizontal + border_penalty * border) / (2.0 * maps.shape[0])


def lcam_loss(logits: torch.Tensor, labels: torch.Tensor, maps: torch.Tensor,
              loss: str = "selected") -> dict[str, torch.Tensor]:
    """L-CAM's training loss; returns ``{"loss", "ce", "area", "tv"}`` (weighted terms).

    ``maps`` are the per-sample selected sigmoid maps A (N×h×w). ``loss="ce"``: plain CE.
    """
    if loss not in LCAM_LOSSES:
        raise ValueError(f"loss must be one of {LCAM_LOSSES}, got {loss!r}")
    ce = F.cross_entropy(logits, labels)
    if loss == "ce":
        zero = ce.new_zeros(())
        return {"loss": ce, "ce": ce, "area": zero, "tv": zero}
    w_ce, w_area, w_tv = LOSS_WEIGHTS
    terms = {"ce": w_ce * ce, "area": w_area * area_loss(maps), "tv": w_tv * total_variation(maps)}
    terms["loss"] = terms["ce"] + terms["area"] + terms["tv"]
    return terms


class AttentionMechanism(nn.Module):
    """1×1 conv with bias, C → K: one pre-sigmoid map per class."""

    def __init__(self, in_channels: int, num_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(int(in_channels), int(num_classes), kernel_size=1, bias=True)

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.conv(feats)


def _pick(maps: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """N×K×h×w, N classes → N×h×w (each sample's own class map)."""
    return maps[torch.arange(maps.shape[0], device=maps.device), classes]


class LCAMNet(nn.Module):
    """Frozen classifier + trainable attention mechanism (L-CAM-Fm or L-CAM-Img)."""

    def __init__(self, classifier: nn.Module, variant: str = "fm"):
        super().__init__()
        if variant not in LCAM_VARIANTS:
            raise ValueError(f"variant must be one of {LCAM_VARIANTS}, got {variant!r}")
        for attr in ("features", "head", "out_channels", "num_classes"):
            if not hasattr(classifier, attr):
                raise ValueError(f"classifier needs `{attr}` (a torchvision backbone with its classifier or a CAMNet)")
        if not int(classifier.num_classes):
            raise ValueError("classifier has no classification head (built with with_classifier=False?)")
        self.variant = variant
        self.classifier = classifier
        self.classifier.requires_grad_(False)
        self.attention = AttentionMechanism(classifier.out_channels, int(classifier.num_classes))
        self.classifier.eval()

    @property
    def num_classes(self) -> int:
        return int(self.classifier.num_classes)

    def train(self, mode: bool = True):
        """Only the attention mechanism trains; the frozen classifier stays in eval mode."""
        super().train(mode)
        self.classifier.eval()
        return self

    def attention_maps(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(features N×C×h×w, pre-sigmoid maps c N×K×h×w)``."""
        feats = self.classifier.features(x)
        return feats, self.attention(feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The frozen classifier's logits for the unmodified input (the model being explained)."""
        return self.classifier.head(self.classifier.features(x))

    def attend(self, x: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: ``(logits of the attended input, selected sigmoid maps A N×h×w)``."""
        feats, c = self.attention_maps(x)
        a = _pick(torch.sigmoid(c), labels)
        if self.variant == "fm":
            logits = self.classifier.head(feats * a[:, None])
        else:
            up = F.interpolate(a[:, None], size=x.shape[-2:], mode="bilinear", align_corners=False)
            logits = self.classifier.head(self.classifier.features(x * up))
        return logits, a

    def explain(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(pre-sigmoid maps c N×K×h×w for every class, clean logits N×K)``.

        One backbone pass serves both the classifier's logits (its head on the unmodified
        features) and the attention maps.
        """
        feats, c = self.attention_maps(x)
        return c, self.classifier.head(feats)

    def config(self) -> dict:
        return {"variant": self.variant}


def _lcam_fields(net: LCAMNet, loss: str | None = None) -> dict:
    return {"arch": {"variant": net.variant, "loss": loss, "classifier": classifier_config(net.classifier)}}


@register_model("lcam", fields=_lcam_fields, family="baseline")
def _build_lcam(meta: dict) -> LCAMNet:
    arch = dict(meta.get("arch") or {})
    return LCAMNet(build_classifier(arch["classifier"]), variant=arch.get("variant", "fm"))
