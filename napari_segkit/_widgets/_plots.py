"""Small matplotlib plots that live in docks: the live training curves and a histogram
of per-object values."""

from __future__ import annotations

import time

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure


class TrainingPlot(FigureCanvasQTAgg):
    """Live training loss (left axis) and validation IoU / F1 (right axis).

    ``add_loss`` and ``add_validation`` only store the values and redraw at most a few
    times per second, so a fast training loop never waits for matplotlib.
    """

    min_redraw_interval_s = 0.5

    def __init__(self, height: int = 190) -> None:
        self.figure = Figure(figsize=(3.5, 2.0), layout="constrained")
        super().__init__(self.figure)
        self.setFixedHeight(height)
        self.loss_axes = self.figure.add_subplot(111)
        self.val_axes = self.loss_axes.twinx()
        self._last_draw = 0.0
        self.clear()

    def clear(self) -> None:
        """Forget all values (a new training starts)."""
        self.loss_steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_iou: list[float] = []
        self.val_f1: list[float] = []
        self.redraw()

    def add_loss(self, step: int, loss: float) -> None:
        self.loss_steps.append(int(step))
        self.losses.append(float(loss))
        self._maybe_redraw()

    def add_validation(self, step: int, iou: float | None, f1: float | None) -> None:
        self.val_steps.append(int(step))
        self.val_iou.append(np.nan if iou is None else float(iou))
        self.val_f1.append(np.nan if f1 is None else float(f1))
        self._maybe_redraw()

    def _maybe_redraw(self) -> None:
        if time.monotonic() - self._last_draw >= self.min_redraw_interval_s:
            self.redraw()

    def redraw(self) -> None:
        """Draw all stored values now."""
        self._last_draw = time.monotonic()
        ax, vax = self.loss_axes, self.val_axes
        ax.clear()
        vax.clear()
        if self.losses:
            ax.plot(self.loss_steps, self.losses, color="#4c9be8", lw=1, label="loss")
        if self.val_steps:
            vax.plot(
                self.val_steps, self.val_iou, "o-", color="#e8a33c", ms=3, lw=1, label="val IoU"
            )
            vax.plot(self.val_steps, self.val_f1, "s-", color="#5cb85c", ms=3, lw=1, label="val F1")
            vax.set_ylim(0, 1)
            vax.legend(loc="upper right", fontsize=7)
        vax.yaxis.set_label_position("right")
        vax.yaxis.tick_right()
        ax.set_xlabel("step", fontsize=8)
        ax.set_ylabel("loss", fontsize=8)
        vax.set_ylabel("validation", fontsize=8)
        ax.tick_params(labelsize=7)
        vax.tick_params(labelsize=7)
        self.draw_idle()


class HistogramCanvas(FigureCanvasQTAgg):
    """Histogram of one per-object quantity (areas, IoUs, ...), a few lines high."""

    def __init__(self, height: int = 170) -> None:
        self.figure = Figure(figsize=(3.5, 1.8), layout="constrained")
        super().__init__(self.figure)
        self.axes = self.figure.add_subplot(111)
        self.setFixedHeight(height)
        self.values = np.zeros(0)
        self.show_values([], "")

    def show_values(
        self, values, xlabel: str, *, bins: int | np.ndarray = 30, value_range=None
    ) -> None:
        """Draw a histogram of ``values``; an empty input shows an empty plot."""
        self.values = np.asarray(values, dtype=float)
        self.values = self.values[np.isfinite(self.values)]
        ax = self.axes
        ax.clear()
        if self.values.size:
            ax.hist(self.values, bins=bins, range=value_range, color="#4c9be8", edgecolor="none")
        else:
            ax.text(0.5, 0.5, "no objects", ha="center", va="center", transform=ax.transAxes)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel("objects", fontsize=8)
        ax.tick_params(labelsize=7)
        self.draw_idle()
