"""``hrcam demo``: the built-in demonstrations.

Sub-commands (one ``add_<name>(subparsers)`` + ``run_<name>(args)`` pair each, listed in
:data:`SUBCOMMANDS`):

- ``hrcam demo run``: the whole HR-CAM workflow on the built-in "digits on textures" data
  (``make demo``): data → HalfModel → FullModel → classification → maps → localization report.
"""
from __future__ import annotations

import argparse

_RUN_EPILOG = """\
writes OUT/report.md, OUT/report.html (the same tables sortable, a per-image gallery with a
wrong-prediction filter; one offline file), OUT/metrics.json, OUT/gallery_<objective>.png, OUT/pipeline.png, the
weights (OUT/half/, OUT/full_<objective>/) and TensorBoard logs (OUT/logs/). Finished stages are
reused on the next run (OUT/stages.json) unless --force. The demo data is built in --data when
it is missing (same seed -> byte-identical files).

example:
  hrcam demo run --out results/demo            # what 'make demo' runs
  hrcam demo run --out /tmp/quick --train 500 --test 100 --half-epochs 2 --objectives reconstruction
  hrcam demo run --out results/demo --extras baselines,pretrained    # + the extra rows

--extras (opt-in, after the main stages, each with small settings and its wall time reported; where a
second core is free, a second process trains the pretrained path and some baseline runs beside the rest):
  pretrained  frozen EfficientNet-Lite0 (offline weights), linear head fitted on the digits, a
              short decoder run: "Lite0 low-res / high-res / refined" rows in the localization table
  baselines   (old name: neighbours) CAM, L-CAM-Fm/-Img and CASM F/L trained on 2000 demo images
              (Lite0, 96 px), and each paper's headline comparison on 100 test images: CAM vs
              centre prior vs Grad-CAM (localization), L-CAM vs Grad-CAM/Grad-CAM++/Score-CAM
              on the same frozen classifier (AD/IC at 100/50/15 % kept), CASM F vs L (LE, PxAP,
              masked-in/out/inpainted accuracy); each table says whether the claim reproduces
"""


