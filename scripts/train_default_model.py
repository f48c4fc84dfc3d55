"""Train the default nuclei model shipped as napari_segkit/models/default_nuclei.safetensors.

Data: the nuclei collection in ``--data`` (default /work/shared/data/nuclei):
train/ and sample_512/ for training (grayscale fluorescence and RGB H&E; RGB is turned
into inverted luminance by ``prepare_input`` for this 1-channel model). The final,
annealed weights are kept: a first run that chose checkpoints on 3 held-out train/
images (75 nuclei) saw their F1 jump between 0.56 and 0.96 from one check to the next,
too noisy to choose by (``--holdout N`` still does it). val/ is used only once, at the
end, for the reported scores (never for choosing anything).

    python scripts/train_default_model.py --minutes 68 --threads 2

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

from napari_segkit.model import UNetConfig
from napari_segkit.model_io import DEFAULT_MODEL_PATH, load_model, save_model
from napari_segkit.training import TrainConfig, train


def load_split(root: Path, split: str):
    images, labels, names = [], [], []
    for f in sorted((root / split / "images").glob("*.tif")):
        images.append(tifffile.imread(f))
        labels.append(tifffile.imread(root / split / "labels" / f.name))
        names.append(f"{split}/{f.stem}")
    return images, labels, names


def _grey_only(images, labels, names):
    keep = [i for i, im in enumerate(images) if im.ndim == 2]
    return [images[i] for i in keep], [labels[i] for i in keep], [names[i] for i in keep]


def evaluate(model, images, labels) -> dict:
    """Pooled scores of ``model`` through the user's path (``prediction.predict``)."""
    from napari_segkit.metrics import evaluate_instances, summarise
    from napari_segkit.prediction import predict

    rows = [evaluate_instances(gt, predict(model, im).instances)
            for im, gt in zip(images, labels, strict=True)]
    s = summarise(rows)
    keys = ("f1", "precision", "recall", "ap_dsb", "median_abs_count_error", "n_gt")
    return {**{k: s[k] for k in keys}, "n_images": len(rows)}


def finish(model, va_x, va_y, provenance: dict, out: str) -> None:
    """Round the weights to float16 (the file stores them so: half the size), score the
    rounded model on val/ and write it with its provenance and scores."""
    with torch.no_grad():
        for t in model.net.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    scores = evaluate(model, va_x, va_y)
    print("validation (pooled over val/):", json.dumps(scores, indent=1), flush=True)
    model.provenance.update({**provenance, "val_scores": scores})
    path = save_model(model, out, half=True)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "nuclei"))
    ap.add_argument("--holdout", type=int, default=0,
                    help="grayscale train/ images held out to choose the checkpoint by; 0 "
                         "(default): train on all of them and keep the final, annealed weights")
    ap.add_argument("--minutes", type=float, default=68.0)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=str(DEFAULT_MODEL_PATH))
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--depth", type=int, default=4)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--finish", metavar="CHECKPOINT",
                    help="skip training: score this checkpoint (written by an earlier run "
                         "with --out) on val/ and write it as --out, rounded to float16")
    ap.add_argument("--no-colour", action="store_true",
                    help="leave every colour (RGB) image out of training: a start model "
                         "for measuring fine-tuning on a new domain (bench_finetune --start)")
    ap.add_argument("--zoom", type=float, nargs=2, default=(0.5, 2.0),
                    help="zoom augmentation range; 1 1 disables it")
    args = ap.parse_args()
    root = Path(args.data)
    tr_x, tr_y, tr_n = load_split(root, "train")
    s_x, s_y, s_n = load_split(root, "sample_512")
    va_x, va_y, va_n = load_split(root, "val")
    if args.no_colour:
        tr_x, tr_y, tr_n = _grey_only(tr_x, tr_y, tr_n)
        s_x, s_y, s_n = _grey_only(s_x, s_y, s_n)
    # checkpoint selection on held-out train/ images (grayscale, like most real use)
    gray = [i for i, im in enumerate(tr_x) if im.ndim == 2]
    pick = set(np.random.default_rng(args.seed).choice(gray, size=args.holdout, replace=False).tolist()
               if args.holdout else [])
    ho_x = [tr_x[i] for i in sorted(pick)]
    ho_y = [tr_y[i] for i in sorted(pick)]
    ho_n = [tr_n[i] for i in sorted(pick)]
    keep = [i for i in range(len(tr_x)) if i not in pick]
    tr_x, tr_y, tr_n = [tr_x[i] for i in keep], [tr_y[i] for i in keep], [tr_n[i] for i in keep]
    provenance = {
        "name": "nuclei model, no colour images" if args.no_colour else "default nuclei model",
        "data": {"train": tr_n + s_n, "checkpoint_selection": ho_n, "val": va_n},
    }
    torch.set_num_threads(args.threads)
    if args.finish:
        finish(load_model(args.finish), va_x, va_y, provenance, args.out)
        return
    cfg = TrainConfig(
        steps=args.steps, time_budget_s=args.minutes * 60, patch_size=128, batch_size=8,
        lr=3e-3, val_every=500, seed=args.seed, num_threads=args.threads,
        val_fraction=0.2 if ho_x else 0.0,
        scale_range=tuple(args.zoom),
        model=UNetConfig(in_channels=1, n_classes=3, n_extra=1, depth=args.depth, width=args.width),
    )
    t0 = time.time()
    model = None
    for ev in train(tr_x + s_x, tr_y + s_y, config=cfg, val_images=ho_x or None,
                    val_labels=ho_y or None, out_path=None):
        if ev.kind != "step" or ev.step % 100 == 0:
            print(f"{ev.kind:10s} step {ev.step:5d} loss {ev.loss} val_iou {ev.val_iou} "
                  f"val_f1 {ev.val_f1} lr {ev.lr:.2e} {ev.elapsed_s:.0f}s "
                  f"{ev.images_per_s or 0:.1f} img/s", flush=True)
        if ev.model is not None:
            model = ev.model
    provenance["train_minutes"] = round((time.time() - t0) / 60, 1)
    finish(model, va_x, va_y, provenance, args.out)


if __name__ == "__main__":
    main()
