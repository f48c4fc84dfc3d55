"""One-click masks with a partial click set: do masks stop at their own nucleus?

Users click some nuclei, not all. For every image of ``sample_512`` and ``val`` (24
fluorescence images with instance ground truth) this clicks a random 10-15 % of the
nuclei (at least one; each click at the nucleus centroid moved by up to +-2 px, kept
inside the nucleus), converts the clicks with :func:`clicks_to_labels`, and scores each
clicked nucleus: IoU of its mask against its ground-truth nucleus, and whether the mask
is more than 1.5x the nucleus' area (it spilled into neighbours or background). The same
with every nucleus clicked, where F1@0.5 and AP (DSB) of all masks against the ground
truth are printed too, converted as *one click per object* and as *one click on every
object* (``all_clicked=True``). Figures pool the clicked nuclei of all images per seed
and give mean +- sd over 3 seeds. ``--clip-percentile Q`` first clips each image at the
Q-th percentile of its nuclei's intensities: over-exposed (saturated) nuclei, flat at the
top.

The click settings were chosen on ``sample_512`` and ``val`` (the default folders); for
figures on images they were not chosen on, score ``--splits train --grayscale-only``
(13 fluorescence images) or ``--splits train`` (with the 7 RGB ones).

Run:  PYTHONPATH=. OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_click_masks.py
      [--data /work/shared/data/nuclei] [--seeds 0 1 2] [--splits train] [--grayscale-only]
      [--clip-percentile 50]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from napari_segkit.annotations import clicks_to_labels
from napari_segkit.metrics import evaluate_instances, summarise

DATA = Path("/work/shared/data/nuclei")


def load_pairs(root: Path, splits: tuple[str, ...] = ("sample_512", "val"),
               grayscale_only: bool = False) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """(name, image, labels) of the folders ``splits``; only 2-D (fluorescence) images
    when ``grayscale_only``."""
    pairs = []
    for split in splits:
        for path in sorted((root / split / "images").glob("*.tif")):
            image = tifffile.imread(path)
            if grayscale_only and image.ndim != 2:
                continue
            labels = tifffile.imread(root / split / "labels" / path.name)
            pairs.append((f"{split}/{path.stem[:12]}", image, labels))
    return pairs


def click_points(labels: np.ndarray, ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One click per id: its centroid moved by up to +-2 px, snapped into the nucleus."""
    centroids = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids)).reshape(-1, 2)
    clicks = np.round(centroids + rng.integers(-2, 3, size=centroids.shape)).astype(int)
    clicks = np.clip(clicks, 0, np.array(labels.shape) - 1)
    for k, (label, (r, c)) in enumerate(zip(ids, clicks, strict=True)):
        if labels[r, c] != label:  # off the nucleus (thin or bent one): its nearest pixel
            rr, cc = np.nonzero(labels == label)
            nearest = np.argmin((rr - r) ** 2 + (cc - c) ** 2)
            clicks[k] = rr[nearest], cc[nearest]
    return clicks.astype(float)


def clip_nuclei(image: np.ndarray, labels: np.ndarray, percentile: float) -> np.ndarray:
    """``image`` clipped at the ``percentile`` of its nuclei's (grey) intensities."""
    gray = image.astype(np.float32)
    gray = gray if gray.ndim == 2 else gray[..., :3].mean(-1)
    return np.minimum(gray, np.percentile(gray[labels > 0], percentile))


def score_clicks(image: np.ndarray, labels: np.ndarray, ids: np.ndarray, clicks: np.ndarray,
                 all_clicked: bool = False):
    """Per clicked nucleus: (IoU of its mask with it, mask area / nucleus area), and the
    masks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        masks = clicks_to_labels(image, clicks, all_clicked=all_clicked)
    gt_area = np.bincount(labels.ravel(), minlength=labels.max() + 1)
    mask_area = np.bincount(masks.ravel(), minlength=len(ids) + 1)
    ious, ratios = [], []
    for k, label in enumerate(ids, start=1):
        inter = int(np.count_nonzero((masks == k) & (labels == label)))
        union = int(mask_area[k] + gt_area[label] - inter)
        ious.append(inter / union if union else 0.0)
        ratios.append(mask_area[k] / gt_area[label])
    return np.array(ious), np.array(ratios), masks


def run(pairs, seed: int, fraction: tuple[float, float] | None,
        all_clicked: bool = False) -> tuple[float, ...]:
    """Median IoU, fraction of masks > 1.5x their nucleus, number of clicked nuclei, and
    F1@0.5 / AP (DSB) of the masks of all images against their ground truth (NaN when
    only a fraction of the nuclei is clicked)."""
    rng = np.random.default_rng(seed)
    ious, ratios, scores = [], [], []
    for _, image, labels in pairs:
        all_ids = np.unique(labels[labels > 0])
        if fraction is None:
            ids = all_ids
        else:
            k = max(1, int(round(rng.uniform(*fraction) * len(all_ids))))
            ids = np.sort(rng.choice(all_ids, size=k, replace=False))
        i, r, masks = score_clicks(image, labels, ids, click_points(labels, ids, rng),
                                   all_clicked)
        ious.append(i)
        ratios.append(r)
        if fraction is None:  # F1 / AP only mean something with every nucleus clicked
            scores.append(evaluate_instances(labels, masks))
    ious, ratios = np.concatenate(ious), np.concatenate(ratios)
    s = summarise(scores) if scores else {"f1": np.nan, "ap_dsb": np.nan}
    return (float(np.median(ious)), float(np.mean(ratios > 1.5)), len(ious), s["f1"],
            s["ap_dsb"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", default=["sample_512", "val"],
                        help="folders under --data to score (the click settings were "
                             "chosen on sample_512 and val; train/ is held out)")
    parser.add_argument("--grayscale-only", action="store_true",
                        help="score only 2-D (fluorescence) images, not RGB ones")
    parser.add_argument("--clip-percentile", type=float, default=None,
                        help="clip each image at this percentile of its nuclei's intensities "
                             "(saturated nuclei)")
    args = parser.parse_args()
    pairs = load_pairs(args.data, tuple(args.splits), args.grayscale_only)
    if args.clip_percentile is not None:
        pairs = [(n, clip_nuclei(im, lab, args.clip_percentile), lab) for n, im, lab in pairs]
    n_nuclei = sum(len(np.unique(lab[lab > 0])) for _, _, lab in pairs)
    kind = " (grayscale only)" if args.grayscale_only else ""
    if args.clip_percentile is not None:
        kind += f", clipped at the nuclei's percentile {args.clip_percentile:g}"
    print(f"{len(pairs)} images of {' + '.join(args.splits)}{kind}, {n_nuclei} nuclei; "
          f"seeds {args.seeds}")
    for title, fraction, every in (("10-15 % of nuclei clicked", (0.10, 0.15), False),
                                   ("all clicked", None, False),
                                   ("all clicked, all_clicked", None, True)):
        rows = np.array([run(pairs, s, fraction, every) for s in args.seeds])
        mean, sd, n = rows.mean(axis=0), rows.std(axis=0), rows[:, 2].mean()
        whole = f"; F1 {mean[3]:.3f} +- {sd[3]:.3f}, AP {mean[4]:.3f} +- {sd[4]:.3f}" \
            if fraction is None else ""
        print(
            f"{title:26s}: median IoU {mean[0]:.3f} +- {sd[0]:.3f}; "
            f"masks > 1.5x their nucleus {100 * mean[1]:.1f} +- {100 * sd[1]:.1f} %  "
            f"({n:.0f} clicked nuclei per seed){whole}"
        )


if __name__ == "__main__":
    main()
