"""One interface for every explanation method (torchcam-style).

The base class owns input conversion, target selection, hook bookkeeping, upsampling to the
input size and normalization; a method overrides one thing, :meth:`Explainer.raw_maps`.

    maps, logits = explainer(x, targets=None)

- ``x``: anything :func:`hrcam.data.transforms.as_batch` accepts (torch N×C×H×W in [0,1] is the
  fast path; it is moved to the model's device);
- ``targets``: None (each image's predicted class), an int (same class for all images) or one
  class per image;
- ``maps``: float32 N×H×W at input resolution, each map min-max normalized to [0, 1]
  (``norm(a) = (a - min a) / (max a - min a)``, a constant map becomes all zeros, never NaN);
- ``logits``: N×K, the model's logits for the (unmodified) input.

Explainers that register hooks release them in :meth:`close`; use them as context managers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from hrcam.data.transforms import as_batch
from hrcam.models.base import resolve_classes
from hrcam.normalization import minmax_normalize as normalize_maps  # the public name here


def resolve_targets(targets, logits: torch.Tensor) -> torch.Tensor:
    """Targets as a LongTensor of N class indices (None → argmax of ``logits``)."""
    return resolve_classes(targets, logits, "targets")


@dataclass
class Explanation:
    """Everything one explainer call knows (see :meth:`Explainer.explain`)."""

    maps: torch.Tensor  #: N×H×W at input resolution, min-max normalized to [0, 1]
    raw: torch.Tensor  #: N×H×W at input resolution, before normalization (NaN/inf kept)
    logits: torch.Tensor  #: N×K logits of the unmodified input
    targets: torch.Tensor  #: N explained class indices


class Explainer:
    """Base class of every explanation method; subclasses implement :meth:`raw_maps`.

    A call returns each image's map at input resolution, min-max normalized,
    ``norm(a) = (a − min a) / (max a − min a)`` (a constant map becomes zeros, never NaN),
    and the logits of the same forward pass (see the module docstring).

    Example:
        >>> with CAMExplainer(model, features=model.layer4, classifier=model.fc) as explainer:
        ...     maps, logits = explainer(images, targets=None)   # N×H×W in [0, 1], N×K

    Args:
        model: the network to explain.
        device: where to run (default: the device of the model's parameters, else the CPU).

    Raises:
        ValueError: (from a call) input or ``targets`` that cannot be read (see
            :func:`hrcam.data.transforms.as_batch` and :func:`resolve_targets`).
    """

    #: short name used in tables and on the command line
    name: str = "explainer"

    def __init__(self, model: nn.Module, device: torch.device | str | None = None):
        self.model = model
        if device is None:
            try:
                device = next(model.parameters()).device
            except StopIteration:
                device = torch.device("cpu")
        self.device = torch.device(device)
        self._hooks: list = []

    # -- the one thing a method overrides -------------------------------------------------
    def raw_maps(self, x: torch.Tensor, targets) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Return ``(maps N×h×w at any resolution, logits N×K, targets N)`` for input ``x``.

        ``targets`` is the user's argument (None, int, or sequence): resolve it with
        :func:`resolve_targets` against the logits of the same forward pass.
        """
        raise NotImplementedError

    # -- shared machinery -------------------------------------------------------------------
    def __call__(self, x, targets=None) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.explain(x, targets)
        return out.maps, out.logits

    def explain(self, x, targets=None) -> Explanation:
        """Like ``__call__`` but also returns the unnormalized maps and the resolved targets.

        The raw maps let metrics tell a constant map from an all-zero one (normalization turns
        both into zeros).
        """
        batch, _ = as_batch(x)
        batch = batch.to(self.device)
        maps, logits, resolved = self.raw_maps(batch, targets)
        raw = self.upsample(maps.detach().float(), batch.shape[-2:])
        return Explanation(normalize_maps(raw), raw, logits.detach(), resolved.detach())

    @staticmethod
    def upsample(maps: torch.Tensor, size) -> torch.Tensor:
        """Bilinear resize of N×h×w maps to ``size`` (no-op when already there)."""
        if tuple(maps.shape[-2:]) == tuple(size):
            return maps
        return F.interpolate(maps[:, None], size=tuple(size), mode="bilinear", align_corners=False)[:, 0]

    def register_forward_hook(self, module: nn.Module, fn) -> None:
        self._hooks.append(module.register_forward_hook(fn))

    def close(self) -> None:
        """Remove every hook this explainer registered."""
        for h in self._hooks:
            h.remove()
        self._hooks.clear()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __repr__(self) -> str:
        return f"{type(self).__name__}(model={type(self.model).__name__})"


class TrainedNetworkExplainer:
    """Mixin for the explainers of one trained network type (CAMNet, L-CAM, CASM).

    Put it before the :class:`Explainer` base; a subclass names the network with the class
    attributes ``hrcam_type`` (the weights' type), ``network_class`` and ``network_label``.

    Args:
        model: the network, or a path to the weights that ``hrcam train <hrcam_type>`` exported.
        device: where to run (default: the model's).

    Raises:
        ValueError: ``model`` is not a ``network_class``.
        UserError: the path holds weights of another type.
    """

    hrcam_type: str = ""
    network_class: type = nn.Module
    network_label: str = ""

    def __init__(self, model, device=None):
        from hrcam.models.registry import resolve_network

        model = resolve_network(model, self.hrcam_type, self.network_class, self.network_label)
        super().__init__(model, device=device)
