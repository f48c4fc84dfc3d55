"""One entry point from an annotation (shapes or points) and a mode to a label image.

The Annotate dock and ``napari-segkit convert`` both call these, so a mode means the
same thing everywhere. No Qt, no napari.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from .._common import classes_of
from .clicks import clicks_to_labels, clicks_to_sparse_labels
from .outlines import outline_to_labels
from .shapes import boxes_to_labels, polygons_to_labels

__all__ = ["CLICK_MODES", "MODES", "POINT_MODES", "SHAPE_MODES", "convert_points",
           "convert_shapes"]

#: mode -> (what a user reads, suffix of the output layer / file)
MODES: dict[str, tuple[str, str]] = {
    "click": ("One click per object -> masks", "click masks"),
    "click-all": ("One click on every object -> masks", "click masks"),
    "fill": ("Polygons / boxes -> filled masks", "masks"),
    "box-object": ("Boxes -> the object in each box", "box objects"),
    "outline": ("Outline keypoints -> closed masks", "outline masks"),
    "sparse": ("Clicks -> sparse training labels", "sparse labels"),
}
SHAPE_MODES = ("fill", "box-object")
#: clicks grown into masks; ``click-all``: every object (in the image) has a click, so no
#: unclicked object competes for the pixels (``clicks_to_labels(all_clicked=True)``)
CLICK_MODES = ("click", "click-all")
POINT_MODES = (*CLICK_MODES, "sparse", "outline")


def convert_shapes(
    shapes: Sequence[tuple[str, np.ndarray]],
    shape: tuple[int, ...],
    mode: str,
    *,
    image: np.ndarray | None = None,
    scale: Sequence[float] | None = None,
) -> np.ndarray:
    """Shapes ``[(shape_type, vertices), ...]`` (data coordinates) -> instance labels.

    ``fill``: every polygon, rectangle and ellipse filled, in drawing order (a later
    shape wins where two overlap). ``box-object``: the object found in each rectangle.
    """
    if mode not in SHAPE_MODES:
        raise ValueError(
            f"shapes convert with mode 'fill' or 'box-object', not {mode!r}; "
            "use clicks (a Points layer) for the other modes"
        )
    if not shapes:
        raise ValueError("there are no shapes: draw a polygon or a box first")
    if mode == "fill":
        # napari (kind, vertices) pairs: ellipses, and the message for lines / paths,
        # are polygons_to_labels' job
        return polygons_to_labels(list(shapes), shape, scale=scale)
    boxes = [np.asarray(v, float) for k, v in shapes if k == "rectangle"]
    if not boxes:
        raise ValueError("'box-object' needs rectangles: draw a box around each object")
    if image is None:
        raise ValueError("'box-object' finds the object in the image: give the image too")
    return boxes_to_labels(boxes, shape, mode="object", image=image)


def convert_points(
    coords: np.ndarray,
    features: pd.DataFrame | None,
    shape: tuple[int, ...],
    mode: str,
    *,
    image: np.ndarray | None = None,
    scale: Sequence[float] | None = None,
) -> np.ndarray:
    """Points (data coordinates) with their features -> labels for ``mode``.

    ``click``: one click per object -> instance masks (``click-all``: every object has a
    click, see :data:`CLICK_MODES`); ``sparse``: sparse training
    labels; ``outline``: ordered keypoints per ``object_id`` -> closed masks.
    """
    if mode not in POINT_MODES:
        raise ValueError(
            f"points convert with mode {', '.join(map(repr, POINT_MODES))}, not {mode!r}; "
            "use shapes (polygons / boxes) for 'fill' and 'box-object'"
        )
    coords = np.asarray(coords, dtype=float)
    if coords.size == 0:
        raise ValueError("there are no points: click on the image first")
    features = pd.DataFrame() if features is None else features
    if mode == "outline":
        if "object_id" not in features:
            raise ValueError(
                "outline keypoints need an 'object_id' column telling objects apart "
                "(the Annotate dock's outline layer has one)"
            )
        return outline_to_labels(
            coords, features["object_id"].to_numpy(), shape, scale=scale
        )
    if image is None:
        raise ValueError(f"mode {mode!r} grows each click on the image: give the image too")
    classes = classes_of(features)
    if mode in CLICK_MODES:
        return clicks_to_labels(image, coords, classes=classes, scale=scale,
                                all_clicked=mode == "click-all")
    return clicks_to_sparse_labels(image, coords, classes=classes, scale=scale)
