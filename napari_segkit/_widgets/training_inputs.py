"""What the Train dock reads from annotation layers: clicks and fully annotated regions
in an image's pixels (2-D images and (z, y, x) stacks)."""

from __future__ import annotations

import warnings

import numpy as np
from napari.layers import Image, Points, Shapes
from napari.utils.notifications import show_warning

from .._common import classes_of
from ..annotations.common import points_inside
from .layers import to_image_pixels

__all__ = ["clicks_inside", "region_of"]


def region_of(shapes: Shapes, image: Image, shape: tuple[int, ...]) -> np.ndarray:
    """The fully annotated region drawn as rectangles / polygons in ``shapes``, as a
    bool mask of ``image``'s pixels."""
    from ..annotations import polygons_to_labels

    polygons = [to_image_pixels(shapes, image, np.asarray(d))[:, -2:] for d in shapes.data]
    if not polygons:
        raise ValueError(f"{shapes.name} has no shapes: draw the fully annotated rectangle, "
                         "or choose 'whole image'")
    with warnings.catch_warnings():  # shapes off the image: the error below says so
        warnings.simplefilter("ignore", UserWarning)
        mask = polygons_to_labels(polygons, shape) > 0
    if not mask.any():
        raise ValueError(f"the shapes of {shapes.name} do not overlap {image.name}")
    return mask


def clicks_inside(ann: Points, image: Image, shape: tuple[int, ...]):
    """The clicks of ``ann`` in ``image``'s pixels and their classes, without those outside
    the image; ValueError when all are outside, a warning when some are."""
    coords = to_image_pixels(ann, image, ann.data)
    classes = classes_of(ann.features)
    if len(coords) == 0:
        raise ValueError(f"{ann.name} has no points: click on the nuclei first")
    coords = coords[:, -len(shape):]  # (z, y, x) on a stack: each click keeps its plane
    inside = points_inside(coords, shape)
    n_out = int((~inside).sum())
    if n_out == len(coords):
        raise ValueError(f"all {n_out} clicks of {ann.name} lie outside {image.name} "
                         f"({' x '.join(map(str, shape))} px): click on this image, or check "
                         "that the points layer belongs to it (same scale and translate)")
    if n_out:
        show_warning(f"{n_out} of {len(coords)} clicks of {ann.name} lie outside "
                     f"{image.name}; training uses the other {len(coords) - n_out}")
    return coords[inside], None if classes is None else classes[inside]
