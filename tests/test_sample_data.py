"""Sample data: real images with labels and clicks, also from an installed wheel."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

from napari_segkit._sample import list_samples
from napari_segkit._sample_data import load_sample

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", [row["name"] for row in list_samples()])
def test_each_sample_opens_with_labels_and_clicks(name):
    (image, img_kw, _), (labels, lab_kw, kind), (coords, pts_kw, pkind) = load_sample(name)
    assert kind == "labels" and pkind == "points"
    assert labels.shape == image.shape[: labels.ndim] and labels.max() > 0
    assert img_kw["rgb"] == (image.ndim == 3 and labels.ndim == 2)
    assert coords.shape[1] == labels.ndim
    # a stack carries its voxel size on every layer
    assert img_kw.get("scale") == lab_kw.get("scale") == pts_kw.get("scale")
    assert (img_kw.get("scale") is not None) == (labels.ndim == 3)
    classes = pts_kw["features"]["class"]
    assert set(classes) == {"nucleus", "background"}
    nuclei = coords[np.asarray(classes == "nucleus")]
    # every example click lies on a nucleus of the ground truth, exactly on a plane
    assert np.array_equal(nuclei, nuclei.round())
    assert (labels[tuple(nuclei.astype(int).T)] > 0).all()
    assert (classes == "nucleus").sum() == len(np.unique(labels)) - 1


def test_sample_data_menu_in_napari(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segkit", "fluo_512")
    names = [layer.name for layer in viewer.layers]
    assert names == ["fluo_512", "fluo_512 ground truth", "fluo_512 clicks"]
    assert viewer.layers["fluo_512 clicks"].features["class"].dtype == "category"


def test_synthetic_stack_sample_opens_in_3d_with_its_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample("napari-segkit", "nuclei3d_synth")
    image = viewer.layers["nuclei3d_synth"]
    assert image.data.shape == (24, 128, 128) and not image.rgb
    for layer in viewer.layers:
        assert tuple(layer.scale) == (1.0, 0.25, 0.25)
    clicks = viewer.layers["nuclei3d_synth clicks"]
    labels = viewer.layers["nuclei3d_synth ground truth"].data
    nuclei = clicks.data[np.asarray(clicks.features["class"] == "nucleus")].astype(int)
    assert len(nuclei) == labels.max()
    # one click per nucleus, each on its own nucleus
    assert len(set(labels[tuple(nuclei.T)])) == labels.max()


@pytest.mark.slow
def test_wheel_carries_the_sample_files_and_they_load_offline(tmp_path):
    wheel_dir, target = tmp_path / "wheel", tmp_path / "site"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(wheel_dir),
                    str(REPO)], check=True)
    (wheel,) = wheel_dir.glob("napari_segkit-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "napari_segkit/_sample_files/fluo_512.tif" in names
    assert "napari_segkit/_sample_files/manifest.csv" in names
    assert "napari_segkit/napari.yaml" in names
    assert "napari_segkit/models/default_nuclei.safetensors" in names
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True)
    code = ("import napari_segkit._sample as s, napari_segkit._sample_data as d; "
            "print(s.sample_dir()); print(len(d.fluo_256()))")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, check=True,
                         capture_output=True, text=True, env={"PYTHONPATH": str(target)}).stdout
    assert str(target) in out.splitlines()[0] and out.splitlines()[1] == "3"


def test_public_api_is_lazy_and_qt_free():
    code = ("import sys, napari_segkit as s; assert s.annotations.clicks_to_labels; "
            "assert s.match_instances is s.metrics.match_instances; "
            "bad = [m for m in ('qtpy', 'PyQt6', 'napari', 'magicgui') if m in sys.modules]; "
            "assert not bad, bad; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert out.stdout.strip() == "ok"
