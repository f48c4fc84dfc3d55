"""The blocks of one block-wise prediction, run here or on dask.distributed workers.

:class:`BlockJob` predicts one block (probabilities of the block plus context, semantic
labels of its core, the objects it owns); :func:`blocks_here` runs the blocks one after
another in this process (tile progress), :func:`blocks_on_cluster` on the workers of a
:class:`distributed.Client`: the model is scattered to every worker once, each worker
reads its blocks from the image file itself, and the results come back in block order so
that the labels are numbered exactly as here. Used by
:mod:`napari_segkit.predict_blocks`.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ._common import Cancelled, ProgressCallback, StopFlag, is_stopped
from .normalization import FittedNormalization
from .postprocess import semantic_from_probabilities
from .prediction import owned_instances, predict_probabilities
from .tiling import Block

__all__ = ["BlockJob", "blocks_here", "blocks_on_cluster", "read_region", "source_key"]


@dataclass(frozen=True)
class BlockJob:
    """What every block of one image is predicted with (small: sent with each task; the
    model travels separately, once per worker)."""

    normalization: FittedNormalization
    n_classes: int
    settings: dict
    postprocess: dict

    def run(self, model: Any, region: np.ndarray, b: Block, o: Block,
            progress: ProgressCallback | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Semantic labels of ``b``'s core and the objects ``b`` owns over ``b.region``
        (numbered 1..n, uint16), from the pixels of ``o.region`` (``b`` plus context)."""
        probs = predict_probabilities(model, region, normalization=self.normalization,
                                      progress=progress, **self.settings)
        inner = tuple(slice(r.start - q.start, r.stop - q.start)
                      for r, q in zip(b.region, o.region, strict=True))
        probs = probs[(slice(None), *inner)]
        k = self.n_classes
        core = semantic_from_probabilities(probs[(slice(None, k), *b.core_in_region)])
        owned = owned_instances(probs, k, b, self.postprocess)  # < LABEL_STRIDE objects
        return core, owned.astype(np.uint16)


def blocks_here(model: Any, job: BlockJob, data: Any, pairs: list, counts: list[int],
                 progress: ProgressCallback | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Block results in order, computed in this process (tile progress)."""
    total, done = sum(counts), 0
    for (b, o), n_tiles in zip(pairs, counts, strict=True):
        sub = None
        if progress is not None:
            def sub(tiles: int, _total: int, offset: int = done) -> None:
                progress(offset + tiles, total)
        yield job.run(model, read_region(data, o), b, o, sub)
        done += n_tiles


def read_region(data: Any, o: Block) -> np.ndarray:
    part = data[(*o.region,)]
    if hasattr(part, "compute"):  # dask: read here, whatever the default scheduler
        return np.asarray(part.compute(scheduler="synchronous"))
    return np.asarray(part)


def source_key(source: Any) -> tuple[str, int]:
    """(absolute path, modification time) of a file or folder workers can open."""
    if not isinstance(source, (str, os.PathLike)):
        raise ValueError("predicting on a dask cluster reads the image on the workers: "
                         "give its path (a .zarr folder or a .tif file), not an array")
    path = Path(source).resolve()
    return str(path), path.stat().st_mtime_ns


@functools.lru_cache(maxsize=4)
def _worker_image(path: str, mtime_ns: int) -> Any:
    """The image a worker reads its blocks from, opened once per worker process."""
    from .io_zarr import open_image

    return open_image(path, max_in_memory_pixels=0).data


def _cluster_block(model: Any, job: BlockJob, source: tuple[str, int], b: Block,
                   o: Block) -> tuple[np.ndarray, np.ndarray]:
    """One block on a dask worker (module level: workers import it by name)."""
    return job.run(model, read_region(_worker_image(*source), o), b, o)


def blocks_on_cluster(client: Any, model: Any, job: BlockJob, source: tuple[str, int],
                       pairs: list, counts: list[int], progress: ProgressCallback | None,
                       stop: StopFlag) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Block results in order, computed on the workers of ``client``.

    The model is scattered to every worker once; at most two blocks per worker thread
    are submitted or held at a time (memory here stays bounded); results are yielded in
    block order as they complete; ``stop`` cancels what is still queued.
    """
    from distributed import as_completed

    model_future = client.scatter(model, broadcast=True, hash=False)
    slots = sum(w.get("nthreads", 1) for w in client.scheduler_info()["workers"].values())
    window = 2 * max(1, slots)
    total, done_tiles = sum(counts), 0
    tag = uuid.uuid4().hex[:8]
    pending = as_completed(loop=client.loop)
    index_of: dict[str, int] = {}
    ready: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    submitted = 0

    def fill() -> None:
        nonlocal submitted
        while submitted < len(pairs) and len(index_of) + len(ready) < window:
            future = client.submit(_cluster_block, model_future, job, source,
                                   *pairs[submitted], key=f"segkit-block-{tag}-{submitted}",
                                   pure=False)
            index_of[future.key] = submitted
            pending.add(future)
            submitted += 1

    try:
        fill()
        for wanted in range(len(pairs)):
            while wanted not in ready:
                if is_stopped(stop):
                    raise Cancelled("prediction cancelled")
                batch = pending.next_batch(block=False)
                if not batch:
                    time.sleep(0.05)
                    continue
                for future in batch:
                    i = index_of.pop(future.key)
                    ready[i] = future.result()  # a worker's error is raised here
                    done_tiles += counts[i]
                    if progress is not None:
                        progress(done_tiles, total)
                fill()
            yield ready.pop(wanted)
            fill()
    finally:
        futures = list(pending.futures) if hasattr(pending, "futures") else []
        if futures:
            client.cancel(futures)
        pending.clear()
        client.cancel([model_future])
