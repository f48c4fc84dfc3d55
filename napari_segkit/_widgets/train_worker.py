"""What the Train dock runs off the GUI thread, and how it puts results into words.

* :func:`training_worker`: imports torch, builds the config, loads the starting model and
  trains, all in a worker thread; a failure comes back as one :class:`TrainFailure` event
  (never as an exception, so napari shows no second, raw notification).
* :func:`warm_up_imports`: imports the training code in a background thread when the dock
  opens, so the first Train press finds it loaded.
"""

from __future__ import annotations

import atexit
import gc
import logging
import threading
from dataclasses import dataclass

from napari.qt.threading import thread_worker

log = logging.getLogger("napari_segkit")

_warm_up_started = threading.Event()
#: the longest wait at exit for a warm-up still importing torch (it takes a few seconds)
WARM_UP_EXIT_WAIT_S = 30.0
_warm_up: list[threading.Thread] = []


def warm_up_imports(freeze_after: bool = False) -> None:
    """Import torch and the trainer in a daemon thread (once per process), and take one
    optimiser step on a toy network: torch imports more (e.g. ``torch._dynamo``, over a
    second, holding the GIL) at the first step of an optimiser.

    ``freeze_after``: then move every object alive (napari, Qt, torch: about half a million)
    out of the cyclic garbage collector's reach (``gc.freeze``). A full collection scans
    them all and holds every thread, the GUI's included, for about a second on a 2-core
    machine; it comes at random during training or prediction. For a process that napari
    -segkit starts itself (``launch``); a plugin dock leaves the host process alone."""
    if _warm_up_started.is_set():
        return
    _warm_up_started.set()

    def work() -> None:
        try:
            import torch

            from .. import training  # noqa: F401 - torch and the trainer, loaded once

            with torch.random.fork_rng(devices=[]):  # the caller's random state stays
                net = torch.nn.Conv2d(1, 1, 3)
                optimizer = torch.optim.AdamW(net.parameters(), lr=1e-3)
                net(torch.zeros(1, 1, 8, 8)).mean().backward()
                optimizer.step()
        except Exception:  # noqa: BLE001 - the Train press reports import errors itself
            log.debug("warming up the training imports failed", exc_info=True)
        if freeze_after:
            gc.freeze()

    thread = threading.Thread(target=work, name="segkit-warm-up", daemon=True)
    _warm_up.append(thread)
    thread.start()


@atexit.register
def _await_warm_up() -> None:
    """At exit, let a warm-up still importing torch finish: a daemon thread importing
    extension modules while the interpreter tears itself down can crash it (a script that
    opens the docks and fails at once)."""
    for thread in _warm_up:
        thread.join(WARM_UP_EXIT_WAIT_S)


@dataclass
class TrainFailure:
    """A training that could not run or ended with an error; ``message`` is for the user."""

    message: str
    kind: str = "failed"


@thread_worker
def training_worker(data: dict, settings: dict, init, out_path: str,
                    stop_event: threading.Event, keep_known: bool = False):
    """Train on ``data`` (from ``TrainWidget.collect_data``) with ``TrainConfig(**settings)``;
    yields the trainer's events, or one :class:`TrainFailure`. ``keep_known``: a
    fine-tuning replays the recipe's share of the default model's training patches also
    from full masks (where the recipe replays none)."""
    try:
        from ..train_config import FINE_TUNE_RECIPE
        from ..training import TrainConfig, train

        if keep_known and init is not None:
            settings = {**settings, "replay_fraction": FINE_TUNE_RECIPE["replay_fraction"]}

        yield from train(
            data["images"],
            labels=data["labels"],
            points=data["points"],
            regions=data.get("regions"),
            scale=data.get("scale"),
            config=TrainConfig(**settings),
            init=init,
            out_path=out_path,
            stop=stop_event,
        )
    except (ValueError, FileNotFoundError) as err:
        yield TrainFailure(f"Training could not run: {err}")
    except Exception as err:  # noqa: BLE001 - a dock never crashes napari
        log.exception("training failed")
        yield TrainFailure(f"Training failed unexpectedly ({type(err).__name__}: {err}). "
                           "Details in the log.")
