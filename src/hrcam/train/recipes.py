"""Training recipes with plain arguments: what ``hrcam train half|full|cam|lcam|casm`` runs, callable from Python.

    data = FolderData("data/demo", im_size=128, batch_size=32, augment=False)
    run = RunSettings("demo/cam", epochs=2, results_root="results", logs_root="logs")
    report = train_cam(data, run, backbone="efficientnet_lite0", pretrained=True)
    report["best"]   # results/demo/cam/best_weights.safetensors

Every recipe checks its arguments (:class:`~hrcam.errors.UserError` with one line), builds the
data module, network and Lightning module, fits with :func:`hrcam.train.runner.fit`, saves the
maps of a few validation images, and returns ``{"best", "last"[, "maps"]}`` (None on the
non-zero ranks of a distributed run). The CLI only turns its flags into these arguments.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from hrcam.errors import UserError

__all__ = ["FolderData", "RunSettings", "decoder_recipe", "train_half", "train_full", "train_decoder_steps",
           "train_cam", "train_lcam", "train_casm"]


@dataclass
class FolderData:
    """A class-folder dataset (``data_dir/train/<class>/*``, optionally ``test/``) and its loading."""

    data_dir: str | Path
    im_size: int = 224
    batch_size: int = 16
    augment: bool = True
    num_workers: int = 0
    channels: int = 3
    #: the split validated on after every epoch (None: no validation, best = lowest training loss)
    val_split: str | None = "test"
    #: shuffling / augmentation seed (None: the run's seed)
    seed: int | None = None

    def datamodule(self, run_seed: int):
        """The :class:`~hrcam.train.datamodule.FolderDataModule` of this data."""
        from hrcam.train.datamodule import FolderDataModule

        dm = _user_errors(FolderDataModule, self.data_dir, self.im_size, self.channels, self.batch_size,
                          augment=self.augment, num_workers=self.num_workers,
                          seed=run_seed if self.seed is None else self.seed, val_split=self.val_split)
        for split, ds in (("train", dm.train_set), ("validation", dm.val_set)):
            if ds is not None and ds.skipped:
                print(f"hrcam: skipped {ds.skipped} {split} file(s) that are not readable images "
                      f"(e.g. {ds.skipped_files[0]})")
        return dm


@dataclass
class RunSettings:
    """Where a run writes (``results_root/results_name``, ``logs_root/results_name``) and how long it trains."""

    results_name: str
    epochs: int = 10
    results_root: str | Path = "results"
    logs_root: str | Path = "logs"
    resume: bool = False
    #: replace a run already in ``results_root/results_name`` (without it, such a run is refused)
    overwrite: bool = False
    progress: bool = True
    seed: int = 0
    max_steps: int = -1
    limit_train_batches: float | None = None
    num_maps: int = 8
    #: ``accelerator`` / ``devices`` / ``strategy`` / … passed to :func:`hrcam.train.runner.fit`
    distributed: dict = field(default_factory=dict)
    #: train in channels-last memory format (faster on CPU, same math to float tolerance)
    channels_last: bool = True
    #: HalfModel / FullModel: run the network through ``torch.compile``
    compile: bool = False
    #: HalfModel / FullModel: log the maps of 8 fixed images to TensorBoard every N epochs (0: off)
    log_maps_every: int = 1


def _map_callbacks(run: RunSettings) -> list:
    """The :class:`hrcam.train.map_logging.MapLogger` of a HalfModel / FullModel run (none when off)."""
    if run.log_maps_every <= 0:
        return []
    from hrcam.train.map_logging import MapLogger

    return [MapLogger(every=run.log_maps_every)]


def _datamodule(data: FolderData, run: RunSettings, lr: float, backbone_weights):
    from hrcam.train.runner import check_results_name

    check_results_name(run.results_name)
    if lr <= 0:
        raise UserError(f"--lr must be > 0, got {lr}")
    if backbone_weights and not Path(backbone_weights).is_file():
        raise UserError(f"--backbone_weights: no such file {backbone_weights}")
    return data.datamodule(run.seed)


def _user_errors(fn, *a, **kw):
    """Library ValueErrors (bad weights file, bad option, bad folder) become one-line user errors."""
    try:
        return fn(*a, **kw)
    except UserError:
        raise
    except (ValueError, FileNotFoundError) as err:
        raise UserError(str(err)) from None


# -- HR-CAM: HalfModel, then the FullModel's expansion network ------------------------------------
ARCH_KEYS = ("init_filters", "growth_rate", "layers_per_block", "num_blocks", "aux_channels")


def _hrcam_datamodule(data: FolderData, run: RunSettings, arch: dict, num_classes: int | None):
    from hrcam.models.hrcam.fcdensenet import FCDenseNetConfig
    from hrcam.train.runner import check_results_name

    check_results_name(run.results_name)
    dm = data.datamodule(run.seed)
    if num_classes is not None and num_classes != dm.num_classes:
        raise UserError(f"--num_classes {num_classes} does not match the {dm.num_classes} class folders "
                        f"in {dm.train_dir}")
    num_blocks = arch.get("num_blocks", FCDenseNetConfig().num_blocks)
    stride = 2 ** (num_blocks + 1)
    if data.im_size % stride:
        raise UserError(f"--im_size must be a multiple of {stride} with --num_blocks {num_blocks}, "
                        f"got {data.im_size}")
    return dm


def half_weights_state(path, num_classes: int, train_dir, arch: dict, channels: int | None = None
                       ) -> tuple[dict, dict]:
    """``(HalfNet state, architecture)`` from HalfModel or FullModel weights, checked against the data.

    The architecture the file records wins over ``arch`` where they differ (the file knows its own).
    """
    from hrcam.weights import load_weights

    state, meta = load_weights(path)
    fc = state.get("fc.weight", state.get("localization.fc.weight"))
    if fc is None:
        raise UserError(f"{path} does not hold HalfModel weights (no classifier layer found)")
    if fc.shape[0] != num_classes:
        raise UserError(f"the weights in {path} have {fc.shape[0]} classes but {train_dir} has "
                        f"{num_classes} class folders")
    if "localization.fc.weight" in state:
        state = {k.removeprefix("localization."): v for k, v in state.items() if k.startswith("localization.")}
    stem = state.get("encoder.stem.0.weight")
    if channels is not None and stem is not None and stem.ndim == 4 and stem.shape[1] != channels:
        kinds = {1: "grayscale (1 channel)", 3: "RGB (3 channels)"}
        raise UserError(f"the weights in {path} take {kinds.get(stem.shape[1], stem.shape[1])} images but "
                        f"--channels is {channels}")
    recorded = meta.get("arch") or {}
    return state, {**arch, **{k: recorded[k] for k in ARCH_KEYS if k in recorded}}


def _seeded(init_seed: int | None) -> None:
    """Seed the initial weights (every recipe calls it right before building its network)."""
    if init_seed is not None:
        import torch

        torch.manual_seed(init_seed)  # the initial weights, too, come from the seed


def _speed(module, run: RunSettings):
    """The run's memory-format and compile settings on an HR-CAM Lightning module."""
    module.channels_last, module.compile_net = bool(run.channels_last), bool(run.compile)
    return module


def train_half(data: FolderData, run: RunSettings, *, arch: dict | None = None, lr: float = 1.0,
               num_classes: int | None = None, half_weights=None, init_seed: int | None = None,
               monitor: str = "val_acc", mode: str = "max") -> dict:
    """The HalfModel (classifier + low-res CAMs), Adadelta; optionally from ``half_weights``.

    Returns :func:`hrcam.train.runner.fit`'s ``{"best", "last", "trainer"}``.
    """
    from hrcam.train.modules import HalfModule
    from hrcam.train.runner import fit
    from hrcam.weights import state_dict_mismatch

    arch = dict(arch or {})
    dm = _hrcam_datamodule(data, run, arch, num_classes)
    state = None
    if half_weights is not None:
        state, arch = half_weights_state(half_weights, dm.num_classes, dm.train_dir, arch, data.channels)
    _seeded(run.seed if init_seed is None else init_seed)
    module = HalfModule(dm.num_classes, data.channels, data.im_size, arch, dm.classes, lr=lr)
    if state is not None:
        try:
            module.net.load_state_dict(state)
        except RuntimeError as err:
            raise UserError(f"--half_weight_dir does not fit this architecture: {state_dict_mismatch(err)}") from None
    return fit(_speed(module, run), dm, run.results_name, epochs=run.epochs, results_root=run.results_root,
               logs_root=run.logs_root, monitor=monitor, mode=mode, resume=run.resume, overwrite=run.overwrite,
               progress=run.progress, seed=run.seed, limit_train_batches=run.limit_train_batches,
               callbacks=_map_callbacks(run), **run.distributed)


def decoder_recipe(preset: str = "seed", **overrides) -> dict:
    """The decoder settings of ``preset`` (:data:`hrcam.train.modules.PRESETS`) with non-None ``overrides``.

    Keys: ``objective``, ``upsampling``, ``anchor``, ``optimizer``, ``weight_decay``.
    """
    from hrcam.train.modules import PRESETS

    if preset not in PRESETS:
        raise UserError(f"--preset must be one of {', '.join(PRESETS)}, got {preset!r}")
    return {**PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None}}


def train_full(data: FolderData, run: RunSettings, half_weights, *, arch: dict | None = None,
               objective: str | None = None, consistency_weight: float = 1.0, lr: float | None = None,
               num_classes: int | None = None, init_seed: int | None = None, preset: str = "seed",
               upsampling: str | None = None, anchor: str | None = None, optimizer: str | None = None,
               weight_decay: float | None = None, faithfulness: dict | None = None) -> dict:
    """The FullModel's expansion network on the frozen HalfModel in ``half_weights``; best by training loss.

    ``preset`` (``seed`` or ``localize``) gives the objective, upsampling, anchor and optimizer;
    each explicit argument overrides it. ``lr`` None: the optimizer's default (Adadelta 1.0, Adam 1e-3).
    Returns :func:`hrcam.train.runner.fit`'s ``{"best", "last", "trainer"}``.
    """
    from hrcam.train.modules import FullModule
    from hrcam.train.runner import fit

    recipe = decoder_recipe(preset, objective=objective, upsampling=upsampling, anchor=anchor,
                            optimizer=optimizer, weight_decay=weight_decay)
    arch = dict(arch or {})
    dm = _hrcam_datamodule(data, run, arch, num_classes)
    state, arch = half_weights_state(half_weights, dm.num_classes, dm.train_dir, arch, data.channels)
    _seeded(run.seed if init_seed is None else init_seed)
    module = _user_errors(FullModule, state, dm.num_classes, data.channels, data.im_size, arch, dm.classes,
                          consistency_weight=consistency_weight, lr=lr, faithfulness=faithfulness, **recipe)
    return fit(_speed(module, run), dm, run.results_name, epochs=run.epochs, results_root=run.results_root,
               logs_root=run.logs_root, monitor="train_loss", mode="min", resume=run.resume, overwrite=run.overwrite,
               progress=run.progress, seed=run.seed, limit_train_batches=run.limit_train_batches,
               callbacks=_map_callbacks(run), **run.distributed)


# -- the pretrained path: a DecoderNet's expansion network, short runs in memory -----------------

def train_decoder_steps(net, dataset, steps: int, *, batch_size: int = 4, lr: float = 1e-3,
                        objective: str = "consistency", seed: int = 0, progress: bool = True,
                        **objective_options) -> list[dict[str, float]]:
    """Train ``net``'s decoder (a :class:`~hrcam.models.pretrained.decoder.DecoderNet`) for ``steps`` steps.

    A plain loop for short runs that write no files (the demos); ``hrcam train decoder`` runs the
    same :class:`~hrcam.train.decoder.DecoderModule` through Lightning. ``dataset`` yields
    ``(image, _)`` pairs; ``objective`` and ``objective_options`` (e.g. ``consistency_weight``,
    ``consistency_target``) go to the module unchanged. The backbone stays frozen; ``net`` ends
    in eval mode. Returns the loss terms of every step (``loss``, ``reconstruction``, …).
    """
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from hrcam.models.base import cpu_channels_last
    from hrcam.train.decoder import DecoderModule

    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    torch.manual_seed(seed)
    module = DecoderModule(net, objective=objective, lr=lr, backbone=net.backbone.name, rank=net.rank,
                           width=net.width, **objective_options)
    opt = module.configure_optimizers()
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=True, drop_last=len(dataset) > batch_size,
                        generator=torch.Generator().manual_seed(seed))
    module.train()
    history: list[dict[str, float]] = []
    bar = tqdm(total=steps, desc="decoder", disable=not progress)
    while len(history) < steps:
        for x, _ in loader:
            terms = module.losses(cpu_channels_last(x))  # faster CPU convolutions, same math
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()
            history.append({k: float(v.detach()) for k, v in terms.items()})
            bar.update(1)
            bar.set_postfix(loss=f"{history[-1]['loss']:.4f}")
            if len(history) >= steps:
                break
    bar.close()
    net.eval()
    return history


# -- baselines: CAM, L-CAM, CASM ------------------------------------------------------------------
def _fit(module, dm, run: RunSettings, monitor: str, mode: str, method: str) -> dict | None:
    from hrcam.train.runner import fit

    module.channels_last = bool(run.channels_last)
    out = fit(module, dm, run.results_name, epochs=run.epochs, results_root=run.results_root,
              logs_root=run.logs_root, monitor=monitor, mode=mode, resume=run.resume, overwrite=run.overwrite,
              progress=run.progress, seed=run.seed, max_steps=run.max_steps, limit_train_batches=run.limit_train_batches,
              **run.distributed)
    if not out["trainer"].is_global_zero:
        return None
    report = {"best": str(out["best"]), "last": str(out["last"]), "logs": str(out["logs"])}
    if run.num_maps > 0:
        report["maps"] = str(_save_maps(out["best"], dm, method, run.num_maps))
    return report


def _save_maps(weights, dm, method: str, n: int) -> Path:
    import torch

    from hrcam.explain.registry import create
    from hrcam.models.registry import load_network
    from hrcam.train.baseline_maps import save_maps

    dataset = dm.val_set if dm.val_set is not None else dm.train_set
    n = min(n, len(dataset))
    images = torch.stack([dataset[i][0] for i in range(n)])
    labels = torch.tensor([int(dataset[i][1]) for i in range(n)])
    net, meta = load_network(weights)
    explainer = create(method, net)
    targets = None if method == "casm" else labels
    return save_maps(explainer, images, Path(weights).parent / "maps", targets=targets,
                     class_names=meta.get("class_names"))


def train_cam(data: FolderData, run: RunSettings, *, backbone: str = "vgg19", backbone_weights=None,
              pretrained: bool = False, lr: float = 1e-3, beta1: float = 0.5, label: int | None = None,
              log_every: int = 100, freeze_backbone: bool = False, extra_conv: bool = True,
              extra_channels: int = 1024, lr_schedule: str = "constant") -> dict | None:
    """CAM (Zhou et al.): fine-tune ``backbone`` with a (3×3 conv +) GAP + linear head; best by ``val_acc``.
    ``lr_schedule``: ``'constant'`` (the seed's) or ``'cosine'`` (decay to 0 over the run)."""
    from hrcam.models.baselines.camnet import CAMNet
    from hrcam.train.baselines import CAMModule

    dm = _datamodule(data, run, lr, backbone_weights)
    if label is not None and not 0 <= label < dm.num_classes:
        raise UserError(f"--label must be a class index in 0..{dm.num_classes - 1}, got {label}")
    _seeded(run.seed)
    net = _user_errors(CAMNet.build, backbone, dm.num_classes, backbone_weights=backbone_weights,
                       pretrained=pretrained, extra_conv=extra_conv, extra_channels=extra_channels)
    module = _user_errors(CAMModule, net, lr=lr, beta1=beta1, freeze_backbone=freeze_backbone, label=label,
                          log_every=log_every, im_size=data.im_size, class_names=dm.classes,
                          lr_schedule=lr_schedule)
    return _fit(module, dm, run, "val_acc", "max", "camnet")


def _lcam_classifier(dm, classifier, backbone: str, backbone_weights, pretrained: bool, after_pool: bool = False):
    from hrcam.models.baselines.camnet import CAMNet
    from hrcam.models.baselines.feature_backbones import build_feature_backbone
    from hrcam.models.registry import load_network

    if after_pool and (classifier or not backbone.startswith("vgg")):
        raise UserError("--features_at pool5 needs a VGG --backbone (and no --classifier)")
    if classifier:
        net, meta = load_network(classifier)
        if not isinstance(net, CAMNet):
            raise UserError(f"--classifier must hold weights from 'hrcam train cam', got {meta.get('hrcam_type')}")
    else:
        num_classes = None if (backbone_weights or pretrained) else dm.num_classes
        net = _user_errors(build_feature_backbone, backbone, weights=backbone_weights, pretrained=pretrained,
                           num_classes=num_classes, after_pool=after_pool)
        if not (backbone_weights or pretrained):
            print("hrcam: note: the frozen classifier has random weights (give --classifier or --backbone_weights "
                  "to explain a trained one)")
    if net.num_classes != dm.num_classes:
        raise UserError(f"the frozen classifier has {net.num_classes} classes but {dm.train_dir} has "
                        f"{dm.num_classes} class folders")
    return net


def train_lcam(data: FolderData, run: RunSettings, *, classifier=None, backbone: str = "vgg16",
               backbone_weights=None, pretrained: bool = False, variant: str = "fm", loss: str = "selected",
               lr: float = 1e-4, optimizer: str = "sgd", after_pool: bool = False) -> dict | None:
    """L-CAM: an attention mechanism on a frozen classifier (``classifier``: ``hrcam train cam`` weights,
    else the torchvision ``backbone`` with its own head); best by ``val_loss``.

    ``optimizer``: ``"sgd"`` (the seed's SGD + Nesterov) or ``"adam"``; ``after_pool``: a VGG's
    attention reads the maps after its last max-pool (the seed's ``VGG16_7x7`` models)."""
    from hrcam.models.baselines.lcam import LCAMNet
    from hrcam.train.baselines import LCAMModule

    dm = _datamodule(data, run, lr, backbone_weights)
    _seeded(run.seed)
    net = LCAMNet(_lcam_classifier(dm, classifier, backbone, backbone_weights, pretrained, after_pool), variant=variant)
    module = _user_errors(LCAMModule, net, loss=loss, lr=lr, optimizer=optimizer, im_size=data.im_size,
                          class_names=dm.classes)
    return _fit(module, dm, run, "val_loss", "min", "lcam")


def train_casm(data: FolderData, run: RunSettings, *, backbone: str = "resnet50", backbone_weights=None,
               pretrained: bool = False, thinning: str = "L1000", lr: float = 1e-3, lr_masker: float = 1e-3,
               lambda_r: float | None = None, pool_size: int = 30, smf: int | None = None,
               pool_prob: float | None = None, warmup_epochs: int = 0, lambda_ramp_steps: int = 0,
               classifier=None, fill: str = "zero") -> dict | None:
    """CASM: a classifier and a masker trained together against a pool of classifier snapshots;
    best by ``val_loss`` after ``warmup_epochs`` of classifier-only training (λ ramped over
    ``lambda_ramp_steps`` masker steps). ``classifier``: weights from ``hrcam train cam`` to start
    from (thinning F: to keep frozen) instead of the torchvision ``backbone``. ``fill``: what
    replaces the masked-out pixels, ``'zero'`` (black, the seed's) or ``'random'`` (one colour per
    image per step)."""
    from hrcam.models.baselines.casm import FILLS, CASMNet
    from hrcam.models.baselines.feature_backbones import build_feature_backbone
    from hrcam.train.baselines import CASMModule

    if fill not in FILLS:
        raise UserError(f"--fill must be one of {', '.join(FILLS)}, got {fill!r}")
    dm = _datamodule(data, run, lr, backbone_weights)
    if lr_masker <= 0:
        raise UserError(f"--lr_masker must be > 0, got {lr_masker}")
    if pool_prob is not None and not 0 <= pool_prob <= 1:
        raise UserError(f"--pool_prob must be in [0, 1], got {pool_prob}")
    _seeded(run.seed)
    if classifier:
        if backbone_weights or pretrained:
            raise UserError("give --classifier or --backbone_weights / --pretrained, not both")
        clf = _lcam_classifier(dm, classifier, backbone, None, False)
    else:
        clf = _user_errors(build_feature_backbone, backbone, weights=backbone_weights, pretrained=pretrained,
                           num_classes=dm.num_classes, reset_head=True)
    module = _user_errors(CASMModule, CASMNet(clf), thinning_name=thinning, lambda_r=lambda_r, pool_size=pool_size,
                          pool_prob=pool_prob, smf=smf, lr_classifier=lr, lr_masker=lr_masker, seed=run.seed,
                          im_size=data.im_size, class_names=dm.classes, warmup_epochs=warmup_epochs,
                          lambda_ramp_steps=lambda_ramp_steps, fill=fill)
    return _fit(module, dm, run, "val_loss", "min", "casm")
