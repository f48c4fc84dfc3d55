"""'Annotate and convert' dock: ready-made annotation layers and their conversion to labels.

Thin: every conversion is a call into ``napari_segkit.annotations``. The Labels layer a
'sparse' conversion makes is marked as sparse training labels in its ``metadata``, so the
Train dock trains it as such whatever it is named. Each annotation layer gets its own
output layer (``"<annotation layer> masks"``, ...): converting another layer never
replaces the first one's result. In the 'click' modes the masks are previewed live
(:mod:`.click_preview`); a class selector marks new clicks as nucleus or background.
"""

from __future__ import annotations

import warnings

import napari
import numpy as np
import pandas as pd
from magicgui.widgets import CheckBox, ComboBox, Container, Label, PushButton
from napari.layers import Image, Points, Shapes
from napari.utils.notifications import show_info, show_warning

from .._common import BACKGROUND_CLASS, background_mask, classes_of
from .._sample_data import POINT_COLORS, points_layer_kwargs
from ..annotations import MODES, POINT_MODES, SHAPE_MODES, convert_points, convert_shapes
from ..annotations.modes import CLICK_MODES
from .click_preview import ClickPreview
from .layers import (
    LABELS_KIND_KEY,
    labels_count,
    layers_of,
    set_output_layer,
    spatial_shape,
    to_image_pixels,
    user_errors,
    wrap_status,
)

#: Classes a click can have (the class selector's choices); see ``_common.is_background``.
CLICK_CLASSES = ("nucleus", BACKGROUND_CLASS)
#: the colour cycle of the outline keypoints, one colour per object in turn
OUTLINE_COLORS = ["#ffd400", "#00e5ff", "#ff4fd8", "#7dff5c", "#ff8a00", "#a98bff"]


