"""Colour / stain augmentation and its use in patch sampling and training."""

import numpy as np
import pytest

from napari_segkit._sample import sample_path
from napari_segkit.color_augment import (
    brightness_contrast_gamma,
    color_variants,
    hed_jitter,
    synthetic_brightfield,
    to_unit_float,
)
from napari_segkit.normalization import is_brightfield, prepare_input
from napari_segkit.sampling import PatchSampler
from napari_segkit.targets import instance_targets


@pytest.fixture(scope="module")
def he():
    from napari_segkit import io

    return io.read_image(sample_path("he_rgb.tif")), io.read_labels(sample_path("he_rgb_labels.tif"))


def _corr(a, b):
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_hed_jitter_changes_colour_not_structure(he, rng):
    image, _ = he
    out = hed_jitter(image, rng)
    assert out.shape == image.shape[:2] + (3,) and out.dtype == np.float32
    assert 0.0 <= out.min() and out.max() <= 1.0
    assert np.abs(out - to_unit_float(image)).mean() > 0.005
    assert _corr(prepare_input(out, 1), prepare_input(image, 1)) > 0.9
    with pytest.raises(ValueError, match="colour image"):
        hed_jitter(image[..., 0], rng)


def test_brightness_contrast_gamma_is_seeded_and_in_range(rng):
    x = np.random.default_rng(1).random((20, 30)).astype(np.float32)
    a = brightness_contrast_gamma(x, np.random.default_rng(5))
    b = brightness_contrast_gamma(x, np.random.default_rng(5))
    assert np.array_equal(a, b) and a.min() >= 0 and a.max() <= 1
    assert _corr(a, x) > 0.9


def test_synthetic_brightfield_looks_like_brightfield_with_bright_nuclei(fluo_256, rng):
    image, labels, _, _ = fluo_256
    rgb = synthetic_brightfield(image, rng)
    assert rgb.shape == image.shape + (3,)
    assert is_brightfield(rgb)
    fg = labels > 0
    lum = rgb.mean(-1)
    assert lum[fg].mean() < lum[~fg].mean() - 0.1        # dark nuclei
    x = prepare_input(rgb, 1)[0]                          # 1-channel models invert it
    assert x[fg].mean() > x[~fg].mean() + 0.3
    assert _corr(x, prepare_input(image, 1)[0]) > 0.7


def test_color_variants_by_kind(fluo_256, he, rng):
    gray, _, _, _ = fluo_256
    vs = color_variants(gray, 2, rng)
    assert len(vs) == 2 and all(v.shape == gray.shape + (3,) and is_brightfield(v) for v in vs)
    image, _ = he
    assert all(v.shape == image.shape[:2] + (3,) for v in color_variants(image, 3, rng))
    assert color_variants(image, 0, rng) == []


def test_sampler_draws_from_variants(fluo_256):
    image, labels, _, _ = fluo_256
    x = prepare_input(image, 1)
    marker = np.full_like(x, 7.0)
    t = instance_targets(labels)
    for prob, expect in ((0.0, 0.0), (1.0, 1.0)):
        s = PatchSampler([x], [t], 64, augment=True, rng=np.random.default_rng(0),
                         variants=[[marker]], variant_prob=prob)
        xb = s.sample(16)[0]
        # intensity augmentation scales and shifts, but a constant patch stays constant
        from_variant = np.array([np.ptp(p) < 1e-4 for p in xb])
        assert from_variant.mean() == expect
    with pytest.raises(ValueError, match="shape"):
        PatchSampler([x], [t], 64, variants=[[marker[:, :10]]])


def test_training_with_color_variants(fluo_256, he):
    from napari_segkit.color_augment import split_variants, with_color_variants
    from napari_segkit.model import UNetConfig
    from napari_segkit.training import TrainConfig
    from napari_segkit.workflows import run_training

    gray, labels, _, _ = fluo_256
    image, he_labels = he
    cfg = TrainConfig(steps=3, batch_size=2, patch_size=64, val_fraction=0.3, device="cpu",
                      color_variants=2, model=UNetConfig(width=4, depth=2))
    xs = [prepare_input(gray, 1), prepare_input(image, 1)]
    stacked = with_color_variants([gray, image], xs, cfg.color_variants, cfg.seed,
                                  lambda im: prepare_input(im, 1))
    assert [s.shape[0] for s in stacked] == [3, 3]
    back, variants = split_variants(stacked, 1)
    assert all(np.array_equal(a, b) for a, b in zip(back, xs)) and [len(v) for v in variants] == [2, 2]
    model = run_training([gray, image], [labels, he_labels], config=cfg)
    assert model.provenance["training"]["config"]["color_variants"] == 2
