"""Training patches: padding, sampling bias, zoom augmentation, validation hold-out."""

import numpy as np
import pytest

from napari_segkit.sampling import IGNORE_INDEX, PatchSampler, split_rows, split_validation
from napari_segkit.targets import instance_targets


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


def test_sampler_zoom_reads_the_window_at_pixel_centres():
    """A zoomed patch equals the image read at pixel centres of its window: output pixel
    k at image coordinate corner + (k + 0.5) * window / patch - 0.5 (the grid form of
    the resampling that the sampler computes on the fly)."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    img = rng.random((1, 80, 90), dtype=np.float32)
    lab = np.zeros((80, 90), np.uint16)
    lab[20:50, 30:60] = 1
    s = PatchSampler([img], [instance_targets(lab)], 32, augment=True, scale_range=(0.7, 0.7),
                     rng=np.random.default_rng(0))
    s.rng = np.random.default_rng(1)
    xi, ci, _, _ = s._cut(0)
    s.rng = np.random.default_rng(1)
    s.rng.uniform()  # the zoom draw
    y0, x0 = s._corner(0, round(32 / 0.7))
    g = (np.arange(32) + 0.5) * (round(32 / 0.7) / 32) - 0.5
    coords = np.stack(np.meshgrid(y0 + g, x0 + g, indexing="ij"))
    np.testing.assert_allclose(xi[0], ndi.map_coordinates(img[0], coords, order=1,
                                                          mode="mirror"), atol=1e-5)
    assert np.array_equal(ci, ndi.map_coordinates(s.classes[0], coords, order=0,
                                                  mode="constant", cval=IGNORE_INDEX))


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


def test_validation_holds_out_whole_images_or_a_bottom_strip():
    images = [np.zeros((1, 50, 40), np.float32) for _ in range(5)]
    labels = np.zeros((50, 40), np.uint16)
    labels[30:40, 10:20] = 7
    targets = [instance_targets(labels) for _ in images]
    tr_x, tr_t, va_x, va_t, va_i = split_validation(images, targets, [labels] * 5, 0.2,
                                                    np.random.default_rng(0))
    assert (len(tr_x), len(tr_t), len(va_x), len(va_t), len(va_i)) == (4, 4, 1, 1, 1)
    tr_x, tr_t, va_x, va_t, va_i = split_validation(images[:2], targets[:2], [labels] * 2, 0.2,
                                                    np.random.default_rng(0))
    row = split_rows(50, 0.2)
    assert row == 40 and tr_x[0].shape == (1, 40, 40) and va_x[0].shape == (1, 10, 40)
    assert va_t[0].classes.shape == (10, 40) and tr_t[0].classes.shape == (40, 40)
    assert va_i[0].max() == 0  # the object lies in the training part; ids are renumbered
    assert split_validation(images, targets, [labels] * 5, 0.0, None)[2] == []
