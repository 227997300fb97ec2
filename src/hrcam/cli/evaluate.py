"""``hrcam evaluate``: classification metrics of a trained model on the test split.

``hrcam evaluate --data_dir D --type half|full --weights W`` prints the report and writes JSON.
Sub-commands from other modules (``EVALUATE_MODULES``, each with ``register(subparsers)``) add
more evaluations, e.g. ``hrcam evaluate localization``.
"""
from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from hrcam.cli.common import add_devices, add_num_workers, positive_int
from hrcam.errors import UserError

EVALUATE_MODULES: list[str] = ["hrcam.cli.evaluate_localization"]


def _add_classification_args(p: argparse.ArgumentParser, required: bool) -> None:
    p.add_argument("--data_dir", required=required, help="folder with test/<class>/* (and train/)")
    p.add_argument("--type", choices=("half", "full"), default=None,
                   help="model type; default: what the weights file records (half weights of a full model work too)")
    p.add_argument("--weights", "--weight_dir", "--half_weight_dir", dest="weights", required=required,
                   help="exported weights (results/<name>/best_weights.safetensors or that folder)")
    p.add_argument("--split", default="test", help="which split to evaluate (default: test)")
    p.add_argument("--batch_size", type=positive_int, default=32)
    p.add_argument("--limit", type=positive_int, default=None, help="evaluate only the first N images")
    p.add_argument("--out", default=None, help="JSON output (default: <weights folder>/eval_<split>.json)")
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")
    add_num_workers(p)
    add_devices(p)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate", help="evaluate a trained model (classification; 'localization' for maps)",
        description="Classification metrics on the test split: top-1, top-5, macro and micro "
                    "precision/recall/F1, per-class report and confusion matrix (printed, and written as JSON). "
                    "Use 'hrcam evaluate localization --help' for the localization table of the maps.")
    _add_classification_args(p, required=False)
    p.set_defaults(func=run_classification, _evaluate_parser=p)
    sub = p.add_subparsers(dest="evaluate_command", metavar="[EVALUATION]")
    sub.required = False
    for name in EVALUATE_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as err:
            if err.name != name:
                raise
            continue
        module.register(sub)


def run_classification(args) -> int:
    from hrcam.api.seed import load_model
    from hrcam.evaluation.classification import evaluate_classification
    from hrcam.fileio import check_writable_dir, write_json
    from hrcam.jsonio import json_safe
    from hrcam.metrics.classification import format_classification_report

    if not args.data_dir or not args.weights:
        raise UserError("evaluate needs --data_dir and --weights")
    out = Path(args.out) if args.out else _default_out(args.weights, args.split)
    check_writable_dir(out.parent, "--out")  # before the work, so that no result is lost
    model = load_model(args.weights, type=args.type)
    metrics = evaluate_classification(model, args.data_dir, args.split, args.batch_size, args.limit,
                                      num_workers=args.num_workers, progress=not args.no_progress,
                                      devices=args.devices)
    metrics["weights"] = str(args.weights)
    metrics["type"] = model.kind
    print(format_classification_report(metrics))
    if out.is_dir():
        raise UserError(f"--out {out} is a folder; give a JSON file name")
    write_json(out, json_safe(metrics))
    print(f"written: {out}")
    return 0


def _default_out(weights, split) -> Path:
    w = Path(weights)
    folder = w if w.is_dir() else w.parent
    return folder / f"eval_{split}.json"
