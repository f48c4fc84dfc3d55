"""'Annotate & convert' dock: ready-made annotation layers and their conversion to labels.

Thin: every conversion is a call into ``napari_segkit.annotations``. The Labels layer a
'sparse' conversion makes is marked as sparse training labels in its ``metadata``, so the
Train dock trains it as such whatever it is named.
"""

from __future__ import annotations

import warnings

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import ComboBox, Container, Label, PushButton
from napari.layers import Image, Points, Shapes
from napari.utils.notifications import show_info, show_warning

from .._sample_data import points_layer_kwargs
from ..annotations import MODES, POINT_MODES, SHAPE_MODES, convert_points, convert_shapes
from .layers import (
    LABELS_KIND_KEY,
    labels_count,
    layers_of,
    set_output_layer,
    spatial_shape,
    to_image_pixels,
    user_errors,
)


class AnnotateWidget(Container):
    """Create annotation layers for an image and convert them into a Labels layer."""

    def __init__(self, napari_viewer: napari.Viewer):
        self.viewer = napari_viewer
        self.image = ComboBox(label="Image", choices=self._images)
        self.new_clicks = PushButton(text="New clicks layer (one per nucleus)")
        self.new_outline = PushButton(text="New outline keypoints layer")
        self.next_object = PushButton(text="Next outline object")
        self.new_polygons = PushButton(text="New polygons layer")
        self.new_boxes = PushButton(text="New boxes layer")
        self.annotation_layer = ComboBox(label="Annotations", choices=self._annotation_layers)
        self.mode = ComboBox(
            label="Convert", choices=[(text, key) for key, (text, _) in MODES.items()]
        )
        self.convert_button = PushButton(text="Convert to labels")
        self.status = Label(value="")
        super().__init__(
            widgets=[
                self.image,
                self.new_clicks,
                self.new_outline,
                self.next_object,
                self.new_polygons,
                self.new_boxes,
                self.annotation_layer,
                self.mode,
                self.convert_button,
                self.status,
            ]
        )
        self.new_clicks.changed.connect(self.add_clicks_layer)
        self.new_outline.changed.connect(self.add_outline_layer)
        self.next_object.changed.connect(self.start_next_object)
        self.new_polygons.changed.connect(lambda: self.add_shapes_layer("polygon"))
        self.new_boxes.changed.connect(lambda: self.add_shapes_layer("rectangle"))
        self.convert_button.changed.connect(self.convert)
        self.annotation_layer.changed.connect(self._suggest_mode)
        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed):
            event.connect(self._refresh_choices)

    # ---- choices -------------------------------------------------------------------
    def _images(self, _=None) -> list:
        return layers_of(self.viewer, Image)

    def _annotation_layers(self, _=None) -> list:
        return layers_of(self.viewer, Points, Shapes)

    def _refresh_choices(self, _event=None) -> None:
        self.image.reset_choices()
        self.annotation_layer.reset_choices()

    def _suggest_mode(self, layer) -> None:
        if isinstance(layer, Shapes):
            if self.mode.value not in SHAPE_MODES:
                self.mode.value = "fill"
        elif isinstance(layer, Points):
            wanted = "outline" if "object_id" in layer.features else "click"
            if self.mode.value not in POINT_MODES or wanted == "outline":
                self.mode.value = wanted

    # ---- new annotation layers -------------------------------------------------------
    def _require_image(self) -> Image | None:
        image = self.image.value
        if image is None:
            show_warning("Open or choose an image first: annotations are drawn on an image.")
        return image

    def add_clicks_layer(self) -> Points | None:
        kwargs = points_layer_kwargs(pd.DataFrame({"class": []}), "clicks")
        return self._add_points_layer(
            "click", "Click once on each nucleus; set class 'background' for background.",
            **kwargs,
        )

    def add_outline_layer(self) -> Points | None:
        return self._add_points_layer(
            "outline", "Click around object 1 in order; press 'Next outline object' for the next.",
            name="outline keypoints",
            features=pd.DataFrame({"object_id": pd.Series([], dtype=int)}),
            feature_defaults={"object_id": 1},
            face_color="object_id",
            face_color_cycle=["#ffd400", "#00e5ff", "#ff4fd8", "#7dff5c", "#ff8a00", "#a98bff"],
            size=5,
        )

    def _add_points_layer(self, mode: str, hint: str, name: str, **kwargs) -> Points | None:
        """An empty Points layer ``"<image> <name>"`` on the image, in add mode, chosen for
        conversion with ``mode``."""
        image = self._require_image()
        if image is None:
            return None
        ndim = len(spatial_shape(image))
        layer = self.viewer.add_points(
            np.empty((0, ndim)), name=f"{image.name} {name}", scale=image.scale,
            translate=image.translate, **kwargs,
        )
        layer.mode = "add"
        self.annotation_layer.value = layer
        self.mode.value = mode
        self.status.value = hint
        return layer

    def start_next_object(self) -> None:
        layer = self.annotation_layer.value
        if not isinstance(layer, Points) or "object_id" not in layer.features:
            show_warning("Choose an outline keypoints layer first (New outline keypoints layer).")
            return
        used = layer.features["object_id"]
        next_id = int(used.max()) + 1 if len(used) else 1
        next_id = max(next_id, int(layer.feature_defaults["object_id"].iloc[0]) + (len(used) > 0))
        layer.feature_defaults = {"object_id": next_id}
        self.status.value = f"Now outlining object {next_id}."

    def add_shapes_layer(self, shape_type: str) -> Shapes | None:
        image = self._require_image()
        if image is None:
            return None
        kind = "polygons" if shape_type == "polygon" else "boxes"
        layer = self.viewer.add_shapes(
            name=f"{image.name} {kind}",
            ndim=len(spatial_shape(image)),
            edge_color="yellow",
            face_color=[1, 1, 0, 0.15],
            edge_width=1,
            scale=image.scale,
            translate=image.translate,
        )
        layer.mode = "add_polygon" if shape_type == "polygon" else "add_rectangle"
        self.annotation_layer.value = layer
        self.mode.value = "fill" if shape_type == "polygon" else "box-object"
        return layer

    # ---- conversion ------------------------------------------------------------------
    def convert(self) -> napari.layers.Labels | None:
        image, layer, mode = self.image.value, self.annotation_layer.value, self.mode.value
        if image is None or layer is None:
            show_warning("Choose an image and an annotation layer (Points or Shapes) first.")
            return None
        with user_errors(f"Converting {layer.name!r}"):
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                labels = convert_layer(image, layer, mode)
            for w in caught:
                show_warning(str(w.message))
            name = f"{image.name} {MODES[mode][1]}"
            out = set_output_layer(self.viewer, name, labels, "labels", like=image)
            kind = "sparse" if mode == "sparse" else "instances"
            out.metadata = {**out.metadata, LABELS_KIND_KEY: kind}
            n = labels_count(labels) if mode != "sparse" else int(np.count_nonzero(labels))
            what = "labelled pixels" if mode == "sparse" else "objects"
            self.status.value = f"{name}: {n} {what}"
            show_info(f"{name}: {n} {what}")
            return out
        return None


def convert_layer(image: Image, layer, mode: str) -> np.ndarray:
    """Run the conversion ``mode`` on one annotation layer; raises ValueError on bad input."""
    shape = spatial_shape(image)
    pixels = np.asarray(image.data)
    scale = tuple(image.scale[-len(shape):])
    if isinstance(layer, Shapes):
        shapes = [
            (kind, to_image_pixels(layer, image, verts))
            for kind, verts in zip(layer.shape_type, layer.data)
        ]
        return convert_shapes(shapes, shape, mode, image=pixels, scale=scale)
    if isinstance(layer, Points):
        coords = to_image_pixels(layer, image, layer.data)
        return convert_points(coords, layer.features, shape, mode, image=pixels, scale=scale)
    raise ValueError("choose a Points or Shapes layer as annotations")
