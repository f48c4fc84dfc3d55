"""Turn annotations (polygons, boxes, outline keypoints, clicks) into label images.

All functions take plain arrays in napari data coordinates ((row, col), or (z, row, col)
in 3-D, in pixels of the image array) and return a label array of the image's shape:
0 = background, 1..N = objects (uint16 when it fits, else uint32). No Qt, no napari.

Conventions shared by every converter:

* Points that fall outside the image are skipped, with a warning that gives their count.
* On overlap the later annotation wins (it is painted on top).
* Bad input raises ``ValueError`` whose message says what to change.

Sparse labels (for training from clicks) use :data:`SPARSE_IGNORE`,
:data:`SPARSE_BACKGROUND` and :data:`SPARSE_OBJECT`.

Modules: :mod:`.shapes` (polygons, boxes), :mod:`.outlines` (keypoints, 2-D and 3-D),
:mod:`.clicks` (clicks -> masks or sparse labels; stacks via :mod:`.clicks3d`), :mod:`.modes` (an annotation layer
and a mode -> labels, as the Annotate dock and ``napari-segkit convert`` name them).
"""

from .._common import SPARSE_BACKGROUND, SPARSE_IGNORE, SPARSE_OBJECT
from .clicks import clicks_to_labels, clicks_to_sparse_labels, estimate_object_radius
from .clicks3d import estimate_object_radius_3d
from .modes import (
    CLICK_MODES,
    MODES,
    POINT_MODES,
    SHAPE_MODES,
    convert_points,
    convert_shapes,
)
from .outlines import outline_to_labels
from .shapes import FILLABLE_SHAPES, boxes_to_labels, polygons_to_labels

__all__ = [
    "FILLABLE_SHAPES",
    "CLICK_MODES",
    "MODES",
    "POINT_MODES",
    "SHAPE_MODES",
    "SPARSE_BACKGROUND",
    "SPARSE_IGNORE",
    "SPARSE_OBJECT",
    "boxes_to_labels",
    "clicks_to_labels",
    "clicks_to_sparse_labels",
    "convert_points",
    "convert_shapes",
    "estimate_object_radius",
    "estimate_object_radius_3d",
    "outline_to_labels",
    "polygons_to_labels",
]
