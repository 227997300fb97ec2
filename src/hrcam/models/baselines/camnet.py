"""CAM (Zhou et al., seed 002): a torchvision backbone with a GAP + linear head.

    A   = ReLU(conv3×3→1024(backbone last conv maps))      (the extra conv; optional)
    y   = W · dropout_0.5(GAP(A))                          (linear, no bias)
    cam[c](i, j) = Σ_k W[c, k] · A[k, i, j]

Because GAP is linear and there is no bias, the spatial mean of ``cam[c]`` equals the logit
``y[c]`` (in eval mode, where dropout is the identity).
"""
from __future__ import annotations

import torch
from torch import nn

from hrcam.models.base import CAMNetwork, MapOutputs
from hrcam.models.baselines.feature_backbones import TorchvisionBackbone, build_feature_backbone
from hrcam.models.registry import register_model

__all__ = ["CAMNet"]


class CAMNet(CAMNetwork):
    """Backbone conv maps → (3×3 conv 1024 + ReLU) → GAP → dropout → linear without bias.

    The CAM baseline's network (``hrcam train cam``). Not to be confused with
    :class:`~hrcam.models.base.CAMNetwork`, the interface (``forward_maps`` + ``low_weight``)
    that this and every other CAM-producing network in hrcam implements.
    """

    def __init__(self, backbone: TorchvisionBackbone, num_classes: int, extra_conv: bool = True,
                 extra_channels: int = 1024, dropout: float = 0.5):
        super().__init__()
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        if not 0.0 <= float(dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        self.backbone = backbone
        self.extra_conv = bool(extra_conv)
        if self.extra_conv:
            conv = nn.Conv2d(backbone.out_channels, int(extra_channels), kernel_size=3, padding=1)
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(conv.bias)
            self.cam_conv = nn.Sequential(conv, nn.ReLU(inplace=False))
            channels = int(extra_channels)
        else:
            self.cam_conv = nn.Identity()
            channels = backbone.out_channels
        self.dropout = nn.Dropout(float(dropout))
        self.fc = nn.Linear(channels, int(num_classes), bias=False)
        self._config = {
            "backbone": backbone.name, "num_classes": int(num_classes), "extra_conv": self.extra_conv,
            "extra_channels": int(extra_channels), "dropout": float(dropout),
        }

    @classmethod
    def build(cls, backbone: str, num_classes: int, backbone_weights=None, pretrained: bool = False,
              **kw) -> "CAMNet":
        """Build with a fresh torchvision backbone (its own classifier is dropped)."""
        bb = build_feature_backbone(backbone, weights=backbone_weights, pretrained=pretrained, with_classifier=False)
        return cls(bb, num_classes, **kw)

    def config(self) -> dict:
        """Constructor arguments, enough to rebuild the structure (see :meth:`from_config`)."""
        return dict(self._config)

    @classmethod
    def from_config(cls, cfg: dict) -> "CAMNet":
        cfg = dict(cfg)
        bb = build_feature_backbone(cfg.pop("backbone"), with_classifier=False)
        return cls(bb, **cfg)

    # -- the frozen-classifier protocol (features / head), shared with torchvision backbones --
    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The CAM features ``A`` (N×C×h×w)."""
        return self.cam_conv(self.backbone.features(x))

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.fc(self.dropout(feats.mean(dim=(2, 3))))

    @property
    def out_channels(self) -> int:
        return int(self.fc.in_features)

    # -- the multi-scale view CASM's masker reads (a CAM network can be CASM's classifier) --------
    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The backbone's stage maps, shallow to deep, the deepest through the extra conv (= :meth:`features`)."""
        maps = self.backbone.stages(x)
        return [*maps[:-1], self.cam_conv(maps[-1])]

    @property
    def stage_channels(self) -> list[int]:
        """Channels of :meth:`stages`."""
        return [*self.backbone.stage_channels[:-1], self.out_channels]

    def forward_maps(self, x: torch.Tensor, high: bool = False) -> MapOutputs:
        feats = self.features(x)
        return MapOutputs(logits=self.head(feats), low_features=feats, high_features=None)

    @property
    def low_weight(self) -> torch.Tensor:
        return self.fc.weight


@register_model("camnet", fields=lambda net: {"arch": net.config()}, family="baseline")
def _build_camnet(meta: dict) -> CAMNet:
    return CAMNet.from_config(dict(meta.get("arch") or {}))
