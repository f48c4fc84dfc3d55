"""Small pieces every dock uses: output layers that follow their image, coordinates from
an annotation layer to its image's pixels, bad input as notifications, and two layout
helpers (a row-wide column, a scrolling tab page)."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import napari
import numpy as np
from magicgui.widgets import Container
from napari.layers import Image, Layer
from napari.utils.notifications import show_error
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFrame, QScrollArea, QSizePolicy, QVBoxLayout, QWidget

log = logging.getLogger("napari_segkit")

#: ``layer.metadata`` key that says what a Labels layer holds: "sparse" (training labels
#: made from clicks, see annotations.clicks_to_sparse_labels) or "instances". The Annotate
#: dock writes it, the Train dock reads it.
LABELS_KIND_KEY = "segkit_labels_kind"


_labels_warm = False


def warm_up_labels(viewer: napari.Viewer) -> None:
    """Pay napari's one-time cost of a first Labels layer (its modules, visuals and
    overlays: about 0.4-0.7 s on 2 cores) now, while a dock opens, instead of at the first
    drawn result: a hidden 2 x 2 Labels layer is added and removed, the user's layer
    selection kept. Once per process."""
    global _labels_warm
    if _labels_warm:
        return
    _labels_warm = True
    selection = viewer.layers.selection
    selected, active = set(selection), selection.active
    try:
        probe = viewer.add_labels(np.zeros((2, 2), np.uint8), name="segkit warm-up",
                                  visible=False)
        viewer.layers.remove(probe)
    except Exception:  # noqa: BLE001 - a cost saved, never a reason to fail a dock
        log.debug("warming up napari's Labels layers failed", exc_info=True)
    selection.clear()
    selection.update(layer for layer in selected if layer in viewer.layers)
    if active is not None and active in viewer.layers:
        selection.active = active


def geometry_of(image: Layer | None) -> dict[str, Any]:
    """scale and translate of ``image`` (the spatial axes), to copy onto derived layers."""
    if image is None:
        return {}
    return {"scale": tuple(image.scale), "translate": tuple(image.translate)}


def layer_pixels(image: Image) -> Any:
    """An Image layer's pixels: its full-resolution level when multiscale (lazy data stays
    lazy: convert it off the GUI thread)."""
    return image.data[0] if image.multiscale else image.data


def spatial_shape(image: Image) -> tuple[int, ...]:
    """Shape of the image's spatial axes (drops the RGB channel axis)."""
    shape = tuple(image.data.shape)
    return shape[:-1] if image.rgb else shape


def set_output_layer(
    viewer: napari.Viewer, name: str, data: Any, kind: str, like: Layer | None = None, **kwargs: Any
) -> Layer:
    """Add ``name`` or, when a layer of that name and kind exists, update it in place.

    A rerun thus updates the output instead of piling up new layers. Geometry (scale,
    translate) is copied from ``like``.
    """
    geometry = geometry_of(like)
    existing = viewer.layers[name] if name in viewer.layers else None
    multiscale = bool(kwargs.get("multiscale", False))
    if existing is not None and bool(getattr(existing, "multiscale", False)) != multiscale:
        viewer.layers.remove(existing)  # napari cannot switch a layer to / from multiscale
        existing = None
    if existing is not None and isinstance(existing, getattr(napari.layers, kind.capitalize())):
        kwargs.pop("multiscale", None)
        if existing.data is not data:  # an unchanged layer is not redrawn
            existing.data = data  # (napari redraws on its own)
        for key, value in {**geometry, **kwargs}.items():
            with contextlib.suppress(AttributeError, ValueError, TypeError):
                if not _same(getattr(existing, key), value):
                    setattr(existing, key, value)
        return existing
    add = getattr(viewer, f"add_{kind}")
    return add(data, name=name, **geometry, **kwargs)


