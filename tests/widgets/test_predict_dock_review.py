"""Review findings in the Predict dock, driven as a user would: Retrain with corrections
stops with its dock and redraws its progress about once a second; suggestions update their
layer; a post-processing change leaves the probability layer alone; a diameter asked of a
model that records none gets the core's one message; a result is drawn in short steps."""

from __future__ import annotations

import time

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_segkit._widgets.session import SESSION  # noqa: E402
from napari_segkit.model_io import load_model  # noqa: E402


@pytest.fixture
def dock(correction_dock):
    return correction_dock


def _predict(qtbot, widget):
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)


def _start_retraining(viewer, widget, seconds: int):
    panel = widget.corrections
    layer = panel.add_corrections_layer()
    clicks = viewer.layers["fluo_256 clicks"]
    layer.add(np.asarray(clicks.data)[:4])
    panel.seconds.value = seconds
    assert panel.retrain() is not None
    return panel


def test_closing_the_predict_dock_stops_retraining(dock, qtbot):
    viewer, widget, qt_dock, errors = dock
    _predict(qtbot, widget)
    trained = []
    SESSION.model_trained.connect(trained.append)
    try:
        panel = _start_retraining(viewer, widget, seconds=600)
        qtbot.waitUntil(lambda: panel.last_event is not None and panel.last_event.step >= 2,
                        timeout=60_000)
        worker = panel.worker
        qt_dock.title.close_button.click()  # the dock's own close button
        qtbot.waitUntil(lambda: not worker.is_running, timeout=30_000)
        qtbot.wait(200)
    finally:
        SESSION.model_trained.disconnect(trained.append)
    assert panel.last_event.kind == "stopped", "retraining stopped with its dock"
    assert panel.last_event.elapsed_s < 60
    assert trained == [] and widget.worker is None  # nothing published, no new prediction
    assert errors == []


def test_retraining_progress_is_redrawn_about_once_a_second(dock, qtbot):
    viewer, widget, _, errors = dock
    _predict(qtbot, widget)
    panel = widget.corrections
    events, draws = [], []
    draw = panel._show_event.show
    panel._show_event.show = lambda event: (draws.append(time.perf_counter()), draw(event))
    on_event = panel._on_event
    panel._on_event = lambda event: (events.append(event), on_event(event))
    panel = _start_retraining(viewer, widget, seconds=5)
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)  # predicts again
    assert len(events) > 3 and 1 <= len(draws) <= len(events)
    assert np.all(np.diff(draws) >= 0.9), np.diff(draws)  # never two repaints within 0.9 s
    assert panel.progress.value == 1000 and "Retrained" in panel.status.value
    assert errors == []


def test_suggestions_update_their_layer_in_place(dock, qtbot):
    viewer, widget, _, errors = dock
    _predict(qtbot, widget)
    panel = widget.corrections
    panel.suggest()
    qtbot.waitUntil(lambda: "fluo_256 suggestions" in viewer.layers, timeout=30_000)
    layer = viewer.layers["fluo_256 suggestions"]
    removed = []
    viewer.layers.events.removed.connect(lambda e: removed.append(e.value))
    n = len(layer.data)
    assert n >= 1
    layer.data = np.empty((0, 2))  # the user deletes them; a new round comes
    panel.suggest()
    qtbot.waitUntil(lambda: len(viewer.layers["fluo_256 suggestions"].data) == n,
                    timeout=30_000)
    assert viewer.layers["fluo_256 suggestions"] is layer and removed == []
    ranks = layer.features["rank"].tolist()
    assert ranks == list(range(1, len(layer.data) + 1))
    assert [str(t) for t in layer.text.values] == [str(r) for r in ranks]
    assert errors == []


def test_post_processing_leaves_the_probability_layer_alone(dock, qtbot):
    viewer, widget, _, errors = dock
    _predict(qtbot, widget)
    probability = viewer.layers["fluo_256 probability"]
    instances = viewer.layers["fluo_256 instances"]
    changed = {"probability": 0, "instances": 0}
    probability.events.data.connect(lambda e: changed.__setitem__(
        "probability", changed["probability"] + 1))
    instances.events.data.connect(lambda e: changed.__setitem__(
        "instances", changed["instances"] + 1))
    widget.threshold.value = 0.7
    qtbot.waitUntil(lambda: widget.refining(), timeout=5_000)
    qtbot.waitUntil(lambda: not widget.refining(), timeout=30_000)
    assert changed["instances"] >= 1 and changed["probability"] == 0
    assert viewer.layers["fluo_256 probability"] is probability
    assert errors == []


def test_a_diameter_for_a_model_without_one_gives_one_plain_message(dock, qtbot,
                                                                    tiny_model_path):
    viewer, widget, _, errors = dock
    assert load_model(tiny_model_path).object_diameter is None
    widget.diameter.value = 30
    _predict(qtbot, widget)
    assert len(errors) == 1, errors
    assert "records no training object diameter" in errors[0]
    assert "'Nucleus diameter' 0" in errors[0]  # what to do, in the dock's words
    assert widget.run_button.enabled and "fluo_256 instances" not in viewer.layers


