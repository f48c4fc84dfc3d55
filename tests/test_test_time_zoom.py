"""predict(..., diameter=...): zoom to the model's object size and back."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from skimage.draw import disk
from torch import nn

from napari_segkit.metrics import match_instances
from napari_segkit.model import UNetConfig
from napari_segkit.model_io import SegModel, load_model, save_model
from napari_segkit.object_size import SHAPE_FACTOR
from napari_segkit.prediction import predict


class DiskNet(nn.Module):
    """Stand-in for a trained model: foreground = bright, centre = blurred intensity."""

    def __init__(self) -> None:
        super().__init__()
        self.config = UNetConfig(width=4, depth=2)
        r = 8
        x = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-0.5 * (x / 3.0) ** 2)
        g /= g.sum()
        self.register_buffer("k", (g[:, None] * g[None, :])[None, None])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b = F.conv2d(F.pad(x, [8] * 4, mode="replicate"), self.k)
        fg = 12 * (x - 0.5)
        return torch.cat([-fg, fg, torch.full_like(fg, -10), 12 * (b - 0.8)], 1)


def _disks(radius, n_side=3, margin=None):
    margin = margin or 2 * radius
    side = n_side * (2 * radius + margin) + margin
    labels = np.zeros((side, side), np.uint16)
    k = 0
    for i in range(n_side):
        for j in range(n_side):
            k += 1
            c = (margin + radius + i * (2 * radius + margin), margin + radius + j * (2 * radius + margin))
            labels[disk(c, radius, shape=labels.shape)] = k
    return (labels > 0).astype(np.float32) * 200 + 10, labels


@pytest.fixture
def model():
    net = DiskNet()
    return SegModel(net=net, config=net.config, object_diameter=16.0)


def test_auto_zooms_large_objects_down_and_maps_back(model):
    image, labels = _disks(radius=24)  # diameter 48, three times the model's 16
    plain = predict(model, image)
    auto = predict(model, image, diameter="auto")
    assert auto.zoom < 0.6 and auto.diameter == pytest.approx(SHAPE_FACTOR * 48, rel=0.15)
    assert auto.instances.shape == image.shape
    assert auto.probabilities.shape == plain.probabilities.shape
    m = match_instances(labels, auto.instances, 0.7)
    assert m.tp == 9 and m.fp == 0


def test_auto_keeps_the_first_pass_when_sizes_match(model):
    image, _ = _disks(radius=7)  # diameter 14 * SHAPE_FACTOR ~ 17: within tolerance
    auto = predict(model, image, diameter="auto")
    plain = predict(model, image)
    assert auto.zoom == 1.0
    assert np.array_equal(auto.instances, plain.instances)
    assert np.array_equal(auto.probabilities, plain.probabilities)


def test_explicit_diameter(model):
    image, labels = _disks(radius=4)  # diameter 8: zoom 2 up
    res = predict(model, image, diameter=8.0)
    assert res.zoom == pytest.approx(2.0) and res.diameter == 8.0
    assert res.instances.shape == image.shape
    assert match_instances(labels, res.instances, 0.5).tp == 9
    same = predict(model, image, diameter=16.0)
    assert same.zoom == 1.0
    assert np.array_equal(same.instances, predict(model, image).instances)


def test_bad_diameter_arguments(model):
    image, _ = _disks(radius=4)
    for bad in ("big", -3, 0, float("nan"), [1, 2]):
        with pytest.raises(ValueError, match="diameter"):
            predict(model, image, diameter=bad)
    with pytest.raises(ValueError, match="2-D"):
        predict(model, np.stack([image] * 3 + [image]), diameter=10.0)
    old = SegModel(net=model.net, config=model.config)
    with pytest.raises(ValueError, match="records no training object diameter"):
        predict(old, image, diameter="auto")
    import dask.array as da

    with pytest.raises(ValueError, match="numpy"):
        predict(model, da.from_array(image, chunks=64), diameter=10.0)


def test_object_diameter_in_model_files_and_training(tmp_path, fluo_256):
    from napari_segkit.object_size import median_object_diameter
    from napari_segkit.training import TrainConfig
    from napari_segkit.workflows import run_training

    m = SegModel.new(UNetConfig(width=4, depth=2), object_diameter=21.5)
    assert load_model(save_model(m, tmp_path / "m.safetensors")).object_diameter == 21.5
    assert load_model(save_model(SegModel.new(UNetConfig(width=4, depth=2)),
                                 tmp_path / "n.safetensors")).object_diameter is None
    image, labels, _, _ = fluo_256
    cfg = TrainConfig(steps=2, batch_size=2, patch_size=64, val_fraction=0.0, device="cpu",
                      model=UNetConfig(width=4, depth=2))
    trained = run_training([image], [labels], config=cfg)
    assert trained.object_diameter == pytest.approx(median_object_diameter([labels]))
