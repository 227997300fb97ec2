"""LayerCAM (Jiang et al., IEEE TIP 2021) at high-resolution encoder layers, through ``grad-cam``.

For a layer with activations ``A`` (C×h×w) and class score ``y_c`` (the logit)::

    layercam(i, j) = ReLU(Σ_k ReLU(∂y_c/∂A_kij) · A_kij)

— every position weighs its own activations by its own positive gradients, so shallow layers
(S/4, S/8) give maps much finer than the S/16 CAM. The fused variant takes LayerCAM at several
layers, min-max scales each, upsamples it to the input and averages them (Jiang et al. fuse
layers this way; the package's multi-layer aggregation does exactly this).

Layers are picked per network by :func:`encoder_layers` (output stride → module):

- HR-CAM half / full networks: ``encoder.early_down`` (S/2) and ``encoder.downs[i]``
  (S/2^(i+2)); a full network's classifier is its ``localization`` half;
- pretrained backbones (:class:`~hrcam.models.backbones.BackboneNet`, also inside a
  :class:`~hrcam.models.pretrained.decoder.DecoderNet`): the last stage at each stride.

The default is stride 4: on the demo's HalfNet LayerCAM at ``encoder.downs[0]`` (S/4) scored the
best PxAP (0.475, against 0.426 at S/2 and 0.440 at S/8).
"""
from __future__ import annotations

import torch
from torch import nn

from hrcam.explain.gradcam import _GradCamFamily

__all__ = ["DEFAULT_STRIDE", "FUSED_STRIDES", "encoder_layers", "resolve_layer", "LayerCAMExplainer",
           "LayerCAMFusedExplainer"]

#: the default layer's output stride (S/4)
DEFAULT_STRIDE = 4
#: the layers of the fused variant, as output strides (S/2, S/4, S/8)
FUSED_STRIDES = (2, 4, 8)
_PROBE = 64  # side of the zero image that measures a backbone's stage strides


def encoder_layers(model: nn.Module) -> dict[int, nn.Module]:
    """The modules whose outputs LayerCAM can use, by output stride (``{2: …, 4: …, …}``).

    Raises:
        ValueError: no layers are known for this kind of network (pass a module instead).
    """
    from hrcam.models.backbones import BackboneNet
    from hrcam.models.hrcam.nets import FullNet, HalfNet
    from hrcam.models.pretrained.decoder import DecoderNet

    if isinstance(model, FullNet):
        model = model.localization
    if isinstance(model, DecoderNet):
        model = model.backbone
    if isinstance(model, HalfNet):
        enc = model.encoder
        return {2: enc.early_down, **{2 ** (i + 2): down for i, down in enumerate(enc.downs)}}
    if isinstance(model, BackboneNet):
        stages = list(model.stages.values()) if isinstance(model.stages, nn.ModuleDict) else list(model.stages)
        sizes: list[int] = []
        hooks = [stage.register_forward_hook(lambda m, i, o: sizes.append(int(o.shape[-1])))
                 for stage in stages]
        try:
            with torch.no_grad():
                model.features(torch.zeros(1, 3, _PROBE, _PROBE, device=model.head.weight.device))
        finally:
            for h in hooks:
                h.remove()
        by_stride: dict[int, nn.Module] = {}
        for stage, side in zip(stages, sizes):
            by_stride[_PROBE // max(side, 1)] = stage  # the deepest stage at each stride wins
        return by_stride
    raise ValueError(f"layer: no encoder layers known for {type(model).__name__}; pass layer=<a module of the "
                     "model> (e.g. model.layer2 for a ResNet)")


def resolve_layer(model: nn.Module, layer) -> nn.Module:
    """The module meant by ``layer``: an ``nn.Module`` (used as is), an output stride (``int``,
    looked up in :func:`encoder_layers`) or a dotted submodule name (``"encoder.downs.0"``)."""
    if isinstance(layer, nn.Module):
        return layer
    if isinstance(layer, str):
        try:
            return model.get_submodule(layer)
        except AttributeError:
            raise ValueError(f"layer: {type(model).__name__} has no submodule {layer!r}") from None
    if isinstance(layer, int) and not isinstance(layer, bool):
        layers = encoder_layers(model)
        if layer not in layers:
            raise ValueError(f"layer: no layer at stride {layer} in {type(model).__name__}; "
                             f"strides: {', '.join(map(str, sorted(layers)))}")
        return layers[layer]
    raise ValueError(f"layer: expected a module, a stride (int) or a submodule name, got {layer!r}")


class LayerCAMExplainer(_GradCamFamily):
    """LayerCAM (Jiang et al., "LayerCAM: Exploring Hierarchical Class Activation Maps for
    Localization", IEEE TIP 2021) at one layer: ``ReLU(Σ_k ReLU(∂y_c/∂A_k) ⊙ A_k)``.

    Example:
        >>> with LayerCAMExplainer(net) as explainer:  # S/4 encoder layer  # doctest: +SKIP
        ...     maps, logits = explainer(images)

    Args:
        model: an HR-CAM half or full network, a pretrained backbone network, or any module
            together with ``layer``.
        layer: output stride (default :data:`DEFAULT_STRIDE`, 4), a submodule name or the module.
        device: where to run (default: the model's).
        freeze_parameters: take gradients through the input only (see :mod:`.gradcam`).

    Raises:
        ValueError: no layer at that stride / name, or no default layers for this network.
    """

    name = "layercam"
    _method = "LayerCAM"

    def __init__(self, model: nn.Module, layer=None, device=None, freeze_parameters: bool = True):
        target = resolve_layer(model, DEFAULT_STRIDE if layer is None else layer)
        super().__init__(model, target, device, freeze_parameters)


class LayerCAMFusedExplainer(_GradCamFamily):
    """LayerCAM fused over several layers (Jiang et al. 2021, Sec. III-C): the mean of the
    per-layer maps, each min-max scaled and upsampled to the input, from one backward pass.

    Example:
        >>> maps, logits = LayerCAMFusedExplainer(net, layers=(2, 4, 8))(images)  # doctest: +SKIP

    Args:
        model: as for :class:`LayerCAMExplainer`.
        layers: strides, submodule names or modules (default :data:`FUSED_STRIDES`: S/2, S/4, S/8).
        device: where to run (default: the model's).
        freeze_parameters: take gradients through the input only (see :mod:`.gradcam`).

    Raises:
        ValueError: a layer cannot be found, or ``layers`` is empty.
    """

    name = "layercam_fused"
    _method = "LayerCAM"

    def __init__(self, model: nn.Module, layers=FUSED_STRIDES, device=None, freeze_parameters: bool = True):
        layers = list(layers) if isinstance(layers, (list, tuple)) else [layers]
        if not layers:
            raise ValueError("layers: give at least one layer")
        super().__init__(model, [resolve_layer(model, layer) for layer in layers], device, freeze_parameters)
