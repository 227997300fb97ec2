"""``hrcam compare``: every localization and faithfulness metric for several explanation methods
on the same model and images, as one table (Markdown, JSON, CSV).

    hrcam compare --data_dir D --weights W --methods cam,hrcam,refined,gradcam,gradcampp,scorecam \
                  [--limit N] [--batch_size B] [--removal zero|mean|inpaint] [--out DIR]
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hrcam.cli.common import add_devices, add_num_workers, device_arg, positive_int, resolve_device
from hrcam.errors import UserError

DEFAULT_METHODS = ("cam", "hrcam", "refined", "gradcam", "gradcampp", "scorecam")
HIGH_RES_METHODS = ("hrcam", "refined")


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "compare", help="compare explanation methods (localization + faithfulness table)",
        description="Run several explanation methods on one trained model and the images of "
                    "data_dir/<split>, and write one table with time per image, every localization "
                    "metric (when the data has ground truth: the demo's annotations.json or VOC XML "
                    "files) and every faithfulness metric (AD/IC at q=0, 0.5, 0.85; masked-in/out/"
                    "inpainted top-1/top-5 and entropy; deletion/insertion AUC). Maps that are "
                    "constant, all zero or non-finite are counted (excluded_* columns) and not scored. "
                    "Writes compare.md, .json, .csv and report.html (the table sortable by column, a "
                    "per-image gallery of every method's map with a wrong-prediction filter; one offline file).")
    p.add_argument("--data_dir", required=True, help="folder with <split>/<class>/* images")
    p.add_argument("--weights", "--weight_dir", dest="weights", required=True,
                   help="exported model weights (results/<name>/best_weights.safetensors)")
    p.add_argument("--type", choices=("half", "full"), default=None,
                   help="model type (default: what the weights file records)")
    p.add_argument("--methods", default=None,
                   help="comma-separated methods (default: " + ",".join(DEFAULT_METHODS)
                        + "; hrcam and refined need full-model weights)")
    p.add_argument("--split", default="test", help="which split to use (default: test)")
    p.add_argument("--limit", type=positive_int, default=None,
                   help="use only N images, taken round-robin over the classes (deterministic)")
    p.add_argument("--batch_size", type=positive_int, default=32, help="images per batch (default: 32)")
    p.add_argument("--out", default=None, help="output folder (default: <weights folder>/compare)")
    p.add_argument("--device", default="auto", type=device_arg, help="cpu, cuda, cuda:1, ... (default: cuda when available, else cpu)")
    p.add_argument("--removal", choices=("zero", "mean", "inpaint"), default="zero",
                   help="what deletion/insertion AUC put in place of removed pixels: zero (black, RISE's "
                        "baseline; default), mean (the image's mean colour) or inpaint (filled from the kept "
                        "pixels around them, OpenCV Telea, so a removed object leaves no silhouette; "
                        "slower: one inpainting per image and step)")
    p.add_argument("--gallery", type=int, default=8, metavar="N",
                   help="report.html shows the maps of the first N images, one column per method (default: 8; 0: none)")
    p.add_argument("--no_progress", action="store_true", help="hide progress bars")
    add_num_workers(p)
    add_devices(p, "; the images are read once, in the main process (--num_workers), and each process gets "
                   "its batches. ms_per_image is then the explainer time summed over the processes, per image")
    p.set_defaults(func=run)


@dataclass
class _Loaded:
    """What ``run`` needs of a model, whatever method trained it."""

    net: object
    kind: str
    im_size: int
    num_classes: int
    device: object
    channels: int = 3


def _load(weights, kind, device) -> _Loaded:
    """Any weights hrcam writes, through :func:`hrcam.models.registry.load_network`; ``--type``
    picks the HalfModel inside full-model weights (:func:`hrcam.api.seed.select_type`)."""
    from hrcam.api.seed import select_type
    from hrcam.models.registry import load_network

    net, meta = load_network(weights, device=device)
    net, kind = select_type(net, meta, kind, weights)
    return _Loaded(net, kind, int(meta.get("im_size", 224)), int(net.num_classes), device,
                   int(meta.get("in_channels", 3)))


def run(args) -> int:
    from hrcam.data.layout import dataset_classes
    from hrcam.data.splits import load_ground_truth_for, load_split
    from hrcam.evaluation.compare import compare_methods, format_markdown, write_html, write_table
    from hrcam.explain.registry import parse_methods

    try:
        methods = parse_methods(args.methods if args.methods else list(DEFAULT_METHODS))
    except ValueError as err:
        raise UserError(str(err)) from None
    device = resolve_device(args.device)
    if args.devices > 1:
        if args.device not in ("auto", "cpu"):
            raise UserError(f"--devices {args.devices} runs {args.devices} CPU processes; use --device cpu "
                            f"(or leave --device out), not {args.device}")
        device = "cpu"
    model = _load(args.weights, args.type, device)
    from hrcam.models.registry import model_types

    if model.kind in model_types("baseline") and not args.methods:
        methods = [model.kind]  # a CAM / L-CAM / CASM run explains itself by default
    net = model.net
    high = getattr(net, "has_high_res", False)
    if not high:
        wanted = [m for m in methods if m in HIGH_RES_METHODS]
        if wanted and args.methods:
            raise UserError(f"methods {','.join(wanted)} need full-model weights (these are {model.kind}-model weights)")
        methods = [m for m in methods if m not in HIGH_RES_METHODS]
    x, y, paths, skipped = load_split(args.data_dir, args.split, model.im_size, model.channels, args.limit,
                                      model.num_classes, num_workers=args.num_workers)
    gt = load_ground_truth_for(args.data_dir, args.split, paths, model.im_size)
    try:
        examples: dict = {}  # maps of the first images, for report.html's gallery
        rows = compare_methods(net, x, y, methods, gt, batch_size=args.batch_size, progress=not args.no_progress,
                               examples=examples, examples_count=args.gallery, devices=args.devices,
                               removal=args.removal)
    except ValueError as err:
        raise UserError(str(err)) from None
    out = Path(args.out) if args.out else Path(args.weights).parent / "compare"
    if Path(args.weights).is_dir() and not args.out:
        out = Path(args.weights) / "compare"
    meta = {"weights": str(args.weights), "data_dir": str(args.data_dir), "split": args.split,
            "images": int(x.shape[0]), "skipped_files": int(skipped), "im_size": model.im_size,
            "model_type": model.kind, "device": str(model.device), "ground_truth": gt is not None,
            "removal_baseline": args.removal}
    paths_out = write_table(rows, out, meta=meta)
    paths_out["html"] = write_html(rows, out, x, y, gt, examples, meta=meta,
                                   class_names=dataset_classes(args.data_dir))
    print(format_markdown(rows))
    if gt is None:
        print("no ground truth found (annotations.json or VOC XML): localization columns left out")
    print("written: " + ", ".join(str(p) for p in paths_out.values()))
    return 0
