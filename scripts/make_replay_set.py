"""Build the replay set shipped as napari_segkit/models/replay_nuclei.npz.

Patches of the images the default model was trained on (``train/`` + ``sample_512``;
CC0, BBBC038v1): the grayscale fluorescence ones first, then the RGB (H&E / brightfield)
ones, normalised as the model normalises its input, with their training targets, and per
patch the image it comes from. A fine-tuning on fluorescence images then keeps being
reminded of the stained images too. ``TrainConfig.replay_exclude`` leaves images out
(the fine-tuning benchmark leaves out every RGB image of ``train/`` in its RGB rows,
which score on them). ``val/`` is never used.

    python scripts/make_replay_set.py [--data ../shared/data/nuclei] [--per-tile 2]
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import numpy as np
import tifffile

from napari_segkit.finetune import REPLAY_PATH, quantise_input, save_replay_set
from napari_segkit.model_io import load_default_model
from napari_segkit.normalization import prepare_input
from napari_segkit.sampling import PatchSampler
from napari_segkit.targets import instance_targets


def default_data() -> Path:
    """../shared/data/nuclei next to the checkout (or next to its parent for worktrees)."""
    here = Path(__file__).resolve().parents[1]
    for base in (here.parent, here.parent.parent):
        if (base / "shared" / "data" / "nuclei").is_dir():
            return base / "shared" / "data" / "nuclei"
    return here.parent / "shared" / "data" / "nuclei"


def sources(root: Path) -> list[tuple[str, Path, Path]]:
    """(name, image, labels) of every training image, grayscale ones first (in the order
    of the earlier grayscale-only set, so that its patches are cut the same), RGB last."""
    grey, rgb = [], []
    for split in ("train", "sample_512"):
        with open(root / split / "manifest.csv", newline="") as fh:
            for row in csv.DictReader(fh):
                name = row["name"]
                item = (f"{split}/{name}", root / split / "images" / f"{name}.tif",
                        root / split / "labels" / f"{name}.tif")
                (rgb if row["modality"].startswith("RGB") else grey).append(item)
    return grey + rgb


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--per-tile", type=float, default=2.0,
                    help="patches per 128x128 of image area (at least 8, at most 40 per image)")
    ap.add_argument("--patch", type=int, default=128)
    ap.add_argument("--out", type=Path, default=REPLAY_PATH)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    model = load_default_model()
    rng = np.random.default_rng(args.seed)
    parts, names = [], []
    for name, image_path, labels_path in sources(args.data):
        image, labels = tifffile.imread(image_path), tifffile.imread(labels_path)
        x = prepare_input(image, model.config.in_channels, model.normalization)
        area = image.shape[0] * image.shape[1]
        n = int(np.clip(round(args.per_tile * area / args.patch**2), 8, 40))
        # zoomed 0.5x-2x like the default model's own training patches
        sampler = PatchSampler([x], [instance_targets(labels)], args.patch, fg_prob=0.6,
                               augment=True, scale_range=(0.5, 2.0), rng=rng)
        xs, cls, ctr, cm = [], [], [], []
        for _ in range(n):
            i_x, i_c, i_t, i_m = sampler._cut(0)
            xs.append(i_x), cls.append(i_c), ctr.append(i_t), cm.append(i_m)
        parts.append({"image": quantise_input(np.stack(xs)), "classes": np.stack(cls).astype(np.int8),
                      "center": np.round(np.stack(ctr) * 255).astype(np.uint8),
                      "center_mask": np.stack(cm)})
        names.append(name)
        print(f"{name}: {image.shape}, {n} patches")
    path = save_replay_set(args.out, parts, names)
    total = sum(len(p["image"]) for p in parts)
    print(f"wrote {path}: {total} patches of {args.patch} px, {path.stat().st_size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
