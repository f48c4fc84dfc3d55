"""Where block-wise predictions run: threads here, or a dask.distributed cluster.

A scheduler is named by a short string (the CLI's ``--scheduler``):

``threads``
    The default: blocks one after another in this process (torch uses its threads).
``local:N``
    A :class:`distributed.LocalCluster` of N worker processes, one thread each, started
    for the job and shut down after it; each worker may use
    :func:`local_memory_limit` bytes (the memory budget shared out).
``tcp://host:port`` (also ``tls://``, ``ws://``, ``wss://``, ``inproc://``)
    An existing scheduler (``dask scheduler`` / dask-jobqueue / dask-gateway); its
    workers need napari-segkit installed and must see the image path.

:func:`open_client` turns the string into a :class:`distributed.Client` (or None for
threads) in a context manager. No torch, no Qt imports; ``distributed`` is imported
only when a cluster is asked for.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from .memory_limits import format_bytes, memory_budget

__all__ = ["SchedulerSpec", "local_memory_limit", "open_client", "parse_scheduler",
           "SCHEDULER_HELP"]

#: Most workers ``local:N`` starts (a typo such as local:400 would fork hundreds).
MAX_LOCAL_WORKERS = 256
#: How long a scheduler address may take to answer.
CONNECT_TIMEOUT_S = 10.0
#: Address schemes dask.distributed speaks.
_SCHEMES = ("tcp", "tls", "ws", "wss", "inproc", "ucx")
SCHEDULER_HELP = ("where blocks are predicted: 'threads' (default, this process), 'local:N' "
                  "(a local dask cluster of N worker processes, started and stopped for "
                  "this run) or the address of a running dask scheduler, e.g. "
                  "tcp://10.0.0.5:8786")


@dataclass(frozen=True)
class SchedulerSpec:
    """A parsed scheduler string: ``kind`` is ``"threads"``, ``"local"`` or ``"address"``."""

    kind: str
    n_workers: int = 0
    address: str = ""

    def __str__(self) -> str:
        if self.kind == "local":
            return f"local:{self.n_workers}"
        return self.address or self.kind


def parse_scheduler(text: str | SchedulerSpec | None) -> SchedulerSpec:
    """``threads`` / ``local:N`` / ``tcp://host:port`` -> :class:`SchedulerSpec`.

    Raises ValueError with the accepted forms for anything else.
    """
    if isinstance(text, SchedulerSpec):
        return text
    value = "threads" if text is None else str(text).strip()
    if value.lower() in ("threads", "threaded", ""):
        return SchedulerSpec("threads")
    local = re.fullmatch(r"local(?::(\S*))?", value, flags=re.IGNORECASE)
    if local:
        count = local.group(1)
        if count is None or not count.isdigit() or not 1 <= int(count) <= MAX_LOCAL_WORKERS:
            raise ValueError(
                f"scheduler {value!r}: write local:N with N the number of worker processes "
                f"(1 to {MAX_LOCAL_WORKERS}), e.g. local:2")
        return SchedulerSpec("local", n_workers=int(count))
    scheme, sep, rest = value.partition("://")
    if sep and scheme.lower() in _SCHEMES and rest:
        return SchedulerSpec("address", address=value)
    raise ValueError(
        f"scheduler {value!r} is not understood: use 'threads', 'local:N' (N worker "
        "processes, e.g. local:2) or the address of a running dask scheduler such as "
        "tcp://host:8786")


def local_memory_limit(n_workers: int, budget: int | None = None) -> int:
    """Bytes each of ``n_workers`` local workers may use: the memory budget (half of the
    available memory) shared out, at least 1 GiB each."""
    budget = memory_budget() if budget is None else int(budget)
    return max(1 << 30, budget // max(1, int(n_workers)))


def _import_distributed() -> Any:
    try:
        import distributed
    except ImportError:
        raise ValueError(
            "a dask cluster needs the 'distributed' package: pip install "
            "'napari-segkit[cluster]' (or dask[distributed]), or use --scheduler threads"
        ) from None
    return distributed


@contextlib.contextmanager
def open_client(scheduler: str | SchedulerSpec | None, *, processes: bool = True,
                memory_limit: int | None = None, log=None) -> Iterator[Any]:
    """A :class:`distributed.Client` for ``scheduler`` (None for ``threads``; a Client
    given is used as it is), closed after the block; a cluster started here (``local:N``) is shut down with it.

    ``processes=False`` runs the local workers as threads of this process (tests).
    ``log``: a callable told what was started or reached.
    """
    if hasattr(scheduler, "submit") and hasattr(scheduler, "scatter"):
        yield scheduler  # a Client the caller opened (and closes)
        return
    spec = parse_scheduler(scheduler)
    if spec.kind == "threads":
        yield None
        return
    distributed = _import_distributed()
    if spec.kind == "local":
        limit = local_memory_limit(spec.n_workers) if memory_limit is None else memory_limit
        with distributed.LocalCluster(
                n_workers=spec.n_workers, threads_per_worker=1, processes=processes,
                memory_limit=limit, dashboard_address=None, silence_logs=logging.ERROR) as cluster, \
                distributed.Client(cluster, set_as_default=False) as client:
            if log is not None:
                log(f"started a local dask cluster: {spec.n_workers} worker(s), 1 thread "
                    f"and {format_bytes(limit)} each")
            yield client
        return
    try:
        client = distributed.Client(spec.address, timeout=CONNECT_TIMEOUT_S,
                                    set_as_default=False)
    except (OSError, TimeoutError) as err:
        raise ValueError(
            f"could not reach the dask scheduler at {spec.address} ({err}); check the "
            "address and that `dask scheduler` runs there, or use --scheduler local:N"
        ) from None
    with client:
        n = len(client.scheduler_info().get("workers", {}))
        if n == 0:
            raise ValueError(f"the dask scheduler at {spec.address} has no workers; start "
                             f"some with `dask worker {spec.address}`")
        if log is not None:
            log(f"connected to the dask scheduler at {spec.address} ({n} worker(s))")
        yield client
