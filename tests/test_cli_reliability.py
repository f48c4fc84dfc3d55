"""Issue 14: options mean what they say, bad input gets a clear message, nothing is lost.

CLI cases call :func:`napari_segkit.cli.main` in-process (argparse errors end in
``SystemExit(2)``); API cases call the functions directly.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import tifffile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from napari_segkit import io
from napari_segkit._sample import sample_path
from napari_segkit.cli import main


def run_cli(argv: list[str], capsys) -> tuple[int, str, str]:
    """Exit status, stdout and stderr of ``napari-segkit argv`` run in this process."""
    try:
        rc = main(argv)
    except SystemExit as exc:  # argparse: usage errors
        rc = exc.code if isinstance(exc.code, int) else 1
    out = capsys.readouterr()
    return rc, out.out, out.err


@pytest.fixture
def folders(tmp_path):
    """images/a.tif (a 96 x 96 crop), labels/a.tif, points/a.csv."""
    image = io.read_image(sample_path("fluo_256.tif"))[:96, :96]
    labels = io.read_labels(sample_path("fluo_256_labels.tif"))[:96, :96]
    coords, features = io.read_points_csv(sample_path("fluo_256_points.csv"))
    inside = (coords[:, 0] < 96) & (coords[:, 1] < 96)
    paths = {name: tmp_path / name for name in ("images", "labels", "points")}
    for p in paths.values():
        p.mkdir()
    tifffile.imwrite(paths["images"] / "a.tif", image)
    io.write_labels(paths["labels"] / "a.tif", labels)
    io.write_points_csv(paths["points"] / "a.csv", coords[inside],
                        features[inside].reset_index(drop=True))
    paths["tmp"] = tmp_path
    return paths


def train_args(folders, *extra: str) -> list[str]:
    return ["train", "--images", str(folders["images"]), "--labels", str(folders["labels"]),
            "--out", str(folders["tmp"] / "m.safetensors"), *extra]


# --------------------------------------------------------------------------- items 4, 6
@pytest.mark.parametrize("command", ["train", "demo"])
def test_minutes_nan_is_refused_at_once(folders, capsys, command):
    argv = train_args(folders, "--minutes", "nan") if command == "train" else [
        "demo", "--out", str(folders["tmp"] / "demo"), "--minutes", "nan"]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "--minutes" in err and "Traceback" not in err
    assert not (folders["tmp"] / "m.safetensors").exists()


@pytest.mark.parametrize(("option", "value"), [
    ("--minutes", "0"), ("--minutes", "-1"), ("--minutes", "inf"), ("--epochs", "0"),
    ("--epochs", "-3"), ("--epochs", "nan"), ("--patch-size", "0"), ("--patch-size", "-64"),
    ("--seed", "-1"), ("--color-variants", "-2"),
])
def test_zero_negative_nan_train_options_are_errors(folders, capsys, option, value):
    rc, _, err = run_cli(train_args(folders, option, value), capsys)
    assert rc == 2 and option in err, err
    assert "negative dimensions" not in err
    assert not (folders["tmp"] / "m.safetensors").exists()


def test_zoom_range_must_be_ordered_and_positive(folders, capsys):
    for low, high in (("2", "0.5"), ("0", "1"), ("nan", "2")):
        rc, _, err = run_cli(train_args(folders, "--zoom", low, high), capsys)
        assert rc == 2 and "--zoom" in err


@pytest.mark.parametrize(("option", "value"), [
    ("--tile-size", "0"), ("--tile-size", "-256"), ("--diameter", "nan"), ("--diameter", "-5"),
    ("--diameter", "0"),
])
def test_bad_predict_options_are_errors(folders, capsys, tiny_model_path, option, value):
    rc, _, err = run_cli(["predict", "--model", str(tiny_model_path), "--images",
                          str(folders["images"]), "--out", str(folders["tmp"] / "p"),
                          option, value], capsys)
    assert rc == 2 and option in err
    assert not (folders["tmp"] / "p").exists()


@pytest.mark.parametrize("bad", [
    {"time_budget_s": -60.0}, {"time_budget_s": float("nan")}, {"epochs": -3.0},
    {"epochs": 0.0}, {"patch_size": 0}, {"steps": -1}, {"batch_size": 0},
    {"lr": float("nan")}, {"scale_range": (2.0, 0.5)},
])
def test_api_train_rejects_bad_config_values(fluo_256, tiny_config, bad):
    from napari_segkit.training import TrainConfig, train

    image, labels, _, _ = fluo_256
    cfg = TrainConfig(**{"steps": 2, "model": tiny_config, **bad})
    with pytest.raises(ValueError, match=next(iter(bad))):
        next(train([image[:96, :96]], [labels[:96, :96]], config=cfg))


# --------------------------------------------------------------------------- item 8
def test_predict_refuses_to_write_into_its_image_folder(folders, capsys, tiny_model_path):
    images = folders["images"]
    rc, _, err = run_cli(["predict", "--model", str(tiny_model_path), "--images", str(images),
                          "--out", str(images)], capsys)
    assert rc == 2 and "--out" in err
    assert sorted(p.name for p in images.iterdir()) == ["a.tif"]


def test_predict_folder_api_refuses_its_image_folder(folders, tiny_model):
    from napari_segkit.workflows import predict_folder

    with pytest.raises(ValueError, match="folder"):
        predict_folder(tiny_model, folders["images"], folders["images"])


def test_train_refuses_one_folder_for_images_and_labels(folders, capsys):
    rc, _, err = run_cli(["train", "--images", str(folders["images"]), "--labels",
                          str(folders["images"]), "--out", str(folders["tmp"] / "m.safetensors")],
                         capsys)
    assert rc == 2 and "--labels" in err and "same folder" in err


# --------------------------------------------------------------------------- item 9
def test_train_refuses_labels_without_objects(folders, capsys, tiny_model_path):
    io.write_labels(folders["labels"] / "a.tif", np.zeros((96, 96), np.uint16))
    rc, _, err = run_cli(train_args(folders, "--init", str(tiny_model_path), "--epochs", "0.1"),
                         capsys)
    assert rc == 2 and "no object" in err
    assert not (folders["tmp"] / "m.safetensors").exists()


@pytest.mark.parametrize("clicks", ["background_only", "outside"])
def test_api_train_refuses_clicks_without_objects(fluo_256, tiny_config, clicks):
    from napari_segkit.training import TrainConfig, train

    image, _, coords, _ = fluo_256
    if clicks == "background_only":
        points = (coords[:20], ["background"] * 20)
    else:
        points = (coords[:20] + 10_000, ["nucleus"] * 20)
    cfg = TrainConfig(steps=2, model=tiny_config)
    with pytest.raises(ValueError, match="no object"):
        next(train([image], points=[points], config=cfg))


# --------------------------------------------------------------------------- item 11
def test_evaluate_prints_a_table_for_an_empty_prediction(tmp_path, capsys):
    pred, gt = tmp_path / "pred", tmp_path / "gt"
    pred.mkdir()
    gt.mkdir()
    shutil.copy(sample_path("fluo_256_labels.tif"), gt / "a.tif")
    io.write_labels(pred / "a_instances.tif", np.zeros((256, 256), np.uint16))
    rc, out, err = run_cli(["evaluate", "--pred", str(pred), "--gt", str(gt)], capsys)
    assert rc == 0, err
    assert "n/a" in out and "summary:" in out


# --------------------------------------------------------------------------- item 12
def test_convert_out_is_an_existing_folder(tmp_path, capsys):
    (tmp_path / "x.tif").mkdir()
    rc, _, err = run_cli(["convert", "--image", str(sample_path("fluo_256.tif")), "--points",
                          str(sample_path("fluo_256_points.csv")), "--mode", "click", "--out",
                          str(tmp_path / "x.tif")], capsys)
    assert rc == 2 and "--out" in err and "folder" in err


def test_train_out_is_an_existing_folder(folders, capsys):
    out = folders["tmp"] / "models"
    out.mkdir()
    argv = train_args(folders, "--epochs", "0.1")
    argv[argv.index("--out") + 1] = str(out)
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "--out" in err and "folder" in err


def test_predict_out_is_an_existing_file(folders, capsys, tiny_model_path):
    out = folders["tmp"] / "result.txt"
    out.write_text("keep me")
    rc, _, err = run_cli(["predict", "--model", str(tiny_model_path), "--images",
                          str(folders["images"]), "--out", str(out)], capsys)
    assert rc == 2 and "--out" in err and "file" in err
    assert out.read_text() == "keep me"


def test_output_under_a_file_is_refused_before_work(folders, capsys, tiny_model_path):
    blocker = folders["tmp"] / "blocker"
    blocker.write_text("")
    rc, _, err = run_cli(["predict", "--model", str(tiny_model_path), "--images",
                          str(folders["images"]), "--out", str(blocker / "sub")], capsys)
    assert rc == 2 and "--out" in err and "Traceback" not in err


def test_unwritable_output_is_refused_before_work(folders, capsys, monkeypatch):
    import os

    from napari_segkit import output_paths

    locked = folders["tmp"] / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(output_paths.os, "access",
                        lambda p, mode, **kw: False if str(p).startswith(str(locked))
                        else real_access(p, mode, **kw))
    argv = train_args(folders, "--epochs", "0.1")
    argv[argv.index("--out") + 1] = str(locked / "m.safetensors")
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2 and "--out" in err and "write" in err and "training on" not in err


# --------------------------------------------------------------------------- item 13
@pytest.fixture
def memory_cap():
    """At most 4 GiB more address space for the test (RLIMIT_AS), so a regression fails
    with MemoryError instead of taking the machine's memory."""
    resource = pytest.importorskip("resource")
    try:
        with open("/proc/self/status") as fh:
            vm = next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmSize"))
    except (OSError, StopIteration):
        pytest.skip("no /proc/self/status")
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = vm + 4 * 2**30
    if hard != resource.RLIM_INFINITY:
        cap = min(cap, hard)
    resource.setrlimit(resource.RLIMIT_AS, (cap, hard))
    try:
        yield cap
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def test_train_relabels_huge_uint64_ids(fluo_256, tiny_config, memory_cap):
    from napari_segkit.training import TrainConfig, train

    image, labels, _, _ = fluo_256
    huge = labels.astype(np.uint64) * np.uint64(1 << 40)
    cfg = TrainConfig(steps=1, patch_size=64, batch_size=1, model=tiny_config, num_threads=1)
    model = None
    for event in train([image], [huge], config=cfg):
        model = event.model or model
    assert model is not None


