"""Built-in demo data: "digits on textures" (DESIGN §7), with exact localization ground truth.

Each sample is a real handwritten digit from scikit-learn's bundled digits set (1,797 images of
8×8 pixels, values 0..16, 10 classes), upscaled smoothly (bicubic) to a random size of
``digit_scale`` (default 40–75 %) of the image side (optionally slanted by a random rotation,
``max_rotation``, off by default), turned into a soft alpha mask and
alpha-composited at a random place onto a random, randomly tinted crop of one of scikit-image's
bundled grayscale texture photos (``brick``, ``grass``, ``gravel``). The digit's colour is drawn
at random until its luminance differs from the mean luminance of the background under it by at
least ``min_contrast`` (so the digit stays visible; after 100 failed draws it is black or white,
whichever stands out more). Nothing is downloaded.

Distractors (``distractors=N``, off by default): N fragments of *other* classes' digits — a
random rectangular crop covering 30–60 % of another digit's glyph box, never a whole digit — in
the target's colour, placed beside the target without touching it (up to 20 placements each;
skipped when none fits). They make the colour alone useless for finding the digit: a map has to
tell the class's shape from the fragments. The ground truth stays the target's only.

Ground truth: the class is the digit; the mask is ``alpha > 0.5``; the box is the mask's tight
bounding box ``[x0, y0, x1, y1]`` in pixel coordinates, x0/y0 inclusive and x1/y1 exclusive
(so ``x1 - x0`` is the box width). The digit images are split once (seeded) into a train pool and
a disjoint test pool, so test samples show handwriting the classifier never saw.

Layout written by :func:`build_demo_dataset` (the user-data layout of DESIGN §7 plus ground truth)::

    out/train/<digit>/NNNNN.png        RGB images, size × size
    out/test/<digit>/NNNNN.png
    out/masks/<split>/<digit>/NNNNN.png  8-bit masks, 255 = digit (alpha > 0.5), 0 = background
    out/annotations.json               {"train/3/00012.png": {"label": 3, "boxes": [[x0, y0, x1, y1]],
                                                               "mask": "masks/train/3/00012.png"}, ...}
    out/demo_info.json                 the generator's parameters and counts

Same parameters and seed → byte-identical files.
"""
from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from hrcam.fileio import write_text

__all__ = [
    "TEXTURES",
    "DemoSample",
    "DIGIT_CLASSES",
    "load_digit_pools",
    "make_sample",
    "build_demo_dataset",
    "demo_dataset_exists",
]

TEXTURES = ("brick", "grass", "gravel")
DIGIT_CLASSES = tuple(str(d) for d in range(10))
# Bump whenever the generator's output changes, so that stale demo folders are rebuilt.
FORMAT_VERSION = 4
# Rec. 601 luma weights: the "luminance" whose contrast keeps the digit visible.
_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float64)


@dataclass(frozen=True)
class DemoSample:
    """One generated sample: ``image`` uint8 H×W×3, ``mask`` bool H×W, ``box`` [x0, y0, x1, y1]."""

    image: np.ndarray
    mask: np.ndarray
    box: tuple[int, int, int, int]
    label: int
    distractors: int = 0  #: distractor fragments placed


@lru_cache(maxsize=1)
def _digits() -> tuple[np.ndarray, np.ndarray]:
    from sklearn.datasets import load_digits

    data = load_digits()
    return data.images.astype(np.float64) / 16.0, data.target.astype(np.int64)


@lru_cache(maxsize=1)
def _textures() -> tuple[np.ndarray, ...]:
    import skimage.data

    return tuple(getattr(skimage.data, name)().astype(np.float64) / 255.0 for name in TEXTURES)


