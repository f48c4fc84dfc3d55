"""How well the partial-mask warning of fine-tuning tells partial masks from full ones.

Fine-tuning from masks teaches every pixel without a mask inside the fully annotated
region as background, so a user who paints some nuclei and leaves the rest teaches the
model to miss them. ``train_data.partial_mask_warnings`` predicts each image with the model
being fine-tuned and warns when it finds objects no mask touches
(``train_data.unmasked_objects``; at least ``PARTIAL_MIN_OBJECTS`` of them and
``PARTIAL_MIN_FRACTION`` of masks + such objects). This script keeps a random fraction of
each image's ground-truth masks (seed 0) and prints, per model and image set, how many
images would be warned about: with every mask kept (false alarms) and with fewer.

    .venv/bin/python benchmarks/bench_partial_masks.py
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_finetune import NO_COLOUR_MODEL, default_data, load_train  # noqa: E402
from bench_val import load_val  # noqa: E402

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
        unmasked_objects,
    )

    root = default_data()
    rng = np.random.default_rng(0)
    default = load_default_model()
    _, vx, vy = load_val(root)
    _, rx, ry = load_train(root, "RGB")
    cases = (("val/, default model", default, vx, vy),
             ("train/ RGB, default model (trained on them)", default, rx, ry),
             ("train/ RGB, no-colour model (a new domain)", load_model(NO_COLOUR_MODEL), rx, ry))
    print(f"warned: >= {PARTIAL_MIN_OBJECTS} objects no mask touches and >= "
          f"{PARTIAL_MIN_FRACTION:.0%} of masks + such objects")
    for name, model, images, labels in cases:
        preds = [predict(model, im) for im in images]
        for fraction in FRACTIONS:
            shares, warned = [], 0
            for p, y in zip(preds, labels):
                lab = keep_some(y, fraction, rng) if fraction < 1 else y
                free = unmasked_objects(p.instances, 1.0 - p.probabilities[0], lab)
                share = free / (free + len(np.unique(lab)) - 1)
                shares.append(share)
                warned += free >= PARTIAL_MIN_OBJECTS and share >= PARTIAL_MIN_FRACTION
            print(f"{name:45s} masks kept {fraction:4.0%}: warned {warned:2d} / {len(images)}; "
                  f"unmasked share median {np.median(shares):.2f} (max {max(shares):.2f})",
                  flush=True)


if __name__ == "__main__":
    main()
