"""The HR-CAM networks: the half network (classifier + low-res CAM features) and the full
network (+ expansion network: high-res CAM features and an image reconstruction head).

Class maps for class ``c`` (``W[c]`` is row ``c`` of the final linear weight; no bias, no
softmax)::

    low[c](i, j)  = Σ_k W[c, k] · A_low[k, i, j]      (S/16 × S/16 with the defaults)
    high[c](i, j) = Σ_k W[c, k] · A_high[k, i, j]     (S × S)

Because the classifier is GAP + linear, ``mean_ij low[c] + b[c]`` equals logit ``c``.
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from hrcam.data.animals import NUM_ANIMAL_CLASSES
from hrcam.models.anchor import ANCHORS, anchor_to_low, check_anchor  # noqa: F401 (re-exported)
from hrcam.models.base import CAMNetwork, MapOutputs
from hrcam.models.hrcam.fcdensenet import DecoderStage, Encoder, FCDenseNetConfig, he_init, transition_up
from hrcam.models.registry import register_model


class HalfNet(CAMNetwork):
    """Encoder, bottleneck and decoder stage 1, then ``aux`` (1×1 conv → A_low), GAP, linear."""

    def __init__(self, num_classes: int = NUM_ANIMAL_CLASSES, in_channels: int = 3, **arch):
        super().__init__()
        if not isinstance(num_classes, int) or num_classes < 1:
            raise ValueError(f"num_classes must be a positive integer, got {num_classes!r}")
        self.config = FCDenseNetConfig(in_channels=in_channels, **arch)
        cfg = self.config
        self.encoder = Encoder(cfg)
        skips = cfg.skip_channels()
        self.stage1 = DecoderStage(cfg.block_new_channels, skips[-1], cfg)
        self.aux = nn.Conv2d(cfg.block_new_channels, cfg.aux_channels, 1, bias=False)
        self.fc = nn.Linear(cfg.aux_channels, num_classes)
        he_init(self)

    def trunk(self, x: torch.Tensor):
        """Shared part of half and full networks: ``(skips, stage1_new, a_low)``."""
        self.config.check_size(x.shape[-2], x.shape[-1])
        skips, new = self.encoder(x)
        _, new = self.stage1(new, skips[-1])
        return skips, new, self.aux(new)

    def forward_maps(self, x: torch.Tensor, high: bool = False) -> MapOutputs:
        _, _, a_low = self.trunk(x)
        return MapOutputs(self.fc(a_low.mean(dim=(2, 3))), a_low, None)

    @property
    def low_weight(self) -> torch.Tensor:
        return self.fc.weight

    @property
    def num_classes(self) -> int:
        return self.fc.out_features


class FullNet(CAMNetwork):
    """The half network plus decoder stages 2..n, the final transition up and a reconstruction
    head (1×1 conv 16→C, then a sigmoid so the reconstruction lives in [0, 1] like the input).

    Parameters live in ``localization`` (the half network; the seed's "localization network")
    and ``expansion`` + ``final_up`` + ``reconstruction`` (the seed's "expansion network").
    Built from a trained half network with :meth:`from_half`: the shared layers take its
    weights and are frozen (and their batch norms kept in eval mode), so classification is
    identical to the half network's.
    """

    has_high_res = True

    def __init__(self, num_classes: int = NUM_ANIMAL_CLASSES, in_channels: int = 3,
                 upsampling: str = "transposed", anchor: str = "none", **arch):
        super().__init__()
        check_anchor(anchor)
        self.localization = HalfNet(num_classes, in_channels, **arch)
        self.upsampling, self.anchor = upsampling, anchor
        cfg = self.config
        skips = cfg.skip_channels()
        stages = []
        for skip in reversed(skips[:-1]):
            stages.append(DecoderStage(cfg.block_new_channels, skip, cfg, upsampling))
        self.expansion = nn.ModuleList(stages)
        last_in = cfg.up_filters + skips[0] + cfg.block_new_channels
        self.final_up = transition_up(last_in, cfg.aux_channels, upsampling)
        self.reconstruction = nn.Conv2d(cfg.aux_channels, cfg.in_channels, 1, bias=False)
        he_init(self.expansion)
        he_init(self.final_up)
        he_init(self.reconstruction)
        self._frozen = False

    @property
    def config(self) -> FCDenseNetConfig:
        return self.localization.config

    @property
    def decoder_options(self) -> dict:
        """The expansion network's options (``upsampling``, ``anchor``), as saved in weights files."""
        return {"upsampling": self.upsampling, "anchor": self.anchor}

    @classmethod
    def from_half(cls, half: HalfNet, freeze: bool = True, upsampling: str = "transposed",
                  anchor: str = "none") -> "FullNet":
        """A full network whose shared layers are a copy of ``half`` (frozen by default)."""
        net = cls(half.num_classes, half.config.in_channels, upsampling=upsampling, anchor=anchor,
                  **_arch_kwargs(half.config))
        net.localization.load_state_dict(copy.deepcopy(half.state_dict()))
        if freeze:
            net.freeze_half()
        return net

    def freeze_half(self) -> None:
        """Freeze the classifier part: no gradients, batch norms in eval mode."""
        self._frozen = True
        for p in self.localization.parameters():
            p.requires_grad_(False)
        self.localization.eval()

    def train(self, mode: bool = True):
        super().train(mode)
        if self._frozen:
            self.localization.eval()
        return self

    def forward_all(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(logits, A_low, A_high)`` from one pass."""
        skips, new, a_low = self.localization.trunk(x)
        logits = self.localization.fc(a_low.mean(dim=(2, 3)))
        full = None
        for stage, skip in zip(self.expansion, reversed(skips[:-1])):
            full, new = stage(new, skip)
        if full is None:  # num_blocks == 1: stage 1 is the last stage
            raise ValueError("FullNet needs num_blocks >= 2")
        a_high = self.final_up(full)
        if self.anchor == "bilinear":
            a_high = anchor_to_low(a_high, a_low)
        return logits, a_low, a_high

    def forward_maps(self, x: torch.Tensor, high: bool = True) -> MapOutputs:
        if not high:
            return self.localization.forward_maps(x)
        logits, a_low, a_high = self.forward_all(x)
        return MapOutputs(logits, a_low, a_high)

    def reconstruct_from(self, a_high: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.reconstruction(a_high))

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        """The autoencoder output (N×C×S×S in [0, 1])."""
        return self.reconstruct_from(self.forward_all(x)[2])

    @property
    def low_weight(self) -> torch.Tensor:
        return self.localization.fc.weight

    @property
    def num_classes(self) -> int:
        return self.localization.num_classes


def _arch_kwargs(cfg: FCDenseNetConfig) -> dict:
    d = cfg.as_dict()
    d.pop("in_channels")
    return d


def _hrcam_fields(net: CAMNetwork) -> dict:
    cfg = net.config.as_dict()
    fields = {"in_channels": cfg.pop("in_channels"), "arch": cfg}
    if isinstance(net, FullNet):
        fields["decoder"] = net.decoder_options
    return fields


@register_model("half", fields=_hrcam_fields, family="hrcam")
def _build_half(meta: dict) -> HalfNet:
    return HalfNet(int(meta.get("num_classes", NUM_ANIMAL_CLASSES)), int(meta.get("in_channels", 3)), **(meta.get("arch") or {}))


@register_model("full", fields=_hrcam_fields, family="hrcam")
def _build_full(meta: dict) -> FullNet:
    # files written before the decoder options existed have no "decoder" entry: the seed's decoder
    return FullNet(int(meta.get("num_classes", NUM_ANIMAL_CLASSES)), int(meta.get("in_channels", 3)),
                   **(meta.get("decoder") or {}), **(meta.get("arch") or {}))
