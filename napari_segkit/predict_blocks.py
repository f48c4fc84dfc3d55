"""Prediction of images larger than memory, block by block, from a file to label files.

:func:`predict_file_blockwise` reads a 2-D TIFF / OME-Zarr image lazily
(:func:`napari_segkit.io_zarr.open_image`), and for one block at a time

1. predicts the probabilities of the block's core plus two margins of context (the
   outer margin only feeds the network, so tile borders never touch the region that
   is post-processed),
2. post-processes the core plus one margin and keeps the objects the block owns (their
   centre lies in its core; :func:`napari_segkit.prediction.owned_instances`, the same
   rule as the dask and block-wise numpy paths), numbered on from the earlier blocks,
3. writes them whole (also into neighbouring cores) and the core's semantic labels to
   disk-backed zarr arrays in a temporary folder beside the outputs.

The label images are then written as tiled, zlib-compressed TIFFs strip by strip, and
the per-object table is summed block by block
(:func:`napari_segkit.measure_blocks.blockwise_object_table`). Memory is bounded by the
block size (at most :data:`napari_segkit.prediction.INSTANCE_BLOCK` a side, smaller when
the memory budget is small), never by the image: the full 4 x H x W probabilities are
never held. Objects must be smaller than about twice the margin (default: a quarter
tile, at least 32 px), as in the dask path.

:func:`blockwise_reason` says when the CLI / :func:`napari_segkit.workflows.predict_folder`
take this path: planes above :data:`BLOCKWISE_MIN_PIXELS`, or images whose in-memory
prediction (:data:`napari_segkit.memory_limits.PREDICT_BYTES_PER_PIXEL` per pixel) would
not fit half of the available memory.
"""

from __future__ import annotations

import functools
import math
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._common import Cancelled, ProgressCallback, StopFlag, is_stopped, label_dtype
from .memory_limits import PREDICT_BYTES_PER_PIXEL, format_bytes, memory_budget
from .model_io import as_model
from .normalization import FittedNormalization, Normalization, subsample_planes
from .postprocess import semantic_from_probabilities
from .prediction import INSTANCE_BLOCK, block_margin, owned_instances, predict_probabilities
from .tiling import Block, BlockGrid, as_pair, count_tiles, round_up

__all__ = [
    "BLOCKWISE_MIN_PIXELS",
    "block_size_for",
    "blockwise_reason",
    "predict_file_blockwise",
]

#: Planes with more pixels than this are predicted block by block by the CLI even when
#: they would fit in memory (an in-memory 4096^2 prediction already holds about 0.9 GB).
BLOCKWISE_MIN_PIXELS = 4096 * 4096
#: Edge of the tiles of the label TIFFs written (and of the zarr chunks behind them).
OUTPUT_TILE = 512


def blockwise_reason(shape: tuple[int, ...], dtype: Any, budget: int | None = None) -> str | None:
    """Why an image of ``shape`` / ``dtype`` goes block by block, or None when it does not.

    ``shape`` as stored: (H, W), (H, W, C) or (Z, Y, X[, C]); planes are the last two
    spatial axes.
    """
    dtype = np.dtype(dtype)
    spatial = shape[:-1] if len(shape) >= 3 and shape[-1] in (3, 4) else shape
    pixels = math.prod(spatial)
    plane = math.prod(spatial[-2:])
    need = pixels * (dtype.itemsize + PREDICT_BYTES_PER_PIXEL)
    budget = memory_budget() if budget is None else int(budget)
    if need > budget:
        return (f"predicting it in memory needs about {format_bytes(need)}, more than the "
                f"{format_bytes(budget)} budget (half of the free memory)")
    if plane > BLOCKWISE_MIN_PIXELS:
        return f"its plane is larger than {math.isqrt(BLOCKWISE_MIN_PIXELS)}^2 pixels"
    return None