def test_patch_size_larger_than_every_image_is_refused(folders, capsys, tiny_model_path,
                                                      memory_cap):
    rc, _, err = run_cli(train_args(folders, "--patch-size", "4096", "--init",
                                    str(tiny_model_path), "--epochs", "0.1"), capsys)
    assert rc == 2 and "--patch-size" in err and "96" in err


# --------------------------------------------------------------------------- item 14
def test_scale_that_is_not_a_number_names_the_option(capsys, tmp_path):
    rc, _, err = run_cli(["convert", "--image", str(sample_path("fluo_256.tif")), "--points",
                          str(sample_path("fluo_256_points.csv")), "--mode", "click", "--out",
                          str(tmp_path / "x.tif"), "--scale", "abc"], capsys)
    assert rc == 2 and "--scale" in err


def test_a_one_row_image_keeps_its_shape(tmp_path):
    tifffile.imwrite(tmp_path / "row.tif", np.arange(10000, dtype=np.uint16)[None])
    assert io.read_image(tmp_path / "row.tif").shape == (1, 10000)


def test_a_tiff_without_pixels_says_so(tmp_path):
    bad = tmp_path / "bad.tif"
    bad.write_bytes(b"II*\x00" + b"\x00" * 60)
    with pytest.raises(ValueError, match="bad.tif") as info:
        io.read_image(bad)
    assert "(0,)" not in str(info.value)


