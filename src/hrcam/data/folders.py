"""Class-folder image datasets (``DIR/<split>/<class>/<image>``) and the seed's ``read_image``.

Layout (DESIGN §7)::

    data_dir/train/<class>/<image>    data_dir/test/<class>/<image>

Classes are the sub-folders of a split in sorted order, unless a class list is forced with
``classes=`` (train and test must agree on it; see :func:`dataset_classes`). Any format PIL reads
is accepted. Every image is converted to float32 ``C×H×W`` in [0, 1]:

- palette (``P``) images are expanded to RGB (RGBA when they have a transparent colour);
- alpha (``RGBA``, ``LA``, ``PA``) is composited on **black**: ``rgb · alpha`` (transparent pixels
  become 0, the same fill value the augmentation uses), then dropped;
- ``CMYK``, ``YCbCr``, ``LAB``, ``HSV`` are converted by PIL to RGB; 1-bit images to grayscale;
- 16-bit grayscale (``I;16*`` and PIL's 32-bit ``I`` mode, which holds 16-bit PNGs) is divided by
  65535 and clipped; float (``F``) images are taken as already in [0, 1] and clipped;
- ``channels=1`` uses the ITU-R 601-2 luma ``0.299 R + 0.587 G + 0.114 B``; ``channels=3``
  repeats a grayscale image three times;
- ``im_size`` resizes to ``im_size × im_size`` (bilinear with antialiasing, aspect ratio not kept,
  as the seed's Keras loader did).

Decoders: :func:`load_image` decodes with PIL (``decoder="pil"``, the default) or, with
``decoder="auto"`` (what ``evaluate``, ``explain`` and ``compare`` use), 8-bit JPEG (grayscale or
RGB) and 8-bit PNG (gray, gray + alpha, RGB, RGBA; not palette, not interlaced, no ``tRNS``) with
``torchvision.io.decode_image``, which is faster. Both decode with the same libraries here
(libjpeg-turbo, zlib) and give **the same pixels, bit for bit** (``tests/data/test_decode.py``
checks JPEG at qualities 50–100 with every chroma subsampling, progressive JPEG, grayscale, and
PNG in every mode against PIL). Everything else (palette, 16-bit, 1-bit, CMYK JPEG, other
formats), and any file ``decode_image`` rejects, goes to PIL, so a file is bad exactly when PIL
cannot decode it.

Unreadable files never stop an epoch: at scan time a cheap header check (``PIL.Image.open``
without decoding) skips non-images (counted in ``.skipped`` / ``.skipped_files``); a file whose
pixels fail to decode later is replaced by the next readable sample (see
:meth:`ClassFolderDataset.__getitem__`).
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

from hrcam.data.layout import (  # noqa: F401 - re-exported: the README's import path
    DATA_DIR_ENV,
    _visible,
    dataset_classes,
    find_split,
    list_class_folders,
)
from hrcam.errors import UserError

__all__ = [
    "ClassFolderDataset",
    "load_image",
    "find_split",
    "list_class_folders",
    "dataset_classes",
    "read_image",
    "DATA_DIR_ENV",
]


_LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


def _image_extensions() -> set[str]:
    from PIL import Image

    Image.init()
    return {ext.lower() for ext in Image.registered_extensions()}


def _is_image_header(path: Path) -> bool:
    """True when PIL recognises the file's header (no pixel decoding)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return im.width > 0 and im.height > 0
    except Exception:  # UnidentifiedImageError, OSError, a plugin's own error: not an image
        return False


def _to_float_array(im) -> np.ndarray:
    """A PIL image as float32 ``H×W×c`` (c = 1 or 3) in [0, 1]; see the module docstring."""
    mode = im.mode
    if mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    elif mode == "PA":
        im = im.convert("RGBA")
    elif mode == "1":
        im = im.convert("L")
    elif mode in ("CMYK", "YCbCr", "LAB", "HSV", "RGBX"):
        im = im.convert("RGB")
    mode = im.mode
    if mode in ("RGBA", "RGBa", "LA", "La"):
        arr = np.asarray(im, dtype=np.float32) / 255.0
        if mode in ("RGBa", "La"):  # premultiplied alpha: the colour already is "on black"
            return np.ascontiguousarray(arr[..., :-1])
        return np.ascontiguousarray(arr[..., :-1] * arr[..., -1:])  # composite on black
    if mode in ("L", "RGB"):
        arr = np.asarray(im, dtype=np.float32) / 255.0
    elif mode.startswith("I;16") or mode == "I":
        arr = np.clip(np.asarray(im).astype(np.float32) / 65535.0, 0.0, 1.0)
    elif mode == "F":
        arr = np.clip(np.asarray(im, dtype=np.float32), 0.0, 1.0)
    else:
        arr = np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0
    if arr.ndim == 2:
        arr = arr[..., None]
    return arr


