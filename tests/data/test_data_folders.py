"""Class-folder datasets: mode conversion, resizing, skipped / undecodable files, read_image."""
import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam.data.folders import ClassFolderDataset, find_split, load_image, read_image
from hrcam.errors import UserError


def _png(path, arr, mode=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr, mode=mode).save(path)
    return path


def _solid(h, w, rgb):
    return np.tile(np.array(rgb, dtype=np.uint8), (h, w, 1))


@pytest.fixture()
def split_dir(tmp_path):
    """test/ with classes 'ant' (2 RGB) and 'bee' (RGBA, palette, 16-bit, CMYK) + junk files."""
    root = tmp_path / "data" / "test"
    _png(root / "ant" / "a0.png", _solid(6, 8, (255, 0, 0)))
    _png(root / "ant" / "a1.png", _solid(8, 8, (0, 255, 0)))
    (root / "ant" / "notes.txt").write_text("not an image")
    (root / "ant" / ".DS_Store").write_bytes(b"\x00\x01")  # hidden: ignored, not counted
    rgba = np.zeros((8, 8, 4), dtype=np.uint8)
    rgba[...] = (200, 100, 50, 128)
    rgba[0, 0] = (255, 255, 255, 0)  # fully transparent white -> black
    _png(root / "bee" / "b0_rgba.png", rgba)
    pal = Image.new("P", (8, 8))
    pal.putpalette([0, 0, 255] + [255, 255, 0] + [0, 0, 0] * 254)
    pal.putpixel((1, 0), 1)  # (x=1, y=0) yellow, rest blue
    pal.save(root / "bee" / "b1_palette.png")
    _png(root / "bee" / "b2_16bit.png", np.full((8, 8), 32768, dtype=np.uint16))
    cmyk = Image.new("CMYK", (8, 8), (255, 0, 0, 0))  # pure cyan
    cmyk.save(root / "bee" / "b3_cmyk.tif")
    return root


def test_scan_labels_and_skips(split_dir):
    ds = ClassFolderDataset(split_dir)
    assert ds.classes == ["ant", "bee"]
    assert len(ds) == 6
    assert ds.targets == [0, 0, 1, 1, 1, 1]
    assert ds.skipped == 1 and ds.skipped_files[0].endswith("notes.txt")
    x, y = ds[0]
    assert x.dtype == torch.float32 and x.shape == (3, 6, 8) and y == 0
    assert torch.equal(x, torch.tensor([1.0, 0.0, 0.0])[:, None, None].expand(3, 6, 8))


def test_mode_conversions(split_dir):
    ds = ClassFolderDataset(split_dir)
    rgba, _ = ds[2]
    expected = torch.tensor([200, 100, 50]) / 255.0 * (128 / 255.0)  # composited on black
    assert torch.allclose(rgba[:, 3, 3], expected, atol=1e-6)
    assert torch.equal(rgba[:, 0, 0], torch.zeros(3))  # transparent pixel -> black
    pal, _ = ds[3]
    assert torch.equal(pal[:, 0, 1], torch.tensor([1.0, 1.0, 0.0]))
    assert torch.equal(pal[:, 5, 5], torch.tensor([0.0, 0.0, 1.0]))
    sixteen, _ = ds[4]
    assert sixteen.shape == (3, 8, 8)
    assert torch.allclose(sixteen, torch.full((3, 8, 8), 32768 / 65535), atol=1e-6)
    cmyk, _ = ds[5]
    assert torch.equal(cmyk[:, 2, 2], torch.tensor([0.0, 1.0, 1.0]))
    for i in range(len(ds)):
        x, _ = ds[i]
        assert x.min() >= 0 and x.max() <= 1


def test_gray_output_and_resize(split_dir):
    ds = ClassFolderDataset(split_dir, im_size=4, channels=1)
    x, _ = ds[0]
    assert x.shape == (1, 4, 4)
    assert torch.allclose(x, torch.full((1, 4, 4), 0.299), atol=1e-6)  # luma of pure red
    ds3 = ClassFolderDataset(split_dir, im_size=5, transform=lambda t: 1 - t)
    x, _ = ds3[1]
    assert x.shape == (3, 5, 5)
    assert torch.allclose(x, torch.tensor([1.0, 0.0, 1.0])[:, None, None].expand(3, 5, 5), atol=1e-6)


def test_resize_is_antialiased_bilinear(tmp_path):
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, size=(16, 16), dtype=np.uint8)
    path = _png(tmp_path / "g.png", img)
    got = load_image(path, im_size=8, channels=1)[0].numpy()
    # PIL's bilinear reduction is a triangle filter stretched by the scale factor (antialiased)
    expected = np.asarray(Image.fromarray(img).convert("F").resize((8, 8), Image.BILINEAR)) / 255.0
    assert np.abs(got - expected).max() < 1e-4
    assert np.abs(got - img[::2, ::2] / 255.0).max() > 0.1  # not plain subsampling


def test_forced_classes_order_and_ignored_folders(split_dir):
    ds = ClassFolderDataset(split_dir, classes=["bee", "cow", "ant"])
    assert ds.class_to_idx == {"bee": 0, "cow": 1, "ant": 2}
    assert ds.targets == [0, 0, 0, 0, 2, 2]  # 'cow' has no folder: no samples, index kept
    only = ClassFolderDataset(split_dir, classes=["ant"])
    assert len(only) == 2 and only.targets == [0, 0]


