"""Shared fixtures: real sample data from sample_data/ (never ../shared) and a tiny model."""

from __future__ import annotations

import os

import numpy as np
import pytest

# torch on 2 cores: keep tests from oversubscribing the machine
os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def fluo_256():
    """(image, labels, coords, features) of the 256x256 fluorescence sample."""
    from napari_segkit import io
    from napari_segkit._sample import sample_path

    image = io.read_image(sample_path("fluo_256.tif"))
    labels = io.read_labels(sample_path("fluo_256_labels.tif"))
    coords, features = io.read_points_csv(sample_path("fluo_256_points.csv"))
    return image, labels, coords, features


@pytest.fixture
def rng():
    return np.random.default_rng(0)


@pytest.fixture(scope="session")
def tiny_config():
    """The network config of tiny test models: a depth-2, width-8 UNet (fast on a CPU)."""
    from napari_segkit.model import UNetConfig

    return UNetConfig(width=8, depth=2)


@pytest.fixture(scope="session")
def tiny_model(tiny_config):
    """An untrained tiny model, the same in every run (seed 0); predict with it, do not
    train it (training copies it: ``init=tiny_model``)."""
    import torch

    from napari_segkit.model_io import SegModel

    torch.manual_seed(0)
    return SegModel.new(tiny_config)


@pytest.fixture(scope="session")
def tiny_model_path(tiny_model, tmp_path_factory):
    """``tiny_model`` saved as a model file."""
    from napari_segkit.model_io import save_model

    path = tmp_path_factory.mktemp("model") / "tiny.safetensors"
    save_model(tiny_model, path)
    return path
