"""Grad-CAM, Grad-CAM++ and Score-CAM baselines through the ``grad-cam`` package.

For a target layer with activations ``A`` (C×h×w) and class score ``y_c`` (the logit):

- Grad-CAM:   ``ReLU(Σ_k α_k A_k)``, ``α_k = mean_ij ∂y_c/∂A_kij``;
- Grad-CAM++: ``α_k = Σ_ij a_kij · ReLU(∂y_c/∂A_kij)`` with
  ``a = g² / (2 g² + Σ_ij A_k · g³)`` (Chattopadhay et al., eq. 19);
- Score-CAM:  ``α = softmax_k(y_c(x ⊙ norm(up(A_k))))`` — one forward pass per channel, no gradients.

The package upsamples each map to the input and min-max scales it; the base class then
normalizes again (a no-op up to the package's 1e-7 epsilon).

Target layer: for a :class:`~hrcam.models.base.CAMNetwork` (and ``target_layer=None``) the maps
are taken at ``low_features`` — the CAM features that feed GAP + linear — through an identity
"tap" module inside a thin wrapper, so the layer is exactly the one CAM uses whatever module
computes it. For other models pass ``target_layer`` (e.g. ``model.layer4``); a list of layers
gives the package's multi-layer map (each layer's map min-max scaled and upsampled, then averaged).

On a GAP + linear network at that layer, ``∂y_c/∂A_kij = W[c, k] / (h·w)``, so Grad-CAM equals
``ReLU(CAM)`` up to scale (a fact the tests check).

By default (``freeze_parameters=True``) the model's parameters are set to
``requires_grad=False`` for the duration of a call and the input is made to require gradients
instead: the maps are the same, the backward pass skips the weight gradients (faster), and no
``.grad`` is left on the user's model. ``freeze_parameters=False`` runs the package exactly as
shipped (parameter gradients computed and left in ``.grad``).
"""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from hrcam.explain.base import Explainer, resolve_targets
from hrcam.models.base import CAMNetwork


class _LowFeatureTap(nn.Module):
    """``model(x)`` → logits of a CAMNetwork, with ``low_features`` passing through ``tap``."""

    def __init__(self, net: CAMNetwork):
        super().__init__()
        self.net = net
        self.tap = nn.Identity()

    def forward(self, x):
        out = self.net.forward_maps(x, high=False)
        self.tap(out.low_features)
        return out.logits


