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

import contextlib
import copy
import dataclasses
import datetime
import math
import os
import threading
import time
from collections.abc import Callable, Generator, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ._common import counted, is_stopped
from .color_augment import split_variants
from .finetune import FineTuner, blend_states, freeze_levels
from .holdout import HoldOutScore, prefer_start, score_holdout
from .losses import check_loss, forward_for_training, training_loss
from .model_io import SegModel, load_default_model, load_model, save_model
from .normalization import Normalization
from .output_paths import check_output_file
from .postprocess import NonFiniteOutputError
from .runtime import mixed_precision, select_device, torch_threads, training_precision
from .sampling import PatchSampler
from .scoring import validate
from .stack_training import prepared_instances
from .targets import Targets, class_weights
from .train_config import (
    FINE_TUNE_LR,
    FINE_TUNE_RECIPE,
    NEW_MODEL_LR,
    TrainConfig,
    TrainEvent,
    TrainingInterrupted,
    check_patch_size,
    check_train_config,
    fine_tune_settings,
    lr_factor,
)
from .train_data import as_image_list, partial_annotation_warnings, prepare_training_data

__all__ = ["FINE_TUNE_LR", "FINE_TUNE_RECIPE", "NEW_MODEL_LR", "TrainConfig", "TrainEvent",
           "Trainer", "TrainingInterrupted", "check_patch_size", "train"]

# this many losses read back in a row that are NaN / infinite end the run as diverged (one
# can be a float16 overflow that the gradient scaler skips; on the CPU the first one has
# already spoilt the weights, and the next ones say so)
NONFINITE_LOSSES_TO_STOP = 3

