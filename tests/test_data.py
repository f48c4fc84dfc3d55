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


@pytest.mark.parametrize(("zoom", "side"), [(0.5, 16), (2.0, 6)])
def test_sampler_zoom_scales_objects_and_keeps_image_and_targets_aligned(zoom, side):
    # one bright square in a dark 96x96 image: patches see it at `zoom` times its size
    img = np.zeros((1, 96, 96), np.float32)
    lab = np.zeros((96, 96), np.uint16)
    img[0, 40:40 + side, 40:40 + side] = 1.0
    lab[40:40 + side, 40:40 + side] = 1
    s = PatchSampler([img], [instance_targets(lab)], 64, fg_prob=1.0, augment=True,
                     scale_range=(zoom, zoom), rng=np.random.default_rng(0))
    s.fg_prob = 1.0
    x, c, ctr, _ = s.sample(16)
    for xi, ci, ti in zip(x, c, ctr, strict=True):
        obj = ci >= 1
        # the square lies inside every patch: its area scales with zoom squared
        assert abs(obj.sum() - (side * zoom) ** 2) <= 4 * side * zoom
        # image and targets stay aligned: bright where the object is (the intensity
        # augmentation scales and shifts, so compare inside vs outside)
        assert xi[0][obj].mean() > xi[0][~obj & (ci >= 0)].mean() + 0.3
        assert ti[obj].max() > 0.7 and ti[~obj].max() == 0.0


def test_sampler_zoom_out_beyond_the_image_ignores_the_outside():
    img = np.random.default_rng(0).random((1, 40, 40), dtype=np.float32)
    lab = np.zeros((40, 40), np.uint16)
    lab[10:30, 10:30] = 1
    s = PatchSampler([img], [instance_targets(lab)], 64, scale_range=(0.25, 0.25),
                     rng=np.random.default_rng(0))
    _, c, _, _ = s.sample(4)  # a 256-px window on a 64-px padded image
    assert (c == IGNORE_INDEX).mean() > 0.5 and (c >= 1).any()


def test_sampler_rejects_bad_zoom_range():
    img = np.zeros((1, 32, 32), np.float32)
    t = instance_targets(np.ones((32, 32), np.uint16))
    for bad in [(2.0, 1.0), (0.0, 1.0), "big", (1.0,)]:
        with pytest.raises(ValueError, match="scale_range"):
            PatchSampler([img], [t], 32, scale_range=bad)


def test_fixed_normalization_matches_prepare_input_on_one_plane():
    from napari_segkit.prediction import fit_normalization

    rng = np.random.default_rng(0)
    gray = (rng.random((64, 80)) * 200).astype(np.uint8)
    bright = np.full((64, 80, 3), 220, np.uint8)  # brightfield: dark nuclei on white
    bright[20:40, 20:40] = (90, 40, 120)
    bright = (bright + rng.integers(0, 20, bright.shape)).astype(np.uint8)
    for plane, rgb in [(gray, False), (bright, True)]:
        for norm in [None, {"method": "none"}]:
            for ch in (1, 3):
                fixed = fit_normalization(plane[None], ch, norm, rgb)
                np.testing.assert_allclose(
                    fixed.apply(plane), prepare_input(plane, ch, norm), rtol=1e-5, atol=1e-4
                )
