"""``hrcam evaluate localization``: localization metrics of a model's maps (DESIGN §6).

    hrcam evaluate localization --data_dir D --weights W [--type full|half] [--limit N] [--out DIR]

Scores the low-res CAM, the high-res CAM and the refined map (post-processing pipeline) — plus
two references without a model, a centre prior and the colour distance from the image's median
colour — against ground-truth masks/boxes (``D/annotations.json`` as written by
``hrcam data demo``, or PASCAL VOC / ImageNet XML files) and writes ``localization.json`` and
``localization.md`` to ``--out`` (default: the weights' folder).
"""
from __future__ import annotations

from pathlib import Path

from hrcam.errors import UserError

_EPILOG = """\
ground truth: DATA_DIR/annotations.json (demo format: {"test/3/00012.png": {"label": 3,
"boxes": [[x0, y0, x1, y1]], "mask": "masks/test/3/00012.png"}}, boxes end-exclusive), or one
PASCAL VOC / ImageNet XML file per image (<name>.xml next to the image, in --annotations, or
in DATA_DIR/annotations/). Images are resized to the model's input size; boxes and masks follow.

metrics, set-level first (Choe et al., CVPR 2020; one number for the whole set): PxAP (pixel
average precision over all pixels of all images), best-threshold IoU (mean mask IoU at the one
threshold of 0, 0.01, ..., 0.99 best for the set), MaxBoxAccV2 (boxes of every connected
component, best threshold per IoU 0.3/0.5/0.7, averaged); then per-image means: pointing game
(tolerance 0 and 15 px at 224, scaled), energy pointing game, box accuracy (CAM rule
IoU >= 0.5, CASM rule IoU > 0.5), LE/OM, mask IoU (normalized map >= 0.5).

example:
  hrcam evaluate localization --data_dir data/demo --weights results/demo/full_reconstruction
"""


def register(evaluate_subparsers) -> None:
    """Add ``localization`` to the ``hrcam evaluate`` group."""
    import argparse

    from hrcam.cli.common import add_devices, add_num_workers, positive_int

    p = evaluate_subparsers.add_parser(
        "localization",
        help="localization metrics of low-res, high-res and refined maps against masks/boxes",
        description=("Localization table (PxAP, best-threshold IoU, MaxBoxAccV2, then pointing game, "
                     "energy pointing game, box accuracy with the CAM and CASM rules, LE/OM, mask "
                     "IoU) for the low-res CAM, the high-res CAM and the refined map of a trained "
                     "HR-CAM model, with a centre-prior and a colour-distance reference."),
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--data_dir", "--data-dir", dest="data_dir", required=True,
                   help="folder with <split>/<class>/* and ground truth")
    p.add_argument("--weights", required=True, help="exported weights file (or its folder)")
    p.add_argument("--type", choices=("half", "full"), default=None,
                   help="model type (default: what the weights record); half gives only low-res maps")
    p.add_argument("--split", default="test", help="split to evaluate (default: test)")
    p.add_argument("--annotations", default=None, metavar="DIR",
                   help="folder with one VOC/ImageNet XML file per image (default: see below)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="score only N annotated images, spread over the split")
    p.add_argument("--batch_size", "--batch-size", dest="batch_size", type=positive_int, default=32)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="output folder for localization.json / .md (default: the weights' folder)")
    p.add_argument("--no_progress", "--no-progress", dest="no_progress", action="store_true",
                   help="hide progress bars")
    add_num_workers(p)
    add_devices(p)
    p.set_defaults(func=run_localization)


def run_localization(args) -> int:
    from hrcam.api.seed import load_model
    from hrcam.data.annotations import load_ground_truth
    from hrcam.evaluation.localization import MAP_LABELS, evaluate_localization
    from hrcam.fileio import check_writable_dir, write_json
    from hrcam.jsonio import json_safe
    from hrcam.metrics.columns import SET_LOCALIZATION, SUMMARY_LOCALIZATION, label_pairs
    from hrcam.viz.report import table_from_records, write_report

    data_dir = Path(args.data_dir)
    if not data_dir.is_dir():
        raise UserError(f"--data_dir: no such folder: {data_dir}")
    weights = Path(args.weights)
    if not weights.exists():
        raise UserError(f"--weights: no such file or folder: {weights}")
    out = Path(args.out) if args.out else (weights if weights.is_dir() else weights.parent)
    check_writable_dir(out, "--out")  # before the work, so that no result is lost
    try:
        gt = load_ground_truth(data_dir, args.split, annotations_dir=args.annotations)
        model = load_model(weights, type=args.type)
        res = evaluate_localization(model, data_dir, args.split, limit=args.limit,
                                    batch_size=args.batch_size, progress=not args.no_progress,
                                    keep_examples=0, ground_truth=gt, num_workers=args.num_workers,
                                    devices=args.devices)
    except UserError:
        raise
    except ValueError as err:
        raise UserError(str(err)) from None
    record = {"data_dir": str(data_dir), "weights": str(weights), "split": args.split, **res.to_json()}
    write_json(out / "localization.json", json_safe(record), indent=1)
    table = table_from_records(
        f"Localization ({res.image_size}×{res.image_size} px, {len(res.paths)} images, "
        f"top-1 accuracy {res.accuracy:.3f})",
        {MAP_LABELS[k]: v for k, v in res.summary.items()},
        label_pairs(SET_LOCALIZATION + SUMMARY_LOCALIZATION), "map")
    write_report(out / "localization.md", f"Localization: {weights}", [table])
    from hrcam.viz.report import markdown_table

    print(markdown_table(table))
    if res.failed_files:
        print(f"skipped {len(res.failed_files)} unreadable image(s), e.g. {res.failed_files[0]}")
    print(f"written: {out / 'localization.json'}, {out / 'localization.md'}")
    return 0
