"""Fixtures shared by the dock tests."""

from __future__ import annotations

import pytest

pytest.importorskip("napari")

from napari_segkit._sample_data import fluo_256  # noqa: E402
from napari_segkit._widgets import corrections as corrections_module  # noqa: E402
from napari_segkit._widgets import layers as layers_module  # noqa: E402
from napari_segkit._widgets import predict as predict_module  # noqa: E402
from napari_segkit._widgets import train as train_module  # noqa: E402
from napari_segkit._widgets.predict import MODEL_FILE, PredictWidget  # noqa: E402


@pytest.fixture(autouse=True)
def models_in_tmp_path(monkeypatch, tmp_path):
    """The docks' default model files (``~/napari-segkit/models/...`` for a user) go to
    ``tmp_path``: no dock test writes into the home folder, whichever image it picks."""
    def default_model_path(name: str):
        return tmp_path / "models" / f"{name}.safetensors"

    monkeypatch.setattr(train_module, "default_model_path", default_model_path)
    monkeypatch.setattr(corrections_module, "default_model_path", default_model_path)


@pytest.fixture
def predict_errors(monkeypatch):
    """The errors the Predict dock shows (``show_error``), caught."""
    caught: list[str] = []
    monkeypatch.setattr(predict_module, "show_error", caught.append)
    return caught


@pytest.fixture
def correction_dock(make_napari_viewer, tiny_model_path, monkeypatch):
    """A Predict dock in a viewer with the fluo_256 sample and the tiny model chosen, its
    retrained models written to ``tmp_path`` (``models_in_tmp_path``): (viewer, widget,
    napari dock, errors)."""
    errors: list[str] = []
    for module in (predict_module, corrections_module, layers_module):
        monkeypatch.setattr(module, "show_error", errors.append)
    viewer = make_napari_viewer()
    for data, kwargs, kind in fluo_256():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    widget = PredictWidget(viewer)
    qt_dock = viewer.window.add_dock_widget(widget)
    widget.image.value = viewer.layers["fluo_256"]
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model_path
    return viewer, widget, qt_dock, errors
