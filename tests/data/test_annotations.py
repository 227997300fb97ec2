"""Ground-truth readers: demo JSON, PASCAL VOC / ImageNet XML, and boxes through resize + crop."""
import json

import numpy as np
import pytest
from PIL import Image

from hrcam.data.annotations import (
    GroundTruth,
    load_ground_truth,
    map_boxes,
    parse_voc_xml,
    resized_size,
)

VOC = """<annotation>
  <filename>ILSVRC2012_val_00000001</filename>
  <size><width>500</width><height>375</height><depth>3</depth></size>
  <object><name>n01751748</name><bndbox><xmin>111</xmin><ymin>108</ymin><xmax>441</xmax><ymax>375</ymax></bndbox></object>
  <object><name>n01440764</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>10</xmax><ymax>20</ymax></bndbox></object>
</annotation>"""


def test_parse_voc_one_based_inclusive():
    a = parse_voc_xml(VOC)
    assert (a.width, a.height) == (500, 375)
    assert a.names == ("n01751748", "n01440764")
    # 1-based inclusive 111..441 → 0-based end-exclusive 110..441
    assert a.boxes.tolist() == [[110, 107, 441, 375], [0, 0, 10, 20]]
    b = parse_voc_xml(VOC, one_based=False)
    assert b.boxes[1].tolist() == [1, 1, 11, 21]


def test_parse_voc_errors(tmp_path):
    with pytest.raises(ValueError, match="parse"):
        parse_voc_xml("<annotation><object>")
    bad = VOC.replace("<xmax>441</xmax>", "<xmax>abc</xmax>")
    with pytest.raises(ValueError, match="xmax"):
        parse_voc_xml(bad)


def test_resized_size_torchvision_semantics():
    # shorter side to 256: 500×375 → int(256·500/375) = 341 × 256
    assert resized_size(500, 375, 256) == (341, 256)
    assert resized_size(300, 600, 100) == (100, 200)
    assert resized_size(500, 375, (224, 224)) == (224, 224)
    assert resized_size(500, 375, None) == (500, 375)


def test_map_boxes_resize_then_center_crop():
    # 400×200 image (w×h), resize shorter side to 100 → 200×100, crop 100 → left = 50, top = 0
    boxes = [[100, 50, 300, 150], [0, 0, 40, 40]]
    out = map_boxes(boxes, (400, 200), resize=100, crop=100)
    # first: ×0.5 → [50, 25, 150, 75] → −50 in x → [0, 25, 100, 75]
    # second: ×0.5 → [0, 0, 20, 20] → x −50 → [-50, 0, -30, 20] → clipped to empty → dropped
    assert out.tolist() == [[0, 25, 100, 75]]
    # plain resize to (height, width) = (50, 100): scale x 0.25, y 0.25
    assert map_boxes([[100, 50, 300, 150]], (400, 200), resize=(50, 100)).tolist() == [[25, 12.5, 75, 37.5]]
    with pytest.raises(ValueError):
        map_boxes(boxes, (0, 10))


def _png(path, array):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)


def test_load_ground_truth_demo_format(tmp_path):
    img = np.zeros((8, 8, 3), dtype=np.uint8)
    mask = np.zeros((8, 8), dtype=np.uint8)
    mask[2:4, 1:6] = 255
    _png(tmp_path / "test/3/00000.png", img)
    _png(tmp_path / "masks/test/3/00000.png", mask)
    _png(tmp_path / "train/1/00000.png", img)
    ann = {
        "test/3/00000.png": {"label": 3, "boxes": [[1, 2, 6, 4]], "mask": "masks/test/3/00000.png"},
        "train/1/00000.png": {"label": 1, "boxes": [[0, 0, 1, 1]]},
    }
    (tmp_path / "annotations.json").write_text(json.dumps(ann))
    gt = load_ground_truth(tmp_path, "test")
    assert list(gt) == ["test/3/00000.png"]
    g = gt["test/3/00000.png"]
    assert g.label == "3" and g.boxes.tolist() == [[1, 2, 6, 4]]
    assert g.mask.sum() == 10 and g.mask[2:4, 1:6].all()
    # to the model input at 16×16: boxes scale ×2, mask resized nearest
    boxes, m = g.at_size((16, 16))
    assert boxes.tolist() == [[2, 4, 12, 8]]
    assert m.shape == (16, 16) and m.sum() == 40 and m[4:8, 2:12].all()
    train = load_ground_truth(tmp_path, "train")["train/1/00000.png"]
    assert train.mask is None and train.at_size((8, 8))[1] is None


def test_load_ground_truth_voc_files(tmp_path):
    img = tmp_path / "test/n01751748/ILSVRC2012_val_00000001.png"
    _png(img, np.zeros((375, 500, 3), np.uint8))
    ann_dir = tmp_path / "xml"
    ann_dir.mkdir()
    (ann_dir / "ILSVRC2012_val_00000001.xml").write_text(VOC)
    gt = load_ground_truth(tmp_path, "test", annotations_dir=ann_dir)
    g = gt["test/n01751748/ILSVRC2012_val_00000001.png"]
    assert g.image_size == (500, 375)
    # only the object of this class counts for box accuracy
    assert g.class_boxes().tolist() == [[110, 107, 441, 375]]
    boxes, mask = g.at_size((224, 224), resize=256, crop=224)
    # 500×375 → 341×256 (sx = 341/500, sy = 256/375), crop 224: left = round(58.5) = 58 (banker's)
    # → top = 16
    sx, sy = 341 / 500, 256 / 375
    left, top = round((341 - 224) / 2), round((256 - 224) / 2)
    expect = [min(max(110 * sx - left, 0), 224), min(max(107 * sy - top, 0), 224),
              min(max(441 * sx - left, 0), 224), min(max(375 * sy - top, 0), 224)]
    assert boxes[0].tolist() == pytest.approx(expect)
    assert mask is None
    with pytest.raises(ValueError, match="no ground truth"):
        load_ground_truth(tmp_path, "test")


def test_ground_truth_falls_back_to_all_boxes():
    g = GroundTruth(label="cat", boxes=np.array([[0, 0, 2, 2.0]]), box_labels=("dog",), image_size=(4, 4))
    assert g.class_boxes().tolist() == [[0, 0, 2, 2]]