# --------------------------------------------------------------------------- inputs
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
        self.cfg = check_train_config(config)
        self.init = init
        self.fine_tuning = init is not None
        # an unwritable place is reported now, not at the first checkpoint minutes later
        self.out_path = check_output_file(out_path, "out_path") if out_path is not None else None
        self.stop = stop
        self.t_start = time.perf_counter()
        self.rng = np.random.default_rng(config.seed)
        torch.manual_seed(config.seed)
        self.model = _resolve_init(init, config)
        self.n_classes = self.model.config.n_classes
        self.device = select_device(config.device)
        self.step = 0
        self.loss: float | None = None  # the last loss read back from the device
        # the step at which the weights diverged (NaN / infinite loss or outputs), or None
        self.diverged_at: int | None = None
        self.nonfinite_losses = 0  # consecutive losses read back that were not finite
        self.lr = 0.0
        self.best_score, self.best_state, self.best_metrics = (-2.0, -2.0), None, {}
        self.start_state, self.start_score, self.start_metrics = None, None, {}
        self.best_hs: HoldOutScore | None = None  # a new model's best held-out score
        self.warnings: list[str] = []  # about the annotations, said when training starts
        self.tuner: FineTuner | None = None
        self.frozen: list[torch.nn.Module] = []
        if config.frozen_levels and not self.fine_tuning:
            raise ValueError("frozen_levels keeps layers of the starting model as they are; a "
                             "new model's layers are random: set frozen_levels=0 or start from "
                             "a model")

    # ---- named steps ---------------------------------------------------------------
    def prepare_data(self, images: list, labels: list, points: list,
                     val_images: list | None = None, val_labels: list | None = None,
                     regions: list | None = None, targets: list | None = None,
                     scale=None) -> None:
        """Network inputs and targets of every image, the validation data, the sampler
        (see :func:`napari_segkit.train_data.prepare_training_data`)."""
        cfg, mcfg = self.cfg, self.model.config
        check_patch_size(cfg, images, mcfg.width, self.device)
        self.n_images = len(images)
        # clicks on a model being fine-tuned correct its own predictions (see
        # click_targets.click_guided_instances) rather than replace them with click-grown masks
        guide_model = self.model if (self.fine_tuning and cfg.click_guidance) else None
        data = prepare_training_data(
            images, labels, points, cfg, Normalization.from_dict(self.model.normalization),
            mcfg.in_channels, self.n_classes, self.rng, guide_model=guide_model,
            regions=regions, targets=targets, val_images=val_images, val_labels=val_labels,
            scale=scale)
        self.data, self.labels_source = data, data.labels_source
        if self.fine_tuning and targets is None and cfg.labels_kind == "instances":
            # masks or clicks that look partial would teach the nuclei left out as
            # background: say so
            self.warnings = partial_annotation_warnings(self.model, images, labels, points,
                                                        regions, scale)
        self.model.object_diameter = self.model.object_diameter or data.object_diameter
        self.n_train = len(data.x)
        tr_x, variants = split_variants(data.x, mcfg.in_channels)
        self.sampler = PatchSampler(tr_x, data.targets, cfg.patch_size, fg_prob=cfg.fg_prob,
                                    augment=cfg.augment, scale_range=cfg.scale_range, rng=self.rng,
                                    variants=variants, variant_prob=cfg.color_prob)
        self.weights = torch.as_tensor(
            class_weights([t.classes for t in data.targets], self.n_classes), device=self.device)
        self.pixels_per_epoch = max(self.sampler.labelled_pixels, 1)
        self.total = int(cfg.steps)
        if cfg.epochs is not None:
            patch_pixels = cfg.batch_size * cfg.patch_size**2
            self.total = max(1, int(round(cfg.epochs * self.pixels_per_epoch / patch_pixels)))

    def build_optimiser(self) -> None:
        """The network on the device, the learning rate, AdamW, the AMP gradient scaler and,
        when fine-tuning, the :class:`~napari_segkit.finetune.FineTuner` (replay, EMA, ...)."""
        cfg, device = self.cfg, self.device
        self.net = self.model.net.to(device)
        self.precision = training_precision(device, cfg.amp)
        # channels-last weights and batches: faster convolutions with cuDNN and oneDNN
        self.channels_last = device.type in ("cuda", "cpu")
        if self.channels_last:
            self.net = self.net.to(memory_format=torch.channels_last)
        self.base_lr = cfg.lr if cfg.lr is not None else (
            FINE_TUNE_LR if self.fine_tuning else NEW_MODEL_LR)
        self.lr = self.base_lr
        self.freeze_norm = self.fine_tuning if cfg.freeze_norm is None else bool(cfg.freeze_norm)
        # every image with full instance masks: FULL_MASKS_RECIPE (train_config)
        settings = fine_tune_settings(cfg, full_masks=self.labels_source == "instances") \
            if self.fine_tuning else None
        self.tuner = FineTuner(self.net, settings, self.rng, self.model.config.in_channels,
                               replay_path=cfg.replay_path,
                               replay_exclude=tuple(cfg.replay_exclude)) \
            if settings is not None else None
        replay = self.tuner.replay if self.tuner is not None else None
        if (cfg.finetune_class_weights == "replay" and replay is not None
                and int(replay.classes.max()) < self.n_classes):
            # the class weights of the start model's own training data (see TrainConfig)
            self.weights = torch.as_tensor(class_weights([replay.classes], self.n_classes),
                                           device=device)
        # a weight pull towards the start replaces the decay towards zero
        decay = 0.0 if (settings is not None and settings.anchor_strength > 0) else cfg.weight_decay
        self.frozen = freeze_levels(self.net, cfg.frozen_levels)
        self.optimizer = torch.optim.AdamW([p for p in self.net.parameters() if p.requires_grad],
                                           lr=self.base_lr, weight_decay=decay)
        # float16 gradients need scaling; bfloat16 has float32's range and does not
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.precision == torch.float16)

    def progress(self, elapsed: float) -> float:
        """How far the run is (0..1): by steps, or by time when a time budget is closer."""
        done = self.step / self.total
        if self.cfg.time_budget_s:
            done = max(done, elapsed / self.cfg.time_budget_s)
        return done

    def train_step(self, elapsed: float) -> torch.Tensor:
        """One optimisation step (learning rate from how far the budget is spent); the loss."""
        cfg, device = self.cfg, self.device
        self.lr = self.base_lr * lr_factor(self.progress(elapsed), cfg.warmup_fraction)
        for g in self.optimizer.param_groups:
            g["lr"] = self.lr
        batch = self.sampler.sample(cfg.batch_size)
        if self.tuner is not None:
            batch = self.tuner.mix(batch, cfg.augment)
        xb, cb, tb, mb = (torch.from_numpy(a).to(device, non_blocking=True) for a in batch)
        if self.channels_last:
            xb = xb.contiguous(memory_format=torch.channels_last)
        with mixed_precision(device, self.precision):
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
        if self.tuner is not None:
            self.tuner.after_step(self.lr, self.step,
                                  self.progress(time.perf_counter() - self.t_start))
        return loss

    def measure(self, state: dict | None = None) -> tuple[dict, HoldOutScore | None]:
        """Validation metrics of ``state`` (default: the network's weights), and a
        :class:`~napari_segkit.holdout.HoldOutScore` when the score has a noise estimate."""
        data = self.data
        with _weights_loaded(self.net, state):
            was_training = self.net.training
            self.net.eval()
            try:
                if data.holdout:
                    hs = score_holdout(data.holdout, self._instances_of)
                    return {"val_iou": None, "val_f1": hs.f1, "val_kind": hs.kind,
                            "val_counts": (hs.tp, hs.fp, hs.fn)}, hs
                m = validate(self.net, data.val_x, data.val_targets, data.val_instances,
                             self.device, self.n_classes)
            finally:
                self.net.train(was_training)
        counts = m.pop("counts", None)
        hs = None if counts is None else HoldOutScore(m["val_f1"], *counts, "mask")
        m["val_kind"] = "iou" if counts is None else "mask"
        m["val_counts"] = None if counts is None else tuple(int(c) for c in counts)
        return m, hs

    def validate(self) -> Iterator[TrainEvent]:
        """Score the validation data; keep (and checkpoint) the weights the rules choose.

        A new model validated on held-out clicks keeps its latest weights (counting cannot
        see outlines, which go on improving until the learning rate has annealed: on the
        development split, 450 steps from scratch, 3 seeds, the latest weights scored F1
        0.570 +- 0.016, AP 0.314, keeping the latest within the count noise of the best
        0.557 +- 0.014, AP 0.285; the counts are still shown); validated on masks, its
        best-scoring weights. A fine-tuned one keeps its (EMA) weights unless the starting
        model scores better by more than the noise of the held-out score
        (:func:`napari_segkit.holdout.prefer_start`); validated on held-out masks, a blend
        of its weights with the start's may stand in for them (:meth:`blend_with_start`).
        """
        state = self.tuner.weights() if self.tuner is not None else _clone_state(self.net)
        try:
            m, hs = self.measure(state if self.tuner is not None else None)
        except NonFiniteOutputError:
            # diverged weights are never kept: the run ends with the best ones so far
            self.diverged_at = self.step
            yield self.event("validation", message=self.divergence_message())
            return
        against_start = self.start_score is not None and hs is not None
        blend = None
        if against_start:
            state, m, hs, blend = self.blend_with_start(state, m, hs)
        yield self.event("validation", **m)
        if against_start:
            if prefer_start(self.start_score, hs, self.cfg.keep_start_margin):
                chosen = (self.start_state, {**self.start_metrics, "step": 0, "start_kept": True,
                                             "candidate_f1": m["val_f1"]})
            else:
                chosen = (state, {**m, "step": self.step, "start_f1": self.start_score.f1,
                                  "noise": round(max(self.start_score.noise, hs.noise), 4),
                                  **({"blend": blend} if blend else {})})
            self.best_state, self.best_metrics = chosen
        elif hs is not None and "count" in hs.kind:  # a new model, scored on held-out clicks
            if self.best_hs is None or hs.f1 > self.best_hs.f1:
                self.best_hs = hs
            self.best_state, self.best_metrics = state, {
                **m, "step": self.step, "best_f1": self.best_hs.f1,
                "noise": round(self.best_hs.noise, 4)}
        else:
            score = (m["val_f1"] if m["val_f1"] is not None else -1.0,
                     m["val_iou"] if m["val_iou"] is not None else -1.0)
            if score <= self.best_score:
                self.set_train_mode()
                return
            self.best_score, self.best_metrics = score, {**m, "step": self.step}
            self.best_state = state
        path = self.checkpoint(self.best_state)
        if path:
            yield self.event("checkpoint", model_path=path, **m)
        self.set_train_mode()

    def blend_with_start(self, state: dict, m: dict, hs: HoldOutScore):
        """A fine-tuning validated on held-out masks: the weights ``start_blend`` of the way
        from the start to ``state`` (:func:`napari_segkit.finetune.blend_states`) replace it
        when their outlines score better on the held-out strips and their F1 is not lower
        by more than its noise. Returns the weights, metrics and score to go on with, and
        the blend fraction (None: not blended)."""
        fraction = self.tuner.settings.start_blend if self.tuner is not None else 0.0
        if not fraction or hs.outline is None:
            return state, m, hs, None
        blended = blend_states(self.start_state, state, fraction)
        bm, bhs = self.measure(blended)
        if bhs.outline is not None and bhs.outline > hs.outline and bhs.f1 >= hs.f1 - hs.noise:
            return blended, bm, bhs, fraction
        return state, m, hs, None

    def validate_start(self) -> Iterator[TrainEvent]:
        """Score the starting model: the reference a fine-tuning must not fall clearly below."""
        self.start_state = _clone_state(self.net)
        m, self.start_score = self.measure()
        self.start_metrics = dict(m)
        yield self.event("validation", **m)
        # until fine-tuned weights win, the start is what a run would hand back
        self.best_state, self.best_metrics = self.start_state, {**m, "step": 0, "start_kept": True}
        if self.start_score is None:
            self.best_score = (m["val_f1"] if m["val_f1"] is not None else -1.0,
                               m["val_iou"] if m["val_iou"] is not None else -1.0)

    def checkpoint(self, state: dict | None = None) -> str | None:
        """Write the model (with ``state`` when given, else as it is now) to ``out_path``
        (atomically); its path, or None."""
        if self.out_path is None:
            return None
        with _weights_loaded(self.net, state):
            save_model(self.finished_model(), self.out_path)
        return str(self.out_path)

    def finish(self) -> SegModel:
        """The best weights (the last ones without validation) in eval mode on the CPU,
        written to ``out_path``."""
        if self.diverged_at is not None and self.best_state is None:
            raise ValueError(self.divergence_message())
        if not self.data.has_validation or self.best_state is None:
            self.best_state = (self.tuner.weights() if self.tuner is not None
                               else _clone_state(self.net))
            self.best_metrics = {"step": self.step}
        self.net.load_state_dict(self.best_state)
        self.best_state = None
        self.net.requires_grad_(True)  # frozen levels: handed back trainable
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
        self.start_state = self.tuner = None
        self.net.to(memory_format=torch.contiguous_format)
        if self.device.type != "cpu":
            self.net.to("cpu")
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
        has_val = self.data.has_validation
        precision = "" if self.precision is None else \
            f" ({str(self.precision).removeprefix('torch.')} mixed precision)"
        yield self.event("start", message=f"training on {self.device}{precision}, "
                                          f"{counted(self.n_train, 'images')}, {self.data.n_validation}",
                         warnings=tuple(self.warnings))
        if self.fine_tuning and has_val:
            # the starting model is the reference: fine-tuning hands it back when it
            # validates clearly better than the fine-tuned weights
            yield from self.validate_start()
        if self.tuner is not None:
            self.tuner.before_training(self.sampler, cfg.batch_size)
        self.set_train_mode()
        try:
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
                    self.nonfinite_losses = 0 if math.isfinite(self.loss) \
                        else self.nonfinite_losses + 1
                    if self.nonfinite_losses >= NONFINITE_LOSSES_TO_STOP:
                        self.diverged_at = self.step
                    yield self.event("step")
                if (self.diverged_at is None and has_val
                        and (self.step % cfg.val_every == 0 or self.step == self.total)):
                    yield from self.validate()
                if self.diverged_at is not None:
                    break
            if (has_val and not stopped and self.diverged_at is None
                    and self.step % cfg.val_every and self.step < self.total):
                # a time budget ended between two validations: the annealed end state counts
                # too (at step == total the loop has just validated)
                yield from self.validate()
        except KeyboardInterrupt:
            raise self.interrupted() from None
        final = self.finish()
        best = self.best_metrics
        counts = best.get("val_counts")
        yield self.event("stopped" if stopped else "done", model_path=self.model_path,
                         model=final, val_iou=best.get("val_iou"), val_f1=best.get("val_f1"),
                         val_kind=best.get("val_kind"),
                         val_counts=None if counts is None else tuple(counts),
                         kept_step=best.get("step"), start_kept=bool(best.get("start_kept")),
                         blend=best.get("blend"), diverged=self.diverged_at is not None,
                         message="stopped by user" if stopped else
                         self.divergence_message() if self.diverged_at is not None
                         else "finished")
        return final

    def divergence_message(self) -> str:
        kept = self.best_metrics.get("step")  # None: no weights validated before it
        what = ("the starting model (the weights of step 0)" if kept == 0 else
                f"the weights of step {kept}" if kept is not None else "nothing")
        return (f"training diverged at step {self.diverged_at} (the network's loss or outputs "
                f"became NaN or infinite), so it ended there and kept {what}; train again "
                f"with a lower learning rate than {self.base_lr:g}")

    def interrupted(self) -> TrainingInterrupted:
        """Ctrl-C: write the weights Stop would keep (the best validated ones, else the
        current ones) to ``out_path`` and say where they went."""
        path = None
        if self.out_path is not None and self.step > 0:
            self.finish()
            path = self.model_path
        return TrainingInterrupted(path, self.step)

    # ---- helpers ---------------------------------------------------------------------
    def set_train_mode(self) -> None:
        self.net.train()
        if self.freeze_norm:
            for module in self.net.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        for block in self.frozen:
            block.eval()

    def finished_model(self) -> SegModel:
        """The model with the network as it is now and its training provenance (the
        network's memory layout is left alone: a checkpoint mid-run must not undo the
        channels-last training layout; save_model stores contiguous tensors, and finish()
        hands the network back contiguous)."""
        model, init = self.model, self.init
        model.net = self.net
        # post-processing fitted to the start's weights says nothing about these: fit again
        # (napari_segkit.postprocess_fit)
        model.postprocess = None
        model.provenance = {
            **{k: v for k, v in model.provenance.items() if k != "training"},
            "training": {
                "n_images": self.n_images, "steps": self.step,
                "date": datetime.datetime.now().isoformat(timespec="seconds"),
                "labels": self.labels_source,
                "init": "new" if init is None else str(init if isinstance(init, (str, Path))
                                                         else "model"),
                "best": self.best_metrics, "config": self.cfg.to_dict(),
                "warnings": list(self.warnings),
                # the fine-tuning helpers used (the recipe filled in), None for a new model
                "fine_tuning": None if self.tuner is None
                else dataclasses.asdict(self.tuner.settings),
            },
        }
        return model

    def _instances_of(self, x: np.ndarray, scale=None) -> np.ndarray:
        return prepared_instances(self.net, x, self.device, self.n_classes, scale)

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
                          budget_s=cfg.time_budget_s, device=str(self.device),
                          images_per_s=(step * cfg.batch_size / el) if step and el else None, **kw)


