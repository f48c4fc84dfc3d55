"""Train the default nuclei model shipped as napari_segkit/models/default_nuclei.safetensors.

Data: the nuclei collection in ``--data`` (default /work/shared/data/nuclei):
train/ and sample_512/ for training (grayscale fluorescence and RGB H&E; RGB is turned
into inverted luminance by ``prepare_input`` for this 1-channel model). Checkpoints are
chosen on ``--holdout`` grayscale train/ images kept out of training; val/ is used only
once, at the end, for the reported scores (never for choosing anything).

    python scripts/train_default_model.py --minutes 75 --threads 2

The recipe: a depth-4 UNet (receptive field large enough for nuclei ~100 px across)
with zoom augmentation (``--zoom 0.5 2``): the training images hold nuclei of 70-2100
pixels in area, while real images (and val/) go up to ~8000.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import tifffile
import torch

from napari_segkit.data import prepare_input
from napari_segkit.metrics import average_precision_dsb, match_instances
from napari_segkit.model import UNetConfig
from napari_segkit.model_io import DEFAULT_MODEL_PATH, save_model
from napari_segkit.postprocess import instances_from_probabilities
from napari_segkit.training import TrainConfig, _predict_full, train


def load_split(root: Path, split: str):
    images, labels, names = [], [], []
    for f in sorted((root / split / "images").glob("*.tif")):
        images.append(tifffile.imread(f))
        labels.append(tifffile.imread(root / split / "labels" / f.name))
        names.append(f"{split}/{f.stem}")
    return images, labels, names


def evaluate(model, images, labels) -> dict:
    net = model.net.eval()
    tp = fp = fn = 0
    aps = []
    for im, gt in zip(images, labels, strict=True):
        x = prepare_input(im, model.config.in_channels, model.normalization)
        probs = _predict_full(net, x, "cpu", model.config.n_classes)
        pred = instances_from_probabilities(probs[: model.config.n_classes], probs[-1])
        m = match_instances(gt, pred, 0.5)
        tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        aps.append(average_precision_dsb(gt, pred))
    return {
        "f1_at_0.5": 2 * tp / max(2 * tp + fp + fn, 1),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "ap_dsb_mean": float(np.mean(aps)),
        "tp": tp, "fp": fp, "fn": fn, "n_images": len(images),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei"))
    ap.add_argument("--holdout", type=int, default=3,
                    help="grayscale train/ images held out for checkpoint selection")
    ap.add_argument("--minutes", type=float, default=22.0)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(DEFAULT_MODEL_PATH))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--zoom", type=float, nargs=2, default=(0.5, 2.0),
                    help="zoom augmentation range; 1 1 disables it")
    args = ap.parse_args()
    root = Path(args.data)
    tr_x, tr_y, tr_n = load_split(root, "train")
    s_x, s_y, s_n = load_split(root, "sample_512")
    va_x, va_y, va_n = load_split(root, "val")
    # checkpoint selection on held-out train/ images (grayscale, like most real use)
    gray = [i for i, im in enumerate(tr_x) if im.ndim == 2]
    pick = set(np.random.default_rng(args.seed).choice(gray, size=args.holdout, replace=False).tolist())
    ho_x = [tr_x[i] for i in sorted(pick)]
    ho_y = [tr_y[i] for i in sorted(pick)]
    ho_n = [tr_n[i] for i in sorted(pick)]
    keep = [i for i in range(len(tr_x)) if i not in pick]
    tr_x, tr_y, tr_n = [tr_x[i] for i in keep], [tr_y[i] for i in keep], [tr_n[i] for i in keep]
    cfg = TrainConfig(
        steps=args.steps, time_budget_s=args.minutes * 60, patch_size=128, batch_size=8,
        lr=3e-3, val_every=500, seed=args.seed, num_threads=args.threads,
        scale_range=tuple(args.zoom),
        model=UNetConfig(in_channels=1, n_classes=3, n_extra=1, depth=args.depth, width=args.width),
    )
    t0 = time.time()
    model = None
    for ev in train(tr_x + s_x, tr_y + s_y, config=cfg, val_images=ho_x, val_labels=ho_y,
                    out_path=None):
        if ev.kind != "step" or ev.step % 100 == 0:
            print(f"{ev.kind:10s} step {ev.step:5d} loss {ev.loss} val_iou {ev.val_iou} "
                  f"val_f1 {ev.val_f1} lr {ev.lr:.2e} {ev.elapsed_s:.0f}s "
                  f"{ev.images_per_s or 0:.1f} img/s", flush=True)
        if ev.model is not None:
            model = ev.model
    torch.set_num_threads(args.threads)
    scores = evaluate(model, va_x, va_y)
    print("validation (pooled over val/):", json.dumps(scores, indent=1), flush=True)
    model.provenance.update({
        "name": "default nuclei model",
        "data": {"train": tr_n + s_n, "checkpoint_selection": ho_n, "val": va_n},
        "val_scores": scores,
        "train_minutes": round((time.time() - t0) / 60, 1),
    })
    path = save_model(model, args.out)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
