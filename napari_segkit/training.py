"""Train or fine-tune a UNet; :func:`train` is a generator of progress events.

Usage::

    gen = train(images, labels, config=TrainConfig(steps=500), out_path="my.safetensors")
    for event in gen:            # run this in a worker thread in a GUI
        print(event.kind, event.step, event.loss, event.val_f1)
    model = event.model          # the "done" / "stopped" event carries the final model

(:func:`napari_segkit.workflows.run_training` runs it to the end with a callback.)
A :class:`Trainer` does the work in named steps: prepare the data, build the optimiser,
one optimisation step, validate (and checkpoint the best weights), finish. The hot loop
is kept lean: images are normalised once, patches are cut in numpy, the loss is read
back (a device sync) only every ``log_every`` steps on GPUs.
"""

from __future__ import annotations

import copy
import datetime
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import classes_of, is_stopped
from .color_augment import split_variants, with_color_variants
from .losses import check_loss, forward_for_training, training_loss
from .model import UNetConfig
from .model_io import SegModel, load_default_model, load_model, save_model
from .normalization import DEFAULT_NORMALIZATION, Normalization
from .object_size import median_object_diameter
from .prediction import predict
from .runtime import autocast, select_device, torch_threads
from .sampling import PatchSampler, split_validation
from .scoring import validate
from .targets import (
    Targets,
    class_weights,
    instance_targets,
    semantic_targets,
    sparse_targets,
    targets_from_clicks,
)

__all__ = ["FINE_TUNE_LR", "NEW_MODEL_LR", "TrainConfig", "TrainEvent", "Trainer", "train"]

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
    color_variants: int = 0  # colour / stain variants per image (napari_segkit.color_augment)
    color_prob: float = 0.5  # probability that a patch comes from a colour variant
    loss: str = "ce_dice"  # see napari_segkit.losses.LOSSES
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
            cls = classes_of(cls)
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
    guide = None if guide_model is None else predict(guide_model, image).instances
    return targets_from_clicks(image, coords, cls, boundary_width=cfg.boundary_width, guide=guide)


def _resolve_init(init, cfg: TrainConfig) -> SegModel:
    if init is None:
        model = SegModel.new(copy.deepcopy(cfg.model))
        model.normalization = dict(cfg.normalization)
        return model
    if isinstance(init, SegModel):
        model = copy.deepcopy(init)  # every field, so the caller's model stays as it is
        model.net = model.net.cpu()
        return model
    if isinstance(init, str) and init == "default":
        return load_default_model()
    return load_model(init)


def _lr_factor(progress: float, warmup: float) -> float:
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 0.01)
    p = (progress - warmup) / max(1.0 - warmup, 1e-9)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * p))


