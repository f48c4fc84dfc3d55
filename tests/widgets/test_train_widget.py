"""Drive the Train dock: start a training from clicks, watch it, stop it, get a model."""

from __future__ import annotations

import time

import numpy as np
import pytest

from napari_segkit._sample_data import fluo_256
from napari_segkit._widgets import layers
from napari_segkit._widgets.session import SESSION
from napari_segkit._widgets.train import TrainWidget
from napari_segkit.model_io import load_model


@pytest.fixture
def widget(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer()
    for data, kwargs, kind in fluo_256():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    w = TrainWidget(viewer)
    w.image.value = viewer.layers["fluo_256"]
    w.annotation_layer.value = viewer.layers["fluo_256 clicks"]
    w.init.value = "none"
    w.patch.value = 128
    w.out.value = tmp_path / "model.safetensors"
    yield w
    w.stop_event.set()


def test_train_from_clicks_then_stop_keeps_a_model(widget, qtbot):
    published = []
    SESSION.model_trained.connect(published.append)
    widget.minutes.value = 5.0
    worker = widget.start()
    assert worker is not None and not widget.start_button.enabled
    qtbot.waitUntil(lambda: widget.last_event is not None and widget.last_event.step >= 3, timeout=60_000)
    # the status is redrawn about once a second (REPAINT_EVERY_MS): wait for it
    qtbot.waitUntil(lambda: "step" in widget.status.value, timeout=10_000)
    assert "cpu" in widget.status.value
    assert widget.plot.losses, "the live plot received the loss"
    t0 = time.perf_counter()
    widget.stop_button.clicked()
    qtbot.waitUntil(lambda: widget.start_button.enabled, timeout=30_000)
    stop_s = time.perf_counter() - t0
    assert stop_s < 5, f"Stop took {stop_s:.1f} s"
    assert widget.last_event.kind == "stopped"
    assert widget.start_button.enabled and not widget.stop_button.enabled
    model = load_model(widget.out.value)
    assert model.provenance["training"]["labels"] == "points"
    assert published and published[-1] == str(widget.out.value)
    SESSION.model_trained.disconnect(published.append)


def test_labels_pair_with_wrong_shape_is_a_notification(widget, monkeypatch):
    errors = []
    monkeypatch.setattr(layers, "show_error", errors.append)
    viewer = widget.viewer
    viewer.add_labels(viewer.layers["fluo_256 ground truth"].data[:100], name="cropped")
    widget.annotation_layer.value = viewer.layers["cropped"]
    assert widget.start() is None
    assert errors and "shape" in errors[-1]
    assert widget.start_button.enabled


def test_pairs_can_be_added_and_train_on_masks(widget, qtbot):
    viewer = widget.viewer
    widget.annotation_layer.value = viewer.layers["fluo_256 ground truth"]
    widget.add_pair.clicked()
    assert "fluo_256 ground truth" in widget.pairs_label.value
    widget.minutes.value = 0.05  # three seconds
    widget.start()
    qtbot.waitUntil(lambda: widget.start_button.enabled, timeout=60_000)
    assert widget.last_event.kind == "done"
    assert widget.progress.value == 1000
    assert load_model(widget.out.value).provenance["training"]["labels"] == "instances"


def test_fully_annotated_region_from_a_shapes_layer(widget):
    viewer = widget.viewer
    widget.annotation_layer.value = viewer.layers["fluo_256 clicks"]
    data = widget.collect_data()
    assert data["regions"] == [None]  # the whole image by default
    shapes = viewer.add_shapes([np.array([[10, 20], [10, 120], [90, 120], [90, 20]])],
                               shape_type="rectangle", name="annotated here")
    widget.region.value = shapes
    region = widget.collect_data()["regions"][0]
    assert region.shape == (256, 256) and region[50, 60] and not region[200, 200]
    assert 0.9 < region.sum() / (80 * 100) < 1.1
    widget.add_pair.clicked()
    assert "in annotated here" in widget.pairs_label.value
    shapes.data = [np.array([[500, 500], [500, 600], [600, 600], [600, 500]])]
    with pytest.raises(ValueError, match="do not overlap"):
        widget.collect_data()


def test_closing_the_viewer_stops_training(make_napari_viewer, qtbot, tmp_path):
    viewer = make_napari_viewer()
    for data, kwargs, kind in fluo_256():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    _, w = viewer.window.add_plugin_dock_widget("napari-segkit", "Train")
    w.image.value = viewer.layers["fluo_256"]
    w.annotation_layer.value = viewer.layers["fluo_256 clicks"]
    w.init.value, w.patch.value, w.minutes.value = "none", 128, 5.0
    w.out.value = tmp_path / "m.safetensors"
    worker = w.start()
    qtbot.waitUntil(lambda: w.last_event is not None and w.last_event.step >= 1, timeout=60_000)
    stop_event = w.stop_event
    finished = []
    worker.finished.connect(lambda: finished.append(True))
    viewer.close()
    assert stop_event.is_set()
    qtbot.waitUntil(lambda: bool(finished) or not worker.is_running, timeout=30_000)


def test_sparse_labels_from_the_annotate_dock_train_as_sparse(widget, qtbot):
    from napari_segkit._widgets.annotate import AnnotateWidget

    viewer = widget.viewer
    annotate = AnnotateWidget(viewer)
    annotate.image.value = viewer.layers["fluo_256"]
    annotate.annotation_layer.value = viewer.layers["fluo_256 clicks"]
    annotate.mode.value = "sparse"
    sparse = annotate.convert()
    widget.annotation_layer.value = sparse
    assert widget.collect_data()["labels_kind"] == "sparse"
    widget.minutes.value = 0.05
    widget.start()
    qtbot.waitUntil(lambda: widget.start_button.enabled, timeout=60_000)
    assert widget.last_event.kind == "done"
    assert load_model(widget.out.value).provenance["training"]["labels"] == "sparse"


def test_sparse_labels_are_known_by_their_metadata_not_their_name(widget):
    from napari_segkit._widgets.annotate import AnnotateWidget

    viewer = widget.viewer
    annotate = AnnotateWidget(viewer)
    annotate.image.value = viewer.layers["fluo_256"]
    annotate.annotation_layer.value = viewer.layers["fluo_256 clicks"]
    annotate.mode.value = "sparse"
    sparse = annotate.convert()
    sparse.name = "my training labels"  # renamed by the user: still sparse
    widget.annotation_layer.value = sparse
    assert widget.collect_data()["labels_kind"] == "sparse"
    lookalike = viewer.add_labels(viewer.layers["fluo_256 ground truth"].data,
                                  name="fluo_256 sparse labels [1]")
    widget.annotation_layer.value = lookalike  # a name is not a promise
    assert widget.collect_data()["labels_kind"] == "instances"


def test_a_diverged_fine_tuning_says_so_and_saves_the_start(widget, qtbot, monkeypatch):
    """Weights that turn NaN end the run: the dock says so, asks for a lower learning rate
    and saves the starting model (nothing NaN reaches the file)."""
    import torch

    from napari_segkit._widgets import train as train_dock
    from napari_segkit.model_io import load_default_model
    from napari_segkit.training import Trainer

    original = Trainer.train_step

    def diverging_step(self, elapsed):
        loss = original(self, elapsed)
        with torch.no_grad():
            for p in self.net.parameters():
                p.fill_(float("nan"))
        return loss * float("nan")

    monkeypatch.setattr(Trainer, "train_step", diverging_step)
    warnings = []
    monkeypatch.setattr(train_dock, "show_warning", warnings.append)
    widget.annotation_layer.value = widget.viewer.layers["fluo_256 ground truth"]
    widget.init.value = "default"
    widget.minutes.value = 0.5
    widget.start()
    qtbot.waitUntil(lambda: widget.start_button.enabled, timeout=60_000)
    assert widget.last_event.diverged and widget.last_event.step < 10
    assert "diverged" in widget.status.value and "kept the starting model" in widget.status.value
    assert warnings and "lower learning rate" in warnings[-1]
    assert "starting model was kept" in warnings[-1]
    start = load_default_model().net.state_dict()
    saved = load_model(widget.out.value).net.state_dict()
    assert all(torch.equal(v, start[k]) for k, v in saved.items())


def test_keep_what_the_start_model_knew_replays_from_full_masks(widget, qtbot):
    from napari_segkit.train_config import FINE_TUNE_RECIPE

    assert widget.keep_known.native.isHidden()  # a new model has nothing to keep
    widget.init.value = "default"
    assert not widget.keep_known.native.isHidden() and not widget.keep_known.value
    widget.annotation_layer.value = widget.viewer.layers["fluo_256 ground truth"]
    widget.minutes.value = 0.05
    replay = {}
    for keep in (False, True):
        widget.keep_known.value = keep
        widget.start()
        qtbot.waitUntil(lambda: widget.start_button.enabled, timeout=60_000)
        assert widget.last_event.kind == "done"
        tuning = load_model(widget.out.value).provenance["training"]["fine_tuning"]
        replay[keep] = tuning["replay_fraction"]
    # full masks: no replay unless kept, then the recipe's own share
    assert replay == {False: 0.0, True: FINE_TUNE_RECIPE["replay_fraction"]} and replay[True] > 0
