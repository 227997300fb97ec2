"""The seed API: HalfModel / FullModel over NumPy and torch input, custom classes, save/load."""
import numpy as np
import pytest
import torch

from hrcam.api.seed import FullModel, HalfModel, compute_cams, load_model
from hrcam.errors import UserError

ARCH = dict(init_filters=8, growth_rate=4, layers_per_block=2)


@pytest.fixture(scope="module")
def half():
    torch.manual_seed(0)
    hm = HalfModel(num_classes=6, im_size=64, **ARCH)
    torch.nn.init.normal_(hm.net.fc.weight)
    return hm


def test_defaults_are_the_seeds():
    hm = HalfModel()
    assert (hm.num_classes, hm.im_size, hm.net.config.in_channels) == (398, 224, 3)
    cfg = hm.net.config
    assert (cfg.init_filters, cfg.growth_rate, cfg.layers_per_block, cfg.num_blocks, cfg.aux_channels) == (
        48, 16, 4, 4, 16)


def test_seed_numpy_forms_give_2d_maps_for_one_image(half):
    rng = np.random.default_rng(0)
    x = rng.random((1, 64, 64, 3)).astype(np.float32)
    cam = half.cam(x)
    assert cam.shape == (4, 4)
    assert half.cam(x[0]).shape == (4, 4)
    assert isinstance(half.predict(x), int)
    top = half.predictN(x, n=3)
    assert top.shape == (3,) and top[0] == half.predict(x)
    cam2, preds = half.generate_cams(x)
    np.testing.assert_allclose(cam2, cam)
    assert preds.shape == (6,) and abs(preds.sum() - 1) < 1e-5


def test_batch_uint8_and_torch_forms_agree(half):
    rng = np.random.default_rng(1)
    u8 = rng.integers(0, 256, size=(3, 64, 64, 3), dtype=np.uint8)
    f = u8.astype(np.float32) / 255
    t = torch.from_numpy(f).permute(0, 3, 1, 2)
    a, b, c = half.cam(u8), half.cam(f), half.cam(t)
    assert a.shape == (3, 4, 4)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_allclose(b, c, atol=1e-6)
    assert half.predictN(f, 2).shape == (3, 2)


def test_custom_class_int_and_per_image(half):
    rng = np.random.default_rng(2)
    x = rng.random((2, 64, 64, 3)).astype(np.float32)
    res = compute_cams(half.net, torch.from_numpy(x).permute(0, 3, 1, 2))
    # the map of class c must equal W[c]·A_low: check against a map built independently
    out = half.net.forward_maps(torch.from_numpy(x).permute(0, 3, 1, 2))
    by_hand = torch.einsum("k,nkhw->nhw", half.net.fc.weight[4], out.low_features).detach().numpy()
    np.testing.assert_allclose(half.cam(x, custom_class=4), by_hand, rtol=1e-5, atol=1e-6)
    per = half.cam(x, custom_class=[1, 5])
    np.testing.assert_allclose(per[1], half.cam(x, custom_class=5)[1], rtol=1e-6)
    assert not np.allclose(half.cam(x, custom_class=1), half.cam(x, custom_class=5))
    assert res.low.shape == (2, 4, 4)
    with pytest.raises(ValueError, match="custom_class"):
        half.cam(x, custom_class=6)
    with pytest.raises(ValueError, match="custom_class"):
        half.cam(x, custom_class=[0, 1, 2])


def test_full_model_from_half_weights_and_reload(half, tmp_path):
    path = tmp_path / "half.safetensors"
    half.save(path)
    fm = FullModel(weights=path)  # half weights: expansion net fresh, classifier frozen
    rng = np.random.default_rng(3)
    x = rng.random((2, 64, 64, 3)).astype(np.float32)
    high, low, preds = fm.generate_cams(x)
    assert high.shape == (2, 64, 64) and low.shape == (2, 4, 4) and preds.shape == (2, 6)
    np.testing.assert_array_equal(low, half.cam(x))
    np.testing.assert_array_equal(fm.predict(x), half.predict(x))
    np.testing.assert_allclose(fm.high_res_cam(x, custom_class=2), fm.generate_cams(x, 2)[0])
    full_path = tmp_path / "full.safetensors"
    fm.save(full_path)
    again = load_model(full_path)
    assert isinstance(again, FullModel)
    np.testing.assert_array_equal(again.generate_cams(x)[0], high)
    as_half = load_model(full_path, type="half")
    assert isinstance(as_half, HalfModel)
    np.testing.assert_array_equal(as_half.cam(x), low)
    with pytest.raises(UserError, match="train full"):
        load_model(path, type="full")


def test_mismatched_class_count_is_a_clear_error(half, tmp_path):
    path = tmp_path / "half.safetensors"
    half.save(path)
    with pytest.raises(UserError, match="num_classes=10 does not match"):
        HalfModel(weights=path, num_classes=10)
    with pytest.raises(UserError, match="not found"):
        HalfModel(weights=tmp_path / "missing.safetensors")


def test_debug_helpers(half, tmp_path):
    from hrcam.debug import check_weights, get_model_memory_usage

    fm = FullModel.from_half(half)
    assert check_weights(half, fm, verbose=False) == []
    other = HalfModel(num_classes=6, im_size=64, **ARCH)
    assert len(check_weights(half, other, verbose=False)) > 0
    gb_small = get_model_memory_usage(half, 1)
    gb_big = get_model_memory_usage(half, 64)
    assert 0 < gb_small < gb_big
