"""The headless demo: clicks -> training -> prediction -> counts and IoU, on sample data.

``napari-segkit demo --out DIR`` (and ``./scripts/run.sh`` without a display) runs it.
Training uses only the example clicks of two sample images (one click per nucleus);
the ground truth is used only to score the result. Writes the model, label images,
an objects table, a JSON summary and pictures (overlays, training curve).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np

TRAIN_SAMPLES = ("fluo_512", "fluo_256")
EVAL_SAMPLES = ("fluo_512", "fluo_256", "fluo_dense", "he_rgb")


def _load(name: str):
    from . import io
    from ._common import classes_of
    from ._sample import list_samples, sample_path
    from ._sample_data import read_sample

    image, labels = read_sample(name)
    row = next(r for r in list_samples() if r["name"] == name)
    coords, features = io.read_points_csv(sample_path(row["points"]))
    return image, labels, (coords, classes_of(features))


def _figure(figsize: tuple[float, float]):
    """A matplotlib Figure drawn by the Agg canvas (object-oriented: no pyplot, so the
    process's matplotlib backend, e.g. napari's Qt one, is left alone)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_overlay(path: Path, image: np.ndarray, labels: np.ndarray, title: str) -> None:
    """PNG of the image with the object outlines drawn over it."""
    from skimage.segmentation import find_boundaries

    from ._common import PERCENTILES

    shown = image.astype(float)
    lo, hi = np.percentile(shown, PERCENTILES)
    shown = np.clip((shown - lo) / max(hi - lo, 1e-6), 0, 1)
    if shown.ndim == 2:
        shown = np.stack([shown] * 3, -1)
    edges = find_boundaries(labels, mode="inner")
    shown = shown[..., :3].copy()
    shown[edges] = (1.0, 0.85, 0.0)
    fig = _figure((6, 6 * shown.shape[0] / shown.shape[1]))
    ax = fig.add_subplot()
    ax.imshow(shown)
    ax.set_title(title, fontsize=9)
    ax.axis("off")
    fig.tight_layout()
    fig.savefig(path)