def test_outline_ids_are_printed_plainly():
    from napari_segkit.annotations import convert_points

    coords = np.array([[5.0, 5.0], [5.0, 9.0]])
    import pandas as pd

    features = pd.DataFrame({"object_id": np.array([7, 7], np.int64)})
    with pytest.raises(ValueError) as info:
        convert_points(coords, features, (32, 32), "outline")
    assert "np.int64" not in str(info.value) and "object 7" in str(info.value)


# --------------------------------------------------------------------------- item 15
def test_ctrl_c_during_training_saves_the_weights(folders, capsys, monkeypatch, tiny_model_path):
    from napari_segkit import workflows
    from napari_segkit.model_io import load_model

    def interrupt(self, event):
        if event.kind == "step":
            raise KeyboardInterrupt

    monkeypatch.setattr(workflows.TrainingProgress, "__call__", interrupt)
    rc, _, err = run_cli(train_args(folders, "--init", str(tiny_model_path), "--epochs", "1",
                                    "--patch-size", "64"), capsys)
    out = folders["tmp"] / "m.safetensors"
    assert rc == 130 and out.is_file() and str(out) in err and "saved" in err
    assert load_model(out).provenance["training"]["steps"] >= 1


def test_ctrl_c_before_training_says_nothing_was_saved(folders, capsys, monkeypatch,
                                                       tiny_model_path):
    from napari_segkit import train_data

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_data, "targets_for", interrupt)
    rc, _, err = run_cli(train_args(folders, "--init", str(tiny_model_path), "--epochs", "1"),
                         capsys)
    assert rc == 130 and "no model was saved" in err
    assert not (folders["tmp"] / "m.safetensors").exists()


def test_interrupted_predict_keeps_the_table_of_finished_images(folders, tiny_model,
                                                                monkeypatch):
    from napari_segkit import workflows

    shutil.copy(folders["images"] / "a.tif", folders["images"] / "b.tif")
    real = workflows.predict_and_measure
    calls = []

    def second_interrupts(request, **kwargs):
        calls.append(request.image_name)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(request, **kwargs)

    monkeypatch.setattr(workflows, "predict_and_measure", second_interrupts)
    out = folders["tmp"] / "pred"
    with pytest.raises(KeyboardInterrupt):
        workflows.predict_folder(tiny_model, folders["images"], out, log=lambda _t: None)
    table = (out / "objects.csv").read_text().splitlines()
    assert table[0].startswith("image,") and all(r.startswith("a,") for r in table[1:])