_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"
DECODERS = ("pil", "auto")


def _png_is_plain(data: bytes) -> bool:
    """True for an 8-bit, non-interlaced PNG in gray, gray + alpha, RGB or RGBA without a ``tRNS``
    chunk: the PNGs whose pixels ``decode_image`` gives exactly as PIL does (palette PNGs come
    back as indices, 1/2/4-bit gray is scaled differently; those go to PIL)."""
    if len(data) < 33 or data[12:16] != b"IHDR":
        return False
    depth, colour, interlace = data[24], data[25], data[28]
    if depth != 8 or colour not in (0, 2, 4, 6) or interlace != 0:
        return False
    pos = 8
    while pos + 8 <= len(data):  # tRNS, when present, comes before the first IDAT
        kind = data[pos + 4 : pos + 8]
        if kind == b"tRNS":
            return False
        if kind == b"IDAT":
            return True
        pos += 12 + int.from_bytes(data[pos : pos + 4], "big")
    return False


def _decode_fast(path) -> np.ndarray | None:
    """``H×W×c`` float32 in [0, 1] as :func:`_to_float_array` gives it, decoded by
    ``torchvision.io.decode_image``; None when the file is not a JPEG/PNG this path takes, or when
    ``decode_image`` rejects it (the caller then asks PIL, which decides whether the file is bad)."""
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError:
        return None
    if data[:3] == _JPEG_MAGIC:
        jpeg = True
    elif data[:8] == _PNG_MAGIC and _png_is_plain(data):
        jpeg = False
    else:
        return None
    try:
        from torchvision.io import ImageReadMode, decode_image

        t = decode_image(torch.frombuffer(bytearray(data), dtype=torch.uint8), mode=ImageReadMode.UNCHANGED)
    except Exception:  # noqa: BLE001 - decode_image refuses it: PIL has the last word
        return None
    c = int(t.shape[0])
    if t.dtype != torch.uint8 or t.ndim != 3 or c not in ((1, 3) if jpeg else (1, 2, 3, 4)):
        return None  # a CMYK / YCCK JPEG (PIL converts those), or anything unexpected
    # the same arithmetic as the PIL path: float32 / 255, alpha composited on black
    arr = t.permute(1, 2, 0).numpy().astype(np.float32) / 255.0
    if c in (2, 4):
        return np.ascontiguousarray(arr[..., :-1] * arr[..., -1:])
    return arr


def decode_array(path: str | os.PathLike, channels: int = 3, decoder: str = "pil") -> np.ndarray:
    """Decode one image file into a float32 ``H×W×channels`` array in [0, 1] (:func:`load_image`
    without the layout change and the resize; same ``decoder`` choices and errors)."""
    from PIL import Image

    if channels not in (1, 3):
        raise ValueError(f"channels must be 1 or 3, got {channels}")
    if decoder not in DECODERS:
        raise ValueError(f"decoder must be one of {', '.join(DECODERS)}, got {decoder!r}")
    arr = _decode_fast(path) if decoder == "auto" else None
    if arr is None:
        with Image.open(path) as im:
            im.load()
            arr = _to_float_array(im)
    if channels == 1 and arr.shape[-1] == 3:
        arr = (arr @ _LUMA)[..., None]
    elif channels == 3 and arr.shape[-1] == 1:
        arr = np.repeat(arr, 3, axis=-1)
    return arr