def block_size_for(context: int, budget: int | None = None, largest: int = INSTANCE_BLOCK) -> int:
    """The largest block edge (a multiple of 256, from 256 to ``largest``) whose region
    (the block plus ``context`` pixels on every side) fits ``budget`` at
    :data:`~napari_segkit.memory_limits.PREDICT_BYTES_PER_PIXEL`."""
    budget = memory_budget() if budget is None else int(budget)
    side = math.isqrt(max(0, budget // PREDICT_BYTES_PER_PIXEL)) - 2 * context
    return int(min(largest, max(256, side // 256 * 256)))


def predict_file_blockwise(
    model: Any,
    source: str | os.PathLike,
    instances_path: str | os.PathLike,
    semantic_path: str | os.PathLike,
    *,
    tile_size: int | tuple[int, int] = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Any = None,
    tta: bool = False,
    block: int | None = None,
    dask_overlap: int | None = None,
    progress: ProgressCallback | None = None,
    stop: StopFlag = None,
    work_dir: str | os.PathLike | None = None,
    client: Any = None,
    **postprocess: Any,
) -> pd.DataFrame:
    """Predict a 2-D image file block by block into ``instances_path`` and
    ``semantic_path`` (tiled TIFFs); returns the per-object table.

    Parameters
    ----------
    model
        A :class:`~napari_segkit.model_io.SegModel` or a model file path.
    source
        A 2-D grayscale or colour TIFF, or an OME-Zarr / zarr image (see
        :func:`napari_segkit.io_zarr.open_image`).
    tile_size, overlap, batch_size, device, tta
        As in :func:`napari_segkit.prediction.predict_probabilities`.
    block
        Block edge in pixels; default :func:`block_size_for` the memory budget.
    dask_overlap
        Margin of each block in pixels (default a quarter tile, at least 32).
    progress
        ``progress(done_tiles, total_tiles)`` over the whole image.
    stop
        Callable or ``threading.Event``; raises
        :class:`~napari_segkit.prediction.PredictionCancelled` when set.
    work_dir
        Where the temporary zarr arrays go (default: beside ``instances_path``).
    client
        A :class:`distributed.Client` (see :func:`napari_segkit.schedulers.open_client`):
        the blocks are predicted on its workers (the model is sent to each worker once,
        each worker reads its blocks from ``source``, which must be a path the workers
        see); progress then advances a block at a time. None: here, one block after
        another. The results are the same either way.
    postprocess
        Keyword arguments of :func:`napari_segkit.postprocess.instances_from_probabilities`.

    Returns
    -------
    pandas.DataFrame
        One row per object (labels 1..N), the columns of
        :func:`napari_segkit.measure_blocks.blockwise_object_table`.
    """
    import dask
    import zarr

    from .io_zarr import open_image
    from .measure_blocks import blockwise_object_table

    model = as_model(model)
    cfg = model.config
    image = open_image(source, max_in_memory_pixels=0)
    if image.axes not in ("yx", "yxc"):
        raise ValueError(
            f"{str(source)!r} has axes {image.axes!r} ({tuple(image.data.shape)}): block-wise "
            "prediction from a file takes 2-D images; predict a large stack with "
            "napari_segkit.predict(model, open_image(path).data) (dask) and write the labels "
            "with napari_segkit.io_zarr_write"
        )
    data = image.data
    height, width = (int(n) for n in data.shape[:2])
    margin = block_margin(tile_size, dask_overlap)
    context = margin  # network input beyond the post-processed region
    block = block_size_for(margin + context) if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be >= 1 pixel, got {block}")
    rgb = image.axes == "yxc"
    norm = Normalization.from_dict(model.normalization).fit(
        subsample_planes(data[None]), cfg.in_channels, rgb)
    grid = BlockGrid.regular((height, width), block, margin)
    outer = BlockGrid.regular((height, width), block, margin + context)
    divisor = getattr(cfg, "divisor", 2**cfg.depth)
    th, tw = as_pair(tile_size, "tile_size")
    tile = (round_up(th, divisor), round_up(tw, divisor))
    counts = [count_tiles(_shape(o.region), tile_size=tile, overlap=overlap, divisor=divisor)
              for o in outer.blocks]
    k = cfg.n_classes
    settings = {"tile_size": tile_size, "overlap": overlap, "batch_size": batch_size,
                "device": device, "tta": tta, "stop": stop if client is None else None}
    instances_path, semantic_path = Path(instances_path), Path(semantic_path)
    work = Path(tempfile.mkdtemp(prefix=".segkit-blocks-",
                                 dir=work_dir or instances_path.parent))
    job = BlockJob(norm, k, settings, dict(postprocess))
    try:
        chunks = (OUTPUT_TILE, OUTPUT_TILE)
        labels = zarr.open_array(work / "instances.zarr", mode="w", shape=(height, width),
                                 chunks=chunks, dtype=np.uint32, fill_value=0)
        semantic = zarr.open_array(work / "semantic.zarr", mode="w", shape=(height, width),
                                   chunks=chunks, dtype=np.uint8, fill_value=0)
        n_objects = 0
        pairs = list(zip(grid.blocks, outer.blocks, strict=True))
        if client is None:
            results = _blocks_here(model, job, data, pairs, counts, progress)
        else:
            results = _blocks_on_cluster(client, model, job, _source_key(source), pairs,
                                         counts, progress, stop)
        for b, (core_semantic, owned) in zip(grid.blocks, results, strict=True):
            semantic[b.core] = core_semantic
            if owned.any():
                current = labels[b.region]
                mask = owned > 0
                current[mask] = owned[mask].astype(np.uint32) + np.uint32(n_objects)
                labels[b.region] = current
                n_objects += int(owned.max())
        _write_tiff(instances_path, labels, label_dtype(n_objects))
        _write_tiff(semantic_path, semantic, np.uint8)
        import dask.array as da

        with dask.config.set(scheduler="synchronous"):  # one block in memory at a time
            table = blockwise_object_table(da.from_zarr(labels, chunks=(block, block)), data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return table


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


def _blocks_here(model: Any, job: BlockJob, data: Any, pairs: list, counts: list[int],
                 progress: ProgressCallback | None) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Block results in order, computed in this process (tile progress)."""
    total, done = sum(counts), 0
    for (b, o), n_tiles in zip(pairs, counts, strict=True):
        sub = None
        if progress is not None:
            def sub(tiles: int, _total: int, offset: int = done) -> None:
                progress(offset + tiles, total)
        yield job.run(model, _read_region(data, o), b, o, sub)
        done += n_tiles


def _read_region(data: Any, o: Block) -> np.ndarray:
    part = data[(*o.region,)]
    if hasattr(part, "compute"):  # dask: read here, whatever the default scheduler
        return np.asarray(part.compute(scheduler="synchronous"))
    return np.asarray(part)


def _source_key(source: Any) -> tuple[str, int]:
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
    return job.run(model, _read_region(_worker_image(*source), o), b, o)


def _blocks_on_cluster(client: Any, model: Any, job: BlockJob, source: tuple[str, int],
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


def _shape(region: tuple[slice, slice]) -> tuple[int, int]:
    return tuple(s.stop - s.start for s in region)  # type: ignore[return-value]


def _write_tiff(path: Path, array: Any, dtype: Any) -> None:
    """Write a 2-D (zarr) array as a tiled zlib TIFF, one row of tiles at a time."""
    import tifffile

    height, width = array.shape
    t = OUTPUT_TILE

    def tiles():
        for y in range(0, height, t):
            strip = np.asarray(array[y:y + t]).astype(dtype, copy=False)
            for x in range(0, width, t):
                part = strip[:, x:x + t]
                if part.shape != (t, t):
                    part = np.pad(part, ((0, t - part.shape[0]), (0, t - part.shape[1])))
                yield np.ascontiguousarray(part)

    tifffile.imwrite(path, tiles(), shape=(height, width), dtype=np.dtype(dtype),
                     tile=(t, t), compression="zlib")

