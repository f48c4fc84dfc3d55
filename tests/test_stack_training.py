"""Training a 2-D model on 3-D stacks: planes, 3-D validation, events, bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from napari_segkit.holdout import HeldOut, count_matches, mask_matches_at
from napari_segkit.model_io import load_model
from napari_segkit.normalization import Normalization
from napari_segkit.prediction import predict
from napari_segkit.stack_training import stack_planes
from napari_segkit.synthetic import synthetic_nuclei_stack
from napari_segkit.training import TrainConfig, train
from napari_segkit.workflows import run_training

SPACING = (1.0, 0.25, 0.25)


@pytest.fixture(scope="module")
def stack():
    return synthetic_nuclei_stack((16, 96, 96), spacing=SPACING, seed=61)


def centre_clicks(labels: np.ndarray) -> np.ndarray:
    """One (z, y, x) click per object: its voxel nearest the centroid, on a plane."""
    from skimage.measure import regionprops

    out = []
    for r in regionprops(labels):
        coords = r.coords
        out.append(coords[np.argmin(((coords - r.centroid) ** 2).sum(axis=1))])
    return np.asarray(out, float)


def fg_iou(a: np.ndarray, b: np.ndarray) -> float:
    return float(((a > 0) & (b > 0)).sum() / max(((a > 0) | (b > 0)).sum(), 1))


def config(tiny_config, **kw) -> TrainConfig:
    base = {"steps": 6, "patch_size": 48, "batch_size": 2, "model": tiny_config,
            "val_every": 3, "num_threads": 1}
    return TrainConfig(**{**base, **kw})


def test_xy_planes_and_3d_holdout(stack, tiny_config):
    cfg = config(tiny_config)
    planes = stack_planes(stack.image, stack.labels, None, np.array(SPACING), cfg,
                          Normalization(), 1, 3)
    cut = 77  # the bottom 20 % of 96 rows is held out of every plane
    assert len(planes.x) == 16 and all(x.shape == (1, cut, 96) for x in planes.x)
    assert planes.targets[5].classes.shape == (cut, 96)
    part = planes.holdout
    assert part.x.shape == (1, 16, 96 - cut + 32, 96) and part.first_row == 32
    assert part.scale == SPACING and part.instances.shape == (16, 51, 96)
    # the true objects score perfectly against themselves, in 3-D
    tp, fp, fn = mask_matches_at(part.instances, part, (0.5,))[0]
    assert tp > 0 and fp == fn == 0


def test_all_orientations_resample_z(stack, tiny_config):
    cfg = config(tiny_config, stack_planes="all", val_fraction=0.0)
    planes = stack_planes(stack.image, stack.labels, None, np.array(SPACING), cfg,
                          Normalization(), 1, 3)
    # 16 xy planes, 96 xz and 96 yz planes with z stretched 4x to square pixels
    assert len(planes.x) == 16 + 96 + 96
    assert planes.x[16].shape == (1, 64, 96) and planes.x[-1].shape == (1, 64, 96)
    assert planes.holdout is None
    # a spacing too coarse in z for resampled planes: xy planes only
    coarse = stack_planes(stack.image, stack.labels, None, np.array((2.0, 0.25, 0.25)), cfg,
                          Normalization(), 1, 3)
    assert len(coarse.x) == 16


def test_count_matches_in_3d():
    pred = np.zeros((4, 10, 10), int)
    pred[1:3, 6:9, 2:5] = 1
    pred[1:3, 6:9, 6:9] = 2
    part = HeldOut(np.zeros((1, 4, 10, 10)), 5, clicks=np.array([[2.0, 7, 3]]),
                   background=np.zeros((0, 3)), region=np.ones((4, 10, 10), bool))
    assert count_matches(pred, part) == (1, 1, 0)


def test_train_from_3d_masks_learns(stack, tiny_config, tmp_path):
    out = tmp_path / "stack.safetensors"
    cfg = config(tiny_config, steps=80, val_every=40, patch_size=64, batch_size=4, seed=1)
    events = list(train([stack.image], [stack.labels], config=cfg, scale=SPACING,
                        out_path=out))
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done" and "checkpoint" in kinds
    assert "16 images, 1 held-out" in events[0].message  # 16 xy planes train
    assert events[-1].val_kind == "mask" and events[-1].val_counts is not None
    model = events[-1].model
    assert load_model(out).provenance["training"]["labels"] == "instances"
    result = predict(model, stack.image, scale=SPACING)
    assert result.instances.shape == stack.labels.shape
    assert fg_iou(result.instances, stack.labels) > 0.5


def test_train_from_3d_clicks_and_stop(stack, tiny_config):
    clicks = centre_clicks(stack.labels)
    stop = threading.Event()
    seen = []

    def on_event(event):
        seen.append(event)
        if event.kind == "step" and event.step == 4:
            stop.set()

    model = run_training([stack.image], points=[clicks], config=config(tiny_config, steps=50, log_every=1),
                         scale=SPACING, stop=stop, on_event=on_event)
    assert seen[-1].kind == "stopped" and seen[-1].step == 4
    assert any(e.kind == "validation" and e.val_kind == "count" for e in seen)
    assert model.provenance["training"]["labels"] == "points"


def test_sparse_3d_labels_train(stack, tiny_config):
    from napari_segkit.annotations.clicks3d import clicks_to_sparse_labels_3d

    sparse = clicks_to_sparse_labels_3d(stack.image, centre_clicks(stack.labels), scale=SPACING)
    events = list(train([stack.image], [sparse], config=config(tiny_config,
                                                                labels_kind="sparse")))
    assert events[-1].kind == "done"


def test_separate_validation_stack(stack, tiny_config):
    other = synthetic_nuclei_stack((12, 64, 64), spacing=SPACING, seed=62, radius_um=(2.0, 3.0))
    events = list(train([stack.image], [stack.labels], config=config(tiny_config),
                        val=([other.image], [other.labels]), scale=SPACING))
    assert any(e.kind == "validation" and e.val_kind == "mask" for e in events)


def test_bad_stack_inputs(stack, tiny_config):
    cfg = config(tiny_config)
    with pytest.raises(ValueError, match="2-D labels for a stack"):
        next(train([stack.image], [stack.labels[0]], config=cfg))
    with pytest.raises(ValueError, match="of the stack's shape"):
        next(train([stack.image], [stack.labels[:, :50]], config=cfg))
    with pytest.raises(ValueError, match="needs the voxel size"):
        next(train([stack.image], points=[centre_clicks(stack.labels)], config=cfg))
    with pytest.raises(ValueError, match=r"\(N, 3\)"):
        next(train([stack.image], points=[centre_clicks(stack.labels)[:, 1:]], config=cfg,
                   scale=SPACING))
    with pytest.raises(ValueError, match="not both"):
        next(train([stack.image, stack.image[0]], [stack.labels, stack.labels[0]], config=cfg))
    with pytest.raises(ValueError, match="voxel sizes"):
        next(train([stack.image], [stack.labels], config=cfg, scale=[SPACING, SPACING]))
    with pytest.raises(ValueError, match="stack_planes"):
        next(train([stack.image], [stack.labels], config=config(tiny_config,
                                                                 stack_planes="xz")))


def test_cli_trains_on_stacks_with_a_voxel_size(stack, tmp_path, capsys):
    import tifffile

    from napari_segkit import io
    from napari_segkit.cli import main

    images, labels = tmp_path / "images", tmp_path / "labels"
    images.mkdir()
    labels.mkdir()
    tifffile.imwrite(images / "s.tif", stack.image)
    io.write_labels(labels / "s.tif", stack.labels)
    model = tmp_path / "m.safetensors"
    assert main(["train", "--images", str(images), "--labels", str(labels), "--out", str(model),
                 "--init", "none", "--epochs", "0.3", "--patch-size", "32", "--scale", "1",
                 "0.25", "0.25", "--stack-planes", "all"]) == 0
    cfg = load_model(model).provenance["training"]["config"]
    assert cfg["stack_planes"] == "all"
    assert "done in" in capsys.readouterr().out


def test_click_masks_teach_their_edges(stack, tiny_config, monkeypatch):
    """3-D click masks follow their nuclei: the voxels just outside each in-plane outline
    are taught as background (no ignored ring by default); RING_PIXELS restores a ring."""
    from scipy import ndimage as ndi

    from napari_segkit import stack_training
    from napari_segkit._common import IGNORE_INDEX

    cfg = config(tiny_config, val_fraction=0.0)
    clicks = centre_clicks(stack.labels)

    def edge_classes():
        planes = stack_planes(stack.image, None, clicks, np.array(SPACING), cfg,
                              Normalization(), 1, 3)
        z = stack.image.shape[0] // 2
        fg = planes.targets[z].instances > 0
        assert fg.any()
        outside = ndi.binary_dilation(fg) & ~fg
        return planes.targets[z].classes[outside]

    assert (edge_classes() == 0).all()
    monkeypatch.setattr(stack_training, "RING_PIXELS", 2.0)
    assert (edge_classes() == IGNORE_INDEX).all()