@contextlib.contextmanager
def _frozen_parameters(model: nn.Module):
    params = [p for p in model.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def _quiet_score_cam():
    """The package's Score-CAM draws a tqdm bar per image; silence it for the call."""
    from pytorch_grad_cam import score_cam

    real = score_cam.tqdm

    class _NoBar:
        @staticmethod
        def tqdm(iterable, *args, **kwargs):
            return iterable

    score_cam.tqdm = _NoBar
    try:
        yield
    finally:
        score_cam.tqdm = real


class _GradCamFamily(Explainer):
    """Shared wrapper around one ``pytorch_grad_cam`` method class."""

    _method = ""  # attribute name in pytorch_grad_cam

    def __init__(self, model: nn.Module, target_layer: nn.Module | list[nn.Module] | None = None, device=None,
                 freeze_parameters: bool = True):
        super().__init__(model, device)
        self.freeze_parameters = bool(freeze_parameters)
        import pytorch_grad_cam  # lazy: keep `import hrcam.explain` light

        if target_layer is None:
            if not isinstance(model, CAMNetwork):
                raise ValueError(
                    "target_layer: required for a model that is not a CAMNetwork "
                    "(e.g. model.layer4 for a ResNet)"
                )
            self._wrapped = _LowFeatureTap(model)
            self.target_layer = self._wrapped.tap
            layers = [self.target_layer]
        else:
            layers = list(target_layer) if isinstance(target_layer, (list, tuple)) else [target_layer]
            if not layers or not all(isinstance(m, nn.Module) for m in layers):
                raise ValueError("target_layer: expected an nn.Module inside the model (or a list of them)")
            self._wrapped = model
            self.target_layer = layers[0] if len(layers) == 1 else layers
        was_training = model.training
        self._cam = getattr(pytorch_grad_cam, self._method)(self._wrapped, layers)
        model.train(was_training)  # the package switches the model to eval; leave that to the caller
        self._configure(self._cam)

    def _configure(self, cam) -> None:
        """Hook for method-specific settings."""

    def _targets(self, targets, n: int):
        if targets is None:
            return None
        from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

        t = torch.as_tensor(targets, dtype=torch.long).reshape(-1)
        if t.numel() == 1:
            t = t.expand(n)
        if t.numel() != n:
            raise ValueError(f"targets: got {t.numel()} classes for {n} images")
        k = getattr(self.model, "num_classes", None)
        if isinstance(k, int) and ((t < 0).any() or (t >= k).any()):
            raise ValueError(f"targets: class index out of range 0..{k - 1}")
        if (t < 0).any():
            raise ValueError("targets: class indices must be non-negative")
        return [ClassifierOutputTarget(int(c)) for c in t]

    def _context(self):
        return contextlib.nullcontext()

    def raw_maps(self, x, targets):
        if self._cam is None:
            raise ValueError("explainer: used after close()")
        cam_targets = self._targets(targets, x.shape[0])
        freeze = _frozen_parameters(self.model) if self.freeze_parameters else contextlib.nullcontext()
        # gradients must reach the target layer: through the input when no parameter requires them
        # (frozen here, or frozen by the user, e.g. a FullNet's classifier)
        self._cam.compute_input_gradient = self._cam.uses_gradients and (
            self.freeze_parameters or not any(p.requires_grad for p in self.model.parameters())
        )
        with freeze, self._context():
            try:
                maps = self._cam(input_tensor=x, targets=cam_targets)
            except IndexError as err:  # a class index beyond the model's outputs
                raise ValueError(f"targets: {err}") from None
            finally:
                logits = self._cam.outputs.detach() if getattr(self._cam, "outputs", None) is not None else None
                self._cam.outputs = None
                self._cam.activations_and_grads.clear()
        t = resolve_targets(targets, logits)
        return torch.as_tensor(maps, device=x.device), logits, t

    def close(self) -> None:
        super().close()
        if self._cam is not None:
            self._cam.activations_and_grads.release()
            self._cam = None


class GradCAMExplainer(_GradCamFamily):
    """Grad-CAM (Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via
    Gradient-based Localization", ICCV 2017).

    ``map_c = ReLU(Σ_k α_k A_k)`` with ``α_k = mean_ij ∂y_c/∂A_kij`` (``y_c`` the logit); on a
    GAP + linear network at its last conv maps this is ``ReLU(CAM)`` up to scale.

    Example:
        >>> with GradCAMExplainer(resnet, target_layer=resnet.layer4) as explainer:
        ...     maps, logits = explainer(images, targets=[281, 504])

    Args:
        model: the classifier (``model(x)`` gives N×K logits).
        target_layer: the module(s) whose activations ``A`` are explained; None takes a
            :class:`~hrcam.models.base.CAMNetwork`'s ``low_features``.
        device: where to run (default: the model's).
        freeze_parameters: skip the weight gradients during a call (same maps, faster).

    Raises:
        ValueError: no ``target_layer`` for a model that is not a CAMNetwork, a ``target_layer``
            that is not a module, or a target class beyond the model's outputs.
        ImportError: the ``grad-cam`` package is not installed.
    """

    name = "gradcam"
    _method = "GradCAM"


class GradCAMPlusPlusExplainer(_GradCamFamily):
    """Grad-CAM++ (Chattopadhay et al., "Grad-CAM++: Generalized Gradient-based Visual
    Explanations for Deep Convolutional Networks", WACV 2018).

    ``map_c = ReLU(Σ_k α_k A_k)`` with ``α_k = Σ_ij a_kij · ReLU(g_kij)``,
    ``a = g² / (2 g² + Σ_ij A_k · g³)`` and ``g = ∂y_c/∂A`` (eq. 19, exponential score).

    Example:
        >>> with GradCAMPlusPlusExplainer(resnet, target_layer=resnet.layer4) as explainer:
        ...     maps, logits = explainer(images)

    Args and Raises: as :class:`GradCAMExplainer`.
    """

    name = "gradcampp"
    _method = "GradCAMPlusPlus"


class ScoreCAMExplainer(_GradCamFamily):
    """Score-CAM (Wang et al., "Score-CAM: Score-Weighted Visual Explanations for Convolutional
    Neural Networks", CVPR Workshops 2020): gradient-free, one forward pass per channel.

    ``map_c = ReLU(Σ_k α_k A_k)`` with ``α = softmax_k(y_c(x ⊙ M_k))`` and ``M_k = norm(up(A_k))``
    the k-th activation map upsampled and min-max scaled (the package scores the masked images
    by the logit ``y_c``; the paper by its softmax).

    Example:
        >>> with ScoreCAMExplainer(resnet, target_layer=resnet.layer4, batch_size=32) as explainer:
        ...     maps, logits = explainer(images)

    Args:
        batch_size: masked images per forward pass; the other arguments as
            :class:`GradCAMExplainer`'s.

    Raises:
        ValueError: a ``batch_size`` that is not a positive integer; otherwise as
            :class:`GradCAMExplainer`.
    """

    name = "scorecam"
    _method = "ScoreCAM"

    def __init__(self, model, target_layer=None, device=None, batch_size: int = 64, freeze_parameters: bool = True):
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive integer, got {batch_size!r}")
        self._batch_size = batch_size
        super().__init__(model, target_layer, device, freeze_parameters)

    def _configure(self, cam) -> None:
        cam.batch_size = self._batch_size

    def _context(self):
        return _quiet_score_cam()
