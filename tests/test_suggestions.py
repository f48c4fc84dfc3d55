"""Suggestions of where to click next."""

from __future__ import annotations

import numpy as np

from napari_segkit.model_io import load_default_model
from napari_segkit.prediction import predict
from napari_segkit.suggestions import contradicts_clicks, mirror_probabilities, suggest_clicks


def test_mirror_probabilities_map_back_to_the_image(fluo_256):
    image = fluo_256[0][:96, :128]
    model = load_default_model()
    probs = mirror_probabilities(model, image)
    assert probs.shape == (4, 4, 96, 128)
    plain = predict(model, image, tta=True).probabilities
    assert np.abs(probs.mean(axis=0) - plain).max() < 1e-3


def test_suggestions_rank_uncertain_places_and_contradicted_clicks_first(fluo_256):
    image, labels, _, _ = fluo_256
    model = load_default_model()
    coords, scores, reasons = suggest_clicks(model, image, n=8)
    assert 0 < len(coords) <= 8 and len(scores) == len(reasons) == len(coords)
    assert (np.diff(scores) <= 0).all()
    assert ((coords >= 0) & (coords < np.array(image.shape))).all()
    # the user's clicks: two nucleus clicks inside one predicted object, and one object
    # confirmed by a single click (no longer suggested)
    inst = predict(model, image, tta=True).instances
    ids, areas = np.unique(inst[inst > 0], return_counts=True)
    big = ids[np.argmax(areas)]
    rr, cc = np.nonzero(inst == big)
    two = np.array([[rr[0], cc[0]], [rr[-1], cc[-1]]], float)
    first = inst[int(coords[0][0]), int(coords[0][1])]
    r1, c1 = np.nonzero(inst == first) if first else (None, None)
    clicks = two if first in (0, big) else np.vstack([two, [[r1[0], c1[0]]]])
    coords2, scores2, reasons2 = suggest_clicks(model, image, clicks, n=8)
    assert "nucleus clicks in one object" in reasons2[0] and scores2[0] > 1
    assert contradicts_clicks(reasons2[0])  # what the Predict dock's status counts
    assert not any(contradicts_clicks(r) for r in reasons)  # no clicks, no contradiction
    assert inst[int(coords2[0][0]), int(coords2[0][1])] == big
    if first not in (0, big):
        hits = [inst[int(r), int(c)] for r, c in coords2]
        assert first not in hits  # confirmed objects are not suggested again
    assert suggest_clicks(model, image, n=0)[0].shape == (0, 2)