# --------------------------------------------------------------------------- fuzz
BAD_NUMBERS = ["0", "-1", "-64", "-0.5", "nan", "NaN", "inf", "-inf", "1e308", "1e400",
               "99999999999999999999"]
TRAIN_NUMBER_OPTIONS = ["--minutes", "--epochs", "--steps", "--patch-size", "--color-variants",
                        "--seed"]
PREDICT_NUMBER_OPTIONS = ["--tile-size", "--diameter"]


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(command=st.sampled_from(["train", "predict", "demo"]), data=st.data())
def test_fuzz_bad_numbers_exit_2_with_a_message(folders, capsys, tiny_model_path, command,
                                                data):
    if command == "train":
        option = data.draw(st.sampled_from(TRAIN_NUMBER_OPTIONS + ["--zoom"]))
    elif command == "predict":
        option = data.draw(st.sampled_from(PREDICT_NUMBER_OPTIONS))
    else:
        option = "--minutes"
    value = data.draw(st.sampled_from(BAD_NUMBERS))
    if option == "--seed" and value in ("0", "-0.5"):  # 0 is a seed
        value = "-1"
    if option == "--color-variants" and value == "0":  # no variants is the default
        value = "-1"
    values = [value, "1"] if option == "--zoom" else [value]
    if option == "--zoom" and data.draw(st.booleans()):
        values = values[::-1]
    out = folders["tmp"] / "fuzz_out"
    if command == "train":
        argv = train_args(folders, "--init", str(tiny_model_path), option, *values)
    elif command == "predict":
        argv = ["predict", "--model", str(tiny_model_path), "--images", str(folders["images"]),
                "--out", str(out), option, *values]
    else:
        argv = ["demo", "--out", str(out), option, *values]
    rc, _, err = run_cli(argv, capsys)
    assert rc == 2, (argv, err)
    assert option in err and "Traceback" not in err
    assert not out.exists() and not (folders["tmp"] / "m.safetensors").exists()


def test_format_version_as_text_says_the_file_is_damaged(tiny_model_path, tmp_path):
    import json

    from safetensors import safe_open
    from safetensors.numpy import save_file

    from napari_segkit.model_io import ModelFileError, load_model

    with safe_open(str(tiny_model_path), "np") as fh:
        header = dict(fh.metadata())
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    meta = json.loads(header["segkit"])
    meta["format_version"] = "1"
    header["segkit"] = json.dumps(meta)
    bad = tmp_path / "text_version.safetensors"
    save_file(tensors, str(bad), metadata=header)
    with pytest.raises(ModelFileError) as info:
        load_model(bad)
    assert "upgrade" not in str(info.value) and "'1'" in str(info.value)


def test_all_nan_image_and_nan_vertices_get_plain_messages():
    from napari_segkit.annotations import convert_points, convert_shapes

    with pytest.raises(ValueError, match="no finite value"):
        convert_points(np.array([[10.0, 10.0]]), None, (64, 64), "click",
                       image=np.full((64, 64), np.nan))
    nan_z = np.array([[np.nan, 1, 1], [np.nan, 1, 9], [np.nan, 9, 9]])
    with pytest.raises(ValueError, match="finite"):
        convert_shapes([nan_z], (4, 64, 64), "fill")


def test_bad_number_from_a_terminal_has_no_traceback(tmp_path):
    """The installed command as a user runs it: a usage message, exit 2, no traceback."""
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "napari_segkit.cli", "train", "--images", str(tmp_path),
         "--labels", str(tmp_path / "l"), "--out", str(tmp_path / "m.safetensors"),
         "--minutes", "nan"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "--minutes" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_patch_size_that_would_not_fit_in_memory_is_refused():
    from types import SimpleNamespace

    from napari_segkit.train_config import TrainConfig, check_patch_size

    big_image = SimpleNamespace(shape=(40_000, 40_000))  # only its shape is looked at
    cpu = SimpleNamespace(type="cpu")
    with pytest.raises(ValueError, match="GiB") as info:
        check_patch_size(TrainConfig(patch_size=8192, batch_size=8), [big_image], 16, cpu)
    assert "--patch-size" in str(info.value)
    check_patch_size(TrainConfig(patch_size=256, batch_size=8), [big_image], 16, cpu)


def test_api_train_checks_out_path_before_training(fluo_256, tiny_config, tmp_path):
    from napari_segkit.training import TrainConfig, train

    image, labels, _, _ = fluo_256
    with pytest.raises(ValueError, match="existing folder"):
        next(train([image], [labels], config=TrainConfig(steps=2, model=tiny_config),
                   out_path=tmp_path))