# --------------------------------------------------------------------------- trainer
class Trainer:
    """One training run, in named steps; :func:`train` drives it and yields its events.

    ``prepare_data`` -> ``build_optimiser`` -> ``run`` (``train_step`` until the step or
    time budget ends or ``stop`` is set; ``validate`` every ``val_every`` steps, with a
    ``checkpoint`` of the best weights) -> ``finish`` (the best weights, on the CPU) ->
    ``release`` (device memory).
    """

    def __init__(self, config: TrainConfig, init: Any = None, out_path: Any = None,
                 stop: threading.Event | Callable[[], bool] | None = None) -> None:
        check_loss(config.loss)
        self.cfg = config
        self.init = init
        self.fine_tuning = init is not None
        self.out_path = Path(out_path) if out_path is not None else None
        self.stop = stop
        self.t_start = time.perf_counter()
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.model = _resolve_init(init, config)
        self.n_classes = self.model.config.n_classes
        self.device = select_device(config.device)
        self.step = 0
        self.loss: float | None = None  # the last loss read back from the device
        self.lr = 0.0
        self.best_score, self.best_state, self.best_metrics = (-2.0, -2.0), None, {}

    # ---- named steps ---------------------------------------------------------------
    def prepare_data(self, images: list, labels: list, points: list,
                     val_images: list | None = None, val_labels: list | None = None) -> None:
        """Network inputs and targets of every image, the validation split, the sampler."""
        cfg, mcfg = self.cfg, self.model.config
        norm = Normalization.from_dict(self.model.normalization)
        self.n_images = len(images)
        self.labels_source = "points" if all(lb is None for lb in labels) else cfg.labels_kind
        xs = [norm.prepare(im, mcfg.in_channels) for im in images]
        # clicks on a model being fine-tuned correct its own predictions (see
        # targets.click_guided_instances) rather than replace them with click-grown masks
        guide_model = self.model if (self.fine_tuning and cfg.click_guidance) else None
        tgs = [_targets_for(im, lb, pt, cfg, self.n_classes, guide_model)
               for im, lb, pt in zip(images, labels, points, strict=True)]
        # instance labels to score validation F1 with: the given ones, or for clicks the
        # pseudo instances the targets were made from
        full = [np.asarray(lb) if (lb is not None and cfg.labels_kind == "instances")
                else t.instances for lb, t in zip(labels, tgs, strict=True)]
        self.model.object_diameter = self.model.object_diameter or median_object_diameter(full)
        xs = with_color_variants(images, xs, cfg.color_variants if cfg.augment else 0, cfg.seed,
                                 lambda im: norm.prepare(im, mcfg.in_channels))
        if val_images is not None:
            tr_x, tr_t = xs, tgs
            va_x = [norm.prepare(im, mcfg.in_channels) for im in val_images]
            va_i = [np.asarray(lb) for lb in val_labels]
            va_t = [instance_targets(lb) for lb in va_i]
        else:
            tr_x, tr_t, va_x, va_t, va_i = split_validation(xs, tgs, full, cfg.val_fraction,
                                                            self.rng)
            va_x = [x[: mcfg.in_channels] for x in va_x]
        tr_x, tr_variants = split_variants(tr_x, mcfg.in_channels)
        self.n_train, self.val_x, self.val_targets, self.val_instances = len(tr_x), va_x, va_t, va_i
        self.sampler = PatchSampler(tr_x, tr_t, cfg.patch_size, fg_prob=cfg.fg_prob,
                                    augment=cfg.augment, scale_range=cfg.scale_range, rng=self.rng,
                                    variants=tr_variants, variant_prob=cfg.color_prob)
        self.weights = torch.as_tensor(class_weights([t.classes for t in tr_t], self.n_classes),
                                       device=self.device)
        self.pixels_per_epoch = max(self.sampler.labelled_pixels, 1)
        self.total = int(cfg.steps)
        if cfg.epochs is not None:
            patch_pixels = cfg.batch_size * cfg.patch_size**2
            self.total = max(1, int(round(cfg.epochs * self.pixels_per_epoch / patch_pixels)))

    def build_optimiser(self) -> None:
        """The network on the device, the learning rate, AdamW and the AMP gradient scaler."""
        cfg, device = self.cfg, self.device
        self.net = self.model.net.to(device)
        self.use_amp = device.type == "cuda" and cfg.amp in ("auto", True)
        if device.type == "cuda":
            self.net = self.net.to(memory_format=torch.channels_last)
        self.base_lr = cfg.lr if cfg.lr is not None else (
            FINE_TUNE_LR if self.fine_tuning else NEW_MODEL_LR)
        self.lr = self.base_lr
        self.freeze_norm = self.fine_tuning if cfg.freeze_norm is None else bool(cfg.freeze_norm)
        self.optimizer = torch.optim.AdamW(self.net.parameters(), lr=self.base_lr,
                                           weight_decay=cfg.weight_decay)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)

    def train_step(self, elapsed: float) -> torch.Tensor:
        """One optimisation step (learning rate from how far the budget is spent); the loss."""
        cfg, device = self.cfg, self.device
        progress = self.step / self.total
        if cfg.time_budget_s:
            progress = max(progress, elapsed / cfg.time_budget_s)
        self.lr = self.base_lr * _lr_factor(progress, cfg.warmup_fraction)
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr
        xb, cb, tb, mb = self.sampler.sample(cfg.batch_size)
        xb = torch.from_numpy(xb).to(device, non_blocking=True)
        if device.type == "cuda":
            xb = xb.contiguous(memory_format=torch.channels_last)
        cb = torch.from_numpy(cb).to(device, non_blocking=True)
        tb = torch.from_numpy(tb).to(device, non_blocking=True)
        mb = torch.from_numpy(mb).to(device, non_blocking=True)
        with autocast(device, self.use_amp):
            logits, aux = forward_for_training(self.net, xb)
        # the loss in float32: float16 logits under autocast would lose precision
        loss = training_loss(logits.float(), [a.float() for a in aux], cb, tb, mb,
                             self.n_classes, self.weights, cfg.dice_weight, cfg.center_weight,
                             kind=cfg.loss)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.step += 1
        return loss

    def validate(self) -> Iterator[TrainEvent]:
        """Score the validation data; keep (and checkpoint) the weights when they are the best."""
        m = validate(self.net, self.val_x, self.val_targets, self.val_instances, self.device,
                     self.n_classes)
        score = (m["val_f1"] if m["val_f1"] is not None else -1.0, m["val_iou"])
        yield self.event("validation", **m)
        if score > self.best_score:
            self.best_score, self.best_metrics = score, {**m, "step": self.step}
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            path = self.checkpoint()
            if path:
                yield self.event("checkpoint", model_path=path, **m)
        self.set_train_mode()

    def checkpoint(self) -> str | None:
        """Write the model as it is now to ``out_path`` (atomically); its path, or None."""
        if self.out_path is None:
            return None
        save_model(self.finished_model(), self.out_path)
        return str(self.out_path)

    def finish(self) -> SegModel:
        """The best weights (the last ones without validation) in eval mode on the CPU,
        written to ``out_path``."""
        if not self.val_x or self.best_state is None:
            self.best_state = {k: v.detach().clone() for k, v in self.net.state_dict().items()}
            self.best_metrics = {"step": self.step}
        self.net.load_state_dict(self.best_state)
        self.best_state = None
        self.net.eval()
        # hand the model back on the CPU: the device memory is freed by release(), and
        # prediction moves the network to whatever device it uses
        self.net.to(memory_format=torch.contiguous_format).to("cpu")
        self.model_path = self.checkpoint()
        return self.finished_model()

    def release(self) -> None:
        """Drop every device tensor before emptying the allocator's cache (a finished
        generator keeps its locals until it is garbage-collected)."""
        self.optimizer = self.scaler = self.weights = self.best_state = None
        if self.device.type != "cpu":
            self.net.to(memory_format=torch.contiguous_format).to("cpu")
            if self.device.type == "cuda":
                torch.cuda.empty_cache()
            elif self.device.type == "mps" and hasattr(torch, "mps"):
                torch.mps.empty_cache()

    # ---- the loop --------------------------------------------------------------------
    def run(self) -> Generator[TrainEvent, None, SegModel]:
        """Train until the budget ends or ``stop`` is set, yielding progress events."""
        cfg = self.cfg
        log_every = cfg.log_every or (1 if self.device.type == "cpu" else 10)
        stopped = False
        yield self.event("start", message=f"training on {self.device}, {self.n_train} images, "
                                          f"{len(self.val_x)} validation images")
        if self.fine_tuning and self.val_x:
            # the starting model is a candidate too: fine-tuning never hands back
            # something that validates worse than what it started from
            yield from self.validate()
        self.set_train_mode()
        while self.step < self.total:
            if is_stopped(self.stop):
                stopped = True
                break
            elapsed = time.perf_counter() - self.t_start
            if cfg.time_budget_s is not None and elapsed >= cfg.time_budget_s:
                break
            loss = self.train_step(elapsed)
            if self.step % log_every == 0 or self.step == self.total:
                self.loss = float(loss.detach())
                yield self.event("step")
            if self.val_x and (self.step % cfg.val_every == 0 or self.step == self.total):
                yield from self.validate()
        if self.val_x and not stopped and self.step % cfg.val_every and self.step < self.total:
            # a time budget ended between two validations: the annealed end state counts too
            # (at step == total the loop has just validated)
            yield from self.validate()
        final = self.finish()
        yield self.event("stopped" if stopped else "done", model_path=self.model_path,
                         model=final, val_iou=self.best_metrics.get("val_iou"),
                         val_f1=self.best_metrics.get("val_f1"),
                         message="stopped by user" if stopped else "finished")
        return final

    # ---- helpers ---------------------------------------------------------------------
    def set_train_mode(self) -> None:
        self.net.train()
        if self.freeze_norm:
            for module in self.net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()

    def finished_model(self) -> SegModel:
        """The model with the network as it is now and its training provenance."""
        self.net.to(memory_format=torch.contiguous_format)
        model, init = self.model, self.init
        model.net = self.net
        model.provenance = {
            **{k: v for k, v in model.provenance.items() if k != "training"},
            "training": {
                "n_images": self.n_images, "steps": self.step,
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "labels": self.labels_source,
                "init": "new" if init is None else str(init if isinstance(init, (str, Path))
                                                         else "model"),
                "best": self.best_metrics, "config": self.cfg.to_dict(),
            },
        }
        return model

    def event(self, kind: str, **kw: Any) -> TrainEvent:
        cfg, step, total = self.cfg, self.step, self.total
        el = time.perf_counter() - self.t_start
        eta = None
        if step:
            eta = el / step * (total - step)
            if cfg.time_budget_s:
                eta = min(eta, max(cfg.time_budget_s - el, 0.0))
        ep = step * cfg.batch_size * cfg.patch_size**2 / self.pixels_per_epoch
        return TrainEvent(kind, step, total, ep, self.loss, lr=self.lr, elapsed_s=el, eta_s=eta,
                          device=str(self.device),
                          images_per_s=(step * cfg.batch_size / el) if step and el else None, **kw)


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
    are loaded back at the end (also after Stop). On the CPU training runs with
    ``config.num_threads`` torch threads (default: all cores but one, so a GUI keeps
    one); the count is process-wide while the generator runs and restored when it ends
    (see :func:`napari_segkit.runtime.torch_threads`).
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
    if val_images is not None:
        val_images = _as_list(val_images)
        val_labels = _as_list(val_labels, len(val_images))
    trainer = Trainer(cfg, init=init, out_path=out_path, stop=stop)
    trainer.prepare_data(images, labels_l, points_l, val_images, val_labels)
    threads = None
    if trainer.device.type == "cpu":
        threads = cfg.num_threads or max(1, (os.cpu_count() or 2) - 1)
    with torch_threads(threads):
        trainer.build_optimiser()
        try:
            return (yield from trainer.run())
        finally:
            trainer.release()
