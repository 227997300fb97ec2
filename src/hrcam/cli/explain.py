"""``hrcam explain``: CAMs (and refined CAMs) of a trained HR-CAM model for image files.

    hrcam explain IMAGE_OR_DIR... --weights W [--type full|half] [--class C] [--im_size S]
                  [--out DIR] [--refine] [--figure] [--format png,npy,mat]

Per image ``<name>`` in ``--out``: ``<name>_overlay.png`` (heat map of the high-res CAM — the
low-res one for a half model — on the image), the raw maps ``<name>_low.npy`` /
``<name>_high.npy``, with ``--refine`` the refined map ``<name>_refined.npy`` and
``<name>_refined_overlay.png``, with ``--figure`` the pipeline figure ``<name>_pipeline.png``, and
with ``mat`` in ``--format`` all maps in ``<name>.mat`` (as seed 002 saves raw maps). A
``summary.csv`` lists image, predicted class (index and name), its probability and the class the
maps explain. ``<name>`` mirrors the image's path relative to the inputs' common folder, without its
suffix (``a/img`` and ``b/img`` for ``a/img.png`` and ``b/img.png``), so every input gets its own outputs.
"""
from __future__ import annotations

import argparse
import csv
import warnings
from pathlib import Path

from hrcam.cli.common import add_num_workers, device_arg, positive_int, resolve_device
from hrcam.errors import UserError

FORMATS = ("png", "npy", "mat")
_DEFAULTS = {  # the pipeline's defaults (hrcam.postprocessing.params.DEFAULTS), without importing it
    "roi_percentile": 85.0, "focal_scope": "global", "maxima_areas": "small", "merge_type": "blend",
    "merge_alpha": 0.5, "filter_type": "percentage", "filter_percentage": 15.0, "filter_threshold": 0.6,
}


def _formats(text: str) -> tuple[str, ...]:
    items = tuple(dict.fromkeys(t.strip().lower() for t in text.split(",") if t.strip()))
    bad = [t for t in items if t not in FORMATS]
    if bad or not items:
        raise argparse.ArgumentTypeError(
            f"expected a comma list of {', '.join(FORMATS)}, got {text!r}")
    return items


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "explain", help="CAMs, overlays and refined CAMs of a trained model for image files",
        description=(
            "Per image NAME in --out: NAME_overlay.png (heat map of the high-res CAM, or of the "
            "low-res CAM for a half model, on the image), the raw maps NAME_low.npy / NAME_high.npy; "
            "with --refine the refined CAM NAME_refined.npy and NAME_refined_overlay.png; with "
            "--figure the pipeline figure NAME_pipeline.png; with mat in --format all maps in NAME.mat. "
            "summary.csv lists image, predicted class (index, name), probability and explained class. "
            "NAME is the image's path relative to the inputs' common folder, without its suffix."))
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_DIR",
                   help="image files and/or folders (searched recursively for images)")
    p.add_argument("--weights", "--weight_dir", dest="weights", required=True,
                   help="exported weights (results/<name>/best_weights.safetensors or that folder)")
    p.add_argument("--type", choices=("half", "full"), default=None,
                   help="model type; default: what the weights file records")
    p.add_argument("--class", dest="target", default=None,
                   help="class to explain, index or name (default: each image's predicted class)")
    p.add_argument("--im_size", type=positive_int, default=None,
                   help="resize images to this square size (default: the model's; a multiple of 32)")
    p.add_argument("--out", default="explanations", help="output folder (default: ./explanations)")
    p.add_argument("--refine", action="store_true",
                   help="also run the post-processing pipeline and save the refined CAM (full models)")
    p.add_argument("--figure", action="store_true",
                   help="also save the step-by-step pipeline figure per image (full models)")
    p.add_argument("--format", type=_formats, default=("png", "npy"),
                   help="comma list of outputs: png (overlays), npy (raw maps), mat (MATLAB file); "
                        "default: png,npy")
    p.add_argument("--alpha", type=float, default=0.5, help="heat-map opacity in the overlays (default: 0.5)")
    p.add_argument("--batch_size", type=positive_int, default=8, help="images per forward pass (default: 8)")
    p.add_argument("--device", default=None, type=device_arg,
                   help="torch device: cpu, cuda, cuda:1, mps or auto (default: cpu)")
    p.add_argument("--no_progress", action="store_true", help="hide the progress bar")
    add_num_workers(p)
    g = p.add_argument_group("post-processing pipeline (with --refine / --figure; seed defaults)")
    g.add_argument("--roi_percentile", type=float, default=_DEFAULTS["roi_percentile"])
    g.add_argument("--focal_scope", choices=("global", "local"), default=_DEFAULTS["focal_scope"])
    g.add_argument("--maxima_areas", choices=("small", "large"), default=_DEFAULTS["maxima_areas"])
    g.add_argument("--merge_type", choices=("blend", "multiply"), default=_DEFAULTS["merge_type"])
    g.add_argument("--merge_alpha", type=float, default=_DEFAULTS["merge_alpha"])
    g.add_argument("--filter_type", choices=("percentage", "threshold"), default=_DEFAULTS["filter_type"])
    g.add_argument("--filter_percentage", type=float, default=_DEFAULTS["filter_percentage"])
    g.add_argument("--filter_threshold", type=float, default=_DEFAULTS["filter_threshold"])
    p.set_defaults(func=run)