def add_run(subparsers) -> None:
    """Register ``hrcam demo run``."""
    from hrcam.cli.common import positive_int, seed_arg

    p = subparsers.add_parser(
        "run",
        help="train HalfModel + FullModel on the built-in digits-on-textures data and report localization",
        description=("Run the seed's whole workflow on the built-in demo data (no download): build "
                     "the data if missing, train the HalfModel, then the FullModel's decoder, "
                     "evaluate classification, compute low-res / high-res / refined maps of the "
                     "test split and score them against the exact ground truth."),
        epilog=_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--out", default="results/demo", metavar="DIR", help="output folder (default results/demo)")
    p.add_argument("--data", default="data/demo", metavar="DIR",
                   help="demo data folder, built when missing (default data/demo)")
    p.add_argument("--force", action="store_true", help="redo every stage (the data is rebuilt only if it does not match)")
    p.add_argument("--no-progress", "--no_progress", dest="progress", action="store_false",
                   help="hide progress bars and stage messages")
    g = p.add_argument_group("preset overrides (defaults: the make-demo preset)")
    g.add_argument("--size", type=positive_int, default=None, help="image side (multiple of 32)")
    g.add_argument("--train", type=positive_int, default=None, help="training images")
    g.add_argument("--test", type=positive_int, default=None, help="test images")
    g.add_argument("--seed", type=seed_arg, default=None, help="seed of the data and the training")
    g.add_argument("--half-epochs", "--half_epochs", dest="half_epochs", type=positive_int, default=None)
    g.add_argument("--full-epochs", "--full_epochs", dest="full_epochs", type=positive_int, default=None,
                   help="FullModel epochs for every objective (default: 2 for faithfulness, 1 for the seed's; "
                        "with --distractors 4 for faithfulness)")
    g.add_argument("--batch-size", "--batch_size", dest="batch_size", type=positive_int, default=None)
    g.add_argument("--objectives", default=None,
                   help="comma list of FullModel decoder objectives, the first is the headline one "
                        "(default: faithfulness,reconstruction; also consistency, smoothness)")
    g.add_argument("--limit", type=positive_int, default=None, help="score only N test images")
    g.add_argument("--distractors", type=int, default=None,
                   help="same-coloured fragments of other digits per image (default 0); use another --data "
                        "and --out, e.g. --data data/demo_distractors --out results/demo_distractors")
    g.add_argument("--map-class", "--map_class", dest="map_class", choices=("predicted", "true"), default=None,
                   help="the class the headline table's maps explain: each image's prediction (default) or its "
                        "true class, as Choe et al. (CVPR 2020) score CAMs")
    a = p.add_argument_group("architecture overrides (FC-DenseNet; default: init_filters 16, growth_rate 8, "
                             "layers_per_block 2, num_blocks 4; with --distractors growth_rate 16, "
                             "layers_per_block 3: the fragments need more capacity)")
    for name in DEMO_ARCH_ARGS:
        a.add_argument(f"--{name.replace('_', '-')}", f"--{name}", dest=name, type=positive_int, default=None)
    p.add_argument("--extras", default="", metavar="LIST",
                   help="comma list of extra stages: baselines (or its old name neighbours), pretrained (default: none; see below)")
    p.add_argument("--no-parallel-extras", "--no_parallel_extras", dest="parallel_extras", action="store_false",
                   help="train the extras in this process only (default: a second process takes the pretrained "
                        "path and then whichever baseline run is next, where a second core is free; same runs "
                        "and seeds, less wall time)")
    p.set_defaults(func=run_run)


#: FC-DenseNet settings ``hrcam demo run`` can override (the same names as ``hrcam train``'s)
DEMO_ARCH_ARGS = ("init_filters", "growth_rate", "layers_per_block", "num_blocks")


def run_run(args) -> int:
    from hrcam.errors import UserError
    from hrcam.workflows.demo import DemoConfig, run_demo

    overrides = {k: getattr(args, k) for k in ("size", "train", "test", "seed", "half_epochs",
                                                "full_epochs", "batch_size", "limit", "distractors", "map_class")
                 if getattr(args, k) is not None}
    if args.objectives:
        overrides["objectives"] = tuple(o.strip() for o in args.objectives.split(",") if o.strip())
    if args.extras:
        overrides["extras"] = tuple(e.strip() for e in args.extras.split(",") if e.strip())
    overrides["parallel_extras"] = args.parallel_extras
    arch = {k: getattr(args, k) for k in DEMO_ARCH_ARGS if getattr(args, k) is not None}
    try:
        if arch:  # on top of the preset for the data (with or without distractors)
            overrides["arch"] = {**DemoConfig(distractors=overrides.get("distractors", 0)).net_arch, **arch}
        cfg = DemoConfig(**overrides)
        if cfg.size % 32:
            raise ValueError(f"--size must be a multiple of 32, got {cfg.size}")
        metrics = run_demo(args.out, args.data, cfg, force=args.force, progress=args.progress)
    except UserError:
        raise
    except ValueError as err:
        raise UserError(str(err)) from None
    acc = metrics["classification"]["accuracy"]
    weights = ", ".join(f"{args.out}/{d}/" for d in ("half", *(f"full_{o}" for o in cfg.objectives)))
    print(f"test accuracy {acc:.3f}; report: {args.out}/report.md, {args.out}/report.html; weights: {weights}; "
          f"TensorBoard logs: {args.out}/logs/")
    return 0


def add_photos(sub) -> None:
    """``hrcam demo photos``: the pretrained EfficientNet-Lite0 on bundled photos (hrcam.cli.pretrained)."""
    from hrcam.cli.pretrained import register_demo

    register_demo(sub)


# more sub-commands: add_<name> (+ run_<name>), append to SUBCOMMANDS
SUBCOMMANDS = [add_run, add_photos]


def register(subparsers) -> None:
    """Add the ``demo`` command group and its sub-commands."""
    from hrcam.cli.common import command_group

    command_group(subparsers, "demo", help="built-in demonstrations ('run': the whole workflow on digits on textures)",
                  description="Built-in demonstrations that need no download.", adders=SUBCOMMANDS)


__all__ = ["register", "SUBCOMMANDS", "add_run", "run_run", "add_photos"]