def load_digit_pools(seed: int = 0, test_fraction: float = 0.2) -> dict[str, np.ndarray]:
    """Indices into scikit-learn's digits, split (seeded, stratified by class) into disjoint pools.

    Returns ``{"train": idx, "test": idx}``; ``test_fraction`` of each class goes to ``test``.
    """
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in (0, 1), got {test_fraction}")
    _, targets = _digits()
    rng = np.random.default_rng([seed, 7919])
    train, test = [], []
    for digit in range(10):
        idx = np.flatnonzero(targets == digit)
        idx = idx[rng.permutation(len(idx))]
        n_test = int(round(test_fraction * len(idx)))
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return {"train": np.sort(np.concatenate(train)), "test": np.sort(np.concatenate(test))}


def _resize(a: np.ndarray, size: tuple[int, int], resample: int) -> np.ndarray:
    """Resize a float 2-D array to ``size = (height, width)`` with PIL (deterministic)."""
    img = Image.fromarray(np.ascontiguousarray(a, dtype=np.float32))  # mode "F"
    return np.asarray(img.resize((size[1], size[0]), resample=resample), dtype=np.float64)


def _random_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.0, 1.0, size=3)


def _textured_background(rng: np.random.Generator, size: int, amplitude: tuple[float, float]) -> np.ndarray:
    """A random crop of a random texture photo, resized to size×size and tinted:
    ``bg = clip(base + a · (g − 0.5) · tint, 0, 1)`` with ``g`` the contrast-stretched gray crop
    (1st..99th percentile → 0..1), ``base`` and ``tint`` random colours and ``a`` drawn from
    ``amplitude`` (how strongly the texture shows)."""
    textures = _textures()
    tex = textures[int(rng.integers(len(textures)))]
    side = int(rng.integers(min(96, tex.shape[0]), min(320, tex.shape[0]) + 1))
    y = int(rng.integers(0, tex.shape[0] - side + 1))
    x = int(rng.integers(0, tex.shape[1] - side + 1))
    crop = tex[y : y + side, x : x + side]
    if rng.random() < 0.5:
        crop = crop.T
    g = _resize(crop, (size, size), Image.BILINEAR)
    lo, hi = np.percentile(g, [1, 99])
    g = np.clip((g - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    base = _random_colour(rng)
    tint = rng.uniform(0.3, 1.0, size=3)
    a = rng.uniform(*amplitude)
    return np.clip(base + a * (g[..., None] - 0.5) * tint, 0.0, 1.0)


def make_sample(
    rng: np.random.Generator,
    digit_index: int,
    size: int = 64,
    digit_scale: tuple[float, float] = (0.40, 0.75),
    min_contrast: float = 0.5,
    texture_amplitude: tuple[float, float] = (0.1, 0.35),
    max_rotation: float = 0.0,
    distractors: int = 0,
    distractor_indices=None,
) -> DemoSample:
    """Compose one digit (``digit_index`` into scikit-learn's digits) on a random texture.

    Alpha mask: the bicubic-upscaled digit intensity ``v`` ∈ [0, 1] mapped by
    ``alpha = clip((v - 0.35) / 0.3, 0, 1)`` (soft edge, ``alpha > 0.5`` ⇔ ``v > 0.5``).
    Image: ``alpha · colour + (1 - alpha) · background``, rounded to uint8.

    ``distractors``: fragments of other classes' digits (drawn from ``distractor_indices``,
    default all digits) added in the same colour beside the target (module docstring); with 0
    nothing is drawn from ``rng`` for them, so the sample is the same as without the option.
    """
    if not isinstance(distractors, (int, np.integer)) or isinstance(distractors, bool) or distractors < 0:
        raise ValueError(f"distractors must be an integer >= 0, got {distractors!r}")
    if size < 16:
        raise ValueError(f"size must be at least 16 pixels, got {size}")
    lo, hi = digit_scale
    if not 0.0 < lo <= hi <= 1.0:
        raise ValueError(f"digit_scale must satisfy 0 < low <= high <= 1, got {digit_scale}")
    images, targets = _digits()
    glyph = images[digit_index]
    label = int(targets[digit_index])

    background = _textured_background(rng, size, texture_amplitude)
    side = int(round(rng.uniform(lo, hi) * size))
    side = max(8, min(side, size))
    # Slight random aspect change (±15 %) so digits are not all square.
    aspect = rng.uniform(0.85, 1.15)
    height = max(8, min(size, int(round(side * aspect))))
    width = max(8, min(size, int(round(side / aspect))))
    v = np.clip(_resize(glyph, (height, width), Image.BICUBIC), 0.0, 1.0)
    # A small random slant (rotation by ±max_rotation degrees) varies the handwriting further.
    if max_rotation > 0:
        angle = float(rng.uniform(-max_rotation, max_rotation))
        rotated = Image.fromarray(v.astype(np.float32)).rotate(angle, resample=Image.BICUBIC, expand=True)
        v = np.clip(np.asarray(rotated, dtype=np.float64), 0.0, 1.0)
        if max(v.shape) > size:  # keep it inside the image
            scale = size / max(v.shape)
            v = np.clip(_resize(v, (max(8, int(v.shape[0] * scale)), max(8, int(v.shape[1] * scale))),
                                Image.BICUBIC), 0.0, 1.0)
        height, width = v.shape
    alpha_patch = np.clip((v - 0.35) / 0.3, 0.0, 1.0)
    y0 = int(rng.integers(0, size - height + 1))
    x0 = int(rng.integers(0, size - width + 1))
    alpha = np.zeros((size, size), dtype=np.float64)
    alpha[y0 : y0 + height, x0 : x0 + width] = alpha_patch
    mask = alpha > 0.5

    bg_luma = float((background[mask] @ _LUMA).mean()) if mask.any() else 0.5
    colour = None
    for _ in range(100):
        candidate = _random_colour(rng)
        if abs(float(candidate @ _LUMA) - bg_luma) >= min_contrast:
            colour = candidate
            break
    if colour is None:  # fall back to black or white, whichever stands out more
        colour = np.zeros(3) if bg_luma > 0.5 else np.ones(3)
    placed = 0
    if distractors:
        extra, placed = _distractor_alpha(rng, alpha, label, int(distractors), distractor_indices, (lo, hi))
        alpha_all = alpha + extra  # disjoint supports: the sum stays within [0, 1]
    else:
        alpha_all = alpha
    image = alpha_all[..., None] * colour + (1.0 - alpha_all[..., None]) * background
    image = np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)

    ys, xs = np.nonzero(mask)
    if len(ys) == 0:  # cannot happen for the bundled digits at >= 8 px, kept for safety
        box = (0, 0, 0, 0)
    else:
        box = (int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1)
    return DemoSample(image=image, mask=mask, box=box, label=label, distractors=placed)


def _fragment(rng: np.random.Generator, glyph: np.ndarray, size: int, scale: tuple[float, float]) -> np.ndarray:
    """Alpha of a random crop covering 30–60 % of a glyph upscaled like a target digit."""
    side = max(8, min(size, int(round(rng.uniform(*scale) * size))))
    v = np.clip(_resize(glyph, (side, side), Image.BICUBIC), 0.0, 1.0)
    a = np.clip((v - 0.35) / 0.3, 0.0, 1.0)
    best = None
    for _ in range(10):  # a crop with some ink in it
        share = rng.uniform(0.3, 0.6)
        ratio = rng.uniform(0.6, 1.6)
        h = int(np.clip(round(side * np.sqrt(share * ratio)), 2, side))
        w = int(np.clip(round(side * side * share / h), 2, side))
        y = int(rng.integers(0, side - h + 1))
        x = int(rng.integers(0, side - w + 1))
        crop = a[y : y + h, x : x + w]
        if best is None or (crop > 0.5).sum() > (best > 0.5).sum():
            best = crop
        if (crop > 0.5).sum() >= 0.15 * max(1, (a > 0.5).sum()):
            break
    return best


def _distractor_alpha(rng, target_alpha: np.ndarray, label: int, count: int, indices, scale
                      ) -> tuple[np.ndarray, int]:
    """``(alpha of the placed fragments H×W, number placed)``; fragments never touch the
    target (its footprint grown by 1 px) nor each other."""
    from scipy import ndimage

    images, targets = _digits()
    pool = np.arange(len(targets)) if indices is None else np.asarray(indices, dtype=np.int64)
    others = pool[targets[pool] != label]
    size = target_alpha.shape[0]
    out = np.zeros_like(target_alpha)
    blocked = ndimage.binary_dilation(target_alpha > 0, structure=np.ones((3, 3), bool))
    placed = 0
    for _ in range(count):
        if len(others) == 0:
            break
        frag = _fragment(rng, images[int(others[rng.integers(len(others))])], size, scale)
        h, w = frag.shape
        foot = frag > 0
        for _ in range(20):
            y = int(rng.integers(0, size - h + 1))
            x = int(rng.integers(0, size - w + 1))
            if not (blocked[y : y + h, x : x + w] & foot).any():
                out[y : y + h, x : x + w] = np.maximum(out[y : y + h, x : x + w], frag)
                blocked[y : y + h, x : x + w] |= ndimage.binary_dilation(foot, structure=np.ones((3, 3), bool))
                placed += 1
                break
    return out, placed


def _info(size: int, train: int, test: int, seed: int, distractors: int = 0, placed: int = 0) -> dict:
    info = {
        "format": "hrcam-demo",
        "version": FORMAT_VERSION,
        "size": size,
        "train": train,
        "test": test,
        "seed": seed,
        "classes": list(DIGIT_CLASSES),
        "box_format": "[x0, y0, x1, y1] pixels; x0, y0 inclusive, x1, y1 exclusive",
        "mask_rule": "alpha > 0.5 (255 in the mask PNG)",
        "textures": list(TEXTURES),
    }
    if distractors:  # only then: the default set's demo_info.json stays byte-identical
        info["distractors"] = distractors
        info["distractor_rule"] = ("same-coloured crops covering 30-60 % of other classes' digits, "
                                   "not touching the target; not in the masks or boxes")
        info["distractors_placed"] = placed
    return info


def demo_dataset_exists(out, size: int | None = None, train: int | None = None,
                        test: int | None = None, seed: int | None = None, distractors: int | None = None) -> bool:
    """True when ``out`` holds a complete demo set (``demo_info.json`` written last) whose
    parameters match the ones given (``None`` = any; a set without the key has 0 distractors)."""
    info_path = Path(out) / "demo_info.json"
    if not info_path.is_file() or not (Path(out) / "annotations.json").is_file():
        return False
    try:
        info = json.loads(info_path.read_text())
    except (OSError, ValueError):
        return False
    wanted = {"size": size, "train": train, "test": test, "seed": seed, "version": FORMAT_VERSION}
    if distractors is not None and info.get("distractors", 0) != distractors:
        return False
    return all(v is None or info.get(k) == v for k, v in wanted.items())


def build_demo_dataset(
    out,
    size: int = 64,
    train: int = 4000,
    test: int = 500,
    seed: int = 0,
    progress: bool = True,
    overwrite: bool = False,
    distractors: int = 0,
) -> Path:
    """Write the demo set to ``out`` (layout in the module docstring) and return ``out``.

    ``distractors``: fragments of other digits per image (module docstring), drawn from the same
    split's digit pool; recorded in ``demo_info.json`` (with 0, the default, the files are the
    same as before the option existed).

    Sample ``i`` of a split is drawn from its own generator ``default_rng([seed, split, i])``,
    its class is ``i mod 10`` and its digit cycles through that class's shuffled pool, so the result depends only on the
    arguments.

    ``out`` may be missing, empty, or a folder this function wrote before (it holds the
    :data:`MARKER` file or ``demo_info.json``): then only the demo's own files (``train/<digit>/NNNNN.png``,
    the matching masks, ``annotations.json``, ``demo_info.json``) are replaced and anything else
    a user put there stays. Any other non-empty folder raises ``ValueError`` unless
    ``overwrite=True``, which replaces its ``train/``, ``test/`` and ``masks/`` folders.
    """
    from tqdm.auto import tqdm

    for name, value, low in (("size", size, 16), ("train", train, 1), ("test", test, 1), ("distractors", distractors, 0)):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < low:
            raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
    out = Path(out)
    _prepare_out(out, overwrite)
    (out / MARKER).write_text("written by 'hrcam data demo'; its demo files may be replaced by the next build\n")

    pools = load_digit_pools(seed)
    _, targets = _digits()
    annotations: dict[str, dict] = {}
    placed = 0
    for split_id, (split, count) in enumerate((("train", train), ("test", test))):
        # Sample i shows digit class i mod 10 (balanced classes, all present once count >= 10);
        # the class's examples are used in a seeded shuffled order, cycling when exhausted.
        order_rng = np.random.default_rng([seed, split_id, 104729])
        pool = pools[split]
        by_class = [pool[targets[pool] == d] for d in range(10)]
        by_class = [idx[order_rng.permutation(len(idx))] for idx in by_class]
        for i in tqdm(range(count), desc=f"demo data ({split})", disable=not progress, leave=False):
            rng = np.random.default_rng([seed, split_id, i])
            idx = by_class[i % 10]
            sample = make_sample(rng, int(idx[(i // 10) % len(idx)]), size=size, distractors=distractors,
                                 distractor_indices=pool)
            placed += sample.distractors
            rel = f"{split}/{sample.label}/{i:05d}.png"
            mask_rel = f"masks/{split}/{sample.label}/{i:05d}.png"
            for path, array in ((rel, sample.image), (mask_rel, sample.mask.astype(np.uint8) * 255)):
                (out / path).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(out / path, format="PNG")
            annotations[rel] = {"label": sample.label, "boxes": [list(sample.box)], "mask": mask_rel}
    write_text(out / "annotations.json", json.dumps(annotations, indent=1, sort_keys=True))
    write_text(out / "demo_info.json", json.dumps(_info(size, train, test, seed, distractors, placed), indent=1))
    return out


#: the file that marks a folder as written by :func:`build_demo_dataset` (written first)
MARKER = ".hrcam-demo-data"
_OWN_FILE = re.compile(r"^(masks/)?(train|test)/[0-9]/[0-9]{5}\.png$")


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready for a build without deleting anything the user put there."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} exists and is not a folder")
    if not out.exists() or not any(out.iterdir()):
        try:
            out.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise ValueError(f"cannot create {out}: {err.strerror or err}") from None
        return
    ours = (out / MARKER).is_file() or (out / "demo_info.json").is_file()
    if not ours and not overwrite:
        raise ValueError(f"--out {out} is not empty and was not written by 'hrcam data demo' (no {MARKER} "
                         "file); choose an empty or new folder, or give --overwrite to replace its train/, "
                         "test/ and masks/")
    if not ours:
        for name in ("train", "test", "masks"):
            if (out / name).is_dir():
                shutil.rmtree(out / name)
        return
    for name in ("annotations.json", "demo_info.json"):
        (out / name).unlink(missing_ok=True)
    for top in ("train", "test", "masks"):
        root = out / top
        if not root.is_dir():
            continue
        for path in sorted(root.rglob("*"), reverse=True):
            rel = path.relative_to(out).as_posix()
            if path.is_file() and _OWN_FILE.match(rel):
                path.unlink()
            elif path.is_dir() and not any(path.iterdir()):
                path.rmdir()
        if not any(root.iterdir()):
            root.rmdir()
