"""Progress of background jobs as the docks show it, shared by the Train dock, the Predict
dock, its folder panel and its correction loop.

* :class:`Relay`: queued signals that carry a worker's progress to the GUI thread.
* :class:`Throttle`: shows the latest progress at most about once a second. Under a
  software-rendered screen (Xvfb, remote desktops) every repaint of the window costs tens
  of milliseconds, so a bar redrawn at each tile or step makes napari stutter.
* :func:`set_progress_quietly`: sets a magicgui progress bar without the immediate repaint
  QProgressBar makes (it is drawn with the other changes of the event-loop turn).
* :func:`watch_close`: calls back when a dock is closed (napari un-parents its widget) or
  the viewer closes (the widget is destroyed), so jobs stop with their dock.
* :func:`stop_timer`: stops a timer from such a call-back, also when the process is exiting
  and Qt has already deleted the timer.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from qtpy.QtCore import QEvent, QObject, QTimer, Signal

#: Least time between two redraws of a job's progress (ms).
REPAINT_EVERY_MS = 1000


class Relay(QObject):
    """Carries progress from a worker thread to the GUI thread (queued signals)."""

    progressed = Signal(int, int)  # done, total
    staged = Signal(str)  # what the job does now


class Throttle:
    """``throttle(*args)`` calls ``show(*args)`` at once when the last call was at least
    ``interval_ms`` ago, else keeps the latest arguments and shows them when the interval
    is over: never more than one redraw per interval, and the last value always shown."""

    def __init__(self, show: Callable[..., Any], interval_ms: int = REPAINT_EVERY_MS) -> None:
        self.show = show
        self.interval_s = interval_ms / 1000.0
        self._last = -float("inf")
        self._pending: tuple | None = None
        self._timer = QTimer()
        self._timer.setSingleShot(True)
        self._timer.timeout.connect(self.flush)

    def __call__(self, *args: Any) -> None:
        self._pending = args
        wait = self._last + self.interval_s - time.perf_counter()
        if wait <= 0:
            self.flush()
        elif not self._timer.isActive():
            self._timer.start(int(1000 * wait) + 1)

    def flush(self) -> None:
        """Show the arguments kept, if any, now."""
        self._timer.stop()
        if self._pending is not None:
            args, self._pending = self._pending, None
            self._last = time.perf_counter()
            self.show(*args)

    def cancel(self) -> None:
        """Forget the arguments kept (the job ended or its dock closed)."""
        stop_timer(self._timer)
        self._pending = None


def warning_lines(warnings) -> str:
    """A training's start-event warnings as status lines, kept under the status of the
    dock that runs it until its next training ("" without)."""
    return "".join(f"\nWarning: {text}" for text in warnings)


def stop_timer(timer: QTimer) -> None:
    """``timer.stop()``, or nothing when Qt has already deleted the timer: a Python
    process that ends with the viewer still open (a script that raised, a notebook kernel
    shut down) tears the widgets down in its own order, and an exception in a close
    call-back then aborts the process."""
    try:
        timer.stop()
    except RuntimeError:  # "wrapped C/C++ object of type QTimer has been deleted"
        pass


def set_progress_quietly(progress: Any, value: int) -> None:
    """Set magicgui ``progress`` (a ProgressBar) to ``value``; it is drawn at the next
    repaint of the window rather than by a repaint of its own."""
    bar = progress.native
    bar.setUpdatesEnabled(False)
    try:
        progress.value = value
    finally:
        bar.setUpdatesEnabled(True)  # schedules one (deferred) repaint


class _ParentWatcher(QObject):
    """Calls ``on_orphaned`` when its widget loses its parent: napari takes a closed dock's
    widget out of the window that way (the widget itself lives on)."""

    def __init__(self, on_orphaned: Callable[[], None]) -> None:
        super().__init__()
        self.on_orphaned = on_orphaned

    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt name
        if event.type() == QEvent.Type.ParentChange and obj.parent() is None:
            self.on_orphaned()
        return False


def watch_close(native: Any, on_close: Callable[..., None]) -> QObject:
    """Call ``on_close(*ignored)`` when the dock whose widget is ``native`` closes, or the
    viewer (it may come twice). ``on_close``: a bound method (Qt then holds no strong
    reference to its object). Keep the returned watcher referenced as long as the dock
    lives."""
    watcher = _ParentWatcher(on_close)
    native.installEventFilter(watcher)
    native.destroyed.connect(on_close)
    return watcher
