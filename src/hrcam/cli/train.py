"""``hrcam train``: train HR-CAM models (and, through plug-in modules, the other learned explainers)."""
from __future__ import annotations

import argparse
import importlib
import json

from hrcam.cli.common import (
    add_distributed_args,
    distributed_kwargs,
    nonneg_float,
    nonneg_int,
    positive_float,
    positive_int,
    seed_arg,
)

#: modules adding more ``hrcam train <method>`` sub-commands through ``register_train(subparsers)``
TRAIN_MODULES: list[str] = ["hrcam.cli.train_baselines", "hrcam.cli.pretrained"]

ARCH_ARGS = ("init_filters", "growth_rate", "layers_per_block", "num_blocks", "aux_channels")

EPILOG = """\
Outputs: weights in results/<results_name>/{best,last}_weights.safetensors, Lightning checkpoints
in results/<results_name>/checkpoints/ (for --resume), TensorBoard logs in logs/<results_name>/.
Data layout: data_dir/train/<class>/<images> (and data_dir/test/<class>/<images> for validation).
"""


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data_dir", required=True, help="folder with train/<class>/* (and test/<class>/*)")
    p.add_argument("--results_name", required=True,
                   help="run name, may contain sub-folders (e.g. half/exp1/run3); stays under results/ and logs/")
    p.add_argument("--batch_size", type=positive_int, default=16, help="batch size (default: 16)")
    p.add_argument("--epochs", type=positive_int, default=50, help="epochs (default: 50)")
    p.add_argument("--im_size", type=positive_int, default=224,
                   help="images are resized to im_size×im_size; a multiple of 32 with the default net (default: 224)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=3, help="1 grayscale or 3 RGB (default: 3)")
    p.add_argument("--num_classes", type=positive_int, default=None,
                   help="number of classes; must match the data's class folders (default: counted from the data)")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="learning rate (default: 1.0 with Adadelta, the seed's; 1e-3 with Adam)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default: 0)")
    p.add_argument("--no_augment", action="store_true", help="turn off the seed's training augmentation")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run from results/<results_name>/checkpoints/last.ckpt")
    p.add_argument("--overwrite", action="store_true",
                   help="replace the run already in results/<results_name> (without it such a run is refused)")
    p.add_argument("--results_root", default="results", help=argparse.SUPPRESS)
    p.add_argument("--logs_root", default="logs", help=argparse.SUPPRESS)
    p.add_argument("--limit_train_batches", type=float, default=None, help=argparse.SUPPRESS)
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")
    p.add_argument("--log_maps_every", type=nonneg_int, default=1, metavar="N",
                   help="every N epochs, log the low-res (and, for the FullModel, high-res and refined) maps of "
                        "8 fixed validation images (training images without a test split) to TensorBoard "
                        "under maps/ (default: 1; 0: off)")
    g = p.add_argument_group("architecture (FC-DenseNet; defaults are the seed's)")
    g.add_argument("--init_filters", type=positive_int, default=48)
    g.add_argument("--growth_rate", type=positive_int, default=16)
    g.add_argument("--layers_per_block", type=positive_int, default=4)
    g.add_argument("--num_blocks", type=positive_int, default=4)
    g.add_argument("--aux_channels", type=positive_int, default=16)
    add_distributed_args(p)
    s = p.add_argument_group("speed (same math either way)")
    s.add_argument("--no_channels_last", "--no-channels-last", dest="no_channels_last", action="store_true",
                   help="keep tensors in NCHW memory format (default: channels-last, faster on CPU)")
    s.add_argument("--compile", action="store_true",
                   help="run the network through torch.compile (slow first step; see benchmarks/bench_train.py)")


def register(subparsers) -> None:
    p = subparsers.add_parser("train", help="train a model", description="Train a model.")
    sub = p.add_subparsers(dest="train_command", metavar="MODEL")
    sub.required = True

    half = sub.add_parser(
        "half", help="train the HalfModel (classifier + low-res CAMs)",
        description="Train the HalfModel: an FC-DenseNet classifier with GAP + linear head whose low-res "
                    "CAMs are S/16 × S/16. Cross-entropy + L2 1e-4, Adadelta (lr 1.0, rho 0.95), "
                    "ReduceLROnPlateau on the training loss; the best checkpoint by validation accuracy.",
        epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(half)
    half.add_argument("--half_weight_dir", default=None,
                      help="start from these HalfModel weights (continue training)")
    half.set_defaults(func=run_half)

    full = sub.add_parser(
        "full", help="train the FullModel's expansion network (high-res CAMs)",
        description="Train the FullModel: the HalfModel's layers are copied from --half_weight_dir and frozen "
                    "(classification stays identical); only the expansion network and the reconstruction head "
                    "train. Two recipes (--preset): 'seed' = the seed's autoencoder ('reconstruction' "
                    "objective, transposed convolutions, Adadelta); 'localize' = high-res CAMs that follow "
                    "the object ('faithfulness' objective: the frozen classifier keeps the class on the image "
                    "masked by the map and loses it on the inverse, hidden pixels filled with a random colour, "
                    "with a concave area and an edge-aware smoothness term; resize-convolutions; each low-res "
                    "cell's mean anchored to the low-res CAM; Adam). 'localize' is the recommended one: on the "
                    "demo its high-res CAM through the guided filter localizes far better than the seed's "
                    "recipe, the low-res CAM, LayerCAM and the guided-filter CAM (README, 'Maps that "
                    "localize'). Flags below override the preset's parts.",
        epilog=EPILOG + _FULL_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    _add_common(full)
    full.add_argument("--half_weight_dir", required=True,
                      help="trained HalfModel weights (results/<name>/best_weights.safetensors or its folder)")
    full.add_argument("--preset", choices=("seed", "localize"), default="seed",
                      help="decoder recipe (default: seed; recommended: localize)")
    full.add_argument("--objective", choices=("reconstruction", "consistency", "smoothness", "faithfulness"), default=None,
                      help="decoder objective (default: the preset's)")
    full.add_argument("--upsampling", choices=("transposed", "resize"), default=None,
                      help="expansion-network upsampling: the seed's 3×3 stride-2 transposed convs, or "
                           "nearest resize + 3×3 conv (no checkerboard) (default: the preset's)")
    full.add_argument("--anchor", choices=("none", "bilinear"), default=None,
                      help="'bilinear': A_high = B + up(A_low − avgpool(B)), the cell means stay the low-res "
                           "CAM's (default: the preset's)")
    full.add_argument("--optimizer", choices=("adadelta", "adam"), default=None,
                      help="optimizer (default: the preset's)")
    full.add_argument("--consistency_weight", type=nonneg_float, default=1.0,
                      help="λ of the consistency term ('consistency', or 'faithfulness' without an anchor) "
                           "(default: 1.0)")
    add_masking_game(full)
    full.set_defaults(func=run_full)

    for name in TRAIN_MODULES:
        importlib.import_module(name).register_train(sub)


def add_masking_game(parser) -> None:
    """``--mask_fill`` and ``--mask_scale``: the ``faithfulness`` masking game's options (full and decoder).

    The choices are :data:`hrcam.train.objectives.FILLS` and ``SCALES``, spelled out here so that
    parsing imports no torch (a test keeps them equal)."""
    parser.add_argument("--mask_fill", choices=("random", "zero", "blur"), default=None,
                        help="'faithfulness': what replaces the hidden pixels when the classifier is shown the "
                             "masked image: one random colour per image and step, black (L-CAM-Img's; "
                             "dark objects then cannot be deleted), or the image under a strong Gaussian blur "
                             "(Fong & Vedaldi's meaningful perturbation) (default: blur for 'train full', "
                             "random for 'train decoder')")
    parser.add_argument("--mask_scale", choices=("minmax", "low"), default=None,
                        help="'faithfulness': how the class map becomes the mask: per-map min-max, or in the "
                             "units of the classifier's low-res CAM (0 at its minimum, 1 at its maximum, "
                             "clipped), which one outlier pixel cannot game (default: low)")


def masking_game(args) -> dict:
    """The ``faithfulness`` options given by :func:`add_masking_game`'s flags (the rest stay the
    trainer's defaults)."""
    given = {"fill": args.mask_fill, "scale": args.mask_scale}
    return {k: v for k, v in given.items() if v is not None}


_FULL_EPILOG = """
example (the recommended recipe):
  hrcam train full --data_dir D --half_weight_dir results/half --results_name full --preset localize
"""


def _arch(args) -> dict:
    return {k: getattr(args, k) for k in ARCH_ARGS}


def _settings(args):
    from hrcam.train.recipes import FolderData, RunSettings

    data = FolderData(args.data_dir, im_size=args.im_size, batch_size=args.batch_size, augment=not args.no_augment,
                      num_workers=args.num_workers, channels=args.channels)
    run = RunSettings(args.results_name, epochs=args.epochs, results_root=args.results_root,
                      logs_root=args.logs_root, resume=args.resume, overwrite=args.overwrite,
                      progress=not args.no_progress, seed=args.seed,
                      limit_train_batches=args.limit_train_batches, distributed=distributed_kwargs(args),
                      channels_last=not args.no_channels_last, compile=args.compile,
                      log_maps_every=args.log_maps_every)
    return data, run


def _finish(out: dict) -> int:
    if out["trainer"].is_global_zero:
        print(json.dumps({"best": str(out["best"]), "last": str(out["last"]), "logs": str(out["logs"])}))
    return 0


def run_half(args) -> int:
    from hrcam.train.recipes import train_half

    lr = 1.0 if args.lr is None else args.lr
    return _finish(train_half(*_settings(args), arch=_arch(args), lr=lr, num_classes=args.num_classes,
                              half_weights=args.half_weight_dir or None))


def run_full(args) -> int:
    from hrcam.train.recipes import train_full

    return _finish(train_full(*_settings(args), args.half_weight_dir, arch=_arch(args), preset=args.preset,
                              objective=args.objective, upsampling=args.upsampling, anchor=args.anchor,
                              optimizer=args.optimizer, consistency_weight=args.consistency_weight, lr=args.lr,
                              num_classes=args.num_classes, faithfulness=masking_game(args)))
