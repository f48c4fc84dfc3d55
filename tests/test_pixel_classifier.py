"""Instant pixel classifier: accuracy from a few strokes on real images, API contracts."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segkit import io
from napari_segkit._sample import sample_path
from napari_segkit.pixel_classifier import (
    SCRIBBLE_CLASSES,
    PixelClassifier,
    scribbles_from_points,
    simulate_scribbles,
    sparse_labels_from_proba,
)
from napari_segkit.pixel_features import feature_names, pixel_features


def _sample(name):
    return io.read_image(sample_path(f"{name}.tif")), io.read_labels(sample_path(f"{name}_labels.tif"))


def _iou(a, b):
    return (a & b).sum() / (a | b).sum()


@pytest.fixture(scope="module")
def fluo_512():
    return _sample("fluo_512")


@pytest.fixture(scope="module")
def fluo_512_strokes(fluo_512):
    # 10 strokes across 10 nuclei (spread over the size range, > 2 px inside their edge)
    # and 10 background strokes of 15 px in the gaps between nuclei, 3 px wide: 817 +
    # 550 = 1,367 px, 0.52 % of the 512x512 image (the nuclei cover 20 %).
    _, labels = fluo_512
    return simulate_scribbles(labels, n_objects=10, n_background=10, seed=0)


def test_a_few_strokes_segment_the_nuclei_of_fluo_512(fluo_512, fluo_512_strokes):
    image, labels = fluo_512
    strokes = fluo_512_strokes
    assert (strokes > 0).sum() < 0.006 * strokes.size
    assert (labels[strokes == 2] > 0).all() and (labels[strokes == 1] == 0).all()
    assert len(np.unique(labels[strokes == 2])) == 10  # one stroke in each of 10 nuclei
    clf = PixelClassifier().fit(image, strokes)
    classes = clf.predict(image)
    assert classes.dtype == np.uint8 and set(np.unique(classes)) == {1, 2}
    assert _iou(classes == SCRIBBLE_CLASSES["nucleus"], labels > 0) >= 0.8


def test_strided_prediction_matches_predicting_every_pixel(fluo_512, fluo_512_strokes):
    image, _ = fluo_512
    exact = PixelClassifier(stride=1).fit(image, fluo_512_strokes)
    fast = PixelClassifier(stride=2).fit(image, fluo_512_strokes)
    p_exact, p_fast = exact.predict_proba(image), fast.predict_proba(image)
    assert p_fast.shape == p_exact.shape == (2, *image.shape) and p_fast.dtype == np.float32
    np.testing.assert_allclose(p_fast.sum(axis=0), 1.0, atol=1e-5)
    agree = (p_fast.argmax(0) == p_exact.argmax(0)).mean()
    assert agree > 0.995
    # interpolated values are kept only where they are confident; elsewhere exact
    differ = (np.abs(p_fast - p_exact) > 1e-6).any(axis=0)
    assert differ.any() and (p_fast.max(axis=0)[differ] >= fast.refine).all()


def test_rgb_histology_from_strokes():
    image, labels = _sample("he_rgb")
    strokes = simulate_scribbles(labels, n_objects=8, n_background=8, seed=0)
    clf = PixelClassifier().fit(image, strokes)
    fg = clf.predict(image) == 2
    assert fg.shape == labels.shape
    assert _iou(fg, labels > 0) >= 0.75
    with pytest.raises(ValueError, match="RGB"):
        clf.predict(image[..., 0])


def test_uint8_uint16_and_float_inputs_give_the_same_classes(fluo_512, fluo_512_strokes):
    image, _ = fluo_512  # uint16 holding 0..235
    ref = PixelClassifier().fit(image, fluo_512_strokes).predict(image)
    for variant in (image.astype(np.uint8), image.astype(np.float64) / 235.0 - 0.3,
                    image.astype(np.float32) * 250.0):
        got = PixelClassifier().fit(variant, fluo_512_strokes).predict(variant)
        assert (got == ref).mean() > 0.999


def test_bad_input_says_what_to_do(fluo_512, fluo_512_strokes):
    image, _ = fluo_512
    clf = PixelClassifier()
    with pytest.raises(ValueError, match="not trained yet"):
        clf.predict(image)
    with pytest.raises(ValueError, match="no scribbles yet"):
        clf.fit(image, np.zeros(image.shape, np.uint8))
    with pytest.raises(ValueError, match="at least two classes"):
        clf.fit(image, (fluo_512_strokes == 2).astype(np.uint8) * 2)
    with pytest.raises(ValueError, match="shape"):
        clf.fit(image, fluo_512_strokes[:-1])
    with pytest.raises(ValueError, match="integer label image"):
        clf.fit(image, fluo_512_strokes.astype(float))
    bad = image.astype(np.float32)
    bad[3, 4] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        clf.fit(bad, fluo_512_strokes)
    with pytest.raises(ValueError, match="one slice at a time"):
        clf.fit(np.stack([image, image]), fluo_512_strokes)
    for kwargs in ({"sigmas": []}, {"sigmas": [1, -2]}, {"stride": 0}, {"refine": 0.2},
                   {"n_estimators": 0}, {"max_depth": 0}):
        with pytest.raises(ValueError):
            PixelClassifier(**kwargs)


def test_features_of_the_last_image_are_reused(monkeypatch, fluo_512, fluo_512_strokes):
    import napari_segkit.pixel_classifier as pc

    image, _ = fluo_512
    calls = []
    monkeypatch.setattr(pc, "pixel_features", lambda *a: calls.append(1) or pixel_features(*a))
    clf = PixelClassifier()
    clf.fit(image, fluo_512_strokes)
    clf.predict_proba(image)
    clf.fit(image.copy(), fluo_512_strokes)  # same content, another array
    assert len(calls) == 1
    changed = image.copy()
    changed[0, 0] += 1
    clf.predict(changed)
    assert len(calls) == 2


def test_to_dict_round_trip_predicts_the_same(fluo_512, fluo_512_strokes):
    image, _ = fluo_512
    clf = PixelClassifier(n_estimators=10, random_state=3).fit(image, fluo_512_strokes)
    state = clf.to_dict()
    assert all(isinstance(v, (int, float, list, type(None))) for v in state["params"].values())
    assert isinstance(state["samples"], np.ndarray) and state["samples"].dtype == np.float32
    assert len(state["samples"]) == (fluo_512_strokes > 0).sum()
    again = PixelClassifier.from_dict(state)
    np.testing.assert_array_equal(again.predict_proba(image), clf.predict_proba(image))
    untrained = PixelClassifier.from_dict(PixelClassifier().to_dict())
    assert not untrained.is_fitted
    with pytest.raises(ValueError, match="to_dict"):
        PixelClassifier.from_dict({"samples": []})


def test_max_samples_caps_the_training_set(fluo_512):
    image, labels = fluo_512
    dense = np.where(labels > 0, 2, 1).astype(np.uint8)  # every pixel painted
    clf = PixelClassifier(max_samples=5000).fit(image, dense)
    assert len(clf.to_dict()["samples"]) == 5000
    assert _iou(clf.predict(image) == 2, labels > 0) > 0.8


def test_more_than_two_classes():
    rng = np.random.default_rng(1)
    image = np.zeros((64, 96), np.float32)
    image[:, 32:64], image[:, 64:] = 1.0, 2.0
    image += rng.normal(0, 0.05, image.shape).astype(np.float32)
    scribbles = np.zeros(image.shape, np.uint8)
    scribbles[10:20, 5:25], scribbles[10:20, 40:55], scribbles[40:50, 70:90] = 1, 2, 5
    clf = PixelClassifier(stride=1).fit(image, scribbles)
    assert clf.classes_.tolist() == [1, 2, 5]
    assert clf.predict_proba(image).shape == (3, 64, 96)
    classes = clf.predict(image)
    assert (classes[:, 36:60] == 2).mean() > 0.95 and (classes[:, 68:] == 5).mean() > 0.95


def test_features_gray_and_rgb():
    gray = np.random.default_rng(0).random((40, 50)).astype(np.float32)
    feats = pixel_features(gray)
    assert feats.shape == (40, 50, len(feature_names())) and feats.dtype == np.float32
    np.testing.assert_array_equal(pixel_features(gray[..., None]), feats)
    rgb = np.stack([gray, gray**2, 1 - gray], axis=-1)
    assert pixel_features(rgb).shape[-1] == len(feature_names(rgb=True)) > feats.shape[-1]
    np.testing.assert_array_equal(pixel_features(gray, n_jobs=1), feats)


def test_scribbles_from_clicks():
    points = np.array([[10, 10], [30, 40], [30, 41], [100, 5]])
    with pytest.warns(UserWarning, match="1 point"):
        out = scribbles_from_points(points, ["nucleus", "background", "nucleus", "background"],
                                    (50, 60), radius=3)
    assert out.dtype == np.uint8 and out.shape == (50, 60)
    assert out[10, 10] == 2 and out[10, 13] == 2 and out[10, 14] == 0
    assert (out[:20, :20] == 2).sum() == 29  # a disk of radius 3
    assert out[30, 41] == 2 and out[30, 37] == 1  # the later click is painted on top
    assert out[0, 0] == 0
    assert (scribbles_from_points(points[:1], None, (50, 60), radius=0) == 2).sum() == 1
    assert scribbles_from_points(np.empty((0, 2)), [], (5, 5)).max() == 0
    np.testing.assert_array_equal(
        scribbles_from_points(points[:2], [3, 1], (50, 60), radius=1)[[10, 30], [10, 40]], [3, 1]
    )
    with pytest.raises(ValueError, match="unknown point class"):
        scribbles_from_points(points[:1], ["cell"], (50, 60))
    with pytest.raises(ValueError, match="one class per point"):
        scribbles_from_points(points, ["nucleus"], (50, 60))
    with pytest.raises(ValueError, match=r"\(N, 2\)"):
        scribbles_from_points(np.zeros((3, 3)), None, (50, 60))


def test_clicks_train_the_classifier(fluo_512):
    image, labels = fluo_512
    coords, features = io.read_points_csv(sample_path("fluo_512_points.csv"))
    scribbles = scribbles_from_points(coords, features["class"], image.shape, radius=2)
    assert set(np.unique(scribbles)) == {0, 1, 2}
    fg = PixelClassifier().fit(image, scribbles).predict(image) == 2
    # every clicked nucleus is found; its extent is rough, as the 8 background clicks
    # lie far (> 8 px) from every nucleus and leave the boundary unconstrained
    clicked = np.unique(labels[scribbles == 2])
    found = np.array([fg[labels == k].mean() > 0.5 for k in clicked[clicked > 0]])
    assert found.mean() > 0.95
    assert _iou(fg, labels > 0) > 0.5


def test_confident_pixels_become_sparse_training_labels(fluo_512, fluo_512_strokes):
    from napari_segkit import annotations

    image, labels = fluo_512
    proba = PixelClassifier().fit(image, fluo_512_strokes).predict_proba(image)
    sparse = sparse_labels_from_proba(proba, confidence=0.9)
    assert sparse.dtype == np.uint8 and sparse.shape == labels.shape
    assert set(np.unique(sparse)) == {annotations.SPARSE_IGNORE, annotations.SPARSE_BACKGROUND,
                                      annotations.SPARSE_OBJECT}
    obj, bg = sparse == annotations.SPARSE_OBJECT, sparse == annotations.SPARSE_BACKGROUND
    assert (labels[obj] > 0).mean() > 0.9 and (labels[bg] == 0).mean() > 0.97
    looser = sparse_labels_from_proba(proba, confidence=0.6)
    assert (looser > 0).sum() > (sparse > 0).sum()
    with pytest.raises(ValueError, match="confidence"):
        sparse_labels_from_proba(proba, confidence=0.5)
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        sparse_labels_from_proba(proba[0])


def test_simulated_strokes_are_deterministic_and_inside_their_class(fluo_512):
    _, labels = fluo_512
    a = simulate_scribbles(labels, 6, 5, seed=4)
    np.testing.assert_array_equal(a, simulate_scribbles(labels, 6, 5, seed=4))
    assert not np.array_equal(a == 1, simulate_scribbles(labels, 6, 5, seed=5) == 1)
    assert (labels[a == 2] > 0).all() and (labels[a == 1] == 0).all()
    with pytest.raises(ValueError):
        simulate_scribbles(np.zeros((10, 10), int))