# ------------------------------------------------------------------------------------------ inputs
def _image_suffixes() -> set[str]:
    from PIL import Image

    Image.init()
    return {s.lower() for s in Image.registered_extensions()}


def collect_images(inputs) -> list[tuple[Path, bool]]:
    """``(path, named)`` for every input file and every image file under the input folders
    (sorted); ``named`` is True for files given on the command line."""
    suffixes = _image_suffixes()
    found: list[tuple[Path, bool]] = []
    for text in inputs:
        path = Path(text)
        if path.is_dir():
            files = sorted(f for f in path.rglob("*") if f.is_file() and f.suffix.lower() in suffixes
                           and not any(part.startswith(".") for part in f.relative_to(path).parts))
            if not files:
                raise UserError(f"no image files in folder {path}")
            found.extend((f, False) for f in files)
        elif path.is_file():
            found.append((path, True))
        else:
            raise UserError(f"no such file or folder: {path}")
    return found


def _printable(text: str) -> str:
    """``text`` with undecodable bytes of a file name (surrogate escapes) written as ``\\xNN``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _safe_part(text: str) -> str:
    """One output path component: undecodable bytes of a file name become ``_``."""
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace").replace("\ufffd", "_")


def _unique_names(paths) -> list[str]:
    """One distinct output name per input file, mirroring the inputs' relative paths.

    Names are paths relative to the inputs' common folder without the suffix (``a/img``,
    ``b/img``); two inputs that differ only by suffix keep it (``img_png``, ``img_jpg``); the same
    file given twice gets ``_2``, ``_3``, ... The used names are checked, so no suffix can collide
    with another input's own name.
    """
    import os

    paths = [Path(p) for p in paths]
    if not paths:
        return []
    parents = [os.path.abspath(p.parent) for p in paths]
    base = Path(os.path.commonpath(parents)) if len(set(parents)) > 1 else Path(parents[0])
    rel = [Path(os.path.relpath(os.path.abspath(p), base)) for p in paths]
    stems = [r.with_suffix("").as_posix() for r in rel]
    counts: dict[str, int] = {}
    for stem in stems:
        counts[stem] = counts.get(stem, 0) + 1
    names, used = [], set()
    for r, stem in zip(rel, stems):
        name = stem if counts[stem] == 1 else r.with_name(r.name.replace(".", "_")).as_posix()
        name = "/".join(_safe_part(part) for part in name.split("/"))
        candidate, k = name, 1
        while candidate in used:
            k += 1
            candidate = f"{name}_{k}"
        used.add(candidate)
        names.append(candidate)
    return names


def _resolve_class(target, model) -> int | None:
    if target is None:
        return None
    k = model.num_classes
    names = [str(n) for n in (model.class_names or [])]
    if target in names:
        return names.index(target)
    try:
        index = int(target)
    except ValueError:
        hint = f" (known names: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''})" if names else ""
        raise UserError(f"--class {target!r} is neither a class index nor a class name{hint}") from None
    if not 0 <= index < k:
        raise UserError(f"--class must be in 0..{k - 1}, got {index}")
    return index


# ------------------------------------------------------------------------------------------ run
def run(args) -> int:
    from tqdm.auto import tqdm

    from hrcam.api.seed import compute_cams, load_model
    from hrcam.data.loader import image_batches
    from hrcam.fileio import atomic_open, check_writable_dir
    from hrcam.postprocessing import refined_maps, validate_params

    names = list(_DEFAULTS)
    try:
        params = validate_params(**{k: getattr(args, k) for k in names}).as_dict()
    except ValueError as err:
        raise UserError(str(err)) from None
    if not 0 <= args.alpha <= 1:
        raise UserError(f"--alpha must be in [0, 1], got {args.alpha}")
    files = collect_images(args.inputs)
    out = check_writable_dir(args.out, "--out")

    model = load_model(args.weights, type=args.type, device=resolve_device(args.device or "cpu"))
    full = getattr(model, "kind", "half") == "full"
    if (args.refine or args.figure) and not full:
        raise UserError("--refine and --figure need a full model's high-res maps "
                        "(weights from 'hrcam train full', or leave --type half out)")
    im_size = args.im_size or model.im_size
    if im_size % 32:
        raise UserError(f"--im_size must be a multiple of 32 for these networks, got {im_size}")
    target = _resolve_class(args.target, model)
    channels = model.net.config.in_channels

    stems = _unique_names([f for f, _ in files])
    rows, skipped = [], []
    bar = tqdm(total=len(files), unit="image", desc="explain", disable=args.no_progress)
    loader = image_batches([f for f, _ in files], im_size, channels, args.batch_size, args.num_workers)
    for batch in loader:  # in input order; a file that fails to decode comes back in batch.failed
        for k, err in batch.failed:
            path, named = files[k]
            if named:
                raise UserError(f"cannot read image {_printable(str(path))}: {err}")
            skipped.append(path)
            warnings.warn(f"skipping unreadable image {_printable(str(path))}: {err}",
                          stacklevel=1)
        bar.update(len(batch.indices) + len(batch.failed))
        if batch.images is None:
            continue
        kept = [(files[k][0], stems[k]) for k in batch.indices]
        x = batch.images.to(model.device)
        res = compute_cams(model.net, x, None if target is None else [target] * len(kept), high=full)
        probs = res.probs.cpu().numpy()
        lows = res.low.cpu().numpy()
        highs = res.high.cpu().numpy() if full else None
        imgs = x.permute(0, 2, 3, 1).cpu().numpy()
        refined = None
        if args.refine:
            refined = refined_maps(imgs, lows, highs, **params)
        for i, (path, stem) in enumerate(kept):
            maps = {"low": lows[i]}
            if full:
                maps["high"] = highs[i]
            if refined is not None:
                maps["refined"] = refined[i]
            _save_outputs(out, stem, imgs[i], maps, args, params)
            pred = int(probs[i].argmax())
            rows.append({
                "image": _printable(str(path)), "output": stem, "predicted_class": pred,
                "predicted_name": model.class_name(pred), "probability": f"{probs[i, pred]:.6f}",
                "explained_class": int(res.classes[i]),
            })
    bar.close()
    summary = out / "summary.csv"
    with atomic_open(summary, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=["image", "output", "predicted_class", "predicted_name",
                                                "probability", "explained_class"])
        writer.writeheader()
        writer.writerows(rows)
    note = f" ({len(skipped)} unreadable skipped)" if skipped else ""
    print(f"explained {len(rows)} image(s){note} -> {out}/ (summary: {summary})")
    return 0


def _save_outputs(out: Path, stem: str, img, maps: dict, args, params: dict) -> None:
    import numpy as np

    from hrcam.fileio import atomic_path
    from hrcam.viz import plotting

    shown = maps.get("high", maps["low"])
    if "png" in args.format:
        with atomic_path(out / f"{stem}_overlay.png") as tmp:
            plotting.save_overlay(tmp, img, shown, alpha=args.alpha)
        if "refined" in maps:
            with atomic_path(out / f"{stem}_refined_overlay.png") as tmp:
                plotting.save_overlay(tmp, img, maps["refined"], alpha=args.alpha)
    if "npy" in args.format:
        for key, value in maps.items():
            with atomic_path(out / f"{stem}_{key}.npy") as tmp:
                np.save(tmp, value)
    if "mat" in args.format:
        from scipy.io import savemat

        with atomic_path(out / f"{stem}.mat") as tmp:
            savemat(tmp, {k: np.asarray(v, dtype=np.float64) for k, v in maps.items()})
    if args.figure:
        with atomic_path(out / f"{stem}_pipeline.png") as tmp:
            plotting.pipeline(img, maps["low"], maps["high"], save=tmp, **params)
