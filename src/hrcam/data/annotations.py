"""Localization ground truth: the demo format and ImageNet / PASCAL VOC XML boxes.

Box convention everywhere in hrcam: ``[x0, y0, x1, y1]`` in pixels of the image they belong to,
x0/y0 inclusive and x1/y1 exclusive (width = ``x1 − x0``).

Sources read by :func:`load_ground_truth`:

- **demo format** (``data_dir/annotations.json``, written by :mod:`hrcam.data.demo`): a JSON
  object keyed by the image path relative to ``data_dir`` (``"test/3/00012.png"``), each value
  ``{"label": 3, "boxes": [[x0, y0, x1, y1], ...], "mask": "masks/test/3/00012.png"}``
  (``mask`` optional; a mask PNG is true where its value is > 127).
- **PASCAL VOC / ImageNet XML** (``<annotation><size><width>…<height>…</size>
  <object><name>n01440764</name><bndbox><xmin>…</xmin><ymin>…</ymin><xmax>…</xmax>
  <ymax>…</ymax></bndbox></object>…``), one file per image named like the image with ``.xml``
  and looked up in ``annotations_dir`` (if given), next to the image, in
  ``data_dir/annotations/<split>/<class>/`` and in ``data_dir/annotations/``. VOC coordinates
  are 1-based and inclusive, so ``x0 = xmin − 1``, ``x1 = xmax`` (``one_based=False`` reads
  them as 0-based: ``x0 = xmin``, ``x1 = xmax + 1``).

Boxes are stored in original-image pixels; :func:`map_boxes` takes them through the same resize
and centre crop as the image (``GroundTruth.at_size`` does it for the model input).
"""
from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = [
    "GroundTruth",
    "VocAnnotation",
    "parse_voc_xml",
    "resized_size",
    "map_boxes",
    "read_demo_annotations",
    "load_ground_truth",
    "IMAGE_EXTENSIONS",
]

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm")


@dataclass(frozen=True)
class VocAnnotation:
    """One parsed XML file: image ``width``/``height`` (0 if absent), object names and boxes."""

    width: int
    height: int
    names: tuple[str, ...]
    boxes: np.ndarray  # K×4 float, end-exclusive pixel boxes


def _float(node, tag: str, source) -> float:
    child = node.find(tag)
    if child is None or child.text is None:
        raise ValueError(f"{source}: <{tag}> missing")
    try:
        return float(child.text.strip())
    except ValueError:
        raise ValueError(f"{source}: <{tag}> is not a number: {child.text!r}") from None


def parse_voc_xml(source, one_based: bool = True) -> VocAnnotation:
    """Parse a PASCAL VOC / ImageNet bounding-box XML file (path, or the XML text itself)."""
    text_given = isinstance(source, str) and source.lstrip().startswith("<")
    try:
        root = ET.fromstring(source) if text_given else ET.parse(source).getroot()
    except ET.ParseError as err:
        raise ValueError(f"cannot parse annotation XML {source if not text_given else ''}: {err}") from None
    label = "<xml>" if text_given else str(source)
    size = root.find("size")
    width = int(_float(size, "width", label)) if size is not None and size.find("width") is not None else 0
    height = int(_float(size, "height", label)) if size is not None and size.find("height") is not None else 0
    names, boxes = [], []
    shift = 1.0 if one_based else 0.0
    for obj in root.iter("object"):
        name_node = obj.find("name")
        box = obj.find("bndbox")
        if box is None:
            continue
        xmin, ymin = _float(box, "xmin", label), _float(box, "ymin", label)
        xmax, ymax = _float(box, "xmax", label), _float(box, "ymax", label)
        if xmax < xmin or ymax < ymin:
            raise ValueError(f"{label}: box with xmax < xmin or ymax < ymin")
        names.append((name_node.text or "").strip() if name_node is not None else "")
        boxes.append([xmin - shift, ymin - shift, xmax + 1.0 - shift, ymax + 1.0 - shift])
    return VocAnnotation(width, height, tuple(names), np.asarray(boxes, dtype=np.float64).reshape(-1, 4))


