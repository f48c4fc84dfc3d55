import numpy as np
import pytest

from napari_segkit.data import IGNORE_INDEX, PatchSampler, is_brightfield, prepare_input
from napari_segkit.targets import instance_targets


def test_prepare_gray_percentiles():
    rng = np.random.default_rng(0)
    img = rng.integers(0, 1000, (40, 50)).astype(np.uint16)
    x = prepare_input(img, 1)
    assert x.shape == (1, 40, 50) and x.dtype == np.float32
    assert np.percentile(x, 1) == pytest.approx(0, abs=1e-3)
    assert np.percentile(x, 99.8) == pytest.approx(1, abs=1e-3)
    assert prepare_input(img, 3).shape == (3, 40, 50)
    assert np.array_equal(prepare_input(img, 1, {"method": "none"})[0], img.astype(np.float32))


def test_prepare_rgb_brightfield_inverted():
    img = np.full((30, 30, 3), 230, np.uint8)
    img[10:20, 10:20] = (80, 40, 120)  # dark purple nucleus on bright background
    assert is_brightfield(img)
    x = prepare_input(img, 1)
    assert x.shape == (1, 30, 30)
    assert x[0, 15, 15] > x[0, 2, 2]  # nucleus bright after inversion
    assert prepare_input(img, 3).shape == (3, 30, 30)
    fluo = np.zeros((30, 30, 3), np.uint8)
    fluo[10:20, 10:20, 2] = 200
    assert not is_brightfield(fluo)
    assert prepare_input(fluo, 1)[0, 15, 15] > 0.5


def test_prepare_errors():
    with pytest.raises(ValueError, match="NaN"):
        prepare_input(np.array([[1.0, np.nan], [0.0, 2.0]]), 1)
    with pytest.raises(ValueError, match="2-D"):
        prepare_input(np.zeros((4, 5, 6, 7)), 1)
    with pytest.raises(ValueError, match="2-D"):
        prepare_input(np.zeros(5), 1)
    with pytest.raises(ValueError, match="channels"):
        prepare_input(np.zeros((10, 10, 3), np.uint8), 2)
    with pytest.raises(ValueError, match="method"):
        prepare_input(np.zeros((10, 10)), 1, {"method": "zscore?"})


def test_sampler_pads_small_images_and_is_reproducible():
    img = np.random.default_rng(1).random((1, 20, 30), dtype=np.float32)
    lab = np.zeros((20, 30), np.uint16)
    lab[5:10, 5:12] = 1
    t = instance_targets(lab)

    def batch(seed):
        s = PatchSampler([img], [t], 32, rng=np.random.default_rng(seed))
        return s.sample(4)

    x, c, ctr, m = batch(3)
    assert x.shape == (4, 1, 32, 32) and c.shape == (4, 32, 32)
    assert (c == IGNORE_INDEX).any()  # padding is ignored
    assert ((c == IGNORE_INDEX) <= ~m).all()
    for a, b in zip(batch(3), batch(3), strict=True):
        assert np.array_equal(a, b)


def test_sampler_biased_to_objects():
    img = np.zeros((1, 300, 300), np.float32)
    lab = np.zeros((300, 300), np.uint16)
    lab[10:20, 10:20] = 1  # one small object in a big image
    s = PatchSampler([img], [instance_targets(lab)], 32, fg_prob=0.6, augment=False,
                     rng=np.random.default_rng(0))
    _, c, _, _ = s.sample(200)
    frac = ((c >= 1).any(axis=(1, 2))).mean()
    assert frac > 0.5
