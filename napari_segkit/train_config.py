"""Training settings (:class:`TrainConfig`) and progress reports (:class:`TrainEvent`)."""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ._common import image_kind
from .finetune import FineTuneSettings
from .model import UNetConfig
from .model_io import SegModel
from .normalization import DEFAULT_NORMALIZATION

__all__ = ["FINE_TUNE_LR", "FINE_TUNE_RECIPE", "FULL_MASKS_RECIPE", "NEW_MODEL_LR",
           "TrainConfig", "TrainEvent", "TrainingInterrupted", "check_patch_size",
           "check_train_config", "fine_tune_settings", "run_to_end"]

NEW_MODEL_LR = 3e-3
FINE_TUNE_LR = 5e-4
#: what fine-tuning does unless TrainConfig says otherwise (see benchmarks/bench_finetune.py)
FINE_TUNE_RECIPE = {"replay_fraction": 0.25, "anchor_strength": 0.0, "ema_span": 0.2,
                    "adapt_norm": False, "start_blend": 0.75}
#: what changes when every image has full instance masks: no replay (the masks teach whole
#: nuclei themselves; at the 3-minute budget replay cost F1 from masks on all four
#: development and scoring splits, though it keeps more of what the start model had
#: memorised: README "No replay from full masks")
FULL_MASKS_RECIPE = {**FINE_TUNE_RECIPE, "replay_fraction": 0.0}


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
    # fine-tuning from clicks: where the clicks change nothing, learn the model's own
    # confident predictions (self-training) instead of its post-processed instances
    click_distill: bool = False
    # a new model from clicks (click_targets.targets_from_clicks without a guide): the
    # centre targets peak at the clicks instead of following the rough click-grown masks,
    # and inside the fully annotated region the masks grow without competition from
    # centres no click claimed (README, "From scratch: clicks against masks")
    click_centres: bool = True
    grow_all_clicked: bool = True
    # corrections: the model's objects nobody corrected are left out of the loss
    # ("unknown") or kept as objects ("keep"; taught as predicted, errors included), see
    # corrections.correction_targets and README "Fine-tuning from your annotations"
    correction_unclicked: str = "unknown"
    # fine-tuning without forgetting (napari_segkit.finetune); None: FINE_TUNE_RECIPE when
    # fine-tuning (FULL_MASKS_RECIPE, without replay, from full masks), off for a new model
    replay_fraction: float | None = None
    anchor_strength: float | None = None
    ema_span: float | None = None  # EMA over this fraction of the run's end
    adapt_norm: bool | None = None
    # fine-tuning validated on held-out masks: the weights this fraction of the way from the
    # start to the fine-tuned ones are kept instead when their outlines score better on
    # the held-out strips (finetune.blend_states; 0: never)
    start_blend: float | None = None
    # fine-tuning: the first ``frozen_levels`` encoder levels of a UNet (from the input;
    # depth + 1 is the whole encoder) keep their weights and statistics during training
    # (finetune.freeze_levels; AdaBN, when on, re-estimates their statistics before it)
    frozen_levels: int = 0
    # the replay set (None: the shipped one, scripts/make_replay_set.py builds others) and
    # images whose patches it must leave out (names, e.g. the images a model is scored on)
    replay_path: str | None = None
    replay_exclude: tuple[str, ...] = ()
    # fine-tuning: the loss weighs its classes by the user's targets ("targets") or as the
    # start model's own training data did (the replay set's class weights, "replay";
    # used only while replaying). Corrections teach a few objects in much background, so
    # their weights differ from the start's (interior 6.6 against 1.6); "replay" was
    # measured on the development splits and changed nothing beyond the seeds' spread
    # (README, "The correction loop on a model that is already good")
    finetune_class_weights: str = "targets"
    keep_start_margin: float = 1.0  # keep the start only when better by > margin x noise
    weight_decay: float = 1e-4
    warmup_fraction: float = 0.03
    val_every: int = 100
    val_fraction: float = 0.2
    seed: int = 0
    device: str = "auto"
    # mixed precision: "auto" is float16 on CUDA and bfloat16 on a CPU that computes it
    # natively (runtime.training_precision); True forces it, False trains in float32
    amp: str | bool = "auto"
    num_threads: int | None = None
    labels_kind: str = "instances"  # "instances" | "semantic" | "sparse"
    boundary_width: int = 1
    fg_prob: float = 0.6
    augment: bool = True
    scale_range: tuple[float, float] | None = None  # zoom augmentation, e.g. (0.5, 2.0)
    color_variants: int = 0  # colour / stain variants per image (napari_segkit.color_augment)
    color_prob: float = 0.5  # probability that a patch comes from a colour variant
    # 3-D stacks: train on their "xy" planes, or on "all" three orientations (xz / yz
    # resampled to square pixels where the spacing allows; napari_segkit.stack_training)
    stack_planes: str = "xy"
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
    """One progress report. ``kind``: start, step, validation, checkpoint, done, stopped.

    Validation scores say what they rest on: ``val_kind`` is ``"count"`` (held-out clicks
    counted, :mod:`napari_segkit.holdout`), ``"mask"`` (held-out objects matched at IoU
    0.5), both joined by ``+``, or ``"iou"`` (foreground overlap only); ``val_counts`` the
    (TP, FP, FN) behind ``val_f1``. The done / stopped events say which weights were kept:
    ``kept_step`` (0: the start) and ``start_kept`` (a fine-tuning handed back its start);
    ``blend``: the kept weights are that fraction of the way from the start to the
    fine-tuned ones (``TrainConfig.start_blend``), None when they are not blended;
    ``diverged``: the run ended early because its weights diverged (the message says which
    weights were kept).
    """

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
    budget_s: float | None = None  # the time budget, when one ends training
    device: str = "cpu"
    images_per_s: float | None = None
    model_path: str | None = None
    message: str = ""
    val_kind: str | None = None
    val_counts: tuple[int, int, int] | None = None
    kept_step: int | None = None
    start_kept: bool = False
    blend: float | None = None
    diverged: bool = False  # the run ended early: its loss or outputs became NaN / infinite
    #: the start event: what the user should know about the annotations before training
    #: goes on (e.g. annotations that look partial, :func:`napari_segkit.train_data.partial_annotation_warnings`)
    warnings: tuple[str, ...] = ()
    model: SegModel | None = field(default=None, repr=False)

    @property
    def fraction(self) -> float:
        """How far training is (0..1): elapsed / budget with a time budget (or the steps
        done, when they are further), else by steps; 1 when done, where it got on Stop."""
        if self.kind == "done":
            return 1.0
        by_steps = min(self.step / self.total_steps, 1.0) if self.total_steps else 0.0
        if self.budget_s:
            return max(min(self.elapsed_s / self.budget_s, 1.0), by_steps)
        if self.eta_s is not None and self.elapsed_s + self.eta_s > 0:
            return max(min(self.elapsed_s / (self.elapsed_s + self.eta_s), 1.0), by_steps)
        return by_steps


