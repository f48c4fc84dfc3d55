"""Training settings (:class:`TrainConfig`) and progress reports (:class:`TrainEvent`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

from .finetune import FineTuneSettings
from .model import UNetConfig
from .model_io import SegModel
from .normalization import DEFAULT_NORMALIZATION

__all__ = ["FINE_TUNE_LR", "FINE_TUNE_RECIPE", "NEW_MODEL_LR", "TrainConfig", "TrainEvent",
           "fine_tune_settings"]

NEW_MODEL_LR = 3e-3
FINE_TUNE_LR = 5e-4
#: what fine-tuning does unless TrainConfig says otherwise (see benchmarks/bench_finetune.py)
FINE_TUNE_RECIPE = {"replay_fraction": 0.25, "anchor_strength": 0.0, "ema_span": 0.2,
                    "adapt_norm": False}


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
    # fine-tuning without forgetting (napari_segkit.finetune); None: FINE_TUNE_RECIPE when
    # fine-tuning, off for a new model
    replay_fraction: float | None = None
    anchor_strength: float | None = None
    ema_span: float | None = None  # EMA over this fraction of the run's end
    adapt_norm: bool | None = None
    keep_start_margin: float = 1.0  # keep the start only when better by > margin x noise
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
    """One progress report. ``kind``: start, step, validation, checkpoint, done, stopped.

    Validation scores say what they rest on: ``val_kind`` is ``"count"`` (held-out clicks
    counted, :mod:`napari_segkit.holdout`), ``"mask"`` (held-out objects matched at IoU
    0.5), both joined by ``+``, or ``"iou"`` (foreground overlap only); ``val_counts`` the
    (TP, FP, FN) behind ``val_f1``. The done / stopped events say which weights were kept:
    ``kept_step`` (0: the start) and ``start_kept`` (a fine-tuning handed back its start).
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


def fine_tune_settings(cfg: TrainConfig) -> FineTuneSettings:
    """The fine-tuning helpers a config asks for (``None`` fields: :data:`FINE_TUNE_RECIPE`)."""
    return FineTuneSettings(**{k: (FINE_TUNE_RECIPE[k] if getattr(cfg, k) is None
                                   else getattr(cfg, k)) for k in FINE_TUNE_RECIPE})
