"""npe2 sample-data contributions: a real nuclei image with its ground truth and clicks.

Returns napari LayerData tuples; no napari import needed. Works offline, also from a
wheel (the files ship inside the package).
"""

from __future__ import annotations

import pandas as pd
import tifffile

from ._common import BACKGROUND_CLASS, is_rgb
from ._sample import list_samples, sample_path
from .io import read_points_csv

POINT_COLORS = {"nucleus": "#ffd400", BACKGROUND_CLASS: "#00b4ff"}


def points_layer_kwargs(features: pd.DataFrame, name: str) -> dict:
    """Display settings shared by every 'clicks' Points layer (sample data and widgets)."""
    features = features.copy()
    if "class" not in features:
        features["class"] = "nucleus"
    features["class"] = pd.Categorical(
        features["class"].astype(str), categories=list(POINT_COLORS)
    )
    return {
        "name": name,
        "features": features,
        "face_color": "class",
        "face_color_cycle": list(POINT_COLORS.values()),
        "border_color": "black",
        "size": 7,
        "feature_defaults": {"class": "nucleus"},
    }


def load_sample(name: str) -> list[tuple]:
    """Image, ground-truth Labels and example clicks of one sample, as LayerData tuples."""
    row = next((r for r in list_samples() if r["name"] == name), None)
    if row is None:
        raise ValueError(f"no sample named {name!r}")
    image = tifffile.imread(sample_path(row["image"]))
    labels = tifffile.imread(sample_path(row["labels"]))
    coords, features = read_points_csv(sample_path(row["points"]))
    layers: list[tuple] = [
        (image, {"name": name, "rgb": is_rgb(image.shape)}, "image"),
        (labels, {"name": f"{name} ground truth", "opacity": 0.4, "visible": False}, "labels"),
        (coords, points_layer_kwargs(features, f"{name} clicks"), "points"),
    ]
    return layers


def fluo_512() -> list[tuple]:
    return load_sample("fluo_512")


def fluo_dense() -> list[tuple]:
    return load_sample("fluo_dense")


def fluo_256() -> list[tuple]:
    return load_sample("fluo_256")


def he_rgb() -> list[tuple]:
    return load_sample("he_rgb")


