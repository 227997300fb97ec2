"""``load_image(decoder="auto")``: torchvision's decode_image for plain JPEG/PNG, the same pixels as PIL."""
from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from hrcam.data import folders
from hrcam.data.folders import _decode_fast, load_image


def _photo(h: int = 48, w: int = 56, seed: int = 0) -> np.ndarray:
    """A smooth colour pattern with noise: real JPEG work (edges, texture, chroma)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([np.sin(xx / (5.0 + c) + c) * 60 + np.cos(yy / (7.0 + 2 * c)) * 50 + 128 for c in range(3)], -1)
    return np.clip(a + rng.normal(0, 18, a.shape), 0, 255).astype(np.uint8)


def _save(tmp_path, name: str, im: Image.Image, **kw):
    path = tmp_path / name
    im.save(path, **kw)
    return path


def _same_as_pil(path, fast_expected: bool):
    """Both decoders on ``path`` at several settings: identical tensors; the fast path taken or not."""
    assert (_decode_fast(path) is not None) == fast_expected
    for im_size, channels in ((None, 3), (None, 1), (32, 3)):
        a = load_image(path, im_size, channels, decoder="auto")
        b = load_image(path, im_size, channels, decoder="pil")
        assert a.dtype == b.dtype == torch.float32 and a.shape == b.shape
        assert torch.equal(a, b), (path.name, im_size, channels, float((a - b).abs().max()))


@pytest.mark.parametrize("quality", [50, 75, 90, 100])
@pytest.mark.parametrize("subsampling", [0, 1, 2])  # 4:4:4, 4:2:2, 4:2:0
def test_rgb_jpeg_is_bit_identical_to_pil(tmp_path, quality, subsampling):
    path = _save(tmp_path, "a.jpg", Image.fromarray(_photo()), quality=quality, subsampling=subsampling)
    _same_as_pil(path, fast_expected=True)


@pytest.mark.parametrize("kind", ["gray", "progressive", "odd_size"])
def test_other_jpegs_are_bit_identical_to_pil(tmp_path, kind):
    if kind == "gray":
        im, kw = Image.fromarray(_photo()).convert("L"), {"quality": 80}
    elif kind == "progressive":
        im, kw = Image.fromarray(_photo()), {"quality": 85, "progressive": True}
    else:  # partial MCUs at the borders
        im, kw = Image.fromarray(_photo(37, 41)), {"quality": 70}
    _same_as_pil(_save(tmp_path, "a.jpg", im, **kw), fast_expected=True)


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA"])
def test_plain_pngs_are_bit_identical_to_pil(tmp_path, mode):
    rgb = _photo()
    alpha = np.random.default_rng(1).integers(0, 256, rgb.shape[:2] + (1,), dtype=np.uint8)
    im = Image.fromarray(np.concatenate([rgb, alpha], -1), "RGBA").convert(mode)
    _same_as_pil(_save(tmp_path, "a.png", im), fast_expected=True)


def test_formats_the_fast_path_leaves_to_pil(tmp_path):
    rgb = _photo()
    palette = Image.fromarray(rgb).convert("P")
    cases = {
        "palette.png": (palette, {}),  # decode_image would give the palette indices
        "palette_trns.png": (palette, {"transparency": 3}),
        "rgb_trns.png": (Image.fromarray(rgb), {"transparency": (1, 2, 3)}),
        "gray16.png": (Image.fromarray(rgb[..., 0].astype(np.uint16) * 257), {}),
        "bits.png": (Image.fromarray(rgb[..., 0] > 128), {}),  # 1-bit
        "cmyk.jpg": (Image.fromarray(rgb).convert("CMYK"), {"quality": 90}),
        "a.bmp": (Image.fromarray(rgb), {}),
    }
    for name, (im, kw) in cases.items():
        _same_as_pil(_save(tmp_path, name, im, **kw), fast_expected=False)


def test_a_file_decode_image_rejects_goes_to_pil(tmp_path, monkeypatch):
    """PIL decides whether a file is bad: a truncated PNG that PIL still reads (IEND missing) is
    read, truncated JPEG/PNG data and non-images raise as with PIL."""
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "PNG")
    data = buf.getvalue()
    no_end = tmp_path / "no_end.png"
    no_end.write_bytes(data[:-6])
    assert torch.equal(load_image(no_end, decoder="auto"), load_image(no_end, decoder="pil"))
    buf = io.BytesIO()
    Image.fromarray(_photo()).save(buf, "JPEG")
    for name, payload in (("cut.png", data[: len(data) // 2]), ("cut.jpg", buf.getvalue()[:300]),
                          ("text.jpg", b"\xff\xd8\xff not a jpeg at all")):
        (tmp_path / name).write_bytes(payload)
        with pytest.raises(OSError):
            load_image(tmp_path / name, decoder="pil")
        with pytest.raises(OSError):
            load_image(tmp_path / name, decoder="auto")
    # and the fast path really is decode_image: break it and the same files go to PIL, unchanged
    jpg = _save(tmp_path, "ok.jpg", Image.fromarray(_photo()))
    expected = load_image(jpg, decoder="auto")

    def broken(*a, **k):
        raise RuntimeError("decode_image: unsupported")

    import torchvision.io

    monkeypatch.setattr(torchvision.io, "decode_image", broken)
    assert _decode_fast(jpg) is None and torch.equal(load_image(jpg, decoder="auto"), expected)


def test_randomly_corrupted_jpegs_decode_alike(tmp_path):
    """Flipped bytes inside the entropy-coded data: both decoders accept or reject the same files,
    with the same pixels."""
    buf = io.BytesIO()
    Image.fromarray(_photo(32, 32)).save(buf, "JPEG", quality=80)
    data = bytearray(buf.getvalue())
    rng = np.random.default_rng(0)
    accepted = 0
    for trial in range(12):
        d = bytearray(data)
        for _ in range(3):
            d[int(rng.integers(200, len(d) - 2))] = int(rng.integers(0, 256))
        path = tmp_path / f"c{trial}.jpg"
        path.write_bytes(bytes(d))
        try:
            b = load_image(path, decoder="pil")
        except OSError:
            with pytest.raises(OSError):
                load_image(path, decoder="auto")
            continue
        accepted += 1
        assert torch.equal(load_image(path, decoder="auto"), b)
    assert accepted > 0


def test_unknown_decoder_is_refused(tmp_path):
    path = _save(tmp_path, "a.png", Image.fromarray(_photo()))
    with pytest.raises(ValueError, match="decoder"):
        load_image(path, decoder="cv2")
    assert "auto" in folders.DECODERS
