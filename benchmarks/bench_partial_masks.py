"""How well the partial-annotation warning of fine-tuning tells partial masks or clicks
from full ones.

Inside the fully annotated region fine-tuning teaches every pixel without a mask, and
every predicted object without a click, as background, so a user who annotates some
nuclei and leaves the rest teaches the model to miss them.
``train_data.partial_annotation_warnings`` predicts each image with the model being
fine-tuned and warns when it finds objects no annotation touches
(``train_data.unannotated_count``, ``train_data.looks_partial``). This script keeps a
random fraction of each image's ground-truth nuclei (seed 0), as masks and as one click
near each one's centroid, and prints, per model and image set, how many images would be
warned about: with every nucleus annotated (false alarms) and with fewer.

    .venv/bin/python benchmarks/bench_partial_masks.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_finetune import NO_COLOUR_MODEL, default_data, load_train  # noqa: E402
from bench_val import clicks_near_centroids, load_val  # noqa: E402

FRACTIONS = (1.0, 0.75, 0.5, 0.25, 0.1)


def keep_some(labels: np.ndarray, fraction: float, rng) -> np.ndarray:
    """``labels`` with a random ``fraction`` of its objects kept (at least one)."""
    ids = np.unique(labels)[1:]
    keep = rng.choice(ids, max(1, int(round(fraction * len(ids)))), replace=False)
    return np.where(np.isin(labels, keep), labels, 0)


def main() -> None:
    from napari_segkit.model_io import load_default_model, load_model
    from napari_segkit.prediction import predict
    from napari_segkit.train_data import (
        PARTIAL_MIN_FRACTION,
        PARTIAL_MIN_OBJECTS,
        looks_partial,
        unannotated_count,
    )

    root = default_data()
    default = load_default_model()
    _, vx, vy = load_val(root)
    _, rx, ry = load_train(root, "RGB")
    cases = (("val/, default model", default, vx, vy),
             ("train/ RGB, default model (trained on them)", default, rx, ry),
             ("train/ RGB, no-colour model (a new domain)", load_model(NO_COLOUR_MODEL), rx, ry))
    print(f"warned: >= {PARTIAL_MIN_OBJECTS} objects no annotation touches and >= "
          f"{PARTIAL_MIN_FRACTION:.0%} of annotations + such objects")
    for name, model, images, labels in cases:
        preds = [predict(model, im) for im in images]
        for fraction in FRACTIONS:
            rng = np.random.default_rng(0)
            warned = {"masks": 0, "clicks": 0}
            for p, y in zip(preds, labels):
                kept = keep_some(y, fraction, rng) if fraction < 1 else y
                clicks = clicks_near_centroids(kept, rng)
                warned["masks"] += looks_partial(*unannotated_count(p, labels=kept))
                warned["clicks"] += looks_partial(*unannotated_count(p, points=clicks))
            print(f"{name:45s} nuclei annotated {fraction:4.0%}: warned with masks "
                  f"{warned['masks']:2d} / {len(images)}, with clicks {warned['clicks']:2d} / "
                  f"{len(images)}", flush=True)


if __name__ == "__main__":
    main()
