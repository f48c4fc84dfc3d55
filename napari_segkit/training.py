"""Train or fine-tune a UNet; :func:`train` is a generator of progress events.

Usage::

    gen = train(images, labels, config=TrainConfig(steps=500), out_path="my.safetensors")
    for event in gen:            # run this in a worker thread in a GUI
        print(event.kind, event.step, event.loss, event.val_f1)
    model = event.model          # the "done" / "stopped" event carries the final model

The hot loop is kept lean: images are normalised once, patches are cut in numpy, the
loss is read back (a device sync) only every ``log_every`` steps on GPUs.
"""

from __future__ import annotations

import contextlib
import copy
import datetime
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from .data import DEFAULT_NORMALIZATION, IGNORE_INDEX, PatchSampler, prepare_input, split_rows
from .model import UNetConfig, select_device
from .model_io import SegModel, load_default_model, load_model, save_model
from .targets import (
    Targets,
    class_weights,
    instance_targets,
    semantic_targets,
    sparse_targets,
    targets_from_clicks,
)

NEW_MODEL_LR = 3e-3
FINE_TUNE_LR = 5e-4


@dataclass
class TrainConfig:
    """Training settings.

    ``steps`` bounds the number of optimiser steps (``epochs``, when given, overrides it:
    one epoch = as many patch pixels as there are labelled pixels) and ``time_budget_s`` the wall time;
    ``lr`` and ``freeze_norm`` default to what suits the start: a new model learns fast
    (3e-3); a fine-tuned one slower (5e-4), with its BatchNorm statistics kept, so a few
    minutes on a few images adapt it instead of overwriting what it knows;
    training ends at whichever comes first, and the learning-rate schedule (linear warm-up,
    then cosine decay) follows whichever is closer to its end, so a time-limited run still
    anneals properly.
    """

    steps: int = 1000
    epochs: float | None = None
    time_budget_s: float | None = None
    patch_size: int = 128
    batch_size: int = 8
    lr: float | None = None  # None: 3e-3 for a new model, 5e-4 when fine-tuning
    freeze_norm: bool | None = None  # None: keep normalisation statistics when fine-tuning
    click_guidance: bool = True  # fine-tuning from clicks: clicks correct the model's instances
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.03
    val_every: int = 100
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    amp: str | bool = "auto"
    num_threads: int | None = None
    labels_kind: str = "instances"  # "instances" | "semantic" | "sparse"
    boundary_width: int = 1
    fg_prob: float = 0.6
    augment: bool = True
    scale_range: tuple[float, float] | None = None  # zoom augmentation, e.g. (0.5, 2.0)
    dice_weight: float = 1.0
    center_weight: float = 1.0
    log_every: int | None = None
    model: UNetConfig = field(default_factory=UNetConfig)
    normalization: dict = field(default_factory=lambda: dict(DEFAULT_NORMALIZATION))

    def to_dict(self) -> dict:
        d = asdict(self)
        d["model"] = self.model.to_dict()
        return d


@dataclass
class TrainEvent:
    """One progress report. ``kind``: start, step, validation, checkpoint, done, stopped."""

    kind: str
    step: int = 0
    total_steps: int = 0
    epoch: float = 0.0
    loss: float | None = None
    val_iou: float | None = None
    val_f1: float | None = None
    lr: float = 0.0
    elapsed_s: float = 0.0
    eta_s: float | None = None
    device: str = "cpu"
    images_per_s: float | None = None
    model_path: str | None = None
    message: str = ""
    model: SegModel | None = field(default=None, repr=False)


# --------------------------------------------------------------------------- devices
# --------------------------------------------------------------------------- loss
def segmentation_loss(
    logits: torch.Tensor,
    classes: torch.Tensor,
    center: torch.Tensor,
    center_mask: torch.Tensor,
    n_classes: int,
    weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    center_weight: float = 1.0,
) -> torch.Tensor:
    """Weighted cross-entropy (ignoring ``IGNORE_INDEX``) + soft Dice on the foreground
    (classes >= 1, labelled pixels only) + BCE on the centre channel where it is known."""
    logits = logits.float()
    cls_logits = logits[:, :n_classes]
    loss = F.cross_entropy(cls_logits, classes, weight=weights, ignore_index=IGNORE_INDEX)
    known = (classes != IGNORE_INDEX).float()
    if dice_weight > 0:
        prob = torch.softmax(cls_logits, dim=1)
        fg_p = (1.0 - prob[:, 0]) * known
        fg_t = (classes >= 1).float() * known
        inter = (fg_p * fg_t).sum()
        dice = 1.0 - (2 * inter + 1.0) / (fg_p.sum() + fg_t.sum() + 1.0)
        loss = loss + dice_weight * dice
    if center_weight > 0 and logits.shape[1] > n_classes:
        m = center_mask.float()
        bce = F.binary_cross_entropy_with_logits(logits[:, n_classes], center, reduction="none")
        loss = loss + center_weight * (bce * m).sum() / m.sum().clamp_min(1.0)
    return loss