def _same(current: Any, value: Any) -> bool:
    """True when setting ``value`` would change nothing (saves a redraw)."""
    try:
        return bool(np.array_equal(np.asarray(current), np.asarray(value)))
    except (TypeError, ValueError):
        return False


@contextlib.contextmanager
def user_errors(what: str) -> Iterator[None]:
    """Turn bad input (ValueError, FileNotFoundError and our errors derived from them) into
    a napari notification that says what to do.

    napari never sees a traceback from our docks: any other error is a bug, shown as a
    notification too and logged with its traceback.
    """
    try:
        yield
    except (ValueError, FileNotFoundError) as err:
        show_error(f"{what}: {err}")
    except Exception as err:  # noqa: BLE001 - never let a dock crash napari
        log.exception("%s failed", what)
        show_error(f"{what} failed unexpectedly ({type(err).__name__}: {err}). Details in the log.")


def layers_of(viewer: napari.Viewer, *kinds: type) -> list[Layer]:
    """The viewer's layers of the given types, in layer-list order (a dock's choices)."""
    return [layer for layer in viewer.layers if isinstance(layer, kinds)]


def labels_count(labels: np.ndarray) -> int:
    return int(np.unique(labels[labels > 0]).size) if labels.size else 0




def to_image_pixels(layer: Layer, image: Layer, coords: np.ndarray) -> np.ndarray:
    """Coordinates (N, D) in ``layer``'s data space -> ``image``'s data (pixel) space.

    Goes through world coordinates, so annotation layers with another scale or
    translate than their image still land on the right pixels.
    """
    coords = np.asarray(coords, dtype=float)
    if coords.size == 0:
        return coords.reshape(0, image.ndim)
    to_world, b = _affine_of(layer.data_to_world, layer.ndim)
    world = coords[:, -layer.ndim:] @ to_world.T + b
    to_data, b = _affine_of(image.world_to_data, layer.ndim)
    return world @ to_data.T + b


def _affine_of(position_map, ndim: int) -> tuple[np.ndarray, np.ndarray]:
    """Matrix and offset of a layer's affine ``data_to_world`` / ``world_to_data`` (napari's
    public methods take one position at a time; the matrix maps all of them at once)."""
    offset = np.asarray(position_map(np.zeros(ndim)), dtype=float)
    matrix = np.stack([np.asarray(position_map(unit), dtype=float) - offset
                       for unit in np.eye(ndim)], axis=1)
    return matrix, offset


def unit_of(image: Image) -> str | None:
    """The image's unit name (e.g. 'micrometer'), or None for napari's default 'pixel'."""
    units = getattr(image, "units", None)
    if units is None:
        return None
    names = {str(u) for u in units}
    if len(names) != 1:
        return None
    name = names.pop()
    return None if name in ("pixel", "pixels", "px", "") else name


def full_width(*widgets) -> Container:
    """``widgets`` in a row-wide column of their own (no label column beside them)."""
    column = Container(labels=False, widgets=list(widgets))
    column.native.layout().setContentsMargins(0, 0, 0, 0)
    return column


def wrap_status(label) -> None:
    """A status line that wraps its words within the dock's width instead of widening it."""
    label.native.setWordWrap(True)
    label.native.setAlignment(Qt.AlignmentFlag.AlignLeft | Qt.AlignmentFlag.AlignVCenter)
    label.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)


def scroll_page(*widgets: QWidget) -> QScrollArea:
    """A tab page holding ``widgets`` one below the other; it scrolls when the dock is
    short, so that the controls above never get squeezed."""
    page = QWidget()
    layout = QVBoxLayout(page)
    layout.setContentsMargins(2, 2, 2, 2)
    for widget in widgets:
        layout.addWidget(widget)
    layout.addStretch(1)
    scroll = QScrollArea()
    scroll.setWidgetResizable(True)
    scroll.setFrameShape(QFrame.Shape.NoFrame)
    scroll.setWidget(page)
    scroll.setMinimumHeight(120)
    return scroll
