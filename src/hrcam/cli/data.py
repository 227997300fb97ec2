"""``hrcam data``: build and prepare datasets on disk.

Sub-commands (one ``add_<name>(subparsers)`` function each, listed in :data:`SUBCOMMANDS`):

- ``hrcam data animals``: the seed's ImageNet *Animals* subset (398 synsets) from a user's
  ILSVRC-2012 folder, split deterministically into ``train/`` and ``test/``.

Heavy imports happen inside the handlers so that ``hrcam --help`` stays fast.
"""
from __future__ import annotations

import argparse

from hrcam.cli.common import nonneg_int, seed_arg

_ANIMALS_EPILOG = """\
The input folder is an ILSVRC-2012 tree: IMAGENET_DIR/train/<wnid>/*.JPEG (and, when present,
IMAGENET_DIR/val/<wnid>/*.JPEG, which is pooled with train). The 398 animal synsets
(n01440764 ... n02655020, the first 398 in sorted order) are kept, each class is split with
--seed into OUT/train/<wnid>/ and OUT/test/<wnid>/, and OUT/classes.txt lists the classes.
The same --seed always gives the same split. OUT must be missing or empty.

example:
  hrcam data animals --imagenet-dir /data/ILSVRC2012 --out data/animals \\
      --synsets synset_words.txt --seed 0 --mode symlink
"""


def add_animals(subparsers) -> None:
    """Register ``hrcam data animals``."""
    p = subparsers.add_parser(
        "animals",
        help="build the 398-class ImageNet Animals subset (train/test split) from an ImageNet folder",
        description=(
            "Build the seed's ImageNet 'Animals' dataset: the first 398 ILSVRC-2012 synsets, "
            "split per class into train/ and test/ with a fixed seed."
        ),
        epilog=_ANIMALS_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--imagenet-dir", "--imagenet_dir", dest="imagenet_dir", required=True,
                   metavar="DIR", help="ILSVRC-2012 folder holding train/<wnid>/ (and optionally val/<wnid>/)")
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder (created; must be missing or empty unless --overwrite)")
    p.add_argument("--synsets", default=None, metavar="FILE",
                   help="synset list, one 'wnid [name, ...]' per line (e.g. synset_words.txt); "
                        "restricts the classes and gives them names in classes.txt. "
                        "A 1000-line list is cut to its first 398 sorted wnids")
    p.add_argument("--test-fraction", "--test_fraction", dest="test_fraction", type=float,
                   default=None, metavar="F",
                   help="share of each class's images put in test/ (default: the seed's "
                        "114114/510530 = 0.2235)")
    p.add_argument("--seed", type=seed_arg, default=0, help="seed of the split (default 0)")
    p.add_argument("--mode", choices=["symlink", "copy", "hardlink"], default="symlink",
                   help="how files are placed in OUT (default symlink: no extra disk space)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow writing into a non-empty OUT (its train/ and test/ are replaced)")
    p.add_argument("--no-progress", dest="progress", action="store_false",
                   help="hide the progress bar")
    p.set_defaults(func=run_animals)


def run_animals(args) -> int:
    from hrcam.data.animals import DEFAULT_TEST_FRACTION, build_animals_subset

    fraction = DEFAULT_TEST_FRACTION if args.test_fraction is None else args.test_fraction
    summary = build_animals_subset(
        args.imagenet_dir,
        args.out,
        synsets_file=args.synsets,
        test_fraction=fraction,
        seed=args.seed,
        mode=args.mode,
        progress=args.progress,
        overwrite=args.overwrite,
    )
    print(
        f"wrote {summary['num_classes']} classes to {summary['out']}: "
        f"{summary['num_train']} train / {summary['num_test']} test images ({args.mode})"
    )
    return 0


def add_demo(subparsers) -> None:
    """Register ``hrcam data demo``."""
    p = subparsers.add_parser(
        "demo",
        help="write the built-in 'digits on textures' demo set (no download) with masks and boxes",
        description=(
            "Write the demo data set: scikit-learn's handwritten digits composited at random "
            "places, sizes and colours onto crops of scikit-image's texture photos, in the "
            "class-folder layout OUT/train/<digit>/, OUT/test/<digit>/, plus ground-truth masks "
            "(OUT/masks/<split>/<digit>/) and OUT/annotations.json (boxes [x0, y0, x1, y1], "
            "end-exclusive pixels). The same --seed gives byte-identical files."
        ),
    )
    p.add_argument("--out", required=True, metavar="DIR",
                   help="output folder: missing, empty, or one this command wrote (only its demo files are "
                        "replaced; other files stay)")
    p.add_argument("--overwrite", action="store_true",
                   help="allow a non-empty OUT that this command did not write (its train/, test/ and masks/ "
                        "are replaced)")
    p.add_argument("--size", type=int, default=64, help="image side in pixels (default 64)")
    p.add_argument("--train", type=int, default=4000, help="number of training images (default 4000, the demo preset)")
    p.add_argument("--test", type=int, default=500, help="number of test images (default 500)")
    p.add_argument("--seed", type=seed_arg, default=0, help="random seed (default 0)")
    p.add_argument("--distractors", type=nonneg_int, default=0, metavar="N",
                   help="per image, N same-coloured fragments of other classes' digits (30-60 %% crops, "
                        "never a whole digit) beside the target, not in its mask or box; a harder check "
                        "that a map finds the class, not the colour (default 0: none)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="hide the progress bar")
    p.set_defaults(func=run_demo)


def run_demo(args) -> int:
    from hrcam.data.demo import build_demo_dataset
    from hrcam.errors import UserError

    try:
        out = build_demo_dataset(args.out, size=args.size, train=args.train, test=args.test,
                                 seed=args.seed, progress=args.progress, overwrite=args.overwrite,
                                 distractors=args.distractors)
    except ValueError as err:
        raise UserError(str(err)) from None
    print(f"wrote the demo set to {out}: {args.train} train / {args.test} test images, "
          f"{args.size}x{args.size} px, seed {args.seed}"
          + (f", {args.distractors} distractor fragments per image" if args.distractors else ""))
    return 0


# --- more sub-commands go here: write add_<name>(subparsers) + run_<name>(args) above and
# --- append add_<name> to SUBCOMMANDS (e.g. the demo data set's ``hrcam data demo``).
SUBCOMMANDS = [add_animals, add_demo]


def register(subparsers) -> None:
    """Add the ``data`` command group and all its sub-commands."""
    from hrcam.cli.common import command_group

    command_group(subparsers, "data", help="build datasets on disk (ImageNet Animals subset, ...)",
                  description="Build datasets in the layout hrcam trains on: DIR/train/<class>/*, "
                              "DIR/test/<class>/*.", adders=SUBCOMMANDS)


__all__ = ["register", "SUBCOMMANDS", "add_animals", "run_animals", "add_demo", "run_demo"]