def fine_tune_settings(cfg: TrainConfig, full_masks: bool = False) -> FineTuneSettings:
    """The fine-tuning helpers a config asks for (``None`` fields: :data:`FINE_TUNE_RECIPE`,
    or :data:`FULL_MASKS_RECIPE` when every image has full instance masks)."""
    recipe = FULL_MASKS_RECIPE if full_masks else FINE_TUNE_RECIPE
    return FineTuneSettings(**{k: (recipe[k] if getattr(cfg, k) is None else getattr(cfg, k))
                               for k in recipe})


def _positive(value, name: str, *, allow_none: bool = True, hint: str = "") -> None:
    if value is None and allow_none:
        return
    ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    if not ok or not math.isfinite(value) or value <= 0:
        raise ValueError(f"TrainConfig.{name} must be a positive finite number{hint}, "
                         f"got {value!r}")


def _whole(value, name: str, low: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) and not (
            isinstance(value, float) and value.is_integer()) or value < low:
        raise ValueError(f"TrainConfig.{name} must be a whole number >= {low}, got {value!r}")


def check_train_config(cfg: TrainConfig) -> TrainConfig:
    """``cfg`` when its values make sense, else a ValueError naming the field: zero,
    negative, NaN and infinite budgets, sizes and rates are refused (``steps=0`` is
    allowed: an untrained model)."""
    _whole(cfg.steps, "steps", 0)
    _positive(cfg.epochs, "epochs", hint=" (passes over the data; None: use steps)")
    _positive(cfg.time_budget_s, "time_budget_s", hint=" of seconds (None: no time limit)")
    _whole(cfg.patch_size, "patch_size", 8)
    _whole(cfg.batch_size, "batch_size", 1)
    _positive(cfg.lr, "lr")
    _whole(cfg.val_every, "val_every", 1)
    _whole(cfg.color_variants, "color_variants", 0)
    _whole(cfg.frozen_levels, "frozen_levels", 0)
    if cfg.start_blend is not None and not (
            isinstance(cfg.start_blend, (int, float)) and 0.0 <= cfg.start_blend < 1.0):
        raise ValueError(f"TrainConfig.start_blend must be in [0, 1) (0: never blend), got "
                         f"{cfg.start_blend!r}")
    if isinstance(cfg.replay_exclude, str) or not all(
            isinstance(e, str) for e in cfg.replay_exclude):
        raise ValueError(f"TrainConfig.replay_exclude takes a list of image names, got "
                         f"{cfg.replay_exclude!r}")
    if not 0.0 <= float(cfg.val_fraction) < 1.0:
        raise ValueError(f"TrainConfig.val_fraction must be in [0, 1), got {cfg.val_fraction!r}")
    if not (cfg.amp is True or cfg.amp is False or cfg.amp == "auto"):
        raise ValueError(f"TrainConfig.amp must be 'auto', True or False, got {cfg.amp!r}")
    if cfg.finetune_class_weights not in ("replay", "targets"):
        raise ValueError(f"TrainConfig.finetune_class_weights must be 'replay' or 'targets', "
                         f"got {cfg.finetune_class_weights!r}")
    if cfg.stack_planes not in ("xy", "all"):
        raise ValueError(f"TrainConfig.stack_planes must be 'xy' or 'all', got {cfg.stack_planes!r}")
    if cfg.scale_range is not None:
        low, high = (float(v) for v in cfg.scale_range)
        if not (math.isfinite(low) and math.isfinite(high) and 0 < low <= high):
            raise ValueError(f"TrainConfig.scale_range must be (low, high) with 0 < low <= "
                             f"high, got {tuple(cfg.scale_range)!r}")
    return cfg


