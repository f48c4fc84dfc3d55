"""The live training curves of the Train dock (QPainter). The Predict dock's histogram is
in :mod:`.histogram`."""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPalette, QPen, QPolygonF
from qtpy.QtWidgets import QWidget


class PaintedWidget(QWidget):
    """A widget drawn by its ``_paint(painter)`` method."""

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt name
        painter = QPainter(self)
        try:
            self._paint(painter)
        finally:  # a painter left open crashes Qt
            painter.end()

    def _paint(self, painter: QPainter) -> None:
        raise NotImplementedError


class TrainingPlot(PaintedWidget):
    """Live training loss (left axis, blue) and the held-out score (right axis, 0-1), named
    after what it counts (e.g. "held-out clicks found (F1)"); a dashed line marks the step
    whose weights were kept.

    Drawn with QPainter: a repaint is a few polylines (well under a millisecond), so
    even a fast training never makes the GUI thread wait (a matplotlib redraw takes
    tens of milliseconds). ``add_*`` only store values and schedule a repaint.
    """

    LOSS, SCORE, KEPT = QColor("#4c9be8"), QColor("#e8a33c"), QColor("#5cb85c")

    def __init__(self, height: int = 170) -> None:
        super().__init__()
        self.setFixedHeight(height)
        self.setMinimumWidth(220)
        self.foreground: QColor | None = None  # None: the palette's text colour
        self.clear()

    def clear(self) -> None:
        """Forget all values (a new training starts)."""
        self.loss_steps: list[int] = []
        self.losses: list[float] = []
        self.val_steps: list[int] = []
        self.scores: list[float] = []
        self.score_name = "held-out score"
        self.kept_step: int | None = None
        self._stale = False
        self.update()

    def set_foreground(self, color: str | QColor) -> None:
        """Colour of the axes and labels (the theme's text colour)."""
        self.foreground = QColor(color)
        self.update()

    def add_loss(self, step: int, loss: float) -> None:
        """Store one loss; :meth:`refresh` draws it (a repaint per step would be too many)."""
        if np.isfinite(loss):
            self.loss_steps.append(int(step))
            self.losses.append(float(loss))
            self._stale = True

    def add_score(self, step: int, score: float | None, name: str) -> None:
        """One held-out score (0-1) at ``step``; ``name`` says what it counts."""
        self.val_steps.append(int(step))
        self.scores.append(np.nan if score is None else float(score))
        self.score_name = name
        self.update()

    def refresh(self) -> None:
        """Schedule a repaint when values came in since the last one."""
        if self._stale:
            self._stale = False
            self.update()

    def mark_kept(self, step: int | None) -> None:
        """Mark the step whose weights were kept (0: the starting model)."""
        self.kept_step = None if step is None else int(step)
        self.update()

    def legend(self) -> list[str]:
        """The legend's entries, left to right."""
        kept = [] if self.kept_step is None else [
            "kept: start" if self.kept_step == 0 else f"kept: step {self.kept_step}"]
        return ["loss", self.score_name, *kept]

    def redraw(self) -> None:
        self.repaint()

    # ---- painting ------------------------------------------------------------------
    def _paint(self, painter: QPainter) -> None:
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        fg = self.foreground or self.palette().color(QPalette.ColorRole.WindowText)
        font = painter.font()
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 7.0))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        w, h = self.width(), self.height()
        left, right, top, bottom = 44, 22, 22, 18
        box = QRectF(left, top, max(w - left - right, 10), max(h - top - bottom, 10))
        painter.setPen(QPen(fg, 1))
        painter.drawRect(box)
        if not (self.losses or self.scores):
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter,
                             "loss and held-out score\nappear here during training")
        inner = box.adjusted(4, 4, -4, -4)  # lines at 0, 1 or the last step stay visible
        last_step = max(self.loss_steps[-1:] + self.val_steps[-1:] + [1])
        x_of = lambda step: inner.left() + inner.width() * step / last_step  # noqa: E731
        painter.drawText(QPointF(box.left(), h - 4), "step 0")
        end_text = f"step {last_step}"
        painter.drawText(QPointF(box.right() - metrics.horizontalAdvance(end_text), h - 4),
                         end_text)
        if self.losses:
            lo, hi = min(self.losses), max(self.losses)
            span = (hi - lo) or 1.0
            y_loss = lambda v: inner.bottom() - inner.height() * (v - lo) / span  # noqa: E731
            pts = [QPointF(x_of(s), y_loss(v)) for s, v in zip(self.loss_steps, self.losses)]
            painter.setPen(QPen(self.LOSS, 1.2))
            painter.drawPolyline(QPolygonF(pts))
            painter.drawText(QPointF(2, box.top() + 8), f"{hi:.3g}")
            painter.drawText(QPointF(2, box.bottom()), f"{lo:.3g}")
        y_val = lambda v: inner.bottom() - inner.height() * v  # noqa: E731
        painter.setPen(QPen(fg, 1))
        painter.drawText(QPointF(box.right() + 4, box.top() + 8), "1")
        painter.drawText(QPointF(box.right() + 4, box.bottom()), "0")
        if self.kept_step is not None:
            pen = QPen(self.KEPT, 1.5)
            pen.setStyle(Qt.PenStyle.DashLine)
            painter.setPen(pen)
            x = x_of(self.kept_step)
            painter.drawLine(QPointF(x, box.top()), QPointF(x, box.bottom()))
        pts = [QPointF(x_of(s), y_val(v)) for s, v in zip(self.val_steps, self.scores)
               if np.isfinite(v)]
        if pts:
            painter.setPen(QPen(self.SCORE, 1.5))
            if len(pts) > 1:
                painter.drawPolyline(QPolygonF(pts))
            painter.setBrush(self.SCORE)
            for p in pts:
                painter.drawEllipse(p, 2.5, 2.5)
            painter.setBrush(Qt.BrushStyle.NoBrush)
        x = box.left()
        for label, color in zip(self.legend(), (self.LOSS, self.SCORE, self.KEPT)):
            painter.setPen(QPen(color, 2))
            painter.drawLine(QPointF(x, 9), QPointF(x + 14, 9))
            painter.setPen(QPen(fg, 1))
            painter.drawText(QPointF(x + 17, 13), label)
            x += 17 + metrics.horizontalAdvance(label) + 10
