"""Does fine-tuning pay off? Start model vs fine-tuned model on images it did not train on.

Rows (``--rows``; default all):

- ``rgb_clicks`` / ``rgb_masks``: the 7 RGB (H&E / brightfield) images of ``train/``, sorted
  by name; the odd ones (3 images) annotated, the even ones (4 images) scored.
  CAUTION: the shipped default model was trained on ``train/``, these 7 images included,
  so this "new domain" is not new to it (``--start`` runs the rows from another model).
- ``fluo_clicks`` / ``fluo_masks``: ``val/`` split 10 / 13 as ``bench_val.py`` splits it
  (10 annotated, 13 scored).
- Forgetting: the ``rgb_*`` and ``fluo_*`` rows also score the fine-tuned model on the
  other domain's scoring images (``other_f1`` / ``other_ap``), which that row never
  trains on (the fluorescence ones are in ``val/``; the RGB ones are in ``train/``, so
  the shipped default model memorised them, a model from ``--start`` may not have, and
  the ``fluo_*`` rows, which replay the whole shipped set, replay patches of them).
- ``scratch_clicks`` / ``scratch_masks``: the same fluorescence split, from a new model.
- ``correction``: a simulated user corrects the start model's 10 largest errors per RGB
  annotated image (a click on each missed nucleus, a background click on each false
  object) and retrains for 1/3 of the budget, 3 rounds, each from the current model.
- ``fluo_correction``: the same correction loop on the fluorescence split (10 annotated
  ``val/`` images corrected, 13 scored): a start model that is already good on a domain it
  did not memorise (not a target of the issue; a check that correcting does not hurt).
  With ``--paint-splits`` the simulated user also uses the brush: a nucleus among the
  largest errors that the model cut into pieces is painted as one nucleus on the
  instances (merging the pieces) instead of clicked. With ``--review`` it says when it has
  corrected every error of an image (no more than 10 left): the objects it left alone are
  then taught as right (``Corrections.reviewed``). With ``--confirm N`` it also clicks the
  N largest nuclei per image and round that the model got right (a confirmation).
  Each round prints how many of each image's largest errors the user had clicked in an
  earlier round and the model still gets wrong (``repeats``; the user clicks them again,
  which adds nothing); with ``--skip-clicked`` it leaves those alone and takes the next
  largest errors instead, as a person who sees their earlier click there would. With
  ``--whole-merges``, a missed nucleus inside a predicted object that holds several
  nuclei brings a click on each of them (as the Predict dock asked until 2026-11-25);
  with ``--paint-merges`` the user paints each of them as its own label with the brush
  instead (exact outlines, as the dock asks now).
- ``suggestions``: the simulated user answers the 10 top suggestions of
  :func:`napari_segkit.suggestions.suggest_clicks` per annotated RGB image vs 10 random
  nuclei per image, each followed by 1/3 of the budget of fine-tuning: F1 gain per click.
- ``demo``: the headless demo (fine-tunes on the clicks of 2 samples): every sample
  image's F1 fine-tuned vs default.
- ``seen_masks``: a diagnostic, not a target: the start model fine-tuned on the masks of 5
  grey images of ``train/`` (the default model was trained on them), scored on those 5
  (``seen_f1`` / ``seen_ap``, start ``seen_start_f1`` / ``seen_start_ap``) and on the
  fluorescence scoring images: does fine-tuning fit what it sees at the cost of the rest?

Replay: the RGB-domain rows (``rgb_*``, ``correction``, ``suggestions``) leave every RGB
image of ``train/`` out of the replay set (``TrainConfig.replay_exclude``): they score on
them, and annotate the others (whose full masks must not reach a "clicks" row); the other
rows replay the whole shipped set.

Scores (on the scoring images only): F1 at IoU 0.5 pooled over objects, AP as in the 2018
Data Science Bowl (mean over images) and the median absolute count error per image.
Clicks are one per nucleus near its centroid (+-2 px), as in ``bench_val.py``.

``--dev`` runs the rows on the development splits the recipe was chosen on (RGB: the
other rotation, even annotated / odd scored; fluorescence: 5 / 5 of the 10 annotated
val images), never on the scoring split.

    python benchmarks/bench_finetune.py --minutes 3 --seeds 0 1 2
    python benchmarks/bench_finetune.py --steps 450 --threads 1 --rows rgb_clicks fluo_masks
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_val import clicks_near_centroids, load_val  # noqa: E402

#: rows annotated and scored on the RGB images of train/ (see "Replay" above)
RGB_ROWS = ("rgb_clicks", "rgb_masks", "correction", "suggestions")
ROWS = ("rgb_clicks", "rgb_masks", "fluo_clicks", "fluo_masks", "scratch_clicks",
        "scratch_masks", "correction", "fluo_correction", "suggestions", "demo", "seen_masks")


def default_data() -> Path:
    for base in (REPO.parent, REPO.parent.parent):
        if (base / "shared" / "data" / "nuclei").is_dir():
            return base / "shared" / "data" / "nuclei"
    return REPO.parent / "shared" / "data" / "nuclei"


def load_train(root: Path, modality: str = "RGB"):
    """Names, images and labels of the ``train/`` images whose manifest modality starts
    with ``modality`` ("RGB" or "grayscale"), sorted by name."""
    import tifffile

    with open(root / "train" / "manifest.csv", newline="") as fh:
        names = sorted(r["name"] for r in csv.DictReader(fh) if r["modality"].startswith(modality))
    images = [tifffile.imread(root / "train" / "images" / f"{n}.tif") for n in names]
    labels = [tifffile.imread(root / "train" / "labels" / f"{n}.tif") for n in names]
    return names, images, labels


def splits(root: Path, dev: bool) -> dict:
    """(annotated images, labels), (scored images, labels) per domain."""
    names, images, labels = load_train(root, "RGB")
    ann, sco = (list(range(0, 7, 2)), list(range(1, 7, 2))) if dev else \
        (list(range(1, 7, 2)), list(range(0, 7, 2)))
    _, vx, vy = load_val(root)
    order = np.random.default_rng(0).permutation(len(vx))  # bench_val.py's split
    tr, te = sorted(order[:10]), sorted(order[10:])
    if dev:
        tr, te = tr[:5], tr[5:]
    return {
        "rgb": ([images[i] for i in ann], [labels[i] for i in ann],
                [images[i] for i in sco], [labels[i] for i in sco]),
        "fluo": ([vx[i] for i in tr], [vy[i] for i in tr], [vx[i] for i in te], [vy[i] for i in te]),
    }


def score(model, images, labels) -> dict:
    from napari_segkit.metrics import evaluate_instances, summarise
    from napari_segkit.prediction import predict

    rows = [evaluate_instances(gt, predict(model, im).instances) for im, gt in zip(images, labels)]
    s = summarise(rows)
    return {"f1": s["f1"], "ap": s["ap_dsb"], "count_err": s["median_abs_count_error"],
            "precision": s["precision"], "recall": s["recall"]}


def budget(args, fraction: float = 1.0) -> dict:
    """TrainConfig budget: a step budget (``--steps``) or a time budget (``--minutes``)."""
    if args.steps:
        return {"steps": max(1, int(round(args.steps * fraction)))}
    return {"steps": 10**7, "time_budget_s": args.minutes * 60 * fraction}


def run_train(args, seed, images, labels=None, points=None, init="default", fraction=1.0,
              **kw):
    from napari_segkit.training import TrainConfig, train

    opts = {**args.overrides, **kw}
    cfg = TrainConfig(seed=seed, device=args.device, num_threads=args.threads, **budget(args, fraction),
                      **opts)
    gen = train(images, labels=labels, points=points, config=cfg, init=init)
    steps = 0
    while True:
        try:
            steps = next(gen).step
        except StopIteration as done:
            model = done.value
            best = model.provenance.get("training", {}).get("best", {})
            info = {"steps": steps, "kept_step": best.get("step")}
            if best.get("blend"):
                info["blend"] = best["blend"]  # a blend with the start was kept
            return model, info


#: the start model of the README's RGB rows: trained like the default model but on the grey
#: images only (``scripts/train_default_model.py --no-colour --steps 960 --threads 1``,
#: 2026-11-24; val/ F1 0.761, AP 0.370), kept so that those rows can be re-run as measured
NO_COLOUR_MODEL = Path(__file__).resolve().parent / "models" / "no_colour_nuclei.safetensors"


def start_path(init: str) -> str:
    """``--start``: ``"default"``, ``"no-colour"`` (:data:`NO_COLOUR_MODEL`) or a model file."""
    return str(NO_COLOUR_MODEL) if init == "no-colour" else init


def load_start(init):
    """The start model: ``"default"`` or a model file."""
    from napari_segkit.model_io import load_default_model, load_model

    return load_default_model() if init == "default" else load_model(init)


def simulated_clicks(labels, seed):
    rng = np.random.default_rng(seed)
    return [(clicks_near_centroids(y, rng), None) for y in labels]


# --------------------------------------------------------------------------- rows
def row_finetune(args, seed, data, kind, init, other=None):
    """Fine-tune on ``data``'s annotated images, score on its scoring images and, with
    ``other`` (the other domain's split), on those scoring images too (``other_f1`` /
    ``other_ap``: does adapting to one domain cost the other?)."""
    ax, ay, sx, sy = data
    # --blend-scan: the fine-tuned weights as they are (never the start, never a blend)
    kw = {"keep_start_margin": 1e9, "start_blend": 0.0} if args.blend_scan and init else {}
    if kind == "clicks":
        model, info = run_train(args, seed, ax, points=simulated_clicks(ay, seed), init=init,
                                **kw)
    else:
        model, info = run_train(args, seed, ax, labels=ay, init=init, **kw)
    out = {**score(model, sx, sy), **info}
    if other is not None:
        o = score(model, other[2], other[3])
        out["other_f1"], out["other_ap"] = o["f1"], o["ap"]
    if kw:
        out["blends"] = blend_scan(args.blend_scan, init, model, sx, sy)
    return out


def blend_scan(fractions, init, model, images, labels) -> dict:
    """Scores of the blends ``start + f (fine-tuned - start)`` for each fraction ``f``."""
    import copy

    from napari_segkit.finetune import blend_states

    start = load_start(init).net.state_dict()
    tuned = model.net.state_dict()
    out = {}
    for f in fractions:
        blended = copy.deepcopy(model)
        blended.net.load_state_dict(blend_states(start, tuned, f))
        out[str(f)] = score(blended, images, labels)
        print(f"    blend {f:g}: F1 {out[str(f)]['f1']:.3f} AP {out[str(f)]['ap']:.3f}", flush=True)
    return out


@dataclass
class UserRound:
    """What the simulated user does on one image in one round of corrections."""

    clicks: list = field(default_factory=list)  # (point, "nucleus" / "background")
    painted: list = field(default_factory=list)  # ground-truth ids painted as one nucleus
    reviewed: bool = False  # every error of the image corrected, and said so
    repeats: int = 0  # of the largest errors, those the user had already clicked


def simulated_corrections(model, images, labels, n_errors: int, paint_splits: bool = False,
                          review: bool = False, confirm: int = 0,
                          confirmed: list | None = None, clicked: list | None = None,
                          skip_clicked: bool = False,
                          whole_merges: bool = False,
                          paint_merges: bool = False) -> list[UserRound]:
    """Per image: the ``n_errors`` largest errors of ``model`` as clicks (missed nuclei ->
    "nucleus" at their innermost pixel, false objects -> "background" at theirs).

    ``paint_splits``: a nucleus the model cut into pieces
    (:func:`napari_segkit.instance_errors.split_objects`) is painted over with the brush
    as one nucleus instead: the user merges the pieces on the instances layer.
    ``review``: when an image has no more errors than ``n_errors``, the user has corrected
    them all and says so (``Corrections.reviewed``).
    ``confirm``: the user also clicks the ``confirm`` largest nuclei the model got right
    (IoU >= 0.5) and that it has not confirmed before (``confirmed``: a set of ground-truth
    ids per image, updated), which teaches them as predicted.
    ``clicked``: the corrections made so far per image; an error already holds the user's
    click when a missed nucleus holds a ``nucleus`` click or a false object a
    ``background`` one. Those among the ``n_errors`` largest are counted
    (``UserRound.repeats``), and with ``skip_clicked`` passed over for the next largest.
    ``whole_merges``: a missed nucleus inside a predicted object that holds several nuclei
    (most of their pixels) brings a click on each of them, as the Predict dock asked until
    2026-11-25 ("click each nucleus of an object that merged several"); they count
    towards ``n_errors``.
    ``paint_merges``: those nuclei are painted (each its own label) instead of clicked."""
    from napari_segkit.instance_errors import split_objects
    from napari_segkit.prediction import predict

    out = []
    for i, (im, gt) in enumerate(zip(images, labels)):
        pred = predict(model, im).instances
        errors = []
        gt_areas = np.bincount(gt.ravel())
        pr_areas = np.bincount(pred.ravel())
        missed, false = _unmatched(gt, pred)
        split = set(split_objects(gt, pred).tolist()) if paint_splits else set()
        held = _clicked_objects(clicked[i] if clicked else None, gt, pred)
        for g in missed:
            if g in split:
                errors.append((gt_areas[g], g, "paint", ("nucleus", g) in held))
            else:
                errors.append((gt_areas[g], _inner_point(gt == g), "nucleus",
                               ("nucleus", g) in held))
        for p in false:
            # a predicted object that covers no nucleus centre: false; one over nuclei the
            # user sees as (merged / misshapen) nuclei is corrected by clicking them
            if (gt[pred == p] > 0).mean() < 0.5:
                errors.append((pr_areas[p], _inner_point(pred == p), "background",
                               ("background", p) in held))
        errors.sort(key=lambda e: -e[0])
        repeats, n_left = sum(e[3] for e in errors[:n_errors]), len(errors)
        if skip_clicked:
            errors = [e for e in errors if not e[3]]
        fixes = [e[:3] for e in errors[:n_errors]] if not (whole_merges or paint_merges) else \
            _with_merged_neighbours(errors, n_errors, gt, pred, gt_areas, paint_merges)
        if confirm:
            right = sorted(set(np.unique(gt[gt > 0]).tolist()) - set(missed) - confirmed[i],
                           key=lambda g: -gt_areas[g])[:confirm]
            confirmed[i].update(right)
            fixes += [(gt_areas[g], _inner_point(gt == g), "nucleus") for g in right]
        out.append(UserRound(clicks=[(pt, cls) for _, pt, cls in fixes if cls != "paint"],
                             painted=[g for _, g, cls in fixes if cls == "paint"],
                             reviewed=review and n_left <= n_errors, repeats=repeats))
    return out


def _nuclei_held(gt, pred, p: int, gt_areas) -> list[int]:
    """The ground-truth nuclei that predicted object ``p`` holds most (half or more) of."""
    inside = np.bincount(gt[pred == p].ravel(), minlength=len(gt_areas))
    return [int(h) for h in np.flatnonzero(inside >= 0.5 * np.maximum(gt_areas, 1)) if h]


def _with_merged_neighbours(errors, n_errors: int, gt, pred, gt_areas, paint: bool = False) -> list:
    """The largest ``errors`` (area, point, class, clicked) as fixes, each missed nucleus in
    a predicted object that holds several nuclei followed by the others it holds, until
    ``n_errors`` fixes; with ``paint`` the nuclei of such an object are painted
    (``(area, nucleus id, "paint")``) instead of clicked."""
    fixes, taken = [], set()
    for area, pt, cls, _ in errors:
        if len(fixes) >= n_errors:
            break
        if cls != "nucleus":
            fixes.append((area, pt, cls))
            continue
        g = int(gt[int(pt[0]), int(pt[1])])
        p = int(pred[int(pt[0]), int(pt[1])])
        group = [g]
        if p:
            held = _nuclei_held(gt, pred, p, gt_areas)
            if len(held) > 1:
                group = sorted(held, key=lambda h: (h != g, -gt_areas[h]))
        for h in group:
            if h not in taken:
                taken.add(h)
                fixes.append((gt_areas[h], h, "paint") if paint and len(group) > 1 else
                             (gt_areas[h], _inner_point(gt == h), "nucleus"))
    return fixes


def _clicked_objects(corrections, gt, pred) -> set:
    """``("nucleus", ground-truth id)`` for each nucleus click on a nucleus and
    ``("background", predicted id)`` for each background click on a predicted object."""
    if corrections is None or not len(corrections.points):
        return set()
    rc = np.round(np.asarray(corrections.points, float)).astype(int)
    rc = np.clip(rc, 0, np.asarray(gt.shape) - 1)
    return {(cls, int(gt[r, c] if cls == "nucleus" else pred[r, c]))
            for (r, c), cls in zip(rc, corrections.classes)}


def _unmatched(gt, pred, iou: float = 0.5):
    from napari_segkit.metrics import iou_matrix

    m, gt_ids, pred_ids = iou_matrix(gt, pred)
    gt_ok = (m >= iou).any(axis=1) if m.size else np.zeros(len(gt_ids), bool)
    pr_ok = (m >= iou).any(axis=0) if m.size else np.zeros(len(pred_ids), bool)
    return [int(g) for g, ok in zip(gt_ids, gt_ok) if not ok], \
        [int(p) for p, ok in zip(pred_ids, pr_ok) if not ok]


def _inner_point(mask: np.ndarray) -> tuple[float, float]:
    from scipy import ndimage as ndi

    d = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(np.argmax(d), d.shape)
    return float(r), float(c)


def row_correction(args, seed, data, init, rounds: int = 3, n_errors: int = 10):
    from napari_segkit.corrections import Corrections, retrain_with_corrections

    ax, ay, sx, sy = data
    model = load_start(init)
    history = [score(model, sx, sy)]
    corrections = [Corrections() for _ in ax]
    painted = reviewed = 0
    confirmed = [set() for _ in ax]
    repeats, steps = [], []
    for r in range(rounds):
        new = simulated_corrections(model, ax, ay, n_errors, args.paint_splits, args.review,
                                    args.confirm, confirmed, corrections, args.skip_clicked,
                                    args.whole_merges, args.paint_merges)
        repeats.append(sum(user.repeats for user in new))
        for c, gt, user in zip(corrections, ay, new):
            for pt, cls in user.clicks:
                c.add(pt, cls)
            for g in user.painted:  # the brush over the whole nucleus, one label
                if c.painted is None:
                    c.painted = np.zeros(gt.shape, np.int32)
                c.painted[gt == g] = c.painted.max() + 1
            c.reviewed = user.reviewed  # of this round's prediction only
            painted += len(user.painted)
            reviewed += user.reviewed
        events = []
        model = retrain_with_corrections(model, ax, corrections, config=_config(args, seed + r, 1 / 3),
                                         progress=events.append)
        steps.append(max((e.step for e in events), default=0))
        history.append(score(model, sx, sy))
        h = history[-1]
        print(f"    round {r + 1}: F1 {h['f1']:.3f} (precision {_f3(h['precision'])}, "
              f"recall {_f3(h['recall'])}; {repeats[-1]} of the largest errors clicked before; "
              f"{steps[-1]} steps)", flush=True)
    return {**history[-1], "rounds_f1": [h["f1"] for h in history], "repeats": repeats,
            "round_steps": steps,
            "clicks": sum(len(c) for c in corrections), "painted": painted,
            "reviewed": reviewed, "confirmed": sum(len(c) for c in confirmed)}


def _config(args, seed, fraction):
    from napari_segkit.training import TrainConfig

    return TrainConfig(seed=seed, device=args.device, num_threads=args.threads,
                       **budget(args, fraction), **args.overrides)


def row_suggestions(args, seed, data, init, n: int = 10):
    """F1 gain per click: top-``n`` suggestions per image vs ``n`` random nuclei per image."""
    from napari_segkit.corrections import Corrections, retrain_with_corrections
    from napari_segkit.suggestions import suggest_clicks

    ax, ay, sx, sy = data
    start = load_start(init)
    s0 = score(start, sx, sy)
    rng = np.random.default_rng(seed)
    sug, rnd = [], []
    from napari_segkit.prediction import predict

    for im, gt in zip(ax, ay):
        coords, _, _ = suggest_clicks(start, im, n=n)
        sug.append(_answer(coords, gt, predict(start, im, tta=True).instances))
        ids = rng.choice(np.arange(1, gt.max() + 1), size=min(n, int(gt.max())), replace=False)
        rnd.append(Corrections([_inner_point(gt == i) for i in ids], ["nucleus"] * len(ids)))
    out = {"start_f1": s0["f1"]}
    for name, corr in (("suggested", sug), ("random", rnd)):
        model = retrain_with_corrections(start, ax, corr, config=_config(args, seed, 1 / 3))
        s = score(model, sx, sy)
        clicks = sum(len(c) for c in corr)
        out[name] = {**s, "clicks": clicks, "gain_per_click": (s["f1"] - s0["f1"]) / max(clicks, 1)}
        print(f"    {name}: {clicks} clicks, F1 {s['f1']:.3f}", flush=True)
    g_s, g_r = out["suggested"]["gain_per_click"], out["random"]["gain_per_click"]
    out["ratio"] = g_s / g_r if g_r > 0 else float("inf") if g_s > 0 else float("nan")
    return {**out["suggested"], "random_f1": out["random"]["f1"], "ratio": out["ratio"],
            "gain_per_click_suggested": g_s, "gain_per_click_random": g_r}


def _answer(coords, gt, pred):
    """What the simulated user does at each suggested point: looks at the predicted object
    there and clicks every nucleus it holds most of (one click: confirmed; several: a
    merge split) or a background click when it holds none; at a point without an object,
    clicks the nucleus there, or background."""
    from napari_segkit.corrections import Corrections

    c = Corrections()
    seen = set()
    gt_areas = np.bincount(gt.ravel())
    for r, col in np.asarray(coords, float).reshape(-1, 2):
        r, col = int(round(r)), int(round(col))
        p = int(pred[r, col])
        if p:
            ids = _nuclei_held(gt, pred, p, gt_areas)
        else:
            ids = [int(gt[r, col])] if gt[r, col] else []
        if not ids:
            c.add((r, col), "background")
        for g in ids:
            if g not in seen:
                seen.add(g)
                c.add(_inner_point(gt == g), "nucleus")
    return c


def row_seen_masks(args, seed, data, init, n: int = 5):
    _, images, labels = load_train(args.data, "grayscale")
    pick = sorted(np.random.default_rng(0).choice(len(images), n, replace=False))
    ax, ay = [images[i] for i in pick], [labels[i] for i in pick]
    start = load_start(init)
    before = score(start, ax, ay)
    model, info = run_train(args, seed, ax, labels=ay, init=init)
    after = score(model, ax, ay)
    return {**score(model, data[2], data[3]), **info, "seen_start_f1": before["f1"],
            "seen_start_ap": before["ap"], "seen_f1": after["f1"], "seen_ap": after["ap"]}


def row_demo(args, seed):
    import tempfile

    from napari_segkit.demo import run_demo

    minutes = args.minutes / 3 if not args.steps else None
    with tempfile.TemporaryDirectory() as tmp:
        summary = run_demo(Path(tmp), minutes=minutes or 1.0, device=args.device, log=lambda *a: None,
                           steps=(args.steps // 3) if args.steps else None, seed=seed,
                           num_threads=args.threads, settings=args.overrides)
    per = summary["per_image"]
    worst = min(per[name]["fine-tuned"] - per[name]["default"] for name in per)
    return {"f1": summary["pooled"]["fine-tuned"]["f1"], "ap": summary["pooled"]["fine-tuned"]["ap_dsb"],
            "count_err": summary["pooled"]["fine-tuned"]["median_abs_count_error"],
            "per_image": per, "worst_delta": worst}


# --------------------------------------------------------------------------- main
def parse_overrides(items) -> dict:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, default=default_data())
    ap.add_argument("--minutes", type=float, default=3.0, help="time budget per fine-tuning")
    ap.add_argument("--steps", type=int, default=0,
                    help="a step budget per 3-minute fine-tuning instead of --minutes (1/3 of it "
                         "for the 1-minute trainings); for runs on a busy machine")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--rows", nargs="+", choices=ROWS, default=list(ROWS))
    ap.add_argument("--start", default="default", type=start_path,
                    help="start model: 'default', 'no-colour' (a model that never saw a colour "
                         "image, the README's RGB rows) or a model file")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps", "auto"],
                    help="where the fine-tunings run (the targets are CPU budgets: use "
                         "--steps to compare with a CPU run)")
    ap.add_argument("--dev", action="store_true", help="development splits (see above)")
    ap.add_argument("--set", dest="overrides", nargs="*", default=[], metavar="KEY=VALUE",
                    help="TrainConfig settings for every training, e.g. replay_fraction=0")
    ap.add_argument("--paint-splits", action="store_true",
                    help="correction rows: the simulated user paints each nucleus the model cut "
                         "into pieces as one (a brush edit) instead of clicking it")
    ap.add_argument("--review", action="store_true",
                    help="correction rows: when the simulated user has corrected every error "
                         "of an image (no more than 10), it says so (Corrections.reviewed)")
    ap.add_argument("--confirm", type=int, default=0, metavar="N",
                    help="correction rows: the simulated user also confirms, with a click, the "
                         "N largest nuclei per image and round that the model got right")
    ap.add_argument("--skip-clicked", action="store_true",
                    help="correction rows: the simulated user passes over an error it clicked "
                         "in an earlier round (the model still gets it wrong) for the next one")
    ap.add_argument("--whole-merges", action="store_true",
                    help="correction rows: a missed nucleus inside a predicted object that "
                         "holds several brings a click on each of them; they count towards "
                         "the 10 errors per image and round")
    ap.add_argument("--paint-merges", action="store_true",
                    help="correction rows: as --whole-merges, but the user paints each nucleus "
                         "of a merged object as its own label with the brush instead of "
                         "clicking it (as the Predict dock asks)")
    ap.add_argument("--blend-scan", type=float, nargs="+", default=[], metavar="F",
                    help="rgb_/fluo_ rows: keep the fine-tuned weights as they are (never the "
                         "start, never a blend), then also score their blends with the start, "
                         "F of the way to them (finetune.blend_states), e.g. 0.25 0.5 0.75")
    ap.add_argument("--json", type=Path, help="also write the results here")
    args = ap.parse_args()
    args.overrides = parse_overrides(args.overrides)

    import torch

    torch.set_num_threads(args.threads)
    data = splits(args.data, args.dev)
    start = load_start(args.start)
    what = f"{args.steps} steps" if args.steps else f"{args.minutes:g} min"
    where = f"{args.threads} thread(s)" if args.device == "cpu" else args.device
    print(f"fine-tuning budget {what} on {where}; seeds {args.seeds}; start "
          f"{args.start}; {'DEVELOPMENT splits' if args.dev else 'scoring splits'}; "
          f"settings {args.overrides or 'recipe defaults'}"
          f"{'; the simulated user paints split nuclei' if args.paint_splits else ''}"
          f"{'; says when it corrected every error of an image' if args.review else ''}"
          f"{f'; confirms {args.confirm} right nuclei per image and round' if args.confirm else ''}"
          f"{'; skips errors it clicked before' if args.skip_clicked else ''}"
          f"{'; clicks every nucleus of a merged object' if args.whole_merges else ''}"
          f"{'; paints every nucleus of a merged object' if args.paint_merges else ''}",
          flush=True)
    starts = {d: score(start, v[2], v[3]) for d, v in data.items()}
    for d, s in starts.items():
        print(f"start model on the {d} scoring images: F1 {s['f1']:.3f} AP {s['ap']:.3f} "
              f"count err {s['count_err']:.1f}", flush=True)
    results: dict = {"settings": vars(args) | {"data": str(args.data), "json": None},
                     "start": starts, "rows": {}}
    given, rgb_names = dict(args.overrides), load_train(args.data, "RGB")[0]
    for row in args.rows:
        args.overrides = {"replay_exclude": rgb_names, **given} if row in RGB_ROWS else given
        for seed in args.seeds:
            t0 = time.perf_counter()
            print(f"{row} seed {seed} ...", flush=True)
            if row in ("rgb_clicks", "rgb_masks", "fluo_clicks", "fluo_masks"):
                dom, kind = row.split("_")
                r = row_finetune(args, seed, data[dom], kind, args.start,
                                 other=data["fluo" if dom == "rgb" else "rgb"])
            elif row.startswith("scratch"):
                r = row_finetune(args, seed, data["fluo"], row.split("_")[1], None)
            elif row in ("correction", "fluo_correction"):
                r = row_correction(args, seed, data["fluo" if row.startswith("fluo") else "rgb"],
                                   args.start)
            elif row == "suggestions":
                r = row_suggestions(args, seed, data["rgb"], args.start)
            elif row == "seen_masks":
                r = row_seen_masks(args, seed, data["fluo"], args.start)
            else:
                r = row_demo(args, seed)
            r["seconds"] = round(time.perf_counter() - t0, 1)
            results["rows"].setdefault(row, []).append(r)
            print(f"  {row} seed {seed}: F1 {r['f1']:.3f} AP {r['ap']:.3f} count err "
                  f"{r['count_err']:.1f} ({r['seconds']:.0f} s) "
                  f"{ {k: v for k, v in r.items() if k not in ('f1', 'ap', 'count_err', 'seconds', 'per_image')} }",
                  flush=True)
            if args.json:
                args.json.write_text(json.dumps(results, indent=1, default=float))
    print_table(results)


def _f3(x) -> str:
    return "-" if x is None else f"{x:.3f}"


def _ms(values) -> str:
    v = np.asarray([x for x in values if x is not None], float)
    if v.size == 0:
        return "-"
    return f"{v.mean():.3f} +- {v.std(ddof=1) if v.size > 1 else 0.0:.3f}"


def print_table(results: dict) -> None:
    starts = results["start"]
    print(f"\n{'row':<16} {'start F1':>9} {'result F1 (mean +- sd)':>24} {'start AP':>9} "
          f"{'result AP':>18} {'start |cnt err|':>15} {'result |cnt err|':>18}")
    for row, runs in results["rows"].items():
        dom = "fluo" if row.startswith(("fluo", "scratch", "seen")) else "rgb"
        s = starts[dom]
        if row == "demo":
            s = {"f1": np.nan, "ap": np.nan, "count_err": np.nan}
        print(f"{row:<16} {s['f1']:>9.3f} {_ms(r['f1'] for r in runs):>24} {s['ap']:>9.3f} "
              f"{_ms(r['ap'] for r in runs):>18} {s['count_err']:>15.1f} "
              f"{_ms(r['count_err'] for r in runs):>18}")
        if any("other_f1" in r for r in runs):
            other = "rgb" if dom == "fluo" else "fluo"
            print(f"{'':<16} on the {other} scoring images (not trained on here): F1 "
                  f"{starts[other]['f1']:.3f} -> {_ms(r['other_f1'] for r in runs)}, AP "
                  f"{starts[other]['ap']:.3f} -> {_ms(r['other_ap'] for r in runs)}")
        if row in ("correction", "fluo_correction"):
            per_round = np.asarray([r["rounds_f1"] for r in runs])
            print(f"{'':<16} F1 after rounds 0..3: {', '.join(_ms(c) for c in per_round.T)}; "
                  f"rising after every round in {int(np.all(np.diff(per_round, axis=1) > 0, axis=1).sum())} "
                  f"of {len(runs)} seeds")
            if all("round_steps" in r for r in runs):
                steps = np.asarray([r["round_steps"] for r in runs])
                print(f"{'':<16} steps per round: {steps.min()}-{steps.max()}")
            if all("repeats" in r for r in runs):
                again = np.asarray([r["repeats"] for r in runs])
                print(f"{'':<16} largest errors clicked before, rounds 1..3: "
                      f"{', '.join(_ms(c) for c in again.T)}; clicks in all "
                      f"{_ms(r['clicks'] for r in runs)}")
        if row == "suggestions":
            print(f"{'':<16} random clicks F1 {_ms(r['random_f1'] for r in runs)}; gain per click "
                  f"suggested {_ms(r['gain_per_click_suggested'] for r in runs)} vs random "
                  f"{_ms(r['gain_per_click_random'] for r in runs)}; ratio {_ms(r['ratio'] for r in runs)}")
        if row == "seen_masks":
            print(f"{'':<16} on the 5 images trained on: F1 {runs[0]['seen_start_f1']:.3f} -> "
                  f"{_ms(r['seen_f1'] for r in runs)}, AP {runs[0]['seen_start_ap']:.3f} -> "
                  f"{_ms(r['seen_ap'] for r in runs)}")
        if row == "demo":
            print(f"{'':<16} worst per-image F1 change (fine-tuned - default): "
                  f"{_ms(r['worst_delta'] for r in runs)}")
    print("targets: rgb clicks >= start + 0.05 F1, AP not lower; rgb masks >= start + 0.08; "
          "fluo clicks >= start - 0.005; fluo masks >= start + 0.02; scratch clicks within 0.05 "
          "of scratch masks; correction rises each round, >= start + 0.05; suggestions ratio "
          ">= 1.5; demo worst change >= -0.01")


if __name__ == "__main__":
    main()
