"""Rebuild sample_data/ from ../shared/data/nuclei (BBBC038v1, CC0).

Copies a few real images with their instance labels and derives example annotations
from the ground truth: one click per nucleus (the innermost pixel of each nucleus, so
the click lies inside it, moved by up to 2 px of seeded jitter as a person's click
would be), some background clicks, and polygons / rectangles around nuclei, all in
napari's own CSV formats.

Also writes one small synthetic 3-D stack (``nuclei3d_synth``, made by our own generator
:func:`napari_segkit.synthetic.synthetic_nuclei_stack`, no external source) with its
labels and one click per nucleus in (z, y, x).

Run:  .venv/bin/python scripts/make_sample_data.py [--source ../shared/data/nuclei]
"""

from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi
from skimage import measure

SAMPLES = [
    # (short name, folder, source file stem, title)
    ("fluo_512", "sample_512", "img2d", "Fluorescent nuclei 512x512 (125 nuclei)"),
    ("fluo_dense", "train", "0ea221716cf13710214dcd331a61cea48308c3940df1d28cfc7fd817c83714e1",
     "Dense fluorescent nuclei 520x696 (369 nuclei)"),
    ("fluo_256", "train", "0bda515e370294ed94efd36bd53782288acacb040c171df2ed97fd691fc9d8fe",
     "Fluorescent nuclei 256x256 (53 nuclei)"),
    ("he_rgb", "train", "00ae65c1c6631ae6f2be1a449902976e6eb8483bf6b0740d00530220832c6d3e",
     "H&E histology RGB 256x320 (70 nuclei)"),
]