def _clone_state(net: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in net.state_dict().items()}


@contextlib.contextmanager
def _weights_loaded(net: torch.nn.Module, state: dict | None):
    """Temporarily load ``state`` into ``net`` (nothing to do for ``None``)."""
    if state is None:
        yield
        return
    saved = _clone_state(net)
    net.load_state_dict(state)
    try:
        yield
    finally:
        net.load_state_dict(saved)


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
    regions: Sequence | None = None,
    targets: Sequence[Targets] | None = None,
    scale: Sequence[float] | Sequence[Sequence[float]] | None = None,
    warnings: Sequence[str] = (),
) -> Generator[TrainEvent, None, SegModel]:
    """Train a new model or fine-tune one; yields :class:`TrainEvent` and returns the model.

    Parameters
    ----------
    images : list of 2-D gray or RGB arrays (sizes may differ), or of 3-D (Z, Y, X) stacks
        (a 2-D model trained on their planes, see :mod:`napari_segkit.stack_training`)
    labels : list of label images (instance labels by default, see
        ``TrainConfig.labels_kind``; 3-D for stacks), ``None`` entries for images annotated
        by points
    points : list of per-image clicks: (N, 2) arrays ((N, 3) (z, y, x) for stacks) or
        ``(coords, classes)`` tuples with classes ``"nucleus"`` / ``"background"`` (or a
        DataFrame with a "class" column)
    config : TrainConfig
    init : None (new model from ``config.model``), ``"default"`` (the shipped nuclei
        model), a model file path or a :class:`SegModel` (copied, not modified)
    out_path : where the kept weights are written (atomically) when they change, on
        Stop and at the end
    val / val_images, val_labels : a separate validation set with full instance labels;
        without it the bottom ``config.val_fraction`` of every image is held out
        (:mod:`napari_segkit.holdout`) and scored by counting (clicks) or by masks
    stop : ``threading.Event`` or callable; checked before every step
    regions : per image, where it is fully annotated (None: everywhere; a mask, a box
        or a polygon, see :func:`napari_segkit.click_targets.region_mask`); with clicks,
        objects there without a click are background, outside it nothing is known
    targets : ready-made training targets per image (e.g. from
        :func:`napari_segkit.corrections.correction_targets`), instead of labels / points
    scale : voxel size (z, y, x) of the stacks (one for all or one per stack), physical
        units: needed for clicks; validation joins 3-D objects with it (None: cubes)
    warnings : what the caller found wrong with the annotations (e.g.
        :func:`napari_segkit.corrections.lone_click_warning`), said by the start event with
        the training's own (``TrainEvent.warnings``)

    A new model keeps the weights that validate best (F1@0.5 when available, else
    foreground IoU), also after Stop. A fine-tuned model (``init`` given) adapts with the
    :mod:`napari_segkit.finetune` helpers (replay, EMA, ...) and hands back its
    fine-tuned weights unless the starting model validates better by more than the
    noise of the held-out score (:func:`napari_segkit.holdout.prefer_start`). On the CPU training runs with
    ``config.num_threads`` torch threads (default: all cores but one, so a GUI keeps
    one); the count is process-wide while the generator runs and restored when it ends
    (see :func:`napari_segkit.runtime.torch_threads`).
    """
    cfg = config or TrainConfig()
    images = as_image_list(images)
    n = len(images)
    if n == 0:
        raise ValueError("no training images given")
    labels_l = as_image_list(labels, n) if labels is not None else [None] * n
    points_l = list(points) if points is not None else [None] * n
    if points is not None and n == 1 and not isinstance(points, list):
        points_l = [points]
    if len(labels_l) != n or len(points_l) != n:
        raise ValueError(f"got {n} images but {len(labels_l)} labels and {len(points_l)} points")
    if val is not None:
        val_images, val_labels = val
    if val_images is not None:
        val_images = as_image_list(val_images)
        val_labels = as_image_list(val_labels, len(val_images))
    trainer = Trainer(cfg, init=init, out_path=out_path, stop=stop)
    trainer.prepare_data(images, labels_l, points_l, val_images, val_labels, regions, targets,
                         scale)
    trainer.warnings = [*trainer.warnings, *warnings]
    threads = None
    if trainer.device.type == "cpu":
        threads = cfg.num_threads or max(1, (os.cpu_count() or 2) - 1)
    with torch_threads(threads):
        trainer.build_optimiser()
        try:
            return (yield from trainer.run())
        finally:
            trainer.release()
