"""The seed's friendly API over the HR-CAM networks: :class:`HalfModel` and :class:`FullModel`.

    from hrcam import HalfModel, FullModel
    hm = HalfModel(weights="results/half/run1/best_weights.safetensors")
    pred = hm.predict(x)                 # class index
    cam = hm.cam(x)                      # low-res CAM of the predicted class
    fm = FullModel(weights="results/full/run1/best_weights.safetensors")
    high, low, preds = fm.generate_cams(x)

``x`` is NumPy ``N×H×W×C`` (the seed's form) or a torch ``N×C×H×W`` tensor, float in [0, 1] or
uint8. A batch gives one map per image (``N×h×w``); one image (``H×W×C`` or ``1×H×W×C``) gives
the seed's 2-D map. ``custom_class`` is an int or one class per image. ``preds`` are softmax
probabilities. Every method runs the network once for all images and all requested classes.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hrcam.data.animals import NUM_ANIMAL_CLASSES
from hrcam.data.transforms import as_batch
from hrcam.errors import UserError
from hrcam.models.base import CAMNetwork, class_maps, resolve_classes
from hrcam.models.hrcam.nets import FullNet, HalfNet
from hrcam.weights import load_weights, state_dict_mismatch

__all__ = ["CamResult", "compute_cams", "HalfModel", "FullModel", "load_model", "select_type"]

SEED_NUM_CLASSES = NUM_ANIMAL_CLASSES
SEED_IM_SIZE = 224


@dataclass
class CamResult:
    """What :func:`compute_cams` returns: logits, probabilities, the explained classes and their maps."""

    logits: torch.Tensor  #: N×K
    probs: torch.Tensor  #: N×K softmax
    classes: torch.Tensor  #: N, the classes the maps are for
    low: torch.Tensor  #: N×h×w low-res CAMs
    high: torch.Tensor | None = None  #: N×H×W high-res CAMs


@torch.no_grad()
def compute_cams(net: CAMNetwork, x: torch.Tensor, classes=None, high: bool = False) -> CamResult:
    """One forward pass of ``net`` (in eval mode) → logits and the CAMs of ``classes``.

    ``x`` is a float N×C×H×W tensor on the network's device; ``classes`` None means each image's
    predicted class. ``high=True`` also returns the high-res maps (networks with
    ``has_high_res``).
    """
    was_training = net.training
    net.eval()
    try:
        out = net.forward_maps(x, high=high)
    finally:
        net.train(was_training)
    cls = resolve_classes(classes, out.logits, "custom_class")
    low = class_maps(net.low_weight, out.low_features, cls)
    hi = None
    if high:
        if out.high_features is None:
            raise ValueError(f"{type(net).__name__} has no high-res maps")
        hi = class_maps(net.high_weight, out.high_features, cls)
    return CamResult(out.logits, out.logits.softmax(dim=1), cls, low, hi)


class _CAMModel:
    """Shared machinery of the seed API wrappers."""

    kind = "half"
    net_class = HalfNet

    def __init__(self, weights=None, num_classes=None, im_size=None, channels=None, device=None,
                 class_names=None, **arch):
        meta, state = {}, None
        if weights is not None:
            state, meta = load_weights(weights)
            fc = state.get("fc.weight", state.get("localization.fc.weight"))
            if "num_classes" not in meta and fc is not None:  # no metadata: the classifier's rows
                meta = {**meta, "num_classes": int(fc.shape[0])}
        num_classes = _pick("num_classes", num_classes, meta.get("num_classes"), SEED_NUM_CLASSES)
        channels = _pick("channels", channels, meta.get("in_channels"), 3)
        self.im_size = int(_pick("im_size", im_size, meta.get("im_size"), SEED_IM_SIZE))
        arch = {**(meta.get("arch") or {}), **arch}
        self.class_names = class_names or meta.get("class_names")
        self.device = torch.device(device or "cpu")
        self.net = self._build(int(num_classes), int(channels), arch, state, meta)
        self.net.to(self.device).eval()

    def _build(self, num_classes, channels, arch, state, meta):
        net = self.net_class(num_classes, channels, **arch)
        if state is not None:
            _load_state(net, state, self.kind, meta)
        return net

    @classmethod
    def from_network(cls, net: CAMNetwork, im_size: int = SEED_IM_SIZE, class_names=None, device=None):
        """Wrap an existing CAM network (e.g. a pretrained backbone adapter)."""
        self = cls.__new__(cls)
        self.net = net
        self.im_size = im_size
        self.class_names = class_names
        try:
            self.device = torch.device(device) if device else next(net.parameters()).device
        except StopIteration:
            self.device = torch.device("cpu")
        self.net.to(self.device).eval()
        return self

    @property
    def num_classes(self) -> int:
        return self.net.num_classes

    # -- internals -------------------------------------------------------------------------
    def _batch(self, x):
        channels = getattr(getattr(self.net, "config", None), "in_channels", None)
        t, single = as_batch(x, channels=channels if isinstance(channels, int) else None)
        return t.to(self.device), single

    def _run(self, x, custom_class=None, high=False):
        t, single = self._batch(x)
        return compute_cams(self.net, t, custom_class, high=high), single

    @staticmethod
    def _out(t: torch.Tensor, single: bool) -> np.ndarray:
        a = t.detach().cpu().numpy()
        return a[0] if single else a

    # -- the seed API ----------------------------------------------------------------------
    @torch.no_grad()
    def logits(self, x) -> np.ndarray:
        t, single = self._batch(x)
        self.net.eval()
        return self._out(self.net(t), single)

    def predict(self, x):
        """The predicted class index (an int for one image, an array for a batch)."""
        t, single = self._batch(x)
        with torch.no_grad():
            self.net.eval()
            pred = self.net(t).argmax(dim=1)
        return int(pred[0]) if single else pred.cpu().numpy()

    def predictN(self, x, n: int = 5):  # noqa: N802 - the seed's name
        """The ``n`` most probable classes, most probable first (``n`` or ``N×n`` indices)."""
        if not isinstance(n, (int, np.integer)) or n < 1:
            raise ValueError(f"n must be a positive integer, got {n!r}")
        t, single = self._batch(x)
        with torch.no_grad():
            self.net.eval()
            logits = self.net(t)
        top = logits.topk(min(int(n), logits.shape[1]), dim=1).indices
        return self._out(top, single)

    def cam(self, x, custom_class=None) -> np.ndarray:
        """Low-res CAM of the predicted class (or ``custom_class``): ``h×w`` or ``N×h×w``."""
        res, single = self._run(x, custom_class)
        return self._out(res.low, single)

    low_res_cam = cam

    def generate_cams(self, x, custom_class=None):
        """``(cam, preds)``: low-res CAMs and softmax probabilities."""
        res, single = self._run(x, custom_class)
        return self._out(res.low, single), self._out(res.probs, single)

    def class_name(self, index: int) -> str:
        if self.class_names and 0 <= index < len(self.class_names):
            return str(self.class_names[index])
        return str(index)

    def save(self, path, class_names=None) -> None:
        """Export the weights (safetensors) with the metadata :func:`load_model` needs."""
        from hrcam.models.registry import model_metadata
        from hrcam.weights import save_weights

        meta = model_metadata(self.kind, self.net, self.im_size, class_names or self.class_names)
        save_weights(path, self.net.state_dict(), meta)


class HalfModel(_CAMModel):
    """The classifier that produces low-res CAMs (seed: ``HalfModel``).

    ``HalfModel(weights=None, num_classes=398, im_size=224, channels=3)``; when ``weights`` is a
    file exported by hrcam, the numbers it records are used (explicit arguments must agree).
    Architecture arguments (``init_filters``, ``growth_rate``, ``layers_per_block``,
    ``num_blocks``, ``aux_channels``) default to the seed's.
    """


class FullModel(_CAMModel):
    """Classification, low-res and high-res CAMs (seed: ``FullModel``).

    ``FullModel(weights=...)`` accepts full-model weights, or HalfModel weights (then the
    expansion network is freshly initialised and the classifier frozen — the start of
    ``hrcam train full``). ``FullModel.from_half(half_model_or_weights)`` does the same
    explicitly.
    """

    kind = "full"
    net_class = FullNet

    def _build(self, num_classes, channels, arch, state, meta):
        is_half = state is not None and (meta.get("hrcam_type") == "half"
                                         or not any(k.startswith("localization.") for k in state))
        if is_half:
            half = HalfNet(num_classes, channels, **arch)
            _load_state(half, state, "half", meta)
            return FullNet.from_half(half)
        return super()._build(num_classes, channels, arch, state, meta)

    @classmethod
    def from_half(cls, half, device=None) -> "FullModel":
        """A FullModel whose classifier is ``half`` (a HalfModel, HalfNet or weights path), frozen."""
        if isinstance(half, (str, bytes)) or hasattr(half, "__fspath__"):
            half = HalfModel(weights=half)
        if isinstance(half, HalfModel):
            im_size, names, half = half.im_size, half.class_names, half.net
        else:
            im_size, names = SEED_IM_SIZE, None
        return cls.from_network(FullNet.from_half(half), im_size=im_size, class_names=names, device=device)

    def high_res_cam(self, x, custom_class=None) -> np.ndarray:
        """High-res CAM (input resolution) of the predicted class or ``custom_class``."""
        res, single = self._run(x, custom_class, high=True)
        return self._out(res.high, single)

    def generate_cams(self, x, custom_class=None):
        """``(high, low, preds)`` from one forward pass."""
        res, single = self._run(x, custom_class, high=True)
        return self._out(res.high, single), self._out(res.low, single), self._out(res.probs, single)

    def reconstruct(self, x) -> np.ndarray:
        t, single = self._batch(x)
        with torch.no_grad():
            self.net.eval()
            r = self.net.reconstruct(t)
        return self._out(r.permute(0, 2, 3, 1), single)


def _pick(name, given, recorded, default):
    if recorded is not None and given is not None and int(given) != int(recorded):
        raise UserError(f"{name}={given} does not match the weights file ({name}={recorded})")
    if given is not None:
        return given
    return recorded if recorded is not None else default


def _load_state(net: torch.nn.Module, state: dict, kind: str, meta: dict) -> None:
    fc_key = "fc.weight" if kind == "half" else "localization.fc.weight"
    if fc_key in state and state[fc_key].shape[0] != net.num_classes:
        raise UserError(
            f"the weights have {state[fc_key].shape[0]} classes but the model expects {net.num_classes}")
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as err:
        raise UserError(f"the weights do not fit a {kind} model with these settings: "
                        f"{state_dict_mismatch(err)}") from None


def load_model(path, type: str | None = None, device=None):  # noqa: A002 - the seed's flag name
    """Load exported weights as a :class:`HalfModel` or :class:`FullModel`.

    ``type`` None uses what the file records. ``type='half'`` with full-model weights returns
    the HalfModel inside them (the classifier is identical); ``type='full'`` with half-model
    weights is an error (train the full model first). The network comes from
    :func:`hrcam.models.registry.load_network`.
    """
    from hrcam.models.registry import load_network

    if type is not None and type not in ("half", "full"):
        raise UserError(f"type must be 'half' or 'full', got {type!r}")
    net, meta = load_network(path, device=device)
    net, kind = select_type(net, meta, type, path)
    if kind not in ("half", "full"):
        raise UserError(f"type must be 'half' or 'full', got {kind!r}")
    stride = net.config.downsampling
    im_size = int(meta.get("im_size", SEED_IM_SIZE))
    if im_size % stride:
        raise UserError(f"{path}: its metadata records im_size {im_size}, which this network cannot take "
                        f"(a multiple of {stride} is needed)")
    return (FullModel if kind == "full" else HalfModel).from_network(
        net, int(meta.get("im_size", SEED_IM_SIZE)), meta.get("class_names"), device=device)


def select_type(net, meta: dict, type: str | None, path) -> tuple[torch.nn.Module, str]:  # noqa: A002
    """``(network, kind)`` for a loaded file and a requested HR-CAM ``type`` (None: as recorded).

    ``'half'`` on full-model weights gives the classifier inside them; ``'full'`` on anything but
    full-model weights, or any ``type`` on a non-HR-CAM file, is a :class:`UserError`.
    """
    recorded = meta["hrcam_type"]
    if type is None:
        return net, recorded
    if recorded not in ("half", "full"):
        raise UserError(f"--type applies to HR-CAM weights; {path} holds {recorded} weights")
    if type == "full" and recorded != "full":
        raise UserError(f"{path} holds {recorded}-model weights; --type full needs weights from 'hrcam train full'")
    if type == "half" and recorded == "full":
        return net.localization, "half"
    return net, type
