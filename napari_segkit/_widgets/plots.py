"""Plots that live in docks: the live training curves (QPainter) and a histogram of
per-object values (matplotlib)."""

from __future__ import annotations

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPalette, QPen, QPolygonF
from qtpy.QtWidgets import QWidget


class TrainingPlot(QWidget):
    """Live training loss (left axis, blue) and validation IoU / F1 (right axis, 0-1).

    Drawn with QPainter: a repaint is a few polylines (well under a millisecond), so
    even a fast training never makes the GUI thread wait (a matplotlib redraw takes
    tens of milliseconds). ``add_*`` only store values and schedule a repaint.
    """

    LOSS, IOU, F1 = QColor("#4c9be8"), QColor("#e8a33c"), QColor("#5cb85c")

    def __init__(self, height: int = 170) -> None:
        super().__init__()
        self.setFixedHeight(height)
        self.setMinimumWidth(220)
        self.clear()

    def clear(self) -> None:
        """Forget all values (a new training starts)."""
        self.loss_steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.val_iou: list[float] = []
        self.val_f1: list[float] = []
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        if np.isfinite(loss):
            self.loss_steps.append(int(step))
            self.losses.append(float(loss))
            self.update()

    def add_validation(self, step: int, iou: float | None, f1: float | None) -> None:
        self.val_steps.append(int(step))
        self.val_iou.append(np.nan if iou is None else float(iou))
        self.val_f1.append(np.nan if f1 is None else float(f1))
        self.update()

    def redraw(self) -> None:
        self.repaint()

    # ---- painting ------------------------------------------------------------------
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        painter = QPainter(self)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        pal = self.palette()
        fg = pal.color(QPalette.ColorRole.WindowText)
        font = painter.font()
        font.setPointSizeF(max(font.pointSizeF() * 0.8, 6.0))
        painter.setFont(font)
        w, h = self.width(), self.height()
        left, right, top, bottom = 44, 34, 18, 20
        box = QRectF(left, top, max(w - left - right, 10), max(h - top - bottom, 10))
        painter.setPen(QPen(fg, 1))
        painter.drawRect(box)
        last_step = max(self.loss_steps[-1:] + self.val_steps[-1:] + [1])
        x_of = lambda step: box.left() + box.width() * step / last_step  # noqa: E731
        painter.drawText(QPointF(box.left(), h - 5), "0")
        painter.drawText(QPointF(box.right() - 30, h - 5), f"step {last_step}")
        if self.losses:
            lo, hi = min(self.losses), max(self.losses)
            span = (hi - lo) or 1.0
            y_loss = lambda v: box.bottom() - box.height() * (v - lo) / span  # noqa: E731
            pts = [QPointF(x_of(s), y_loss(v)) for s, v in zip(self.loss_steps, self.losses)]
            painter.setPen(QPen(self.LOSS, 1.2))
            painter.drawPolyline(QPolygonF(pts))
            painter.drawText(QPointF(2, box.top() + 8), f"{hi:.3g}")
            painter.drawText(QPointF(2, box.bottom()), f"{lo:.3g}")
        y_val = lambda v: box.bottom() - box.height() * v  # noqa: E731
        painter.setPen(QPen(fg, 1))
        painter.drawText(QPointF(box.right() + 4, box.top() + 8), "1")
        painter.drawText(QPointF(box.right() + 4, box.bottom()), "0")
        for values, color in ((self.val_iou, self.IOU), (self.val_f1, self.F1)):
            pts = [QPointF(x_of(s), y_val(v)) for s, v in zip(self.val_steps, values) if np.isfinite(v)]
            if not pts:
                continue
            painter.setPen(QPen(color, 1.5))
            if len(pts) > 1:
                painter.drawPolyline(QPolygonF(pts))
            painter.setBrush(color)
            for p in pts:
                painter.drawEllipse(p, 2.5, 2.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)
        x = box.left()
        for label, color in (("loss", self.LOSS), ("val IoU", self.IOU), ("val F1", self.F1)):
            painter.setPen(QPen(color, 2))
            painter.drawLine(QPointF(x, 8), QPointF(x + 14, 8))
            painter.setPen(QPen(fg, 1))
            painter.drawText(QPointF(x + 17, 12), label)
            x += 17 + painter.fontMetrics().horizontalAdvance(label) + 12
        painter.end()


class HistogramCanvas(FigureCanvasQTAgg):
    """Histogram of one per-object quantity (areas, IoUs, ...), a few lines high.

    Drawn in the colours of the napari theme (:meth:`set_colors`), with whole-number
    object counts on the y axis.
    """

    BAR = "#4c9be8"

    def __init__(self, height: int = 170) -> None:
        self.figure = Figure(figsize=(3.5, 1.8), layout="constrained")
        super().__init__(self.figure)
        self.axes = self.figure.add_subplot(111)
        self.setFixedHeight(height)
        self.values = np.zeros(0)
        self.xlabel = ""
        self.background, self.foreground = "#ffffff", "#000000"
        self.show_values([], "")

    def set_colors(self, background: str, foreground: str) -> None:
        """Background and text / axis colours (e.g. from ``napari.utils.theme``)."""
        self.background, self.foreground = background, foreground
        self.show_values(self.values, self.xlabel)

    def show_values(
        self, values, xlabel: str, *, bins: int | np.ndarray = 30, value_range=None
    ) -> None:
        """Draw a histogram of ``values``; an empty input says "no objects"."""
        from matplotlib.ticker import MaxNLocator

        self.values = np.asarray(values, dtype=float)
        self.values = self.values[np.isfinite(self.values)]
        self.xlabel = xlabel
        ax, fg = self.axes, self.foreground
        ax.clear()
        self.figure.set_facecolor(self.background)
        ax.set_facecolor(self.background)
        if self.values.size:
            ax.hist(self.values, bins=bins, range=value_range, color=self.BAR, edgecolor="none")
        else:
            ax.text(0.5, 0.5, "no objects", ha="center", va="center", transform=ax.transAxes,
                    color=fg)
        ax.yaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.set_xlabel(xlabel, fontsize=8, color=fg)
        ax.set_ylabel("objects", fontsize=8, color=fg)
        ax.tick_params(labelsize=7, colors=fg)
        for spine in ax.spines.values():
            spine.set_color(fg)
        self.draw_idle()
