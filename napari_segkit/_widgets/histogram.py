"""A histogram of one per-object quantity (areas, IoUs, ...) for the Predict dock.

Drawn with QPainter from counts computed elsewhere (the prediction's worker computes them):
a repaint is a few rectangles and labels, well under a millisecond, where a matplotlib
figure with its layout took 50-150 ms of the GUI thread at each result.
"""

from __future__ import annotations

import numpy as np
from qtpy.QtCore import QPointF, QRectF, Qt
from qtpy.QtGui import QColor, QPainter, QPen

from .plots import PaintedWidget


def integer_ticks(top: int, most: int = 4) -> list[int]:
    """Whole-number ticks from 0 to at least ``top`` (object counts), at most ``most`` + 1."""
    top = max(int(top), 1)
    step = 1
    while top / step > most:
        for factor in (2, 2.5, 2):  # 1, 2, 5, 10, 20, 50, ...
            step = int(step * factor)
            if top / step <= most:
                break
    return list(range(0, top + step, step)) if top % step else list(range(0, top + 1, step))


def _tick_text(value: float) -> str:
    return f"{value:.3g}"


class HistogramPlot(PaintedWidget):
    """Bars of counts per bin, object counts on the y axis (whole numbers), the quantity
    and its unit on the x axis; "no objects" when there are none. Colours follow the
    napari theme (:meth:`set_colors`)."""

    BAR = QColor("#4c9be8")

    def __init__(self, height: int = 170) -> None:
        super().__init__()
        self.setFixedHeight(height)
        self.setMinimumWidth(220)
        self.background, self.foreground = "#ffffff", "#000000"
        self.counts, self.edges, self.xlabel = np.zeros(0, int), np.zeros(0), ""

    def set_colors(self, background: str, foreground: str) -> None:
        """Background and text / axis colours (e.g. from ``napari.utils.theme``)."""
        self.background, self.foreground = background, foreground
        self.update()

    def show_counts(self, counts: np.ndarray, edges: np.ndarray, xlabel: str) -> None:
        """Show ``counts`` per bin between ``edges`` (one more than counts)."""
        counts, edges = np.asarray(counts), np.asarray(edges, dtype=float)
        if counts.size and edges.size != counts.size + 1:
            raise ValueError("a histogram needs one more bin edge than counts")
        self.counts, self.edges, self.xlabel = counts, edges, xlabel
        self.update()

    def show_values(self, values, xlabel: str, *, bins: int = 30, value_range=None) -> None:
        """Histogram of the finite ``values`` in ``bins`` bins."""
        values = np.asarray(values, dtype=float)
        values = values[np.isfinite(values)]
        if values.size == 0:
            self.show_counts(np.zeros(0, int), np.zeros(0), xlabel)
            return
        counts, edges = np.histogram(values, bins=bins, range=value_range)
        self.show_counts(counts, edges, xlabel)

    def y_ticks(self) -> list[int]:
        """The y-axis ticks (object counts)."""
        return integer_ticks(int(self.counts.max()) if self.counts.size else 1)

    def empty(self) -> bool:
        return not (self.counts.size and self.counts.sum() > 0)

    # ---- painting ------------------------------------------------------------------
    def _paint(self, painter: QPainter) -> None:
        fg = QColor(self.foreground)
        painter.fillRect(self.rect(), QColor(self.background))
        font = painter.font()
        font.setPointSizeF(max(font.pointSizeF() * 0.85, 7.0))
        painter.setFont(font)
        metrics = painter.fontMetrics()
        line = metrics.height()
        ticks = self.y_ticks()
        left = 10 + line + max(metrics.horizontalAdvance(str(t)) for t in ticks)
        right = 12
        box = QRectF(left, 8, max(self.width() - left - right, 10),
                     max(self.height() - 8 - 2 * line - 8, 10))
        painter.setPen(QPen(fg, 1))
        if self.empty():
            painter.drawText(box, Qt.AlignmentFlag.AlignCenter, "no objects")
        else:
            self._paint_bars(painter, box, ticks[-1])
        painter.setPen(QPen(fg, 1))
        painter.drawRect(box)
        for t in ticks:  # y: whole object counts
            y = box.bottom() - box.height() * t / ticks[-1]
            painter.drawLine(QPointF(box.left() - 3, y), QPointF(box.left(), y))
            text = str(t)
            painter.drawText(QPointF(box.left() - 5 - metrics.horizontalAdvance(text),
                                     y + metrics.ascent() / 2 - 1), text)
        if not self.empty():  # x: both ends and the middle
            lo, hi = float(self.edges[0]), float(self.edges[-1])
            for frac in (0.0, 0.5, 1.0):
                text = _tick_text(lo + frac * (hi - lo))
                x = box.left() + frac * box.width() - frac * metrics.horizontalAdvance(text)
                painter.drawText(QPointF(x, box.bottom() + line), text)
        painter.drawText(QRectF(box.left(), box.bottom() + line, box.width(), line + 4),
                         Qt.AlignmentFlag.AlignHCenter, self.xlabel)
        painter.save()  # y label, rotated
        painter.translate(line - 2, box.center().y())
        painter.rotate(-90)
        painter.drawText(QRectF(-box.height() / 2, -line, box.height(), line + 2),
                         Qt.AlignmentFlag.AlignCenter, "objects")
        painter.restore()

    def _paint_bars(self, painter: QPainter, box: QRectF, top: int) -> None:
        lo, hi = float(self.edges[0]), float(self.edges[-1])
        span = (hi - lo) or 1.0
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(self.BAR)
        for count, a, b in zip(self.counts, self.edges[:-1], self.edges[1:]):
            if count <= 0:
                continue
            x0 = box.left() + box.width() * (a - lo) / span
            x1 = box.left() + box.width() * (b - lo) / span
            h = box.height() * count / top
            painter.drawRect(QRectF(x0, box.bottom() - h, max(x1 - x0, 1.0), h))
        painter.setBrush(Qt.BrushStyle.NoBrush)