def test_undecodable_file_is_substituted_and_counted(tmp_path):
    ds = _with_truncated_png(tmp_path / "train", "1_truncated.png")
    assert len(ds) == 3 and ds.skipped == 0  # the header check passes
    with pytest.warns(RuntimeWarning, match="1_truncated.png"):
        x, y = ds[1]
    assert y == 1 and torch.equal(x[:, 0, 0], torch.tensor([0.0, 0.0, 1.0]))  # the next sample
    assert ds.decode_failures == 1 and ds.failed_files[0].endswith("1_truncated.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        labels = torch.cat([y for _, y in torch.utils.data.DataLoader(ds, batch_size=2)]).tolist()
    assert labels == [0, 1, 1]  # sample 1 replaced by sample 2 in every epoch
    assert ds.decode_failures == 1  # known-bad file not decoded again


def test_constructor_errors(tmp_path):
    with pytest.raises(UserError, match="not found"):
        ClassFolderDataset(tmp_path / "nope")
    (tmp_path / "empty" / "c").mkdir(parents=True)
    (tmp_path / "empty" / "c" / "x.txt").write_text("hi")
    with pytest.raises(UserError, match="no readable images"):
        ClassFolderDataset(tmp_path / "empty")
    with pytest.raises(ValueError, match="channels"):
        ClassFolderDataset(tmp_path / "empty", channels=2)


def test_find_split_messages(tmp_path, split_dir):
    data = split_dir.parent
    assert find_split(data, "test") == split_dir
    (data / "val").mkdir()
    (data / "other" / "c").mkdir(parents=True)
    (data / "other" / "c" / ".hidden").write_text("x")
    cases = [
        ("data directory not found", tmp_path / "missing", "train"),
        ("no train/ folder", data, "train"),
        ("no class folders", data, "val"),
        ("no images", data, "other"),
        ("no data directory", None, "train"),
    ]
    for msg, d, split in cases:
        with pytest.raises(UserError, match=msg) as info:
            find_split(d, split)
        assert "\n" not in str(info.value)


def test_read_image(split_dir, monkeypatch):
    data = split_dir.parent
    x, y = read_image(4, data_dir=data, im_size=16)
    assert isinstance(x, np.ndarray) and x.shape == (1, 16, 16, 3) and x.dtype == np.float32
    assert y == 1 and np.allclose(x, 32768 / 65535, atol=1e-5)
    x0, y0 = read_image(0, data_dir=data, im_size=16)
    assert y0 == 0 and np.allclose(x0[0, :, :, 0], 1) and np.allclose(x0[0, :, :, 1:], 0)
    monkeypatch.setenv("HRCAM_DATA_DIR", str(data))
    x, name = read_image(0, return_class_name=True, im_size=8)
    assert name == "ant" and x.shape == (1, 8, 8, 3)
    # names from classes.txt (as written by `hrcam data animals`); index from the class order
    (data / "classes.txt").write_text("ant formica, ant\nbee apis mellifera, honeybee\n")
    assert read_image(3, return_class_name=True, im_size=8)[1] == "apis mellifera"
    # random pick: repeatable with a seed, and in range
    picks = {read_image(seed=s, im_size=4)[1] for s in range(6)}
    assert picks <= {0, 1}
    a, b = read_image(seed=7, im_size=4), read_image(seed=7, im_size=4)
    assert np.array_equal(a[0], b[0]) and a[1] == b[1]
    with pytest.raises(ValueError, match="out of range"):
        read_image(6, im_size=4)
    monkeypatch.delenv("HRCAM_DATA_DIR")
    with pytest.raises(UserError, match="HRCAM_DATA_DIR"):
        read_image(0)


def _mode_image(kind):
    if kind == "LA":
        return Image.fromarray(np.dstack([np.full((4, 4), 200, np.uint8), np.full((4, 4), 51, np.uint8)]), "LA"), 200 / 255 * 51 / 255
    if kind == "P_transparent":
        im = Image.new("P", (4, 4), 1)
        im.putpalette([10, 20, 30, 255, 255, 255] + [0, 0, 0] * 254)
        im.info["transparency"] = 1  # palette entry 1 (white) is transparent
        return im, 0.0
    if kind == "1":
        return Image.new("1", (4, 4), 1), 1.0
    if kind == "F":
        return Image.fromarray(np.full((4, 4), 0.25, np.float32), "F"), 0.25
    if kind == "I32":
        return Image.fromarray(np.full((4, 4), 65535 // 4, np.int32), "I"), (65535 // 4) / 65535
    raise AssertionError(kind)


@pytest.mark.parametrize("kind", ["LA", "P_transparent", "1", "F", "I32"])
def test_more_modes(tmp_path, kind):
    im, value = _mode_image(kind)
    path = tmp_path / f"{kind}.{'tif' if kind in ('F', 'I32') else 'png'}"
    im.save(path)
    x = load_image(path, channels=3)
    assert x.shape == (3, 4, 4) and x.dtype == torch.float32
    assert torch.allclose(x, torch.full((3, 4, 4), value), atol=1e-5)


def test_worker_processes_do_not_crash_on_bad_files(tmp_path):
    ds = _with_truncated_png(tmp_path / "train", "1.png")
    assert len(ds) == 3
    loader = torch.utils.data.DataLoader(ds, batch_size=3, num_workers=1)
    labels = torch.cat([y for _, y in loader]).tolist()
    assert labels == [0, 1, 1]
    assert ds.decode_failures == 0  # counted in the worker's copy, as documented


def _with_truncated_png(root, name: str):
    """Class folders a/0.png, a/<name> (a PNG whose header is fine but whose pixels are cut) and
    b/2.png, as a :class:`ClassFolderDataset`."""
    _png(root / "a" / "0.png", _solid(4, 4, (10, 10, 10)))
    buf = io.BytesIO()
    Image.fromarray(_solid(32, 32, (1, 2, 3))).save(buf, format="PNG")
    (root / "a" / name).write_bytes(buf.getvalue()[:60])
    _png(root / "b" / "2.png", _solid(4, 4, (0, 0, 255)))
    return ClassFolderDataset(root)