def output_name(annotation_name: str, mode: str) -> str:
    """Name of the Labels layer that converting ``annotation_name`` with ``mode`` makes.

    ``"<annotation layer> <suffix of the mode>"``, without repeating the mode's first word
    when the layer's name already says it ("fluo clicks" + "click masks" -> "fluo clicks
    masks"), so that each annotation layer keeps its own result.
    """
    suffix = MODES[mode][1]
    first, _, rest = suffix.partition(" ")
    if rest and any(word.startswith(first) for word in annotation_name.lower().split()):
        suffix = rest
    return f"{annotation_name} {suffix}"


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
        self.click_class = ComboBox(
            label="Click class", choices=list(CLICK_CLASSES), value=CLICK_CLASSES[0],
            tooltip="Class of the next clicks: 'background' marks a spot with no nucleus. "
                    "Clicks selected in select mode take the class you pick.",
        )
        self.preview_box = CheckBox(
            text="Preview masks as I click", value=True,
            tooltip="In the two one-click modes, show the masks of the clicks as you place them",
        )
        self.convert_button = PushButton(text="Convert to labels")
        self.status = Label(value="")
        wrap_status(self.status)
        self.last_output_name: str | None = None
        self._syncing_class = False
        self.preview = ClickPreview(napari_viewer, on_message=self._show_preview_message)
        super().__init__(
            widgets=[
                self.image,
                self.new_clicks,
                self.new_outline,
                self.next_object,
                self.new_polygons,
                self.new_boxes,
                self.annotation_layer,
                self.click_class,
                self.mode,
                self.preview_box,
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
        self.annotation_layer.changed.connect(self._sync_click_class)
        self.click_class.changed.connect(self.set_click_class)
        for choice in (self.image, self.annotation_layer, self.mode, self.preview_box):
            choice.changed.connect(self._choice_changed)
        self._sync_click_class()
        self.status.value = self._describe_choice()
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

    # ---- click class, preview and status -----------------------------------------------
    def _clicks_layer(self) -> Points | None:
        """The chosen annotation layer when it holds clicks (Points without object ids)."""
        layer = self.annotation_layer.value
        if isinstance(layer, Points) and "object_id" not in layer.features:
            return layer
        return None

    def _sync_click_class(self, _=None) -> None:
        """Show the chosen clicks layer's class for new clicks (disabled for other layers)."""
        layer = self._clicks_layer()
        self.click_class.enabled = layer is not None
        current = CLICK_CLASSES[0]
        if layer is not None and "class" in layer.feature_defaults:
            value = str(layer.feature_defaults["class"].iloc[0])
            current = BACKGROUND_CLASS if background_mask([value], 1)[0] else CLICK_CLASSES[0]
        self._syncing_class = True
        try:
            self.click_class.value = current
        finally:
            self._syncing_class = False

    def set_click_class(self, value: str) -> None:
        """New clicks of the chosen layer get class ``value``; so do its selected clicks,
        unless the layer is in add mode (there the selection is the click just placed)."""
        layer = self._clicks_layer()
        if self._syncing_class or layer is None:
            return
        _ensure_class_column(layer)
        selected = sorted(layer.selected_data) if layer.mode != "add" else []
        if selected:
            features = layer.features.copy()
            features.loc[features.index[selected], "class"] = value
            layer.features = features
            self.preview.update()
        layer.feature_defaults = {**layer.feature_defaults.iloc[0].to_dict(), "class": value}
        what = "background (no nucleus there)" if value == BACKGROUND_CLASS else "a nucleus each"
        relabelled = f" {len(selected)} selected clicks are now {value}." if selected else ""
        self.status.value = f"New clicks on {layer.name} mark {what}.{relabelled}"

    def _choice_changed(self, _=None) -> None:
        """Follow the chosen clicks with the preview, and say what a conversion would do."""
        layer, image = self._clicks_layer(), self.image.value
        live = self.preview_box.value and self.mode.value in CLICK_MODES and image is not None
        self.preview.follow(layer if live else None, image if live else None,
                            all_clicked=self.mode.value == "click-all")
        self.status.value = self._describe_choice()

    def _describe_choice(self) -> str:
        layer, mode = self.annotation_layer.value, self.mode.value
        if layer is None or mode is None:
            return "Create or choose an annotation layer."
        if isinstance(layer, Points):
            n = len(layer.data)
            if "object_id" in layer.features:
                what = f"{n} keypoints on {layer.features['object_id'].nunique()} objects"
            else:
                n_bg = int(background_mask(classes_of(layer.features), n).sum())
                what = f"{n - n_bg} nucleus and {n_bg} background clicks"
        else:
            what = f"{len(layer.data)} shapes"
        return f"{layer.name}: {what}. Convert makes '{output_name(layer.name, mode)}'."

    def _show_preview_message(self, message: str) -> None:
        layer = self._clicks_layer()
        self.status.value = f"{layer.name}: {message}" if layer is not None else message

    # ---- new annotation layers -------------------------------------------------------
    def _require_image(self) -> Image | None:
        image = self.image.value
        if image is None:
            show_warning("Open or choose an image first: annotations are drawn on an image.")
        return image

    def add_clicks_layer(self) -> Points | None:
        kwargs = points_layer_kwargs(pd.DataFrame({"class": []}), "clicks")
        return self._add_points_layer(
            "click", "Click once on each nucleus; to mark background, set Click class to "
            "'background' and click where there is no nucleus.",
            **kwargs,
        )

    def add_outline_layer(self) -> Points | None:
        with warnings.catch_warnings():
            # napari guesses from the integer ids whether they are categories (a colour cycle,
            # as asked here) or numbers (a colormap), and warns that it guessed; the layer
            # keeps the cycle however many objects are outlined
            warnings.filterwarnings("ignore", "Feature 'object_id' looks like categorical",
                                    RuntimeWarning)
            return self._add_points_layer(
                "outline", "Click around object 1 in order; press 'Next outline object' for "
                "the next.",
                name="outline keypoints",
                features=pd.DataFrame({"object_id": pd.Series([], dtype=int)}),
                feature_defaults={"object_id": 1},
                face_color="object_id",
                face_color_cycle=OUTLINE_COLORS,
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
        self.status.value = (
            "Click around each nucleus; double-click closes the polygon."
            if shape_type == "polygon" else "Drag a box around each nucleus."
        )
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
            name = output_name(layer.name, mode)
            if mode in CLICK_MODES:
                self.preview.clear()  # the result replaces the preview
            is_new = name not in self.viewer.layers
            out = set_output_layer(self.viewer, name, labels, "labels", like=image)
            if is_new and layer in self.viewer.layers:  # keep the annotations visible on top
                layers = self.viewer.layers
                layers.move(layers.index(out), layers.index(layer))
            self.last_output_name = out.name
            kind = "sparse" if mode == "sparse" else "instances"
            out.metadata = {**out.metadata, LABELS_KIND_KEY: kind}
            n = labels_count(labels) if mode != "sparse" else int(np.count_nonzero(labels))
            what = "labelled pixels" if mode == "sparse" else "objects"
            self.status.value = f"{name}: {n} {what}"
            show_info(f"{name}: {n} {what}")
            return out
        self.status.value = f"Converting {layer.name} failed: see the message."
        return None


def _ensure_class_column(layer: Points) -> None:
    """Give a Points layer without a 'class' feature one (every click a nucleus), coloured
    as the sample clicks are."""
    if "class" in layer.features:
        return
    features = layer.features.copy()
    features["class"] = pd.Categorical([CLICK_CLASSES[0]] * len(layer.data), categories=list(POINT_COLORS))
    layer.features = features
    layer.face_color_cycle = list(POINT_COLORS.values())
    layer.face_color = "class"


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
