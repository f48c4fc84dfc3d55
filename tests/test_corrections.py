"""The correction loop: corrections -> training targets -> retraining from the current model."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segkit.corrections import Corrections, correction_targets, retrain_with_corrections
from napari_segkit.prediction import Prediction
from napari_segkit.training import TrainConfig


def _prediction(instances):
    probs = np.zeros((4, *instances.shape), np.float32)
    probs[0] = np.where(instances > 0, 0.1, 0.95)
    probs[1] = 1 - probs[0]
    return Prediction(probs, (instances > 0).astype(np.uint8), instances, 3)


def test_corrections_collect_clicks_and_check_classes():
    c = Corrections()
    c.add((3, 4))
    c.add(np.array([0, 5.0, 6.0]), "Background")
    assert len(c) == 2 and c.classes == ["nucleus", "background"]
    assert c.coords.tolist() == [[3.0, 4.0], [5.0, 6.0]]
    with pytest.raises(ValueError, match="nucleus"):
        c.add((1, 1), "cell")
    with pytest.raises(ValueError, match="one class per point"):
        Corrections([(1, 1)], [])
    with pytest.raises(ValueError, match="2-D grey or RGB"):  # a stack, or 2 channels
        retrain_with_corrections("default", [np.zeros((4, 32, 32))], [c])


def test_corrections_become_targets_on_top_of_the_model_prediction():
    pred = np.zeros((48, 64), np.int32)
    pred[4:14, 4:34] = 1    # two nuclei merged: the user clicks both
    pred[24:34, 4:14] = 2   # right, nobody touches it: kept
    pred[24:34, 44:54] = 3  # not a nucleus: background click
    image = (pred > 0).astype(np.float32) * 200
    image[38:46, 24:32] = 200  # a nucleus the model missed: a click on it
    c = Corrections([(9, 9), (9, 29), (29, 49), (42, 28)],
                    ["nucleus", "nucleus", "background", "nucleus"])
    t = correction_targets(None, image, c, prediction=_prediction(pred), unclicked="keep")
    inst = t.instances
    assert inst[9, 8] != inst[9, 30] and inst[9, 8] > 0 and inst[9, 30] > 0  # split
    assert (inst[pred == 2] > 0).all() and len(np.unique(inst[pred == 2])) == 1  # kept
    assert (inst[pred == 3] == 0).all() and (t.classes[pred == 3] == 0).all()  # removed
    assert inst[42, 28] > 0  # added
    # no clicks: the model's own prediction, as full targets
    t = correction_targets(None, image, Corrections(), prediction=_prediction(pred))
    assert (t.classes >= 0).all() and (t.instances == pred).all()
    # edited labels replace the prediction
    edited = pred.copy()
    edited[edited == 3] = 0
    t = correction_targets(None, image, Corrections(labels=edited), prediction=_prediction(pred))
    assert (t.classes[pred == 3] == 0).all()
    with pytest.raises(ValueError, match="edited labels"):
        correction_targets(None, image, Corrections(labels=edited[:10]), prediction=_prediction(pred))


def test_distilled_corrections_keep_the_models_own_outputs_where_nothing_was_corrected():
    pred = np.zeros((48, 64), np.int32)
    pred[24:34, 4:14] = 2   # nobody touches it
    pred[24:34, 44:54] = 3  # not a nucleus: background click
    image = (pred > 0).astype(np.float32) * 200
    prediction = _prediction(pred)
    prediction.probabilities[0, 20:22, 20:22] = 0.5  # unsure background: ignored
    prediction.probabilities[1, 20:22, 20:22] = 0.5
    prediction.probabilities[3] = np.linspace(0, 1, pred.size).reshape(pred.shape)
    c = Corrections([(29, 49)], ["background"])
    plain = correction_targets(None, image, c, prediction=prediction, unclicked="keep")
    t = correction_targets(None, image, c, prediction=prediction, distill=True,
                           unclicked="keep")
    own = pred == 2
    # the kept object: the model's confident classes (interior all over: no re-derived
    # boundary ring) and its own centre map
    assert (t.classes[own] == 1).all() and (plain.classes[own] == 2).any()
    assert np.allclose(t.center[own], prediction.probabilities[3][own])
    assert (t.classes[20:22, 20:22] < 0).all()
    assert (t.classes[pred == 3] == 0).all()  # the correction still rules where it acts


def test_uncorrected_objects_can_be_left_out_of_the_loss():
    pred = np.zeros((48, 64), np.int32)
    pred[24:34, 4:14] = 2   # nobody touches it
    pred[24:34, 44:54] = 3  # not a nucleus: background click
    image = (pred > 0).astype(np.float32) * 200
    c = Corrections([(29, 49)], ["background"])
    kept = correction_targets(None, image, c, prediction=_prediction(pred), unclicked="keep")
    t = correction_targets(None, image, c, prediction=_prediction(pred))  # the default
    assert (kept.classes[pred == 2] > 0).all()
    assert (t.classes[pred == 2] < 0).all() and (t.instances[pred == 2] == 0).all()
    assert (t.classes[pred == 3] == 0).all()  # the background click still teaches
    assert (t.classes[0:10, 0:10] == 0).all()  # the model's background stays background
    # the user says every error of the image is corrected: the rest is right, taught
    c.reviewed = True
    t = correction_targets(None, image, c, prediction=_prediction(pred))
    assert (t.classes[pred == 2] > 0).all() and (t.classes[pred == 3] == 0).all()
    with pytest.raises(ValueError, match="unclicked"):
        correction_targets(None, image, c, prediction=_prediction(pred), unclicked="drop")


def test_a_clicked_piece_is_not_taught_to_end_where_an_unclicked_piece_begins():
    pred = np.zeros((40, 64), np.int32)
    pred[10:30, 10:30] = 1  # one nucleus the model cut in two: the user clicks one piece
    pred[10:30, 30:50] = 2
    image = (pred > 0).astype(np.float32) * 200
    c = Corrections([(20, 20)], ["nucleus"])
    t = correction_targets(None, image, c, prediction=_prediction(pred))
    assert (t.instances[pred == 1] == 1).all() and (t.classes[pred == 2] < 0).all()
    # the side of the clicked piece that meets the other piece: out of the loss (its
    # interior stays interior)
    assert (t.classes[12:28, 29] < 0).all() and not t.center_mask[12:28, 29].any()
    assert (t.classes[12:28, 27:29] == 1).all()
    # its other sides: taught as usual (boundary inside, background outside)
    assert (t.classes[12:28, 10] == 2).all() and (t.classes[12:28, 5:8] == 0).all()
    assert (t.classes[15:25, 15:25] == 1).all()
    # when every nucleus is clicked the other piece is merged into the clicked one
    t = correction_targets(None, image, c, prediction=_prediction(pred), unclicked="negative")
    assert (t.instances[pred > 0] == 1).all() and (t.classes >= 0).all()


def test_retraining_starts_from_the_current_model_and_leaves_it_alone(fluo_256):
    from napari_segkit.model_io import load_default_model

    image, labels, coords, _ = fluo_256
    current = load_default_model()
    before = {k: v.clone() for k, v in current.net.state_dict().items()}
    inside = coords[(coords[:, 0] < 128) & (coords[:, 1] < 128)]
    c = Corrections([tuple(inside[0])], ["nucleus"])
    cfg = TrainConfig(steps=3, patch_size=64, batch_size=2, num_threads=1, seed=0)
    events = []
    model = retrain_with_corrections(current, [image[:128, :128]], [c], config=cfg,
                                     progress=events.append)
    assert events[-1].kind == "done" and model.provenance["training"]["labels"] == "targets"
    assert all(torch.equal(v, before[k]) for k, v in current.net.state_dict().items())
    changed = [k for k, v in model.net.state_dict().items()
               if v.is_floating_point() and not torch.equal(v, before[k])]
    assert changed  # trained from the current weights
    assert not [e for e in events if e.kind == "validation"]  # no hold-out on corrections
    with pytest.raises(ValueError, match="one Corrections"):
        retrain_with_corrections(current, [image], [], config=cfg)


def test_corrections_from_layers_keep_edits_only_when_they_change_the_prediction():
    from napari_segkit.corrections import corrections_from_layers

    predicted = np.zeros((20, 20), np.int32)
    predicted[2:8, 2:8] = 1
    c = corrections_from_layers(np.array([[5.0, 5.0], [15.0, 15.0]]), ["nucleus", "Background"],
                                predicted.copy(), predicted)
    assert c.classes == ["nucleus", "background"] and c.painted is None and c.erased is None
    edited = predicted.copy()
    edited[12:18, 12:18] = 7  # painted a missed nucleus
    c = corrections_from_layers(np.zeros((0, 2)), None, edited, predicted)
    assert len(c) == 0 and not c.empty and c.erased is None
    assert (c.painted > 0).sum() == 36 and not c.painted[2:8, 2:8].any()  # untouched: not in it
    with pytest.raises(ValueError, match="predict again"):
        corrections_from_layers(np.zeros((0, 2)), None, edited[:10], predicted)
    with pytest.raises(ValueError, match="several planes"):
        corrections_from_layers(np.array([[0, 5.0, 5.0], [1, 6.0, 6.0]]))


def test_retraining_and_suggestions_take_default_for_the_shipped_model(fluo_256):
    from napari_segkit.suggestions import suggest_clicks

    image = fluo_256[0][:128, :128]
    coords, scores, reasons = suggest_clicks("default", image, n=3)
    assert len(coords) == len(scores) == len(reasons) <= 3
    cfg = TrainConfig(steps=1, patch_size=64, batch_size=1, num_threads=1, seed=0)
    model = retrain_with_corrections("default", [image], [Corrections([(5, 5)], ["background"])],
                                     config=cfg)
    assert model.provenance["training"]["init"] != "none"


def test_drawn_edits_are_taught_as_drawn_on_each_new_prediction():
    from napari_segkit.corrections import corrections_from_layers, edits_from_layers

    pred = np.zeros((40, 80), np.int32)
    pred[10:30, 10:29] = 1  # one nucleus the model cut in two ...
    pred[10:30, 31:50] = 2
    pred[10:20, 60:70] = 3  # a false object
    pred[25:35, 60:70] = 4  # right, nobody touches it
    image = (pred > 0).astype(np.float32) * 200
    edited = pred.copy()
    edited[10:30, 10:50] = 1  # ... merged with the brush, the gap filled
    edited[edited == 3] = 0   # erased
    c = corrections_from_layers(np.zeros((0, 2)), None, edited, pred)
    assert len(c) == 0 and not c.empty
    assert (c.painted > 0).sum() == 20 * 40 and len(np.unique(c.painted)) == 2
    assert c.erased.sum() == 100 and c.erased[15, 65]
    t = correction_targets(None, image, c, prediction=_prediction(pred))  # unclicked unknown
    merged = t.instances[10:30, 10:50]
    assert (merged > 0).all() and len(np.unique(merged)) == 1  # one nucleus, gap included
    # taught whole: its outline on every side, the erased object as background
    assert (t.classes[10:30, 10:50] >= 0).all() and (t.classes[12:28, 9] == 0).all()
    assert (t.classes[12:28, 50] == 0).all() and (t.classes[pred == 3] == 0).all()
    assert (t.classes[pred == 4] < 0).all()  # nobody touched it: left out, as clicks leave it
    # a click elsewhere does not undo the drawing
    c.add((29, 65), "background")
    t = correction_targets(None, image, c, prediction=_prediction(pred))
    assert len(np.unique(t.instances[10:30, 10:50])) == 1 and (t.classes[pred == 4] == 0).all()
    # the next round predicts anew (the merge learnt, the false object still there): the
    # drawing and the erasure from before are kept where this round's edits say nothing
    pred2 = pred.copy()
    pred2[10:30, 10:50] = 1
    edited2 = pred2.copy()
    edited2[25:35, 60:70] = 0  # this round erases object 4
    c2 = corrections_from_layers(np.zeros((0, 2)), None, edited2, pred2)
    both = c2.with_earlier_edits(c)
    assert both.erased[15, 65] and both.erased[30, 65] and (both.painted[10:30, 10:50] > 0).all()
    t = correction_targets(None, image, both, prediction=_prediction(pred2))
    assert (t.classes[pred == 3] == 0).all() and (t.classes[pred == 4] == 0).all()
    # drawing over what an earlier round erased: the drawing wins
    pred3 = np.where(pred2 == 3, 0, pred2)
    edited3 = pred3.copy()
    edited3[12:18, 62:68] = 9
    both = corrections_from_layers(np.zeros((0, 2)), None, edited3, pred3).with_earlier_edits(c)
    assert not both.erased[15, 65] and both.painted[15, 65] > 0 and both.erased[11, 61]
    with pytest.raises(ValueError, match="not of the same image"):
        Corrections(erased=np.ones((5, 5), bool)).with_earlier_edits(c)
    assert edits_from_layers(pred, pred) == (None, None)
    with pytest.raises(ValueError, match="predict again"):
        correction_targets(None, image, Corrections(erased=np.ones((5, 5), bool)),
                           prediction=_prediction(pred))


def test_a_lone_click_in_an_unusually_large_object_is_counted():
    from napari_segkit.corrections import lone_clicks_in_large_objects

    pred = np.zeros((60, 80), np.int32)
    for k, c in enumerate((2, 14, 26, 38)):
        pred[2:12, c:c + 10] = k + 1  # four nuclei of 100 px
    pred[20:50, 20:60] = 5  # 1200 px: the model merged several nuclei
    assert lone_clicks_in_large_objects(Corrections([(30, 30)], ["nucleus"]), pred) == 1
    assert lone_clicks_in_large_objects(Corrections([(30, 30), (30, 50)], ["nucleus"] * 2), pred) == 0  # split
    assert lone_clicks_in_large_objects(Corrections([(30, 30)], ["background"]), pred) == 0
    assert lone_clicks_in_large_objects(Corrections([(5, 5), (55, 5)], ["nucleus"] * 2), pred) == 0
    assert lone_clicks_in_large_objects(Corrections([(30, 30)], ["nucleus"]), pred, factor=20) == 0
    assert lone_clicks_in_large_objects(Corrections([(3, 3)], ["nucleus"]), np.zeros((9, 9), int)) == 0


def test_retraining_warns_of_a_click_alone_in_a_large_object(monkeypatch):
    from napari_segkit import prediction
    from napari_segkit.corrections import correction_training, lone_click_warning

    pred = np.zeros((64, 64), np.int32)
    for k in range(6):
        pred[2:10, 2 + 10 * k:10 + 10 * k] = k + 1  # six nuclei of 64 px
    pred[20:50, 10:50] = 7  # 1200 px: several merged
    monkeypatch.setattr(prediction, "predict", lambda model, image, tta=False: _prediction(pred))
    image = (pred > 0).astype(np.float32) * 200

    def start_warnings(clicks):
        run = correction_training("default", [image], [Corrections(clicks, ["nucleus"] * len(clicks))],
                                  config=TrainConfig(steps=1, batch_size=1, patch_size=32))
        try:
            event = next(run)
            assert event.kind == "start"
            return event.warnings
        finally:
            run.close()

    assert start_warnings([(30, 30)]) == (lone_click_warning(1),)
    assert start_warnings([(30, 20), (30, 40)]) == ()  # each nucleus of it clicked
    assert lone_click_warning(0) == ""
    assert lone_click_warning(1).startswith("1 nucleus click is alone in an object over twice")
    assert lone_click_warning(3).startswith("3 nucleus clicks are alone in objects")


def test_a_partly_covered_object_keeps_the_rest_of_its_pixels():
    from napari_segkit.corrections import paste_edits

    pred = np.zeros((20, 40), np.int32)
    pred[2:18, 2:18] = 1   # mostly covered by the drawing: replaced
    pred[2:18, 22:38] = 2  # a corner covered: keeps the rest
    painted = np.zeros_like(pred)
    painted[2:18, 0:16] = 1
    painted[2:6, 22:26] = 2
    guide, known = paste_edits(pred, painted, None)
    assert (guide[2:18, 16:18] == 0).all()  # the sliver of object 1 is gone
    assert (guide[10, 30] == 2) and len(np.unique(guide[2:6, 22:26])) == 1 and guide[3, 23] > 2
    assert known.sum() == (painted > 0).sum()
