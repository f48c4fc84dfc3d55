"""The Predict dock's correction loop, driven as a user would: predict, ask for suggestions,
click corrections, retrain, and see the dock predict again with the retrained model."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_segkit._widgets.predict import JUST_TRAINED  # noqa: E402
from napari_segkit._widgets.session import SESSION  # noqa: E402
from napari_segkit.model_io import load_model  # noqa: E402


@pytest.fixture
def dock(correction_dock):
    viewer, widget, _, errors = correction_dock
    return viewer, widget, errors


def _predict(qtbot, widget):
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)


def test_retrain_before_predict_says_what_to_do(dock):
    viewer, widget, errors = dock
    assert widget.corrections.retrain() is None
    assert errors and "Predict first" in errors[0]


def test_one_correction_round(dock, qtbot, tiny_model_path):
    viewer, widget, errors = dock
    _predict(qtbot, widget)
    panel = widget.corrections
    # nothing clicked yet: a message, no training
    assert panel.retrain() is None and "nothing to learn from" in errors[-1]
    errors.clear()

    worker = panel.suggest()
    assert worker is not None
    qtbot.waitUntil(lambda: "fluo_256 suggestions" in viewer.layers, timeout=30_000)
    suggestions = viewer.layers["fluo_256 suggestions"]
    ranks = suggestions.features["rank"].to_numpy()
    assert len(ranks) <= 10 and list(ranks) == list(range(1, len(ranks) + 1))
    assert np.all(np.diff(suggestions.features["score"].to_numpy()) <= 0)  # best first

    layer = panel.add_corrections_layer()
    assert layer is viewer.layers["fluo_256 corrections"]
    clicks = viewer.layers["fluo_256 clicks"]
    nuclei = np.asarray(clicks.data)[np.asarray(clicks.features["class"]) == "nucleus"][:6]
    layer.add(nuclei)
    layer.feature_defaults = {"class": "background"}
    layer.add(np.array([[5.0, 5.0]]))
    assert list(layer.features["class"])[-1] == "background"

    widget.output["instances"].paint((100, 100), 0)  # the eraser, on the instances layer
    panel.seconds.value = 5
    trained, reranked = [], []
    SESSION.model_trained.connect(trained.append)
    suggestions.events.features.connect(reranked.append)
    try:
        assert panel.retrain() is not None
        assert not panel.retrain_button.enabled and panel.stop_button.enabled
        qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
        qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)  # predicts again
        # then ranks the suggestions again, for the retrained model
        qtbot.waitUntil(lambda: bool(reranked), timeout=30_000)
    finally:
        SESSION.model_trained.disconnect(trained.append)
    assert errors == []
    assert viewer.layers["fluo_256 suggestions"] is suggestions
    assert "Retrained" in panel.status.value and (
        "suggestions (1 = most useful)" in panel.status.value
        or "No place looks uncertain" in panel.status.value), panel.status.value
    assert len(trained) == 1 and trained[0].endswith("fluo_256-corrected.safetensors")
    model = load_model(trained[0])
    assert model.provenance["training"]["labels"] == "targets"
    assert widget.model_source.value == JUST_TRAINED
    assert panel.progress.value == 1000 and "Retrained" in panel.status.value
    # the corrected image is remembered for the next round
    image, fixes = panel.history["fluo_256"]
    assert image.shape == (256, 256) and len(fixes) == 7
    assert fixes.classes.count("background") == 1
    assert fixes.erased is not None and fixes.erased[100, 100] and not fixes.erased[200, 200]
    # round 2 on the new prediction, not edited: the erasure of round 1 is still taught
    assert panel.retrain() is not None
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    qtbot.waitUntil(lambda: len(reranked) >= 2, timeout=30_000)  # its suggestions too
    _, fixes = panel.history["fluo_256"]
    assert errors == [] and len(fixes) == 7 and fixes.erased[100, 100]


def test_brush_edits_on_the_instances_count_as_corrections(dock, qtbot):
    """The instances layer is the user's to edit: a brush stroke there is a correction (the
    layer must not share its pixels with the prediction it is compared against)."""
    viewer, widget, errors = dock
    _predict(qtbot, widget)
    qtbot.waitUntil(lambda: not widget.drawing(), timeout=30_000)
    image = widget.predicted_image
    instances = widget.output["instances"]
    assert widget.corrections.current_corrections(image).empty  # nothing edited
    instances.selected_label = int(np.asarray(instances.data).max()) + 1
    instances.paint((10, 10), instances.selected_label)  # the brush, as napari's tool does
    drawn = widget.corrections.current_corrections(image).painted
    # the stroke and the object it was drawn on (one 256 x 256 object here), told apart
    assert drawn is not None and drawn[10, 10] > 0 and drawn[10, 10] != drawn[200, 200] > 0
    assert not errors


def test_suggestions_say_how_many_are_places_the_user_already_corrected(dock):
    """After a round, the model may still get some corrected places wrong; they come first
    among the suggestions, and the status says that another click there will not help."""
    viewer, widget, errors = dock
    panel, image = widget.corrections, viewer.layers["fluo_256"]
    coords = np.array([[10.0, 10.0], [50.0, 60.0], [90.0, 30.0]])
    reasons = ["2 nucleus clicks in one object", "background click on an object",
               "mirror predictions disagree"]
    panel._show_suggestions(image, coords, np.array([1.5, 1.4, 0.6]), reasons)
    assert len(viewer.layers["fluo_256 suggestions"].data) == 3
    assert "3 suggestions" in panel.status.value
    assert "in a corrections layer (Add corrections layer)" in panel.status.value  # none yet
    assert "2 of them are places you clicked that the model still gets wrong" in panel.status.value
    viewer.add_points(np.empty((0, 2)), name="fluo_256 corrections")
    panel._show_suggestions(image, coords[2:], np.array([0.6]), reasons[2:])
    assert "still gets wrong" not in panel.status.value and errors == []
    assert "click there in the corrections layer" in panel.status.value


def test_a_click_alone_in_a_large_object_gets_a_hint(dock, qtbot, monkeypatch):
    """One click in an object that merged several nuclei teaches the merge: the retraining
    says so (its start event's warning, napari_segkit.corrections), and the status keeps
    it under the result, for the next round."""
    from napari.utils.shortcuts import default_shortcuts

    from napari_segkit import corrections

    viewer, widget, errors = dock
    _predict(qtbot, widget)
    qtbot.waitUntil(lambda: not widget.drawing(), timeout=30_000)
    monkeypatch.setattr(corrections, "lone_clicks_in_large_objects", lambda c, inst: 1)
    panel = widget.corrections
    panel.add_corrections_layer()
    assert "paint each nucleus with its own label" in panel.status.value
    assert "M picks an unused label" in panel.status.value  # napari's new-label key:
    assert [str(k) for k in default_shortcuts["napari:new_label"]] == ["M"]
    viewer.layers["fluo_256 corrections"].add(np.array([[130.0, 130.0]]))
    panel.seconds.value = 5
    assert panel.retrain() is not None
    assert panel.status.value == "Retraining on 1 image, 1 correction click..."
    qtbot.waitUntil(lambda: panel.worker is None, timeout=60_000)
    qtbot.waitUntil(lambda: widget.worker is None, timeout=30_000)
    qtbot.waitUntil(lambda: not widget.drawing(), timeout=30_000)
    assert errors == []
    assert "Retrained" in panel.status.value and (
        "\nWarning: 1 nucleus click is alone in an object over twice the usual nucleus size: "
        "that object is taught as one nucleus." in panel.status.value), panel.status.value
