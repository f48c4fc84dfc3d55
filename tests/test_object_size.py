"""Object diameters, the diameter estimate, zoom factors and resizing."""

import numpy as np
import pytest
from skimage.draw import disk

from napari_segkit.object_size import (
    SHAPE_FACTOR,
    ZOOM_LIMITS,
    ZOOM_TOLERANCE,
    estimate_diameter,
    median_object_diameter,
    object_diameters,
    resize_image,
    resize_probabilities,
    zoom_for,
)


def disks(shape, centres, radius):
    labels = np.zeros(shape, np.uint16)
    for i, c in enumerate(centres, start=1):
        labels[disk(c, radius, shape=shape)] = i
    return labels


def test_object_diameters_of_disks():
    labels = disks((200, 200), [(40, 40), (120, 120)], 15)
    d = object_diameters(labels)
    assert d.shape == (2,) and np.allclose(d, 30, atol=1)
    assert median_object_diameter([labels, None, np.zeros((5, 5), int)]) == pytest.approx(d.mean())
    assert median_object_diameter([np.zeros((5, 5), int)]) is None


@pytest.mark.parametrize("radius", [6, 12, 30])
def test_estimate_is_proportional_to_size_and_ignores_touching(radius):
    step = 2 * radius  # touching neighbours: a clump of 3 + 2 single nuclei
    centres = [(3 * radius, 3 * radius + k * step) for k in range(3)]
    centres += [(9 * radius, 3 * radius), (9 * radius, 9 * radius)]
    mask = disks((12 * radius, 12 * radius), centres, radius) > 0
    est = estimate_diameter(mask)
    # disks are rounder than nuclei, whose shape SHAPE_FACTOR corrects for
    assert est == pytest.approx(SHAPE_FACTOR * 2 * radius, rel=0.12)


def test_estimate_of_empty_or_tiny_masks():
    assert estimate_diameter(np.zeros((20, 20), bool)) is None
    tiny = np.zeros((20, 20), bool)
    tiny[3:5, 3:5] = True
    assert estimate_diameter(tiny) is None
    with pytest.raises(ValueError, match="2-D"):
        estimate_diameter(np.zeros((2, 3, 4), bool))


def test_zoom_for_tolerance_and_limits():
    assert zoom_for(20.0, 20.0) == 1.0
    assert zoom_for(20.0 * ZOOM_TOLERANCE * 0.99, 20.0) == 1.0
    assert zoom_for(40.0, 20.0) == pytest.approx(0.5)
    assert zoom_for(10.0, 20.0) == pytest.approx(2.0)
    assert zoom_for(1000.0, 20.0) == ZOOM_LIMITS[0]
    assert zoom_for(2.0, 20.0) == ZOOM_LIMITS[1]
    with pytest.raises(ValueError, match="positive"):
        zoom_for(0.0, 20.0)


@pytest.mark.parametrize("shape", [(37, 53), (40, 30, 3)])
@pytest.mark.parametrize("zoom", [0.5, 1.0, 2.5])
def test_resize_image_shapes_and_identity(shape, zoom):
    rng = np.random.default_rng(0)
    image = rng.random(shape).astype(np.float32)
    out = resize_image(image, zoom)
    assert out.shape == (round(shape[0] * zoom), round(shape[1] * zoom), *shape[2:])
    assert out.dtype == np.float32
    if zoom == 1.0:
        assert np.allclose(out, image)


def test_resize_probabilities_keeps_sums_and_round_trips_smooth_maps():
    yy, xx = np.mgrid[0:60, 0:80] / 60.0
    p1 = 0.5 + 0.4 * np.sin(3 * yy) * np.cos(2 * xx)
    probs = np.stack([1 - p1, p1 * 0.7, p1 * 0.3]).astype(np.float32)
    small = resize_probabilities(probs, (30, 40))
    assert small.shape == (3, 30, 40)
    assert np.allclose(small.sum(0), 1.0, atol=1e-5)
    back = resize_probabilities(small, (60, 80))
    assert np.abs(back - probs).max() < 0.05