# --------------------------------------------------------------------------- inputs
def _as_list(x, n=None) -> list:
    if x is None:
        return [None] * (n or 0)
    if isinstance(x, np.ndarray) and (n is None or x.ndim in (2, 3) and n == 1):
        return [x]
    return list(x)


def _points_of(p):
    """Accept (N,2) arrays, (coords, classes) tuples or (coords, DataFrame with 'class')."""
    if p is None:
        return None, None
    if isinstance(p, tuple) and len(p) == 2:
        coords, cls = p
        if hasattr(cls, "columns"):
            cls = list(cls["class"]) if "class" in cls.columns else None
        return np.asarray(coords, float)[:, -2:], cls
    return np.asarray(p, float)[:, -2:], None


def _targets_for(image, labels, points, cfg: TrainConfig, n_classes: int, guide_model=None) -> Targets:
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != np.asarray(image).shape[:2]:
            raise ValueError(
                f"labels shape {labels.shape} does not match image shape {np.shape(image)[:2]}"
            )
        if cfg.labels_kind == "instances":
            return instance_targets(labels, cfg.boundary_width)
        if cfg.labels_kind == "semantic":
            return semantic_targets(labels, n_classes)
        if cfg.labels_kind == "sparse":
            return sparse_targets(labels)
        raise ValueError(f"labels_kind must be instances, semantic or sparse, not {cfg.labels_kind!r}")
    coords, cls = _points_of(points)
    if coords is None or len(coords) == 0:
        raise ValueError("each training image needs labels or points; this one has neither")
    guide = None
    if guide_model is not None:
        from .prediction import predict

        guide = predict(guide_model, image).instances
    return targets_from_clicks(image, coords, cls, boundary_width=cfg.boundary_width, guide=guide)


def _resolve_init(init, cfg: TrainConfig) -> SegModel:
    if init is None:
        model = SegModel.new(copy.deepcopy(cfg.model))
        model.normalization = dict(cfg.normalization)
        return model
    if isinstance(init, SegModel):
        return SegModel(copy.deepcopy(init.net).cpu(), copy.deepcopy(init.config),
                        dict(init.normalization), list(init.class_names), dict(init.provenance))
    if isinstance(init, str) and init == "default":
        return load_default_model()
    return load_model(init)


# --------------------------------------------------------------------------- validation
@torch.no_grad()
def _predict_full(net, x: np.ndarray, device, n_classes: int, max_side: int = 1024):
    """Probabilities for one prepared image (C, H, W): prediction's sliding window, with
    one tile for images up to ``max_side`` and blended tiles beyond."""
    from .prediction import _TorchForward, predict_tiled

    forward = _TorchForward(net, n_classes, torch.device(device))
    return predict_tiled(forward, x, net.config.n_outputs, tile_size=max_side,
                         divisor=net.config.divisor)


def _instances(probs: np.ndarray, n_classes: int):
    try:
        from .postprocess import instances_from_probabilities
    except ImportError:
        return None
    center = probs[n_classes] if probs.shape[0] > n_classes else None
    return instances_from_probabilities(probs[:n_classes], center)


