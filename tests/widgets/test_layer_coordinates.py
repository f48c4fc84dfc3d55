"""Annotation coordinates -> image pixels through napari's public layer transforms."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

pytest.importorskip("napari")

from napari.layers import Image, Points  # noqa: E402
from napari.utils._proxies import PublicOnlyProxy  # noqa: E402

from napari_segkit._widgets.layers import to_image_pixels  # noqa: E402
from napari_segkit._widgets.predict import points_in_image  # noqa: E402


def test_clicks_land_on_the_image_pixels_they_were_drawn_on():
    """Points with their own scale, translate and rotation, on an image with another
    scale: each point comes back at the image pixel under it (world = scale * pixel).
    The layers come as napari hands them to a plugin's dock (public-only proxies, which
    warn about private attributes that napari 0.10 may remove)."""
    image = Image(np.zeros((100, 120)), scale=(0.5, 0.25), translate=(10, -4))
    pixels = np.array([[0.0, 0.0], [20.0, 40.0], [99.0, 119.0]])
    world = pixels * (0.5, 0.25) + (10, -4)
    angle = np.deg2rad(30)
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    # the points' data such that scale, rotate and translate put them at ``world``
    points = Points(np.zeros((0, 2)), scale=(2.0, 3.0), rotate=30, translate=(1, 2))
    data = (np.linalg.inv(rot) @ (world - (1, 2)).T).T / (2.0, 3.0)
    points.data = data
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no private napari API (FutureWarning)
        got = to_image_pixels(PublicOnlyProxy(points), PublicOnlyProxy(image), data)
        also = points_in_image(PublicOnlyProxy(points), PublicOnlyProxy(image))
    np.testing.assert_allclose(got, pixels, atol=1e-9)
    np.testing.assert_allclose(also, pixels, atol=1e-9)


def test_stack_clicks_map_all_three_axes_and_2d_clicks_on_a_stack_are_refused():
    stack = Image(np.zeros((5, 40, 40)), scale=(4.0, 0.5, 0.5))
    clicks = Points(np.array([[8.0, 5.0, 10.0]]))  # world: z 8 -> slice 2
    np.testing.assert_allclose(points_in_image(clicks, stack), [[2.0, 10.0, 20.0]])
    assert to_image_pixels(clicks, stack, np.zeros((0, 3))).shape == (0, 3)
    with pytest.raises(ValueError, match="2-D but the image is 3-D"):
        points_in_image(Points(np.ones((2, 2))), stack)
