"""Shared fixtures: real sample data from sample_data/ (never ../shared)."""

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
