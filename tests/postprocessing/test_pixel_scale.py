"""``pixel_scale='image'``: the pipeline's pixel constants scaled with the image size."""
import numpy as np
import pytest

from hrcam.postprocessing import pipeline_batch
from hrcam.postprocessing.params import validate_params


def test_constants_scale_with_the_image_and_stay_the_seeds_at_224():
    scaled = validate_params(pixel_scale="image")
    assert scaled.pixel_constants(224, 224) == (5, 256)  # the seed's, at the seed's size
    assert scaled.pixel_constants(64, 64) == (3, 21)  # 5·64/224 → 3 (odd, ≥ 3); 256·(64/224)² ≈ 21
    assert scaled.pixel_constants(448, 448) == (11, 1024)  # round(10) | 1 = 11
    assert validate_params().pixel_constants(64, 64) == (5, 256)  # default: fixed


def test_scaled_pipeline_equals_fixed_at_224_and_differs_at_64():
    rng = np.random.default_rng(0)
    for size, same in ((224, True), (64, False)):
        imgs = rng.random((2, size, size, 3))
        lows, highs = rng.random((2, size // 16, size // 16)), rng.random((2, size, size))
        a = pipeline_batch(imgs, lows, highs)["blurred"]
        b = pipeline_batch(imgs, lows, highs, pixel_scale="image")["blurred"]
        assert np.array_equal(a, b) == same, size


def test_bad_pixel_scale_names_the_parameter():
    with pytest.raises(ValueError, match="pixel_scale"):
        validate_params(pixel_scale="auto")