def click_per_nucleus(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One (row, col) per nucleus: its innermost pixel, jittered but kept inside."""
    clicks = []
    for region in measure.regionprops(labels):
        r0, c0, r1, c1 = region.bbox
        mask = np.pad(region.image, 1)
        dist = ndi.distance_transform_edt(mask)[1:-1, 1:-1]
        rr, cc = np.unravel_index(np.argmax(dist), dist.shape)
        jitter = rng.integers(-2, 3, size=2)
        jr, jc = rr + jitter[0], cc + jitter[1]
        if 0 <= jr < dist.shape[0] and 0 <= jc < dist.shape[1] and region.image[jr, jc]:
            rr, cc = jr, jc
        clicks.append((r0 + rr, c0 + cc))
    return np.asarray(clicks, dtype=float)


def background_clicks(labels: np.ndarray, rng: np.random.Generator, n: int) -> np.ndarray:
    far = ndi.distance_transform_edt(labels == 0) > 8
    rows, cols = np.nonzero(far)
    pick = rng.choice(len(rows), size=min(n, len(rows)), replace=False)
    return np.stack([rows[pick], cols[pick]], axis=1).astype(float)


def write_points(path: Path, coords: np.ndarray, classes: list[str]) -> None:
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", *[f"axis-{i}" for i in range(coords.shape[1])], "class"])
        for i, (point, k) in enumerate(zip(coords, classes)):
            w.writerow([i, *[f"{v:g}" for v in point], k])


# the synthetic stack: 24 x 128 x 128 voxels of 1 x 0.25 x 0.25 um (seed used nowhere else)
STACK_NAME, STACK_SHAPE, STACK_SPACING, STACK_SEED = "nuclei3d_synth", (24, 128, 128), \
    (1.0, 0.25, 0.25), 20241
STACK_TITLE = "Synthetic nuclei stack 24x128x128 (anisotropic)"


def stack_clicks(labels: np.ndarray, spacing, rng: np.random.Generator) -> np.ndarray:
    """One (z, y, x) per nucleus: its innermost voxel in physical distance, jittered in
    (y, x) by up to 1 voxel (kept inside); z stays on a plane."""
    clicks = []
    for region in measure.regionprops(labels):
        mask = np.pad(region.image, 1)
        dist = ndi.distance_transform_edt(mask, sampling=spacing)[1:-1, 1:-1, 1:-1]
        at = np.array(np.unravel_index(np.argmax(dist), dist.shape))
        moved = at + np.concatenate([[0], rng.integers(-1, 2, size=2)])
        if np.all((moved >= 0) & (moved < dist.shape)) and region.image[tuple(moved)]:
            at = moved
        clicks.append(np.asarray(region.bbox[:3]) + at)
    return np.asarray(clicks, dtype=float)


def write_synthetic_stack(out: Path) -> dict:
    """The synthetic stack, its labels and clicks; returns its manifest row."""
    from napari_segkit.synthetic import synthetic_nuclei_stack

    stack = synthetic_nuclei_stack(STACK_SHAPE, spacing=STACK_SPACING, seed=STACK_SEED)
    tifffile.imwrite(out / f"{STACK_NAME}.tif", stack.image, compression="zlib")
    tifffile.imwrite(out / f"{STACK_NAME}_labels.tif", stack.labels, compression="zlib")
    rng = np.random.default_rng(STACK_SEED)
    clicks = stack_clicks(stack.labels, STACK_SPACING, rng)
    far = ndi.distance_transform_edt(stack.labels == 0, sampling=STACK_SPACING) > 3.0
    zyx = np.argwhere(far)
    bg = zyx[rng.choice(len(zyx), size=8, replace=False)].astype(float)
    write_points(out / f"{STACK_NAME}_points.csv", np.concatenate([clicks, bg]),
                 ["nucleus"] * len(clicks) + ["background"] * len(bg))
    return {"name": STACK_NAME, "image": f"{STACK_NAME}.tif", "labels": f"{STACK_NAME}_labels.tif",
            "points": f"{STACK_NAME}_points.csv", "shapes": "", "title": STACK_TITLE,
            "source": f"synthetic (napari_segkit.synthetic, seed {STACK_SEED})",
            "n_nuclei": int(stack.labels.max()),
            "spacing": " ".join(f"{s:g}" for s in STACK_SPACING)}


def write_shapes(path: Path, labels: np.ndarray, rng: np.random.Generator, n: int) -> None:
    regions = [r for r in measure.regionprops(labels) if r.area >= 30]
    pick = rng.choice(len(regions), size=min(n, len(regions)), replace=False)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "shape-type", "vertex-index", "axis-0", "axis-1"])
        for index, k in enumerate(sorted(pick)):
            region = regions[k]
            if index % 3 == 2:  # every third one a rectangle around the nucleus
                r0, c0, r1, c1 = region.bbox
                verts = np.array([[r0, c0], [r0, c1], [r1, c1], [r1, c0]], float) - 0.5
                kind = "rectangle"
            else:
                contour = measure.find_contours(np.pad(labels == region.label, 1), 0.5)[0] - 1
                verts = measure.approximate_polygon(contour, tolerance=0.7)[:-1]
                kind = "polygon"
            for v, (r, c) in enumerate(verts):
                w.writerow([index, kind, v, f"{r:.2f}", f"{c:.2f}"])


def write_outlines(path: Path, labels: np.ndarray, rng: np.random.Generator, n: int) -> None:
    """Outline keypoints: 8-12 ordered clicks along the contour of n nuclei, one object_id each."""
    regions = [r for r in measure.regionprops(labels) if r.area >= 60]
    pick = sorted(rng.choice(len(regions), size=min(n, len(regions)), replace=False))
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["index", "axis-0", "axis-1", "object_id"])
        index = 0
        for object_id, k in enumerate(pick, start=1):
            contour = measure.find_contours(np.pad(labels == regions[k].label, 1), 0.5)[0][:-1] - 1
            m = int(rng.integers(8, 13))
            keys = contour[np.linspace(0, len(contour), m, endpoint=False).astype(int)]
            for r, c in np.clip(keys, 0, np.array(labels.shape) - 1):
                w.writerow([index, f"{r:.2f}", f"{c:.2f}", object_id])
                index += 1


def main() -> None:
    repo = Path(__file__).resolve().parents[1]
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--source", type=Path, default=repo.parent / "shared" / "data" / "nuclei")
    ap.add_argument("--out", type=Path, default=repo / "sample_data")
    args = ap.parse_args()
    args.out.mkdir(exist_ok=True)
    rng = np.random.default_rng(2018)
    rows = []
    for name, folder, stem, title in SAMPLES:
        src = args.source / folder
        image = tifffile.imread(src / "images" / f"{stem}.tif")
        labels = tifffile.imread(src / "labels" / f"{stem}.tif")
        tifffile.imwrite(args.out / f"{name}.tif", image, compression="zlib")
        tifffile.imwrite(args.out / f"{name}_labels.tif", labels.astype(np.uint16), compression="zlib")
        clicks = click_per_nucleus(labels, rng)
        bg = background_clicks(labels, rng, 8)
        write_points(args.out / f"{name}_points.csv", np.concatenate([clicks, bg]),
                     ["nucleus"] * len(clicks) + ["background"] * len(bg))
        shapes = ""
        if name == "fluo_512":
            write_shapes(args.out / f"{name}_shapes.csv", labels, rng, 24)
            write_outlines(args.out / f"{name}_outlines.csv", labels, np.random.default_rng(7), 12)
            shapes = f"{name}_shapes.csv"
        rows.append({"name": name, "image": f"{name}.tif", "labels": f"{name}_labels.tif",
                     "points": f"{name}_points.csv", "shapes": shapes, "title": title,
                     "source": f"{folder}/{stem}", "n_nuclei": int(labels.max()), "spacing": ""})
    rows.append(write_synthetic_stack(args.out))
    with open(args.out / "manifest.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    shutil.copy(args.source / "README.md", args.out / "SOURCE_README.md")
    print(f"wrote {len(rows)} samples to {args.out}")


if __name__ == "__main__":
    main()