def lr_factor(progress: float, warmup: float) -> float:
    """Learning rate / base rate when ``progress`` (0..1) of the budget is spent: a linear
    warm-up over ``warmup``, then a cosine decay to 2 %."""
    progress = min(max(progress, 0.0), 1.0)
    if warmup > 0 and progress < warmup:
        return max(progress / warmup, 0.01)
    p = (progress - warmup) / max(1.0 - warmup, 1e-9)
    return 0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * p))


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during training. ``model_path``: where the weights so far were written
    (None: nothing was written); ``step``: the steps done."""

    def __init__(self, model_path: str | None, step: int) -> None:
        super().__init__(model_path, step)
        self.model_path, self.step = model_path, step


#: Rough bytes of activations and gradients per patch pixel and network width (UNet, float32).
TRAINING_BYTES_PER_PIXEL_WIDTH = 80


def _device_memory(device) -> int | None:
    """Bytes of memory of a torch device (the machine's RAM for the CPU); None: unknown."""
    if device.type == "cuda":
        import torch

        return int(torch.cuda.get_device_properties(device).total_memory)
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def check_patch_size(cfg: TrainConfig, images: Sequence, width: int, device) -> None:
    """ValueError when the training patch is far larger than every image, or when a batch
    of patches would not fit in the device's memory (the message says what to use)."""
    # a stack (Z, Y, X) trains on its planes
    images = [im[0] if image_kind(np.shape(im)) == "stack" else im for im in images]
    sides = [int(max(np.shape(im)[:2])) for im in images]
    largest = max(sides, default=0)
    fits = max(-(-largest // 32) * 32, TrainConfig.patch_size)
    if cfg.patch_size > fits:
        shapes = " x ".join(str(s) for s in np.shape(images[sides.index(largest)])[:2])
        raise ValueError(f"patch size {cfg.patch_size} (--patch-size) is larger than the largest "
                         f"training image ({shapes} pixels); use at most {fits}")
    need = cfg.batch_size * cfg.patch_size**2 * width * TRAINING_BYTES_PER_PIXEL_WIDTH
    have = _device_memory(device)
    if have is not None and need > 0.8 * have:
        smaller = max(16, int(math.sqrt(0.4 * have / (cfg.batch_size * width
                                                       * TRAINING_BYTES_PER_PIXEL_WIDTH))) // 16 * 16)
        raise ValueError(f"patch size {cfg.patch_size} (--patch-size) with batch size "
                         f"{cfg.batch_size} needs about {need / 2**30:.0f} GiB to train, more than "
                         f"the {have / 2**30:.0f} GiB of {device.type} memory; use a patch size of "
                         f"at most {smaller}")


def run_to_end(events: Generator, on_event: Callable | None = None) -> Any:
    """Drive a training generator (:func:`train` or one that wraps it) to the end and return
    its model; ``on_event`` receives every event. Ctrl-C in ``on_event`` is passed to the
    trainer, which writes what it has (:class:`TrainingInterrupted`); the generator is
    closed on any error, so its thread count and device memory are restored."""
    try:
        while True:
            try:
                event = next(events)
            except StopIteration as finished:
                return finished.value
            if on_event is not None:
                try:
                    on_event(event)
                except KeyboardInterrupt:
                    events.throw(KeyboardInterrupt())
                    raise
    finally:
        events.close()