def validate(net, val_x, val_targets, val_instances, device, n_classes: int) -> dict:
    """Foreground IoU over labelled pixels (pooled) and instance F1@0.5 (pooled) when
    full instance labels and the postprocess / metrics modules are available."""
    was_training = net.training
    net.eval()
    inter = union = 0
    tp = fp = fn = 0
    f1_ok = True
    try:
        for x, t, inst in zip(val_x, val_targets, val_instances, strict=True):
            probs = _predict_full(net, x, device, n_classes)
            known = t.classes >= 0
            pred_fg = probs[0] < 0.5
            gt_fg = t.classes >= 1
            inter += int((pred_fg & gt_fg & known).sum())
            union += int(((pred_fg | gt_fg) & known).sum())
            if inst is None or not f1_ok:
                f1_ok = False
                continue
            try:
                from .metrics import match_instances
            except ImportError:
                f1_ok = False
                continue
            pred = _instances(probs, n_classes)
            if pred is None:
                f1_ok = False
                continue
            m = match_instances(inst, pred, 0.5)
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    finally:
        net.train(was_training)
    iou = inter / union if union else 0.0
    f1 = (2 * tp / max(2 * tp + fp + fn, 1)) if f1_ok and val_instances else None
    return {"val_iou": float(iou), "val_f1": None if f1 is None else float(f1)}


def _split_validation(images, targets, instances, cfg: TrainConfig, rng):
    """Hold out whole images (>= 3 images) or the bottom strip of each image."""
    n = len(images)
    if cfg.val_fraction <= 0:
        return images, targets, [], [], []
    if n >= 3:
        n_val = max(1, int(round(cfg.val_fraction * n)))
        val = set(rng.permutation(n)[:n_val].tolist())
        tr = [i for i in range(n) if i not in val]
        return ([images[i] for i in tr], [targets[i] for i in tr],
                [images[i] for i in sorted(val)], [targets[i] for i in sorted(val)],
                [instances[i] for i in sorted(val)])
    tr_x, tr_t, va_x, va_t, va_i = [], [], [], [], []
    for x, t, inst in zip(images, targets, instances, strict=True):
        r = split_rows(x.shape[1], cfg.val_fraction)
        top, bottom = (slice(0, r), slice(None)), (slice(r, None), slice(None))
        tr_x.append(x[:, :r])
        tr_t.append(t.crop(top))
        va_x.append(x[:, r:])
        va_t.append(t.crop(bottom))
        va_i.append(None if inst is None else _relabel(inst[r:]))
    return tr_x, tr_t, va_x, va_t, va_i


def _relabel(labels):
    from skimage.segmentation import relabel_sequential

    return relabel_sequential(labels)[0]


def _is_stopped(stop) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event):
        return stop.is_set()
    return bool(stop())


def _lr_factor(progress: float, warmup: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 0.01)
    p = (progress - warmup) / max(1.0 - warmup, 1e-9)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * p))


