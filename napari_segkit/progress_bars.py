"""Progress bars of the command line (tqdm): tiles of a prediction and the steps or
elapsed time of a training; in place on a terminal, one line every few seconds in logs."""

from __future__ import annotations

import sys

from .train_config import TrainEvent

__all__ = ["TileProgress", "TrainingProgress"]


class _LogLines:
    """A stream for tqdm that writes each refresh as its own line (logs, pipes)."""

    def __init__(self, stream) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        text = text.strip("\r\n ")
        if text:
            self.stream.write(text + "\n")

    def flush(self) -> None:
        self.stream.flush()


class TileProgress:
    """A ``progress(done_tiles, total_tiles)`` callback that shows prediction as a tqdm bar
    of tiles: in place on a terminal, a line every few seconds elsewhere (logs, pipes)."""

    def __init__(self, desc: str, stream=None) -> None:
        self.desc = desc
        self.stream = stream or sys.stderr
        self.bar = None

    def __call__(self, done: int, total: int) -> None:
        if self.bar is None:
            import shutil

            from tqdm import tqdm

            tty = hasattr(self.stream, "isatty") and self.stream.isatty()
            self.bar = tqdm(total=total, unit="tile", desc=self.desc,
                            file=self.stream if tty else _LogLines(self.stream),
                            mininterval=0.2 if tty else 5.0,
                            ncols=shutil.get_terminal_size((100, 24)).columns)
        if total != self.bar.total:  # a second pass (test-time zoom) has its own tiles
            self.bar.reset(total=total)
        self.bar.update(max(done - self.bar.n, 0))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class TrainingProgress:
    """An ``on_event`` callback that shows training as a tqdm bar.

    With a time budget the bar counts seconds (elapsed / budget), otherwise steps; the
    postfix shows the step, the loss, the best validation scores so far and the device.
    On a terminal the bar updates in place; elsewhere a line every few seconds.
    """

    def __init__(self, time_budget_s: float | None = None, stream=None) -> None:
        self.stream = stream or sys.stderr
        self.time_budget_s = float(time_budget_s) if time_budget_s else None
        self.bar = None  # made at the first event, when the number of steps is known
        self.last: TrainEvent | None = None
        self.scores: dict[str, str] = {}  # the last validation scores

    def _make_bar(self, total_steps: int):
        import shutil

        from tqdm import tqdm

        tty = hasattr(self.stream, "isatty") and self.stream.isatty()
        unit = "s" if self.time_budget_s else "step"
        return tqdm(
            total=self.time_budget_s or total_steps or None, unit=unit,
            file=self.stream if tty else _LogLines(self.stream),
            mininterval=0.2 if tty else 5.0, ncols=shutil.get_terminal_size((100, 24)).columns,
            bar_format=("{l_bar}{bar}| {n:.0f}/{total:.0f} s [{elapsed}<{remaining}{postfix}]"
                        if self.time_budget_s else None),
        )

    def __call__(self, event: TrainEvent) -> None:
        self.last = event
        if event.kind == "start" and event.message and self.bar is None:
            # where and how it trains: device, precision, images, validation
            print(event.message, file=self.stream, flush=True)
            for text in event.warnings:
                print(f"warning: {text}", file=self.stream, flush=True)
        if self.bar is None:
            self.bar = self._make_bar(event.total_steps)
        bar = self.bar
        if self.time_budget_s:
            done = bar.total if event.kind == "done" else min(event.elapsed_s, bar.total)
        else:
            done = event.step
        if event.kind == "validation":
            self.scores = {name: f"{value:.3f}" for name, value
                           in (("val F1", event.val_f1), ("val IoU", event.val_iou))
                           if value is not None}
        postfix = {"step": event.step}
        if event.loss is not None:
            postfix["loss"] = f"{event.loss:.3f}"
        bar.set_postfix({**postfix, **self.scores, "device": event.device}, refresh=False)
        bar.update(max(done - bar.n, 0))

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
