"""Class activation maps (Zhou et al., DESIGN §5) for any GAP + linear classifier.

For a classifier ``logits = W · GAP(A) + b`` the CAM of class c is

    cam[c](i, j) = Σ_k W[c, k] · A[k, i, j]        (no bias, no softmax)

computed from the same forward pass that produced the logits.

Two kinds of model are accepted:

- a :class:`~hrcam.models.base.CAMNetwork` (``forward_maps`` gives ``A_low``, ``low_weight`` is W);
- any other module (e.g. a torchvision ResNet) given the module whose output is A
  (``features=model.layer4``) and the final linear layer (``classifier=model.fc``); a forward
  hook captures A while the model computes its logits.
"""
from __future__ import annotations

import torch
from torch import nn

from hrcam.explain.base import Explainer, resolve_targets
from hrcam.models.base import CAMNetwork, class_maps


class CAMExplainer(Explainer):
    """Class activation maps (Zhou et al., "Learning Deep Features for Discriminative
    Localization", CVPR 2016), low resolution, bilinearly upsampled to the input.

    ``cam[c](i, j) = Σ_k W[c, k] · A[k, i, j]`` for a classifier ``logits = W · GAP(A) + b``
    (no bias, no softmax), from the forward pass that gives the logits.

    Example:
        >>> with CAMExplainer(resnet, features=resnet.layer4, classifier=resnet.fc) as explainer:
        ...     maps, logits = explainer(images)        # N×H×W in [0, 1]
        >>> maps, logits = CAMExplainer(half_net)(images)  # a CAMNetwork: no hooks needed

    Args:
        model: a :class:`~hrcam.models.base.CAMNetwork`, or any classifier with ``features``
            and ``classifier`` given.
        features: the module whose output is ``A`` (N×C×h×w); a forward hook captures it.
        classifier: the final linear layer (``W``, K×C).
        device: where to run (default: the model's).

    Raises:
        ValueError: only one of ``features``/``classifier`` given, neither for a model that is
            not a CAMNetwork, a classifier without a 2-D weight, or (from a call) a hooked
            module that did not run or whose output does not fit ``W``.
    """

    name = "cam"

    def __init__(
        self,
        model: nn.Module,
        features: nn.Module | None = None,
        classifier: nn.Linear | None = None,
        device=None,
    ):
        super().__init__(model, device)
        self._captured: list[torch.Tensor] = []
        if features is None and classifier is None:
            if not isinstance(model, CAMNetwork):
                raise ValueError(
                    "features/classifier: required for a model that is not a CAMNetwork "
                    "(pass the module producing the last feature maps and the final nn.Linear)"
                )
            self._weight_fn = lambda: model.low_weight
        elif features is None or classifier is None:
            raise ValueError("features/classifier: pass both or neither")
        else:
            weight = getattr(classifier, "weight", None)
            if not isinstance(weight, torch.Tensor) or weight.ndim != 2:
                raise ValueError("classifier: expected a linear layer with a 2-D weight (K×C)")
            self._weight_fn = lambda: classifier.weight
            self.register_forward_hook(features, self._capture)

    def _capture(self, module, inputs, output):
        self._captured.append(output.detach())

    def raw_maps(self, x, targets):
        with torch.no_grad():
            if isinstance(self.model, CAMNetwork) and not self._hooks:
                out = self.model.forward_maps(x, high=False)
                logits, feats = out.logits, out.low_features
            else:
                self._captured.clear()
                try:
                    logits = self.model(x)
                    if not self._captured:
                        raise ValueError("features: the hooked module did not run in the forward pass")
                    feats = self._captured[-1]
                finally:
                    self._captured.clear()
            weight = self._weight_fn()
            if feats.ndim != 4 or feats.shape[1] != weight.shape[1]:
                raise ValueError(
                    f"features: output shape {tuple(feats.shape)} does not match the classifier's "
                    f"{weight.shape[1]} input features"
                )
            t = resolve_targets(targets, logits)
            return class_maps(weight, feats, t), logits, t

    def close(self) -> None:
        super().close()
        self._captured.clear()
