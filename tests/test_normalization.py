"""Network input: one Normalization, per image (prepare_input) or fitted once."""

import numpy as np
import pytest

from napari_segkit.normalization import (
    DEFAULT_NORMALIZATION,
    Normalization,
    is_brightfield,
    prepare_input,
    subsample_planes,
)


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


def test_fixed_normalization_matches_prepare_input_on_one_plane():
    rng = np.random.default_rng(0)
    gray = (rng.random((64, 80)) * 200).astype(np.uint8)
    bright = np.full((64, 80, 3), 220, np.uint8)  # brightfield: dark nuclei on white
    bright[20:40, 20:40] = (90, 40, 120)
    bright = (bright + rng.integers(0, 20, bright.shape)).astype(np.uint8)
    for plane, rgb in [(gray, False), (bright, True)]:
        for norm in [None, {"method": "none"}]:
            for ch in (1, 3):
                fixed = Normalization.from_dict(norm).fit(plane[None], ch, rgb)
                np.testing.assert_allclose(
                    fixed.apply(plane), prepare_input(plane, ch, norm), rtol=1e-5, atol=1e-4
                )


def test_model_files_keep_todays_normalization_dicts():
    assert DEFAULT_NORMALIZATION == {"method": "percentile", "low": 1.0, "high": 99.8}
    for stored in [DEFAULT_NORMALIZATION, {"method": "percentile", "low": 0.5, "high": 99.0},
                   {"method": "none"}]:
        assert Normalization.from_dict(stored).to_dict() == stored
    assert Normalization.from_dict(None) == Normalization()
    with pytest.raises(ValueError, match="0 <= low < high <= 100"):
        Normalization.from_dict({"method": "percentile", "low": 50, "high": 10})


def test_a_fitted_normalization_maps_every_plane_of_a_stack_alike():
    rng = np.random.default_rng(0)
    stack = (rng.random((3, 40, 50)) * [[[1]], [[4]], [[2]]] * 100).astype(np.float32)
    fitted = Normalization().fit(subsample_planes(stack), 1, rgb=False)
    planes = [fitted.apply(p) for p in stack]
    # one mapping: the brightest plane stays brightest, not stretched to 0..1 on its own
    assert planes[1].max() > planes[2].max() > planes[0].max()
    np.testing.assert_allclose(fitted.apply(stack[1]), planes[1])