def resized_size(width: int, height: int, resize) -> tuple[int, int]:
    """Image size ``(width, height)`` after ``resize``, with torchvision's ``Resize`` semantics:
    an int sets the shorter side (the longer one becomes ``int(resize · long / short)``), a
    ``(height, width)`` pair sets both, ``None`` keeps the size."""
    if resize is None:
        return width, height
    if isinstance(resize, (int, np.integer)):
        if resize <= 0:
            raise ValueError(f"resize must be positive, got {resize}")
        if width <= height:
            return int(resize), int(resize * height / width)
        return int(resize * width / height), int(resize)
    h, w = resize
    if h <= 0 or w <= 0:
        raise ValueError(f"resize must be positive, got {resize}")
    return int(w), int(h)


def map_boxes(boxes, original_size: tuple[int, int], resize=None, crop=None) -> np.ndarray:
    """Map boxes (``K×4``, original pixels) through the image's resize and centre crop.

    ``original_size = (width, height)``; ``resize`` as in :func:`resized_size`; ``crop``: an
    int (square) or ``(height, width)`` centre crop after the resize, placed like torchvision's
    ``CenterCrop`` (``top = round((H − h)/2)``, ``left = round((W − w)/2)``). Coordinates scale by
    ``new / old`` per axis, shift by the crop offset, and clip to the output; boxes that end up
    empty are dropped.
    """
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    w0, h0 = original_size
    if w0 <= 0 or h0 <= 0:
        raise ValueError(f"original_size must be positive (width, height), got {original_size}")
    w1, h1 = resized_size(w0, h0, resize)
    out = b * np.array([w1 / w0, h1 / h0, w1 / w0, h1 / h0])
    out_w, out_h = w1, h1
    if crop is not None:
        ch, cw = (crop, crop) if isinstance(crop, (int, np.integer)) else crop
        if ch <= 0 or cw <= 0:
            raise ValueError(f"crop must be positive, got {crop}")
        top = int(round((h1 - ch) / 2.0))
        left = int(round((w1 - cw) / 2.0))
        out = out - np.array([left, top, left, top], dtype=np.float64)
        out_w, out_h = cw, ch
    out = np.clip(out, 0, [out_w, out_h, out_w, out_h])
    keep = (out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])
    return out[keep]


@dataclass
class GroundTruth:
    """Ground truth of one image: class ``label`` (the class-folder name), ``boxes`` (``K×4``,
    original pixels) with their object names ``box_labels``, an optional ``mask_path``, and the
    original ``image_size = (width, height)`` (read from ``image_path`` or the mask when None)."""

    label: str
    boxes: np.ndarray
    box_labels: tuple[str, ...] = ()
    mask_path: Path | None = None
    image_size: tuple[int, int] | None = None
    image_path: Path | None = None

    @property
    def mask(self) -> np.ndarray | None:
        """The mask as a bool array at the original size (read from disk), or None."""
        if self.mask_path is None:
            return None
        from PIL import Image

        with Image.open(self.mask_path) as img:
            return np.asarray(img.convert("L")) > 127

    def _original_size(self) -> tuple[int, int]:
        from PIL import Image

        for path in (self.image_path, self.mask_path):
            if path is not None and Path(path).is_file():
                with Image.open(path) as img:
                    return img.size
        raise ValueError("the original image size is unknown; set image_size or image_path")

    def class_boxes(self) -> np.ndarray:
        """Boxes of this image's class (objects named like ``label``); all boxes when no object
        name matches (data sets whose folder names differ from the XML names)."""
        if self.box_labels and any(n == self.label for n in self.box_labels):
            keep = np.array([n == self.label for n in self.box_labels])
            return self.boxes[keep]
        return self.boxes

    def at_size(self, size: tuple[int, int], resize=None, crop=None):
        """``(boxes, mask)`` at the model input: ``size = (height, width)`` of the input; by default
        the image is resized straight to it (``resize=size``). Masks are resized nearest."""
        h, w = size
        if self.image_size is None:
            self.image_size = self._original_size()
        resize = (h, w) if resize is None and crop is None else resize
        boxes = map_boxes(self.class_boxes(), self.image_size, resize=resize, crop=crop)
        mask = self.mask
        if mask is not None:
            from PIL import Image

            img = Image.fromarray(mask.astype(np.uint8) * 255)
            rw, rh = resized_size(mask.shape[1], mask.shape[0], resize)
            img = img.resize((rw, rh), Image.NEAREST)
            if crop is not None:
                ch, cw = (crop, crop) if isinstance(crop, (int, np.integer)) else crop
                top, left = int(round((rh - ch) / 2.0)), int(round((rw - cw) / 2.0))
                img = img.crop((left, top, left + cw, top + ch))
            mask = np.asarray(img) > 127
        return boxes, mask


