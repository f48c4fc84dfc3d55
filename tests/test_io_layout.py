"""Issue 14, item 7: how an image's axes are read (2-channel, channels-first, ``--axes``)
and tiny-range float intensities."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_segkit import io
from napari_segkit._sample import sample_path
from napari_segkit.cli import main
from napari_segkit.image_layout import apply_axes, check_array_layout, read_image_as


@pytest.fixture(scope="module")
def gray():
    return io.read_image(sample_path("fluo_256.tif"))[:64, :64]


def test_two_channel_image_is_not_a_stack_of_thin_planes(tmp_path, gray):
    path = tmp_path / "two.tif"
    tifffile.imwrite(path, np.stack([gray, gray[::-1]], axis=-1))
    with pytest.raises(ValueError, match="--channel"):
        read_image_as(path)
    image, note = read_image_as(path, channel=1)
    assert image.shape == (64, 64) and np.array_equal(image, gray[::-1])
    assert note is not None and "channel 1" in note


@pytest.mark.parametrize("planar", [True, False])
def test_channels_first_rgb_is_read_as_colour_and_says_so(tmp_path, gray, planar):
    path = tmp_path / "cyx.tif"
    cyx = np.stack([gray, gray // 2, gray // 3])
    if planar:  # tifffile stores it as planar RGB (axes SYX)
        tifffile.imwrite(path, cyx)
    else:  # three pages of unknown meaning (axes QYX)
        tifffile.imwrite(path, cyx, photometric="minisblack")
    image, note = read_image_as(path)
    assert image.shape == (64, 64, 3) and np.array_equal(image[..., 1], gray // 2)
    assert note is not None and "CYX" in note and "--axes" in note


def test_axes_option_overrides_the_guess(tmp_path, gray):
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.stack([gray, gray, gray]), photometric="minisblack")
    image, note = read_image_as(path, axes="ZYX")
    assert image.shape == (3, 64, 64) and note is None
    image, _ = read_image_as(path, axes="CYX")
    assert image.shape == (64, 64, 3)
    with pytest.raises(ValueError, match="--axes"):
        read_image_as(path, axes="YX")
    with pytest.raises(ValueError, match="--axes"):
        read_image_as(path, axes="YYX")


def test_plain_images_are_read_as_they_are_without_a_note(tmp_path, gray):
    path = tmp_path / "g.tif"
    tifffile.imwrite(path, gray)
    image, note = read_image_as(path)
    assert image.shape == (64, 64) and note is None
    rgb = io.read_image(sample_path("he_rgb.tif"))
    image, note = read_image_as(sample_path("he_rgb.tif"))
    assert image.shape == rgb.shape and note is None


def test_apply_axes_moves_channels_last():
    data = np.arange(2 * 3 * 5 * 7).reshape(3, 2, 5, 7)  # C Z Y X
    out = apply_axes(data, "CZYX")
    assert out.shape == (2, 5, 7, 3) and out[1, 2, 3, 0] == data[0, 1, 2, 3]


def test_predict_api_refuses_a_two_channel_array(tiny_model, gray):
    from napari_segkit.prediction import predict

    with pytest.raises(ValueError, match="channel"):
        predict(tiny_model, np.stack([gray, gray], axis=-1), tile_size=64)
    with pytest.raises(ValueError, match="channel"):
        check_array_layout((64, 64, 2))
    with pytest.warns(UserWarning, match="np.moveaxis"):
        check_array_layout((3, 64, 64))


def test_tiny_range_floats_are_normalised_like_the_original(gray):
    from napari_segkit.normalization import prepare_input

    ref = prepare_input(gray.astype(np.float64))
    tiny = prepare_input(gray.astype(np.float64) * 1e-17)
    assert np.ptp(tiny) > 0.5
    np.testing.assert_allclose(tiny, ref, atol=1e-3)


def test_cli_predict_reports_the_layout_and_takes_axes(tmp_path, capsys, gray, tiny_model_path):
    images = tmp_path / "images"
    images.mkdir()
    tifffile.imwrite(images / "c.tif", np.stack([gray, gray, gray]), photometric="minisblack")
    out = tmp_path / "out"
    assert main(["predict", "--model", str(tiny_model_path), "--images", str(images), "--out",
                 str(out), "--tile-size", "64"]) == 0
    err = capsys.readouterr().err
    assert "c.tif" in err and "CYX" in err
    assert io.read_labels(out / "c_instances.tif").shape == (64, 64)
    assert main(["predict", "--model", str(tiny_model_path), "--images", str(images), "--out",
                 str(tmp_path / "out2"), "--tile-size", "64", "--axes", "ZYX"]) == 0
    assert io.read_labels(tmp_path / "out2" / "c_instances.tif").shape == (3, 64, 64)
    assert main(["predict", "--model", str(tiny_model_path), "--images", str(images), "--out",
                 str(tmp_path / "out3"), "--axes", "QQ"]) == 2
    assert "--axes" in capsys.readouterr().err
