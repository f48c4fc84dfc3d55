"""The napari-segkit command, driven as a user would from a terminal."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from napari_segkit import io
from napari_segkit._sample import sample_path
from napari_segkit.cli import main
from napari_segkit.metrics import match_instances


def test_convert_offers_exactly_the_annotation_modes():
    """The CLI lists its modes literally (so that ``--help`` does not import scikit-image);
    they must be the modes ``annotations.convert_*`` know, no more and no fewer."""
    from napari_segkit import annotations
    from napari_segkit.cli import build_parser

    sub = next(a for a in build_parser()._actions if a.dest == "command")
    convert = sub.choices["convert"]
    mode = next(a for a in convert._actions if a.dest == "mode")
    assert sorted(mode.choices) == sorted(annotations.MODES)


@pytest.mark.parametrize(
    ("source", "mode", "n_objects"),
    [
        ("--points", "click", 125),
        ("--shapes", "fill", 24),
        ("--shapes", "box-object", 8),
        ("--outlines", "outline", 12),
    ],
)
def test_convert_modes(tmp_path, capsys, source, mode, n_objects):
    files = {"--points": "fluo_512_points.csv", "--shapes": "fluo_512_shapes.csv",
             "--outlines": "fluo_512_outlines.csv"}
    flag = "--shapes" if source == "--shapes" else "--points"
    out = tmp_path / "labels.tif"
    rc = main(["convert", "--image", str(sample_path("fluo_512.tif")), flag,
               str(sample_path(files[source])), "--mode", mode, "--out", str(out)])
    assert rc == 0
    labels = io.read_labels(out)
    assert labels.shape == (512, 512) and labels.dtype == np.uint16
    assert len(np.unique(labels[labels > 0])) == n_objects
    assert f"{n_objects} objects" in capsys.readouterr().out
    gt = io.read_labels(sample_path("fluo_512_labels.tif"))
    match = match_instances(gt, labels, 0.5)
    assert match.tp >= 0.8 * n_objects  # every mode finds the nuclei it was given


def test_convert_sparse(tmp_path):
    out = tmp_path / "sparse.tif"
    assert main(["convert", "--image", str(sample_path("fluo_256.tif")), "--points",
                 str(sample_path("fluo_256_points.csv")), "--mode", "sparse", "--out", str(out)]) == 0
    sparse = io.read_labels(out)
    assert set(np.unique(sparse)) <= {0, 1, 2} and (sparse == 2).any() and (sparse == 1).any()


def test_convert_bad_input_exits_2_with_a_message(tmp_path, capsys):
    image = str(sample_path("fluo_512.tif"))
    # a shapes CSV given as points, a missing file, an unsuitable mode
    assert main(["convert", "--image", image, "--points", str(sample_path("fluo_512_shapes.csv")),
                 "--mode", "click", "--out", str(tmp_path / "x.tif")]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["convert", "--image", str(tmp_path / "nope.tif"), "--points",
                 str(sample_path("fluo_512_points.csv")), "--mode", "click",
                 "--out", str(tmp_path / "x.tif")]) == 2
    assert "nope.tif" in capsys.readouterr().err
    assert main(["convert", "--image", image, "--shapes", str(sample_path("fluo_512_shapes.csv")),
                 "--mode", "click", "--out", str(tmp_path / "x.tif")]) == 2
    assert "mode" in capsys.readouterr().err


def test_evaluate_pairs_by_stem(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    for name in ("fluo_256", "fluo_512"):
        shutil.copy(sample_path(f"{name}_labels.tif"), gt / f"{name}.tif")
        shutil.copy(sample_path(f"{name}_labels.tif"), pred / f"{name}_instances.tif")
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["f1"] == 1.0 and result["summary"]["n_gt"] == 125 + 53
    assert {r["image"] for r in result["images"]} == {"fluo_256", "fluo_512"}
    assert main(["evaluate", "--pred", str(pred), "--gt", str(gt)]) == 0
    assert "summary:" in capsys.readouterr().out
    # one pair of label files
    assert main(["evaluate", "--pred", str(pred / "fluo_256_instances.tif"), "--gt",
                 str(gt / "fluo_256.tif"), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["summary"]["n_gt"] == 53 and result["images"][0]["image"] == "fluo_256"
    assert main(["evaluate", "--pred", str(pred / "fluo_256_instances.tif"), "--gt",
                 str(gt)]) == 2
    assert "two label images" in capsys.readouterr().err


def test_train_then_predict_from_clicks(tmp_path, capsys):
    images, points = tmp_path / "images", tmp_path / "points"
    images.mkdir()
    points.mkdir()
    shutil.copy(sample_path("fluo_256.tif"), images / "a.tif")
    shutil.copy(sample_path("fluo_256_points.csv"), points / "a.csv")
    model = tmp_path / "model.safetensors"
    rc = main(["train", "--images", str(images), "--points", str(points), "--out", str(model),
               "--init", "none", "--epochs", "0.5", "--patch-size", "64", "--seed", "1",
               "--zoom", "0.8", "1.25"])
    assert rc == 0 and model.is_file()
    from napari_segkit.model_io import load_model

    assert load_model(model).provenance["training"]["config"]["scale_range"] == [0.8, 1.25]
    done = capsys.readouterr().out
    # the result in words: which weights were kept, and the held-out clicks found
    assert "done in" in done and "kept" in done and "held-out clicks: " in done, done
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--images", str(images), "--out", str(out),
                 "--tta"]) == 0
    assert (out / "a_instances.tif").is_file() and (out / "a_semantic.tif").is_file()
    table = (out / "objects.csv").read_text().splitlines()
    assert table[0].startswith("image,label")
    assert "a:" in capsys.readouterr().out


def test_suggest_then_correct_is_one_round_of_the_correction_loop(tmp_path, capsys):
    import torch

    from napari_segkit.model_io import load_default_model, load_model

    images, clicks, sug = tmp_path / "images", tmp_path / "clicks", tmp_path / "suggested"
    images.mkdir()
    clicks.mkdir()
    io.write_labels(images / "a.tif", io.read_image(sample_path("fluo_256.tif"))[:128, :160])
    assert main(["suggest", "--model", "default", "--images", str(images), "--out", str(sug),
                 "-n", "4"]) == 0
    coords, features = io.read_points_csv(sug / "a.csv")
    assert 0 < len(coords) <= 4 and list(features["rank"]) == list(range(1, len(coords) + 1))
    assert (np.diff(features["score"]) <= 0).all() and features["reason"].str.len().min() > 0
    assert "napari-segkit correct" in capsys.readouterr().out
    # the suggestions are questions, not answers
    assert main(["correct", "--model", "default", "--images", str(images), "--points", str(sug),
                 "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "holds suggestions" in capsys.readouterr().err
    assert main(["suggest", "--model", "default", "--images", str(images), "--out", str(clicks),
                 "--points", str(clicks)]) == 2
    assert "overwrite your corrections" in capsys.readouterr().err
    # the user's answers: a background click on the first suggestion, a missed nucleus, and
    # a click outside the image (left out, with a warning)
    io.write_points_csv(clicks / "a.csv", np.array([coords[0], [60.0, 70.0], [400.0, 5.0]]),
                        {"class": ["background", "nucleus", "nucleus"]})
    # an image the user did not correct is left out, and the command line says which
    io.write_labels(images / "b.tif", io.read_image(sample_path("fluo_256.tif"))[:96, :96])
    out = tmp_path / "round1.safetensors"
    assert main(["correct", "--model", "default", "--images", str(images), "--points",
                 str(clicks), "--out", str(out), "--steps", "3", "--seed", "3"]) == 0
    captured = capsys.readouterr()
    assert "1 of 3 clicks of a.csv lie outside" in captured.err
    assert "2 corrections (1 nucleus, 1 background); budget=3 steps" in captured.err
    assert "warning: 1 image has no corrections and is left out: b.tif" in captured.err
    assert "done in" in captured.out and ": 3 steps on" in captured.out and str(out) in captured.out
    start, retrained = load_default_model().net.state_dict(), load_model(out).net.state_dict()
    assert any(not torch.equal(start[k], retrained[k]) for k in start)
    io.write_points_csv(clicks / "a.csv", np.array([[400.0, 5.0]]), {"class": ["nucleus"]})
    assert main(["correct", "--model", str(out), "--images", str(images), "--points",
                 str(clicks), "--out", str(tmp_path / "r2.safetensors")]) == 2
    assert "outside its image" in capsys.readouterr().err


def test_correct_from_edited_instances(tmp_path, capsys):
    """The correction loop's brush edits from a terminal: predict, edit the written
    instances (erase a false object, merge two pieces, draw a missed nucleus), correct."""
    import torch

    from napari_segkit.model_io import load_default_model, load_model

    images, pred, edited = tmp_path / "images", tmp_path / "pred", tmp_path / "edited"
    images.mkdir()
    edited.mkdir()
    io.write_labels(images / "a.tif", io.read_image(sample_path("fluo_256.tif"))[:128, :160])
    assert main(["predict", "--model", "default", "--images", str(images), "--out",
                 str(pred), "--labels-format", "tif"]) == 0
    predicted = io.read_labels(pred / "a_instances.tif")
    ids, areas = np.unique(predicted[predicted > 0], return_counts=True)
    assert len(ids) >= 3
    labels = predicted.copy()
    labels[labels == ids[0]] = 0  # erased
    labels[labels == ids[2]] = ids[1]  # two pieces merged into one nucleus
    rr, cc = np.ogrid[:128, :160]
    disk = ((rr - 120) ** 2 + (cc - 150) ** 2 <= 16) & (labels == 0)
    labels[disk] = 999  # a nucleus drawn where the model saw none
    io.write_labels(edited / "a_instances.tif", labels)
    # no corrections at all, then the wrong instances file
    assert main(["correct", "--model", "default", "--images", str(images), "--out",
                 str(tmp_path / "x.safetensors")]) == 2
    assert "give the corrections" in capsys.readouterr().err
    io.write_labels(tmp_path / "a_instances.tif", labels[:100])
    bad = tmp_path / "bad"
    bad.mkdir()
    shutil.move(tmp_path / "a_instances.tif", bad / "a_instances.tif")
    assert main(["correct", "--model", "default", "--images", str(images), "--edited",
                 str(bad), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "edit the instances that napari-segkit predict wrote" in capsys.readouterr().err
    # the edits against the unedited folder, and against the model predicting again
    erased_px = int(areas[0])
    for extra in (["--predicted", str(pred)], []):
        out = tmp_path / f"m{len(extra)}.safetensors"
        assert main(["correct", "--model", "default", "--images", str(images), "--edited",
                     str(edited), *extra, "--out", str(out), "--steps", "3"]) == 0
        err = capsys.readouterr().err
        assert f"0 corrections (0 nucleus, 0 background), 2 objects drawn or edited, " \
               f"{erased_px} px erased" in err
        assert "differs from this model's prediction" not in err
        start, tuned = load_default_model().net.state_dict(), load_model(out).net.state_dict()
        assert any(not torch.equal(start[k], tuned[k]) for k in start)
    # edited instances from other settings: the warning says to give --predicted
    io.write_labels(edited / "a_instances.tif", np.where(predicted > 0, predicted + 1, 0))
    assert main(["correct", "--model", "default", "--images", str(images), "--edited",
                 str(edited), "--out", str(tmp_path / "y.safetensors"), "--steps", "1"]) == 0
    assert "pass the unedited folder as --predicted" in capsys.readouterr().err


def _one_labelled_pair(tmp_path):
    """images/ and labels/ folders holding the fluo_256 sample as a.tif."""
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    shutil.copy(sample_path("fluo_256.tif"), images / "a.tif")
    shutil.copy(sample_path("fluo_256_labels.tif"), labels / "a.tif")
    return images, labels


def test_train_replay_option(tmp_path, capsys):
    """--replay sets the fine-tuning's replay (by default none from full masks), is refused
    for a new model and out of range."""
    from napari_segkit.model_io import load_model

    images, labels = _one_labelled_pair(tmp_path)
    common = ["train", "--images", str(images), "--labels", str(labels), "--epochs", "0.2",
              "--patch-size", "64"]
    for extra, expected in (([], 0.0), (["--replay", "0.5"], 0.5)):
        out = tmp_path / f"m{len(extra)}.safetensors"
        assert main([*common, "--out", str(out), *extra]) == 0
        training = load_model(out).provenance["training"]
        assert training["config"]["replay_fraction"] == (None if not extra else expected)
        assert training["fine_tuning"]["replay_fraction"] == expected
    assert main([*common, "--out", str(tmp_path / "x.safetensors"), "--init", "none",
                 "--replay", "0.5"]) == 2
    assert "a new model (--init none) has none" in capsys.readouterr().err
    assert main([*common, "--out", str(tmp_path / "x.safetensors"), "--replay", "2"]) == 2
    assert "at most 0.9 of every batch" in capsys.readouterr().err


def test_train_steps_option(tmp_path, capsys):
    """--steps N trains exactly N steps (a time budget, when given too, can end it first)
    and cannot be combined with --epochs."""
    from napari_segkit.model_io import load_model

    images, labels = _one_labelled_pair(tmp_path)
    common = ["train", "--images", str(images), "--labels", str(labels), "--patch-size", "64"]
    out = tmp_path / "m.safetensors"
    assert main([*common, "--out", str(out), "--steps", "4"]) == 0
    captured = capsys.readouterr()
    assert "budget=4 steps" in captured.err and ": 4 steps on" in captured.out
    config = load_model(out).provenance["training"]["config"]
    assert config["steps"] == 4 and config["time_budget_s"] is None
    assert main([*common, "--out", str(out), "--steps", "4", "--epochs", "1"]) == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_train_reports_missing_pairs(tmp_path, capsys):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    shutil.copy(sample_path("fluo_256.tif"), images / "a.tif")
    assert main(["train", "--images", str(images), "--labels", str(labels),
                 "--out", str(tmp_path / "m.safetensors")]) == 2
    assert "no image" in capsys.readouterr().err


def test_predict_with_a_corrupt_model_says_so(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a model")
    assert main(["predict", "--model", str(bad), "--images", str(tmp_path), "--out",
                 str(tmp_path / "o")]) == 2
    assert "bad.safetensors" in capsys.readouterr().err


def test_train_with_arch_loss_colour_and_predict_with_diameter(tmp_path, capsys):
    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    shutil.copy(sample_path("he_rgb.tif"), images / "a.tif")
    shutil.copy(sample_path("he_rgb_labels.tif"), labels / "a.tif")
    model = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(model),
                 "--init", "none", "--epochs", "0.3", "--patch-size", "64", "--arch", "unext",
                 "--loss", "focal", "--color-variants", "2"]) == 0
    from napari_segkit.model_io import load_model

    m = load_model(model)
    cfg = m.provenance["training"]["config"]
    assert m.config.arch == "unext" and cfg["loss"] == "focal" and cfg["color_variants"] == 2
    assert m.object_diameter is not None
    capsys.readouterr()
    out = tmp_path / "pred"
    assert main(["predict", "--model", str(model), "--images", str(images), "--out", str(out),
                 "--diameter", "auto"]) == 0
    assert (out / "a_instances.tif").is_file()
    assert main(["predict", "--model", str(model), "--images", str(images), "--out", str(out),
                 "--diameter", "big"]) == 2
    assert "--diameter" in capsys.readouterr().err
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(model),
                 "--arch", "unetpp"]) == 2
    assert "--init none" in capsys.readouterr().err
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(model),
                 "--init", "none", "--loss", "hinge"]) == 2
    assert "unknown loss" in capsys.readouterr().err


def test_train_and_fit_take_one_image_file_with_its_annotation_file(tmp_path, capsys):
    """One image needs no folders: --images a.tif with --labels a_labels.tif (or a folder
    holding a.tif), or --points a.csv; a label file beside a folder of images is refused."""
    from napari_segkit.model_io import load_model

    image, labels = sample_path("fluo_256.tif"), sample_path("fluo_256_labels.tif")
    common = ["--patch-size", "64", "--steps", "2", "--init", "none"]
    out = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(image), "--labels", str(labels), "--out", str(out),
                 *common]) == 0
    assert load_model(out).provenance["training"]["n_images"] == 1
    assert main(["train", "--images", str(image), "--points",
                 str(sample_path("fluo_256_points.csv")), "--out", str(out), *common]) == 0
    folder = tmp_path / "labels"
    folder.mkdir()
    shutil.copy(labels, folder / "fluo_256.tif")
    assert main(["train", "--images", str(image), "--labels", str(folder), "--out", str(out),
                 *common]) == 0
    capsys.readouterr()
    assert main(["train", "--images", str(image), "--labels", str(tmp_path), "--out", str(out),
                 *common]) == 2
    assert "fluo_256.tif does not exist" in capsys.readouterr().err
    assert main(["train", "--images", str(folder), "--labels", str(labels), "--out", str(out),
                 *common]) == 2
    assert "is one file" in capsys.readouterr().err
    assert main(["fit", "--model", "default", "--images", str(image), "--labels", str(labels),
                 "--out", str(tmp_path / "fitted.safetensors")]) == 0
    assert main(["predict", "--model", "default", "--images", str(tmp_path / "nope.tif"),
                 "--out", str(tmp_path / "o")]) == 2
    assert "it does not exist" in capsys.readouterr().err


def test_skipped_clicks_are_a_warning_line_not_a_python_traceback(tmp_path, capsys):
    """A click outside the image is left out, and the command line says so as it says
    things (``warning: ...``), not as Python shows warnings (file, line, source)."""
    clicks = tmp_path / "clicks.csv"
    clicks.write_text("index,axis-0,axis-1\n0,5000,5000\n1,40,60\n2,120,80\n")
    assert main(["train", "--images", str(sample_path("fluo_256.tif")), "--points", str(clicks),
                 "--out", str(tmp_path / "m.safetensors"), "--init", "none", "--steps", "2",
                 "--patch-size", "64"]) == 0
    err = capsys.readouterr().err
    assert "warning: 1 click outside the image was skipped" in err, err
    assert "UserWarning" not in err and "clicks.py" not in err


def test_the_command_line_trains_on_every_core(tmp_path):
    """No napari window to keep a core for: train (and correct, demo) use every core; the
    library's default (num_threads=None) keeps one free."""
    import os

    from napari_segkit.model_io import load_model

    images, labels = _one_labelled_pair(tmp_path)
    out = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(out),
                 "--steps", "1", "--patch-size", "64", "--init", "none"]) == 0
    config = load_model(out).provenance["training"]["config"]
    assert config["num_threads"] == (os.cpu_count() or 1)