def save_training_curve(path: Path, events: list) -> None:
    """PNG of the training loss and the validation IoU / F1 over the steps."""
    steps = [e.step for e in events if e.kind == "step" and e.loss is not None]
    losses = [e.loss for e in events if e.kind == "step" and e.loss is not None]
    val = [(e.step, e.val_iou, e.val_f1) for e in events if e.kind == "validation"]
    fig = _figure((6, 3.2))
    ax = fig.add_subplot()
    ax.plot(steps, losses, lw=1, label="training loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    if val:
        from .outcome_text import score_name

        ax2 = ax.twinx()
        s, iou, f1 = zip(*val)
        kind = next((e.val_kind for e in events if e.val_kind), None)
        # only the curves that have values: from clicks there is no overlap to plot
        for values, style, color, label in ((iou, "o-", "tab:green", score_name("iou")),
                                            (f1, "s-", "tab:red", score_name(kind))):
            if any(v is not None for v in values):
                ax2.plot(s, [np.nan if v is None else v for v in values], style, color=color,
                         ms=3, label=label)
        ax2.set_ylim(0, 1)
        ax2.set_ylabel("held-out score")
        ax2.legend(loc="lower right", fontsize=7)
    ax.legend(loc="upper right", fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def run_demo(out: Path, minutes: float = 1.0, device: str = "auto", log=print, *,
             steps: int | None = None, seed: int = 0, num_threads: int | None = None,
             settings: dict | None = None) -> dict:
    """Run the whole path and return the summary that is also written to summary.json.

    ``steps`` replaces the time budget (``minutes``) by a step budget (benchmarks on a
    busy machine); ``settings``: further :class:`TrainConfig` fields for the fine-tuning
    (e.g. ``{"replay_fraction": 0.5}``, as ``bench_finetune.py --set`` passes them)."""
    import pandas as pd

    from . import io, metrics
    from ._common import background_mask
    from .training import TrainConfig
    from .workflows import PredictRequest, TrainingProgress, predict_and_measure, run_training

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    samples = {name: _load(name) for name in EVAL_SAMPLES}
    images = [samples[n][0] for n in TRAIN_SAMPLES]
    points = [samples[n][2] for n in TRAIN_SAMPLES]
    n_clicks = sum(int(np.sum(~background_mask(c, len(p)))) for p, c in points)
    budget = f"{steps} steps" if steps else f"{minutes:g} min"
    log(f"[demo] 1/3 training from {n_clicks} clicks on {', '.join(TRAIN_SAMPLES)} "
        f"(fine-tuning the default nuclei model for {budget})")
    cfg = TrainConfig(**{"time_budget_s": None if steps else minutes * 60,
                         "steps": steps or 10**7, "device": device, "val_every": 50,
                         "seed": seed, "num_threads": num_threads, **(settings or {})})
    events: list = []
    progress = TrainingProgress(cfg.time_budget_s, sys.stderr)

    def on_event(event) -> None:
        events.append(event)
        progress(event)

    try:
        model = run_training(images, points=points, config=cfg, init="default",
                             out_path=out / "model.safetensors", on_event=on_event)
    finally:
        progress.close()
    last = events[-1]
    save_training_curve(out / "training_curve.png", events)
    log(f"[demo]     {last.step} steps on {last.device} in {last.elapsed_s:.0f} s")
    best = model.provenance.get("training", {}).get("best", {})
    if best.get("start_kept"):
        log("[demo]     the starting model counted the held-out clicks clearly better than the "
            "fine-tuned one, so the starting weights were kept")

    log("[demo] 2/3 predicting every sample image with the default and the fine-tuned model")
    rows, tables = [], []
    for name, (image, gt, clicks) in samples.items():
        for tag, m in (("default", "default"), ("fine-tuned", model)):
            result = predict_and_measure(PredictRequest(
                image, name, m, gt_labels=gt, gt_points=clicks[0], gt_classes=clicks[1]))
            scores = result.scores
            rows.append({"image": name, "model": tag, "trained_on_its_clicks": name in TRAIN_SAMPLES,
                         **scores, "click_count_f1": result.click_scores["f1"]})
            if tag == "fine-tuned":
                io.write_labels(out / f"{name}_instances.tif", result.instances)
                io.write_labels(out / f"{name}_semantic.tif", result.semantic)
                table = result.table
                table.insert(0, "image", name)
                tables.append(table)
                save_overlay(out / f"{name}_overlay.png", image, result.instances,
                             f"{name}: {scores['n_pred']} objects (ground truth {scores['n_gt']}), "
                             f"F1@0.5 {scores['f1']:.2f}")
    pd.concat(tables, ignore_index=True).to_csv(out / "objects.csv", index=False)
    per_image = pd.DataFrame(rows)
    per_image.to_csv(out / "scores.csv", index=False)

    log("[demo] 3/3 counts and IoU against the ground truth")
    log(f"{'image':<11} {'model':<11} {'truth':>5} {'found':>5} {'F1@0.5':>7} {'AP(DSB)':>8} {'meanIoU':>8}")
    for r in rows:
        log(f"{r['image']:<11} {r['model']:<11} {r['n_gt']:>5} {r['n_pred']:>5} {r['f1']:>7.3f} "
            f"{r['ap_dsb']:>8.3f} {(r['mean_matched_iou'] or 0):>8.3f}")
    summary = {
        "seconds": round(time.perf_counter() - t0, 1),
        "training": {"steps": last.step, "device": last.device, "clicks": n_clicks,
                     "images": list(TRAIN_SAMPLES)},
        "pooled": {tag: metrics.summarise([r for r in rows if r["model"] == tag])
                   for tag in ("default", "fine-tuned")},
        "per_image": {name: {r["model"]: r["f1"] for r in rows if r["image"] == name}
                      for name in EVAL_SAMPLES},
        "outputs": str(out.resolve()),
    }
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=float))
    log(f"[demo] outputs in {out.resolve()}: model.safetensors, <image>_instances.tif, "
        f"<image>_semantic.tif, objects.csv, scores.csv, summary.json, <image>_overlay.png, "
        f"training_curve.png")
    return summary