def test_a_result_is_drawn_in_short_turns_and_a_rerun_updates_layers(dock, qtbot):
    viewer, widget, _, errors = dock
    from napari_segkit._widgets import outcome_display

    turns = []
    chain = widget._chain
    start = chain.start

    def counting_start(steps, done):
        turns.append(len(steps))
        return start(steps, done)

    chain.start = counting_start
    _predict(qtbot, widget)
    first = {name: viewer.layers[f"fluo_256 {name}"] for name in
             ("probability", "semantic", "instances")}
    assert not chain.running and turns and turns[0] >= 5
    assert widget.table.rowCount() == len(widget.rows) > 0
    assert widget.histogram.counts.sum() == len(widget.outcome.table)
    _predict(qtbot, widget)  # the same again: the same layers, updated
    assert all(viewer.layers[f"fluo_256 {name}"] is layer for name, layer in first.items())
    assert outcome_display.TURN_BUDGET_MS <= 50
    assert errors == []


def test_opening_the_predict_dock_warms_labels_layers_and_keeps_the_selection(
        make_napari_viewer, monkeypatch):
    """The dock pays napari's first-Labels-layer cost when it opens (not at the first drawn
    result), without leaving a layer behind or moving the user's selection."""
    from napari_segkit._widgets import layers as layer_helpers
    from napari_segkit._widgets.predict import PredictWidget

    monkeypatch.setattr(layer_helpers, "_labels_warm", False)
    viewer = make_napari_viewer()
    first = viewer.add_image(np.zeros((8, 8)), name="first")
    viewer.add_image(np.ones((8, 8)), name="second")
    viewer.layers.selection.active = first
    added = []
    viewer.layers.events.inserted.connect(lambda event: added.append(type(event.value).__name__))
    PredictWidget(viewer)
    PredictWidget(viewer)  # once per process
    assert added == ["Labels"]
    assert [layer.name for layer in viewer.layers] == ["first", "second"]
    assert viewer.layers.selection.active is first and set(viewer.layers.selection) == {first}


def test_each_layer_change_gets_its_own_repaint(qtbot):
    """Steps that change a layer's pixels end their turn and the next one waits
    PAINT_PAUSE_MS, so that the canvas repaints each layer on its own; short steps that
    change no layer still share a turn."""
    from napari_segkit._widgets.outcome_display import PAINT_PAUSE_MS, StepChain

    times: list[tuple[str, float]] = []

    def step(name, repaints=False):
        def run():
            times.append((name, time.perf_counter()))
        run.repaints = repaints
        return run

    finished = []
    StepChain().start([step("a", True), step("b", True), step("c"), step("d")],
                      lambda err: (finished.append(err), times.append(("done", time.perf_counter()))))
    qtbot.waitUntil(lambda: bool(finished), timeout=5000)
    assert finished == [None]
    t = dict(times)
    assert t["b"] - t["a"] >= 0.9 * PAINT_PAUSE_MS / 1000
    assert t["c"] - t["b"] >= 0.9 * PAINT_PAUSE_MS / 1000
    assert t["d"] - t["c"] < PAINT_PAUSE_MS / 1000  # same turn
    # done (a notification, the status) in a turn of its own, after a repaint
    assert t["done"] - t["d"] >= 0.9 * PAINT_PAUSE_MS / 1000


def test_instances_layer_gets_an_editable_uint16_copy():
    """The instances layer shows a copy (brush edits must not change the prediction they
    are compared with), as uint16 when the ids fit (napari draws it without remapping)."""
    import dask.array as da

    from napari_segkit._widgets.outcome_display import editable_labels

    labels = np.arange(12, dtype=np.int32).reshape(3, 4)
    shown = editable_labels(labels)
    assert shown.dtype == np.uint16 and np.array_equal(shown, labels)
    shown[0, 0] = 99
    assert labels[0, 0] == 0  # a copy
    many = labels.copy()
    many[0, 0] = 70_000  # does not fit (with room for new ids): kept as it was, copied
    kept = editable_labels(many)
    assert kept.dtype == np.int32 and kept is not many and np.array_equal(kept, many)
    lazy = da.zeros((8, 8), dtype=np.int32, chunks=4)
    assert editable_labels(lazy) is lazy  # never computed


def _start_job(kind: str, viewer, widget, qtbot, tmp_path):
    """Start one of the Predict dock's background jobs; its worker."""
    if kind == "predict":
        return widget.run()
    _predict(qtbot, widget)
    qtbot.waitUntil(lambda: not widget.drawing(), timeout=30_000)
    if kind == "suggestions":
        return widget.corrections.suggest()
    if kind == "post-processing":
        widget.postprocess.threshold.value = 0.3
        return widget.postprocess.refine()
    if kind == "fit":
        widget.ground_truth.value = viewer.layers["fluo_256 ground truth"]
        return widget.postprocess.fit()
    import tifffile

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(3):
        tifffile.imwrite(folder / f"crop{i}.tif", viewer.layers["fluo_256"].data)
    widget.batch.folder.value, widget.batch.out_folder.value = folder, tmp_path / "out"
    return widget.batch.run()


@pytest.mark.parametrize("kind", ["predict", "suggestions", "post-processing", "fit", "folder"])
def test_work_that_ends_after_the_viewer_closed_draws_nothing(dock, qtbot, tmp_path, kind):
    """A job that ends after its viewer closed used to hand napari a layer for a window
    that was gone (KeyError in napari's layer controls) or set widgets Qt had deleted
    ('wrapped C/C++ object ... has been deleted'); pytest-qt fails the test on either."""
    viewer, widget, _, errors = dock
    worker = _start_job(kind, viewer, widget, qtbot, tmp_path)
    assert worker is not None
    viewer.close()
    assert widget.closed
    names = [layer.name for layer in viewer.layers]  # closing removed them
    qtbot.waitUntil(lambda: not worker.is_running, timeout=60_000)
    qtbot.wait(300)  # its returned / finished call-backs, and any drawing they would start
    assert [layer.name for layer in viewer.layers] == names
    assert errors == []
