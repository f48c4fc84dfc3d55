"""npe2 sample-data contributions: real nuclei images (and one synthetic 3-D stack) with
their ground truth and clicks.

Returns napari LayerData tuples; no napari import needed. Works offline, also from a
wheel (the files ship inside the package).
"""

from __future__ import annotations

import pandas as pd
import tifffile

from ._common import BACKGROUND_CLASS, is_rgb
from ._sample import list_samples, sample_path
from .io import read_image, read_labels, read_points_csv

POINT_COLORS = {"nucleus": "#ffd400", BACKGROUND_CLASS: "#00b4ff"}


def read_sample(name: str):
    """(image, instance labels) of the sample called ``name`` in ``manifest.csv``, e.g.
    ``read_sample("fluo_512")``, as numpy arrays (no layers)."""
    row = next((r for r in list_samples() if r["name"] == name), None)
    if row is None:
        raise FileNotFoundError(f"no sample called {name!r} in the sample manifest: use one "
                                f"of {', '.join(r['name'] for r in list_samples())}")
    return read_image(sample_path(row["image"])), read_labels(sample_path(row["labels"]))


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
    # a stack's voxel size (z, y, x), from the manifest's "spacing" column, goes to every layer
    spacing = (row.get("spacing") or "").split()
    scale = {"scale": tuple(float(s) for s in spacing)} if spacing else {}
    layers: list[tuple] = [
        (image, {"name": name, "rgb": labels.ndim == 2 and is_rgb(image.shape), **scale}, "image"),
        (labels, {"name": f"{name} ground truth", "opacity": 0.4, "visible": False, **scale},
         "labels"),
        (coords, {**points_layer_kwargs(features, f"{name} clicks"), **scale}, "points"),
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




def nuclei3d_synth() -> list[tuple]:
    """The synthetic 3-D stack (24 x 128 x 128, voxels 1 x 0.25 x 0.25 um)."""
    return load_sample("nuclei3d_synth")