# --------------------------------------------------------------------------- train
def train(
    images: Sequence[np.ndarray] | np.ndarray,
    labels: Sequence[np.ndarray | None] | np.ndarray | None = None,
    points: Sequence | None = None,
    *,
    config: TrainConfig | None = None,
    init: None | str | os.PathLike | SegModel = None,
    out_path: str | os.PathLike | None = None,
    val: tuple | None = None,
    val_images: Sequence[np.ndarray] | None = None,
    val_labels: Sequence[np.ndarray] | None = None,
    stop: threading.Event | Callable[[], bool] | None = None,
) -> Generator[TrainEvent, None, SegModel]:
    """Train a new model or fine-tune one; yields :class:`TrainEvent` and returns the model.

    Parameters
    ----------
    images : list of 2-D gray or RGB arrays (sizes may differ)
    labels : list of label images (instance labels by default, see
        ``TrainConfig.labels_kind``), ``None`` entries for images annotated by points
    points : list of per-image clicks: (N, 2) arrays or ``(coords, classes)`` tuples with
        classes ``"nucleus"`` / ``"background"`` (or a DataFrame with a "class" column)
    config : TrainConfig
    init : None (new model from ``config.model``), ``"default"`` (the shipped nuclei
        model), a model file path or a :class:`SegModel` (copied, not modified)
    out_path : where the best weights are written (atomically) at each improvement, on
        Stop and at the end
    val / val_images, val_labels : a separate validation set with full instance labels;
        without it part of the training data is held out (``config.val_fraction``)
    stop : ``threading.Event`` or callable; checked before every step

    The best weights by validation score (F1@0.5 when available, else foreground IoU)
    are loaded back at the end (also after Stop).
    """
    cfg = config or TrainConfig()
    images = _as_list(images)
    n = len(images)
    if n == 0:
        raise ValueError("no training images given")
    labels_l = _as_list(labels, n) if labels is not None else [None] * n
    points_l = list(points) if points is not None else [None] * n
    if points is not None and n == 1 and not isinstance(points, list):
        points_l = [points]
    if len(labels_l) != n or len(points_l) != n:
        raise ValueError(f"got {n} images but {len(labels_l)} labels and {len(points_l)} points")
    if val is not None:
        val_images, val_labels = val
    t_start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)

    model = _resolve_init(init, cfg)
    mcfg = model.config
    n_classes = mcfg.n_classes
    device = select_device(cfg.device)

    # prepare everything once
    xs = [prepare_input(im, mcfg.in_channels, model.normalization) for im in images]
    # clicks on a model being fine-tuned correct its own predictions (see
    # targets.click_guided_instances) rather than replace them with click-grown masks
    guide_model = model if (init is not None and cfg.click_guidance) else None
    tgs = [_targets_for(im, lb, pt, cfg, n_classes, guide_model)
           for im, lb, pt in zip(images, labels_l, points_l, strict=True)]
    # instance labels to score validation F1 with: the given ones, or for clicks the
    # pseudo instances the targets were made from
    full = [np.asarray(lb) if (lb is not None and cfg.labels_kind == "instances") else t.instances
            for lb, t in zip(labels_l, tgs, strict=True)]
    if val_images is not None:
        val_images = _as_list(val_images)
        val_labels = _as_list(val_labels, len(val_images))
        tr_x, tr_t = xs, tgs
        va_x = [prepare_input(im, mcfg.in_channels, model.normalization) for im in val_images]
        va_i = [np.asarray(lb) for lb in val_labels]
        va_t = [instance_targets(lb) for lb in va_i]
    else:
        tr_x, tr_t, va_x, va_t, va_i = _split_validation(xs, tgs, full, cfg, rng)
    sampler = PatchSampler(tr_x, tr_t, cfg.patch_size, fg_prob=cfg.fg_prob,
                           augment=cfg.augment, scale_range=cfg.scale_range, rng=rng)
    weights = torch.as_tensor(class_weights([t.classes for t in tr_t], n_classes), device=device)

    prev_threads = torch.get_num_threads()
    if device.type == "cpu":
        torch.set_num_threads(cfg.num_threads or max(1, (os.cpu_count() or 2) - 1))
    net = model.net.to(device)
    use_amp = device.type == "cuda" and cfg.amp in ("auto", True)
    if device.type == "cuda":
        net = net.to(memory_format=torch.channels_last)
    fine_tuning = init is not None
    base_lr = cfg.lr if cfg.lr is not None else (FINE_TUNE_LR if fine_tuning else NEW_MODEL_LR)
    freeze_norm = fine_tuning if cfg.freeze_norm is None else bool(cfg.freeze_norm)
    optimizer = torch.optim.AdamW(net.parameters(), lr=base_lr, weight_decay=cfg.weight_decay)
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    def amp_context():
        if use_amp:
            return torch.autocast(device_type="cuda", dtype=torch.float16)
        return contextlib.nullcontext()

    log_every = cfg.log_every or (1 if device.type == "cpu" else 10)
    budget = cfg.time_budget_s
    pixels_per_epoch = max(sampler.labelled_pixels, 1)
    total = int(cfg.steps)
    if cfg.epochs is not None:
        total = max(1, int(round(cfg.epochs * pixels_per_epoch / (cfg.batch_size * cfg.patch_size**2))))
    best_score, best_state, best_metrics = (-2.0, -2.0), None, {}
    step, loss_val, stopped = 0, None, False
    out_path = Path(out_path) if out_path is not None else None
    dev_name = str(device)
    cur = {"lr": base_lr}

    def event(kind, **kw):
        el = time.perf_counter() - t_start
        per_step = el / step if step else None
        eta = None
        if per_step is not None:
            eta = per_step * (total - step)
            if budget:
                eta = min(eta, max(budget - el, 0.0))
        ep = step * cfg.batch_size * cfg.patch_size**2 / pixels_per_epoch
        return TrainEvent(kind, step, total, ep, loss_val, lr=cur["lr"],
                          elapsed_s=el, eta_s=eta, device=dev_name,
                          images_per_s=(step * cfg.batch_size / el) if step and el else None, **kw)

    def finish_model(kind_steps) -> SegModel:
        net.to(memory_format=torch.contiguous_format)
        model.net = net
        model.provenance = {
            **{k: v for k, v in model.provenance.items() if k != "training"},
            "training": {
                "n_images": n, "steps": kind_steps, "date": datetime.datetime.now().isoformat(
                    timespec="seconds"),
                "labels": "points" if all(lb is None for lb in labels_l) else cfg.labels_kind,
                "init": "new" if init is None else str(init if isinstance(init, (str, Path))
                                                         else "model"),
                "best": best_metrics, "config": cfg.to_dict(),
            },
        }
        return model

    def write(kind_steps) -> str | None:
        if out_path is None:
            return None
        save_model(finish_model(kind_steps), out_path)
        return str(out_path)

    def check():
        """Validate; keep and write the weights when they are the best so far."""
        nonlocal best_score, best_metrics, best_state
        m = validate(net, va_x, va_t, va_i, device, n_classes)
        score = (m["val_f1"] if m["val_f1"] is not None else -1.0, m["val_iou"])
        yield event("validation", **m)
        if score > best_score:
            best_score, best_metrics = score, {**m, "step": step}
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            path = write(step)
            if path:
                yield event("checkpoint", model_path=path, **m)
        set_train_mode()

    def set_train_mode():
        net.train()
        if freeze_norm:
            for module in net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    xb = cb = tb = mb = logits = loss = None
    try:
        yield event("start", message=f"training on {dev_name}, {len(tr_x)} images, "
                                     f"{len(va_x)} validation images")
        if fine_tuning and va_x:
            # the starting model is a candidate too: fine-tuning never hands back
            # something that validates worse than what it started from
            yield from check()
        set_train_mode()
        while step < total:
            if _is_stopped(stop):
                stopped = True
                break
            el = time.perf_counter() - t_start
            if budget is not None and el >= budget:
                break
            progress = step / total
            if budget:
                progress = max(progress, el / budget)
            lr = base_lr * _lr_factor(progress, cfg.warmup_fraction)
            cur["lr"] = lr
            for g in optimizer.param_groups:
                g["lr"] = lr
            xb, cb, tb, mb = sampler.sample(cfg.batch_size)
            xb = torch.from_numpy(xb).to(device, non_blocking=True)
            if device.type == "cuda":
                xb = xb.contiguous(memory_format=torch.channels_last)
            cb = torch.from_numpy(cb).to(device, non_blocking=True)
            tb = torch.from_numpy(tb).to(device, non_blocking=True)
            mb = torch.from_numpy(mb).to(device, non_blocking=True)
            with amp_context():
                logits = net(xb)
            # the loss in float32: float16 logits under autocast would lose precision
            loss = segmentation_loss(logits.float(), cb, tb, mb, n_classes, weights,
                                     cfg.dice_weight, cfg.center_weight)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            if step % log_every == 0 or step == total:
                loss_val = float(loss.detach())
                yield event("step")
            if va_x and (step % cfg.val_every == 0 or step == total):
                yield from check()
        if va_x and not stopped and step % cfg.val_every and step < total:
            # a time budget ended between two validations: the annealed end state counts too
            # (at step == total the loop has just validated)
            yield from check()
        if not va_x or best_state is None:
            best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
            best_metrics = {"step": step}
        net.load_state_dict(best_state)
        del best_state
        net.eval()
        # hand the model back on the CPU: the GPU memory is freed below, and prediction
        # moves the network to whatever device it uses
        net.to(memory_format=torch.contiguous_format).to("cpu")
        path = write(step)
        final = finish_model(step)
        yield event("stopped" if stopped else "done", model_path=path, model=final,
                    val_iou=best_metrics.get("val_iou"), val_f1=best_metrics.get("val_f1"),
                    message="stopped by user" if stopped else "finished")
        return final
    finally:
        # drop every device tensor this frame holds before emptying the allocator's cache:
        # a finished generator keeps its locals until it is garbage-collected
        del optimizer, scaler, weights
        xb = cb = tb = mb = logits = loss = best_state = None
        if device.type == "cpu":
            torch.set_num_threads(prev_threads)
        else:
            net.to(memory_format=torch.contiguous_format).to("cpu")
            if device.type == "cuda":
                torch.cuda.empty_cache()
            elif device.type == "mps" and hasattr(torch, "mps"):
                torch.mps.empty_cache()


def run_training(*args, progress: Callable[[TrainEvent], None] | None = None, **kwargs) -> SegModel:
    """Run :func:`train` to the end (headless use); ``progress`` receives every event."""
    gen = train(*args, **kwargs)
    while True:
        try:
            ev = next(gen)
        except StopIteration as fin:
            return fin.value
        if progress is not None:
            progress(ev)
