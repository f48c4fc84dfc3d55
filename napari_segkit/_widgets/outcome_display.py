"""What the Predict dock shows of a prediction, prepared off the GUI thread and drawn on it
in short steps, so that napari never freezes while a result appears.

:func:`prepare_display` runs in the prediction's (or post-processing's) worker thread: the
readable table and its cell texts, the histogram's counts, the count and score lines.
:class:`StepChain` then runs the GUI work one short step per event-loop turn (one layer
added or updated, a slice of table rows, the histogram), with repaints in between.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from qtpy.QtCore import QTimer

from ..outcome_text import counts_text, scores_text, size_column, size_unit
from ..readable_table import readable_table
from ..workflows import PredictOutcome
from .table import format_cells

log = logging.getLogger("napari_segkit")

#: GUI-thread time (ms) after which a :class:`StepChain` lets the event loop run: short
#: steps share one turn (every turn that changes what is shown costs a repaint of the
#: window), long ones (adding a layer to napari) get a turn each.
TURN_BUDGET_MS = 40.0
#: Pause (ms) after a turn that changed a layer's pixels (a step with a true ``repaints``
#: attribute), so that the canvas repaints (uploads that layer's texture) before the next
#: layer changes: three 1024^2 layers painted together held the GUI thread ~190 ms.
PAINT_PAUSE_MS = 20
#: Histogram bins of the object table's plotted quantity.
HISTOGRAM_BINS = 30


@dataclass
class Histogram:
    """Counts per bin (``edges`` has one more entry) and the x-axis label."""

    counts: np.ndarray
    edges: np.ndarray
    xlabel: str


@dataclass
class OutcomeDisplay:
    """Everything the dock shows of one outcome beside its layers, ready to draw."""

    rows: pd.DataFrame  # predicted objects + missed ground truth, readable columns
    cells: list[list[str]]  # the rows as the table writes them
    histogram: Histogram
    counts: str
    scores: str
    #: the instances as the layer shows them: a copy of their own (the user's brush edits
    #: there are compared with the prediction), uint16 when the ids fit (napari draws
    #: uint8 / uint16 labels without remapping every pixel: a redraw ~30 ms shorter)
    instances: object = None


def histogram_of(values: np.ndarray, xlabel: str, value_range=None,
                 bins: int = HISTOGRAM_BINS) -> Histogram:
    """Counts of the finite ``values`` in ``bins`` bins over ``value_range`` (their span
    when None)."""
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Histogram(np.zeros(0, int), np.zeros(0), xlabel)
    counts, edges = np.histogram(values, bins=bins, range=value_range)
    return Histogram(counts, edges, xlabel)


def prepare_display(outcome: PredictOutcome) -> OutcomeDisplay:
    """The table rows and texts, histogram counts and summary lines of ``outcome``
    (no Qt: runs in the worker thread)."""
    rows = readable_table(outcome.table, outcome.missed_table, outcome.instances.ndim)
    if "best_iou" in outcome.table:
        histogram = histogram_of(rows["best IoU"].to_numpy(dtype=float),
                                 "best IoU with ground truth", value_range=(0, 1))
    else:
        col = size_column(outcome.table)
        what = "area" if col.startswith("area") else "volume"
        histogram = histogram_of(outcome.table[col].to_numpy(dtype=float),
                                 f"{what} ({size_unit(col)})")
    summary = dict(outcome.summary)
    return OutcomeDisplay(rows=rows, cells=format_cells(rows), histogram=histogram,
                          counts=counts_text(summary, outcome.table),
                          scores=scores_text(summary),
                          instances=editable_labels(outcome.instances))


def editable_labels(labels):
    """A copy of in-memory ``labels`` for the user to edit, as uint16 when every id (and
    some new ones) fits; lazy labels (dask, zarr) are returned as they are."""
    if not isinstance(labels, np.ndarray):
        return labels
    if labels.size and labels.min() >= 0 and labels.max() < np.iinfo(np.uint16).max // 2:
        return labels.astype(np.uint16)
    return labels.copy()


def with_display(job: Callable[..., PredictOutcome]) -> Callable[..., tuple]:
    """``job`` that also prepares the display of a usable outcome: returns
    ``(outcome, display or None)``."""

    def run(*args, **kwargs) -> tuple[PredictOutcome, OutcomeDisplay | None]:
        outcome = job(*args, **kwargs)
        if outcome.cancelled or outcome.error or outcome.instances is None:
            return outcome, None
        return outcome, prepare_display(outcome)

    run.__name__ = getattr(job, "__name__", "job")
    return run


class Superseded(Exception):
    """What a chain's ``done`` gets when a newer chain took over before it ended."""


class StepChain:
    """Runs steps in event-loop turns of at most about :data:`TURN_BUDGET_MS` (a step is
    never cut; the next turn comes by ``QTimer.singleShot(0)``), so that repaints and
    input are handled between them; a step with a true ``own_turn`` attribute (a long one)
    starts a turn of its own, and one with a true ``repaints`` attribute (it changes what
    a layer shows) ends its turn, the next one :data:`PAINT_PAUSE_MS` later, so that each
    layer is repainted on its own; ``done`` comes in a turn of its own after the last step.
    A new :meth:`start` abandons the steps left."""

    def __init__(self) -> None:
        self._generation = 0
        self.running = False
        self._done: Callable[[Exception | None], None] | None = None

    def start(self, steps: Sequence[Callable[[], None]],
              done: Callable[[Exception | None], None]) -> None:
        """Run ``steps`` in turn, then ``done(None)``; ``done(error)`` when a step raised
        (the steps left are dropped). A chain still running gets ``done(Superseded())``."""
        previous = self._done if self.running else None
        self._generation += 1
        self.running, self._done = True, done
        generation, steps = self._generation, list(steps)
        if previous is not None:
            previous(Superseded())

        def run(i: int) -> None:
            if generation != self._generation:
                return  # a newer chain took over
            turn_end = time.perf_counter() + TURN_BUDGET_MS / 1000.0
            ran = 0
            while i < len(steps) and (ran == 0 or (
                    time.perf_counter() < turn_end and not getattr(steps[i], "own_turn", False)
                    and not getattr(steps[i - 1], "repaints", False))):
                ran += 1
                try:
                    steps[i]()
                except Exception as err:  # noqa: BLE001 - e.g. the image layer was deleted
                    log.exception("showing the prediction failed")
                    self.running, self._done = False, None
                    done(err)
                    return
                i += 1
            if i == len(steps):  # ``done`` (notifications, status) in a turn of its own
                QTimer.singleShot(PAINT_PAUSE_MS, finish)
                return
            pause = PAINT_PAUSE_MS if getattr(steps[i - 1], "repaints", False) else 0
            QTimer.singleShot(pause, lambda: run(i))

        def finish() -> None:
            if generation == self._generation:  # else the newer chain told ``done``
                self.running, self._done = False, None
                done(None)

        QTimer.singleShot(0, lambda: run(0))

    def abandon(self) -> None:
        """Drop the steps left without telling anyone (the dock closes)."""
        self._generation += 1
        self.running, self._done = False, None