def load_image(path: str | os.PathLike, im_size: int | None = None, channels: int = 3,
               decoder: str = "pil") -> torch.Tensor:
    """Decode one image file into float32 ``channels×H×W`` in [0, 1] (resized when ``im_size``).

    ``decoder``: ``"pil"`` (default) or ``"auto"``: plain 8-bit JPEG/PNG through
    ``torchvision.io.decode_image`` (faster, the same pixels; module docstring), the rest and any
    file it rejects through PIL. Raises whatever PIL raises for a file it cannot decode
    (``OSError``, ...).
    """
    arr = decode_array(path, channels, decoder)
    # H×W×C → C×H×W in NumPy: one single-threaded copy (torch's permuted copy with several
    # threads costs 1-15 ms per 224 px image on a busy 2-core machine; NumPy's ~0.3 ms)
    t = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
    if im_size is not None and tuple(t.shape[1:]) != (im_size, im_size):
        t = torch.nn.functional.interpolate(
            t[None], size=(im_size, im_size), mode="bilinear", align_corners=False, antialias=True
        )[0].clamp_(0.0, 1.0)
    return t


class ClassFolderDataset(torch.utils.data.Dataset):
    """Images in ``root/<class>/*`` with integer labels (the class's position in :attr:`classes`).

    Parameters
    ----------
    root:
        a split folder, e.g. ``data_dir/train``.
    im_size:
        side of the square output (bilinear, antialiased); ``None`` keeps each image's size.
    channels:
        1 (grayscale) or 3 (RGB); every input mode is converted (module docstring).
    transform:
        callable applied to the ``C×H×W`` tensor after conversion (e.g. the augmentation).
    classes:
        force the class list and order (so test labels match train); files in folders not in
        the list are ignored, and a listed class without a folder simply has no samples.
        Default: the sorted sub-folders of ``root``.
    check_headers:
        open every file's header at scan time and skip non-images (default). ``False`` keeps
        files whose extension PIL knows, without opening them (faster on huge folders: the
        header check costs about 40 µs per file, some 20 s for ImageNet's 500k images).
    progress:
        progress bar over the class folders during the scan; ``None`` (default) shows it when
        there are 50 classes or more.

    Attributes: ``classes``, ``class_to_idx``, ``samples`` (list of ``(path, label)``),
    ``targets``, ``skipped`` / ``skipped_files`` (non-images found at scan time),
    ``decode_failures`` / ``failed_files`` (files that failed to decode in ``__getitem__``).

    ``__getitem__`` returns ``(image, label)``. When sample ``i`` cannot be decoded it is
    counted, a warning names the file, and sample ``(i + 1) mod n`` is tried instead (then
    ``i + 2``, ...), so a bad file never crashes an epoch and the substitute is deterministic; the
    returned label is the substitute's. Known-bad files are not decoded again. Counts live in the
    process that met the failure: with ``DataLoader(num_workers > 0)`` each worker has its own
    copy of the dataset, so the main process's ``decode_failures`` stays 0 and the workers'
    warnings (printed to stderr) are the record; use ``num_workers=0`` to collect exact counts.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        im_size: int | None = None,
        channels: int = 3,
        transform: Callable | None = None,
        classes: Sequence[str] | None = None,
        check_headers: bool = True,
        progress: bool | None = None,
    ):
        root = Path(root)
        if not root.is_dir():
            raise UserError(f"image folder not found: {root}")
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        if im_size is not None and (int(im_size) != im_size or im_size < 1):
            raise ValueError(f"im_size must be a positive integer or None, got {im_size}")
        self.root = root
        self.im_size = None if im_size is None else int(im_size)
        self.channels = channels
        self.transform = transform
        if classes is None:
            classes = list_class_folders(root)
        else:
            classes = [str(c) for c in classes]
            if len(set(classes)) != len(classes):
                raise ValueError("classes contains duplicates")
        if not classes:
            raise UserError(f"no class folders in {root} (expected {root}/<class>/<images>)")
        self.classes = classes
        self.class_to_idx = {c: i for i, c in enumerate(classes)}
        self.samples: list[tuple[str, int]] = []
        self.skipped_files: list[str] = []
        extensions = None if check_headers else _image_extensions()
        from tqdm.auto import tqdm

        show = len(classes) >= 50 if progress is None else bool(progress)
        for label, name in enumerate(
            tqdm(classes, desc=f"scanning {root.name}", unit="class", disable=not show, leave=False)
        ):
            folder = root / name
            if not folder.is_dir():
                continue
            for entry in sorted(os.scandir(folder), key=lambda e: e.name):
                if not _visible(entry.name) or not entry.is_file():
                    continue
                path = Path(entry.path)
                if extensions is not None:
                    ok = path.suffix.lower() in extensions
                else:
                    ok = _is_image_header(path)
                if ok:
                    self.samples.append((str(path), label))
                else:
                    self.skipped_files.append(str(path))
        if not self.samples:
            raise UserError(f"no readable images in {root} (looked in {len(classes)} class folders)")
        self.targets = [label for _, label in self.samples]
        self.decode_failures = 0
        self.failed_files: list[str] = []
        self._bad: set[int] = set()

    @property
    def skipped(self) -> int:
        """Number of files skipped at scan time because they are not images."""
        return len(self.skipped_files)

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def __len__(self) -> int:
        return len(self.samples)

    def load(self, index: int) -> torch.Tensor:
        """Decode sample ``index`` (no substitution, no transform); raises on a bad file."""
        path, _ = self.samples[index]
        return load_image(path, self.im_size, self.channels)

    def __getitem__(self, index: int):
        n = len(self.samples)
        if not -n <= index < n:
            raise IndexError(f"index {index} out of range for {n} samples")
        index %= n
        for step in range(n):
            j = (index + step) % n
            if j in self._bad:
                continue
            try:
                x = self.load(j)
            except Exception as err:  # any decoder error: count, warn, substitute
                self._bad.add(j)
                self.decode_failures += 1
                self.failed_files.append(self.samples[j][0])
                warnings.warn(
                    f"hrcam: could not decode {self.samples[j][0]} ({type(err).__name__}: {err}); "
                    "using the next image instead",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            if self.transform is not None:
                x = self.transform(x)
            return x, self.samples[j][1]
        raise RuntimeError(f"none of the {n} images in {self.root} could be decoded")

    def __repr__(self) -> str:
        return (
            f"ClassFolderDataset(root={str(self.root)!r}, samples={len(self)}, "
            f"classes={self.num_classes}, im_size={self.im_size}, channels={self.channels}, "
            f"skipped={self.skipped})"
        )


def read_image(
    ind: int | None = None,
    return_class_name: bool = False,
    data_dir: str | os.PathLike | None = None,
    split: str = "test",
    im_size: int | None = 224,
    channels: int = 3,
    mapper=None,
    seed: int | None = None,
):
    """The seed's ``read_image``: one image of a split with its label.

    Returns ``(x, y)``: ``x`` a NumPy float32 array ``1×H×W×C`` in [0, 1] (the seed's model
    input), ``y`` the class index. As in the seed, ``return_class_name=True`` returns the class
    *name* in place of the index, ``(x, name)``: the mapper's name (first name of the synset-words
    line) when names are known, else the class folder name (wnid).

    ``ind`` indexes the split's images in class-then-file-name order; ``None`` picks one at random
    (``seed`` given: ``numpy.random.default_rng(seed)``; else NumPy's global generator, so
    ``np.random.seed`` makes it repeatable). ``data_dir=None`` reads ``$HRCAM_DATA_DIR``. Class
    indices come from :func:`dataset_classes` so they match the trained model's; ``mapper`` (an
    :class:`~hrcam.data.animals.AnimalsMapper`) supplies names, by default built from
    ``data_dir/classes.txt`` or the class folders.
    """
    if data_dir is None:
        data_dir = os.environ.get(DATA_DIR_ENV)
        if not data_dir:
            raise UserError(f"read_image needs data_dir= or the {DATA_DIR_ENV} environment variable")
    split_dir = find_split(data_dir, split)
    if mapper is None:
        from hrcam.data.animals import AnimalsMapper

        listing = Path(data_dir) / "classes.txt"
        if listing.is_file():
            mapper = AnimalsMapper(classes=listing)
        else:
            mapper = AnimalsMapper(classes=dataset_classes(data_dir))
    ds = ClassFolderDataset(
        split_dir, im_size=im_size, channels=channels, classes=list(mapper.wnids), check_headers=False,
        progress=False,
    )
    n = len(ds)
    if ind is None:
        ind = int(np.random.default_rng(seed).integers(n)) if seed is not None else int(np.random.randint(n))
    elif not isinstance(ind, (int, np.integer)) or isinstance(ind, bool):
        raise ValueError(f"ind must be an integer image index, got {ind!r}")
    elif not -n <= ind < n:
        raise ValueError(f"ind={ind} is out of range: {split_dir} has {n} images")
    x, y = ds[int(ind)]
    x = x.permute(1, 2, 0).numpy()[None]
    if return_class_name:
        return x, mapper.name(y)
    return x, y