def read_demo_annotations(data_dir, split: str | None = None) -> dict[str, GroundTruth]:
    """Read ``data_dir/annotations.json`` (demo format); keep only ``split/…`` keys if given."""
    data_dir = Path(data_dir)
    path = data_dir / "annotations.json"
    try:
        raw = json.loads(path.read_text())
    except OSError as err:
        raise ValueError(f"cannot read {path}: {err}") from None
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON: {err}") from None
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: expected an object keyed by image path")
    out: dict[str, GroundTruth] = {}
    for rel, entry in raw.items():
        if split is not None and not rel.startswith(f"{split}/"):
            continue
        if not isinstance(entry, dict) or "label" not in entry:
            raise ValueError(f"{path}: entry {rel!r} needs a 'label'")
        boxes = np.asarray(entry.get("boxes", []), dtype=np.float64).reshape(-1, 4)
        mask = entry.get("mask")
        if mask and not (data_dir / mask).is_file():
            raise ValueError(f"{path}: the mask of {rel!r} does not exist: {data_dir / mask}")
        parts = Path(rel).parts
        out[rel] = GroundTruth(
            label=str(entry["label"]) if len(parts) < 3 else parts[-2],
            boxes=boxes,
            mask_path=(data_dir / mask) if mask else None,
            image_path=data_dir / rel,
        )
    return out


def _xml_for(image: Path, data_dir: Path, split: str, annotations_dir: Path | None) -> Path | None:
    name = image.stem + ".xml"
    candidates = []
    if annotations_dir is not None:
        candidates += [annotations_dir / name, annotations_dir / image.parent.name / name]
    candidates += [
        image.with_suffix(".xml"),
        data_dir / "annotations" / split / image.parent.name / name,
        data_dir / "annotations" / name,
    ]
    return next((c for c in candidates if c.is_file()), None)


def load_ground_truth(data_dir, split: str = "test", annotations_dir=None,
                      one_based: bool = True) -> dict[str, GroundTruth]:
    """Ground truth of every annotated image of ``data_dir/split``, keyed by the image path
    relative to ``data_dir`` (``"test/<class>/<file>"``).

    Uses ``data_dir/annotations.json`` when it exists (demo format), else per-image XML files
    (see the module docstring). Images without any annotation are left out. Raises
    ``ValueError`` when nothing is found.
    """
    data_dir = Path(data_dir)
    if not (data_dir / split).is_dir():
        raise ValueError(f"no {split}/ folder in {data_dir}")
    if annotations_dir is not None and not Path(annotations_dir).is_dir():
        raise ValueError(f"--annotations: no such folder: {annotations_dir}")
    if annotations_dir is None and (data_dir / "annotations.json").is_file():
        out = read_demo_annotations(data_dir, split)
    else:
        ann_dir = Path(annotations_dir) if annotations_dir is not None else None
        out = {}
        for image in sorted((data_dir / split).glob("*/*")):
            if image.suffix.lower() not in IMAGE_EXTENSIONS:
                continue
            xml = _xml_for(image, data_dir, split, ann_dir)
            if xml is None:
                continue
            voc = parse_voc_xml(xml, one_based=one_based)
            size = (voc.width, voc.height) if voc.width > 0 and voc.height > 0 else None
            if size is None:
                from PIL import Image

                with Image.open(image) as img:
                    size = img.size
            rel = image.relative_to(data_dir).as_posix()
            out[rel] = GroundTruth(label=image.parent.name, boxes=voc.boxes, box_labels=voc.names,
                                   image_size=size, image_path=image)
    if not out:
        raise ValueError(f"no ground truth found for {data_dir / split} (annotations.json or XML files)")
    return out
