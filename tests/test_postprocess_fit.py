"""Post-processing fitted to annotated images: the search, the model file, prediction, CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from napari_segkit.cli import main
from napari_segkit.model_io import (
    ModelFileError,
    fitted_postprocess_of,
    load_model,
    save_model,
)
from napari_segkit.postprocess import fitted_kwargs, instances_from_probabilities
from napari_segkit.postprocess_fit import fit_model_postprocess, fit_postprocess
from napari_segkit.prediction import predict, predict_probabilities


def _faint_disks():
    """Labels of 3 disks and 3-class probabilities whose foreground is 0.45 on them: the
    default threshold (0.5) finds nothing, 0.3 or 0.4 finds every disk."""
    yy, xx = np.mgrid[:64, :64]
    labels = np.zeros((64, 64), np.uint16)
    for i, (r, c) in enumerate([(16, 16), (16, 46), (46, 30)], start=1):
        labels[(yy - r) ** 2 + (xx - c) ** 2 <= 49] = i
    probs = np.zeros((3, 64, 64), np.float32)
    probs[0] = np.where(labels > 0, 0.55, 0.95)
    probs[1] = 1.0 - probs[0]
    return probs, labels


def test_fit_finds_the_threshold_that_matches_the_masks_and_keeps_the_evidence():
    probs, labels = _faint_disks()
    fit = fit_postprocess([probs], [labels], n_classes=3)
    assert fit.default_f1 == 0.0 and fit.f1 == 1.0 and fit.n_objects == 3
    assert fit.settings.fg_threshold in (0.3, 0.4) and fit.settings.split == 0
    assert len(fit.table) == 5 * 6 and fit.table[(0.5, 0)] == 0.0
    stored = fit.as_dict()
    assert stored["fitted_f1"] == 1.0 and stored["default_f1"] == 0.0
    assert "threshold 0.40" in fit.summary() or "threshold 0.30" in fit.summary()
    # where nothing beats the defaults they stay (ties go to the defaults)
    clear = np.stack([np.where(labels > 0, 0.0, 1.0), (labels > 0) * 1.0, np.zeros_like(probs[0])])
    fit = fit_postprocess([clear], [labels], n_classes=3)
    assert (fit.settings.fg_threshold, fit.settings.split) == (0.5, 0) and fit.f1 == 1.0


def test_fit_refuses_what_it_cannot_score():
    probs, labels = _faint_disks()
    with pytest.raises(ValueError, match="1 predictions but 2 label images"):
        fit_postprocess([probs], [labels, labels], n_classes=3)
    with pytest.raises(ValueError, match="hold no objects"):
        fit_postprocess([probs], [np.zeros_like(labels)], n_classes=3)
    with pytest.raises(ValueError, match="do not fit 2-D labels"):
        fit_postprocess([probs], [labels[:32]], n_classes=3)
    with pytest.raises(ValueError, match="at least one image"):
        fit_postprocess([], [], n_classes=3)


@pytest.fixture(scope="module")
def fitted(tiny_model, fluo_256):
    image, labels = fluo_256[:2]
    model = dataclasses.replace(tiny_model, postprocess=None)
    return fit_model_postprocess(model, [image], [labels])


def test_fitted_settings_travel_with_the_model_and_prediction_uses_them(fitted, fluo_256, tmp_path):
    model, fit = fitted
    image = fluo_256[0]
    assert model.postprocess == fit.as_dict()
    path = save_model(model, tmp_path / "fitted.safetensors")
    assert load_model(path).postprocess == model.postprocess
    assert fitted_postprocess_of(path) == model.postprocess
    # prediction fills in the fitted threshold and seeds, explicit ones win
    model.postprocess = {"fg_threshold": 0.35, "split": 8}
    probs = predict_probabilities(model, image)
    k = model.config.n_classes
    kw = fitted_kwargs(model.postprocess, has_center=probs.shape[0] > k)
    assert kw["fg_threshold"] == 0.35 and kw.get("seed_method") == "h_maxima"
    want = instances_from_probabilities(probs, n_classes=k, **kw)
    np.testing.assert_array_equal(predict(model, image).instances, want)
    plain = instances_from_probabilities(probs, n_classes=k, fg_threshold=0.6,
                                         **{x: v for x, v in kw.items() if x != "fg_threshold"})
    np.testing.assert_array_equal(predict(model, image, fg_threshold=0.6).instances, plain)
    model.postprocess = fit.as_dict()


def test_a_hostile_fitted_setting_is_refused_when_the_model_is_read(fitted, tmp_path):
    model, _ = fitted
    bad = dataclasses.replace(model, postprocess={"fg_threshold": 0.5, "split": 3})
    path = save_model(bad, tmp_path / "bad.safetensors")
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["segkit"])
    meta["postprocess"]["split"] = 99
    save_file(load_file(str(path)), str(path), metadata={"segkit": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="split level must be a whole number 0..10"):
        load_model(path)
    assert fitted_postprocess_of(path) is None
    meta["postprocess"] = {"fg_threshold": 0.4, "split": 2, "fitted_f1": "lots", "x": [1] * 9}
    save_file(load_file(str(path)), str(path), metadata={"segkit": json.dumps(meta)})
    assert load_model(path).postprocess == {"fg_threshold": 0.4, "split": 2}  # no junk kept
    with pytest.raises(ValueError, match="between 0 and 1"):
        save_model(dataclasses.replace(model, postprocess={"fg_threshold": 1.5}),
                   tmp_path / "worse.safetensors")


def test_training_starts_without_the_fitted_settings_of_its_start(fitted, fluo_256):
    from napari_segkit.train_config import run_to_end
    from napari_segkit.training import TrainConfig, train

    model, _ = fitted
    image, labels = fluo_256[:2]
    trained = run_to_end(train([image], labels=[labels], init=model, config=TrainConfig(
        steps=2, batch_size=2, patch_size=64, device="cpu", replay_fraction=0.0)))
    assert trained.postprocess is None and model.postprocess is not None


def test_cli_fit_writes_a_model_with_its_fitted_settings(fluo_256, tmp_path, capsys):
    import tifffile

    image, labels = fluo_256[:2]
    (tmp_path / "im").mkdir()
    (tmp_path / "lb").mkdir()
    tifffile.imwrite(tmp_path / "im" / "a.tif", image)
    tifffile.imwrite(tmp_path / "lb" / "a.tif", labels)
    out = tmp_path / "fitted.safetensors"
    assert main(["fit", "--model", "default", "--images", str(tmp_path / "im"),
                 "--labels", str(tmp_path / "lb"), "--out", str(out)]) == 0
    said = capsys.readouterr().out
    assert "F1@0.5" in said and str(out) in said
    model = load_model(out)
    assert model.postprocess["n_objects"] == len(np.unique(labels)) - 1
    # `predict` uses the fitted settings, as the Python API does
    model.postprocess = {**model.postprocess, "fg_threshold": 0.3, "split": 2}
    save_model(model, out)
    assert main(["predict", "--model", str(out), "--images", str(tmp_path / "im"),
                 "--out", str(tmp_path / "pred")]) == 0
    written = tifffile.imread(tmp_path / "pred" / "a_instances.tif")
    np.testing.assert_array_equal(written, predict(model, image).instances)
    plain = predict(dataclasses.replace(model, postprocess=None), image).instances
    assert not np.array_equal(written, plain)
    assert main(["fit", "--model", "default", "--images", str(tmp_path / "im"),
                 "--labels", str(tmp_path / "im"), "--out", str(out)]) == 2
    assert "same folder" in capsys.readouterr().err


def test_fit_to_the_last_prediction_of_the_predict_dock():
    from napari_segkit.workflows import PredictOutcome, fit_to_ground_truth

    probs, labels = _faint_disks()
    outcome = PredictOutcome(probabilities=probs, n_classes=3)
    fit = fit_to_ground_truth(outcome, labels, min_size=5)
    assert fit.settings.fg_threshold in (0.3, 0.4) and fit.f1 == 1.0 and fit.settings.min_size == 5
    # the default size limits scale with a test-time zoom: at 1/4 the disks (154 px) are
    # below the default minimum (12 px at the model's scale: 192 px here)
    assert fit_to_ground_truth(outcome, labels).f1 == 1.0
    assert fit_to_ground_truth(dataclasses.replace(outcome, zoom=0.25), labels).f1 == 0.0
    with pytest.raises(ValueError, match="Labels layer with every nucleus"):
        fit_to_ground_truth(outcome, None)
    with pytest.raises(ValueError, match="does not match the predicted image"):
        fit_to_ground_truth(outcome, labels[:32])
    with pytest.raises(ValueError, match="press Predict first"):
        fit_to_ground_truth(PredictOutcome(), labels)
    with pytest.raises(ValueError, match="block-wise prediction"):
        fit_to_ground_truth(PredictOutcome(levels={"instances": []}), labels)
    with pytest.raises(ValueError, match="2-D images"):
        fit_to_ground_truth(PredictOutcome(probabilities=probs[:, None], n_classes=3), labels)
