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

The label images are then written from those arrays chunk by chunk
(:func:`napari_segkit.label_outputs.write_label_image`): as tiled, zlib-compressed TIFFs
strip by strip, as standalone multiscale OME-Zarr label images with the source's scale
and units, or into the source OME-Zarr image's ``labels/`` group; the per-object table is summed block by block
(:func:`napari_segkit.measure_blocks.blockwise_object_table`). Memory is bounded by the
block size (at most :data:`FILE_BLOCK` a side, smaller when the memory budget is small), never by the image: the full 4 x H x W probabilities are
never held. Objects must be smaller than about twice the margin (default: a quarter
tile, at least 32 px), as in the dask path.

:func:`blockwise_reason` says when the CLI / :func:`napari_segkit.workflows.predict_folder`
take this path: planes above :data:`BLOCKWISE_MIN_PIXELS`, or images whose in-memory
prediction (:data:`napari_segkit.memory_limits.PREDICT_BYTES_PER_PIXEL` per pixel) would
not fit half of the available memory.
"""

from __future__ import annotations

import math
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._common import ProgressCallback, StopFlag, label_dtype
from .block_jobs import BlockJob, blocks_here, blocks_on_cluster, source_key
from .label_outputs import OUTPUT_TILE, check_labels_into_source, path_format, write_label_image
from .memory_limits import PREDICT_BYTES_PER_PIXEL, format_bytes, memory_budget
from .model_io import as_model
from .normalization import Normalization, subsample_planes
from .prediction import INSTANCE_BLOCK, block_margin
from .tiling import BlockGrid, as_pair, count_tiles, round_up

__all__ = [
    "BLOCKWISE_MIN_PIXELS",
    "FILE_BLOCK",
    "BlockLabels",
    "predict_blocks_to_zarr",
    "block_size_for",
    "blockwise_reason",
    "predict_file_blockwise",
]

#: Planes with more pixels than this are predicted block by block by the CLI even when
#: they would fit in memory (an in-memory 4096^2 prediction already holds about 0.9 GB).
BLOCKWISE_MIN_PIXELS = 4096 * 4096
#: Largest block edge of a file predicted block by block (when the memory budget allows:
#: a 4096^2 block plus its context needs about 1 GB). Each block is predicted with 128 px
#: of context on every side: 1.13x the block's pixels at 4096, 1.27x at 2048.
FILE_BLOCK = 4096


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


@dataclass
class BlockLabels:
    """What :func:`predict_blocks_to_zarr` wrote: disk-backed zarr arrays of the whole
    image, the number of objects (labels 1..N) and the block edge used."""

    instances: Any  # zarr.Array, uint32
    semantic: Any  # zarr.Array, uint8
    n_objects: int
    block: int
    class_pixels: np.ndarray  # pixels of each class (semantic label 0..K-1)


def predict_blocks_to_zarr(
    model: Any,
    data: Any,
    work: str | os.PathLike,
    *,
    rgb: bool = False,
    tile_size: int | tuple[int, int] = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Any = None,
    tta: bool = False,
    block: int | None = None,
    dask_overlap: int | None = None,
    progress: ProgressCallback | None = None,
    stop: StopFlag = None,
    client: Any = None,
    source: Any = None,
    **postprocess: Any,
) -> BlockLabels:
    """Predict a 2-D image (numpy, dask or any array that slices) block by block into
    ``work/instances.zarr`` and ``work/semantic.zarr``; the image is only ever read a
    block (plus context) at a time. ``rgb``: ``data`` is (H, W, 3|4). ``client`` /
    ``source``: the blocks run on the workers of a :class:`distributed.Client`, which
    read them from the file ``source``. Other parameters as in
    :func:`predict_file_blockwise`."""
    import zarr

    model = as_model(model)
    cfg = model.config
    height, width = (int(n) for n in data.shape[:2])
    margin = block_margin(tile_size, dask_overlap)
    context = margin  # network input beyond the post-processed region
    block = block_size_for(margin + context, largest=FILE_BLOCK) if block is None else int(block)
    if block < 1:
        raise ValueError(f"block must be >= 1 pixel, got {block}")
    norm = Normalization.from_dict(model.normalization).fit(
        subsample_planes(data[None]), cfg.in_channels, rgb)
    grid = BlockGrid.regular((height, width), block, margin)
    outer = BlockGrid.regular((height, width), block, margin + context)
    divisor = getattr(cfg, "divisor", 2**cfg.depth)
    th, tw = as_pair(tile_size, "tile_size")
    tile = (round_up(th, divisor), round_up(tw, divisor))
    counts = [count_tiles(_shape(o.region), tile_size=tile, overlap=overlap, divisor=divisor)
              for o in outer.blocks]
    settings = {"tile_size": tile_size, "overlap": overlap, "batch_size": batch_size,
                "device": device, "tta": tta, "stop": stop if client is None else None}
    job = BlockJob(norm, cfg.n_classes, settings, dict(postprocess))
    work = Path(work)
    chunks = (OUTPUT_TILE, OUTPUT_TILE)
    labels = zarr.open_array(work / "instances.zarr", mode="w", shape=(height, width),
                             chunks=chunks, dtype=np.uint32, fill_value=0)
    semantic = zarr.open_array(work / "semantic.zarr", mode="w", shape=(height, width),
                               chunks=chunks, dtype=np.uint8, fill_value=0)
    n_objects = 0
    class_pixels = np.zeros(cfg.n_classes, np.int64)
    pairs = list(zip(grid.blocks, outer.blocks, strict=True))
    if client is None:
        results = blocks_here(model, job, data, pairs, counts, progress)
    else:
        results = blocks_on_cluster(client, model, job, source_key(source), pairs, counts,
                                    progress, stop)
    for b, (core_semantic, owned) in zip(grid.blocks, results, strict=True):
        semantic[b.core] = core_semantic
        class_pixels += np.bincount(core_semantic.ravel(), minlength=cfg.n_classes)[:cfg.n_classes]
        if owned.any():
            current = labels[b.region]
            mask = owned > 0
            current[mask] = owned[mask].astype(np.uint32) + np.uint32(n_objects)
            labels[b.region] = current
            n_objects += int(owned.max())
    return BlockLabels(labels, semantic, n_objects, block, class_pixels)


def predict_file_blockwise(
    model: Any,
    source: str | os.PathLike,
    instances_path: str | os.PathLike | None = None,
    semantic_path: str | os.PathLike | None = None,
    *,
    labels_into_source: bool = False,
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
    ``semantic_path`` (or into the source's ``labels/`` group); returns the per-object
    table.

    Parameters
    ----------
    model
        A :class:`~napari_segkit.model_io.SegModel` or a model file path.
    source
        A 2-D grayscale or colour TIFF, or an OME-Zarr / zarr image (see
        :func:`napari_segkit.io_zarr.open_image`).
    instances_path, semantic_path
        The label images to write; the suffix says the format: ``.tif`` a tiled zlib
        TIFF, ``.zarr`` a standalone multiscale OME-Zarr label image with the source's
        scale, units and zarr format (replaced when it exists). Both are written chunk
        by chunk, never whole in memory. Leave them out with ``labels_into_source``.
    labels_into_source
        Write the labels into the source OME-Zarr image instead, as
        ``<source>/labels/instances`` and ``<source>/labels/semantic`` (multiscale, the
        image's axes, scale and zarr format). ValueError, before any prediction, when
        the source is not an OME-Zarr image, is read-only, or already has labels of
        those names (see :func:`napari_segkit.label_outputs.check_labels_into_source`).
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
        Where the temporary zarr arrays go (default: beside ``instances_path``, or
        beside the source with ``labels_into_source``).
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
    import dask.array as da

    from .io_zarr import open_image
    from .measure_blocks import blockwise_object_table

    if labels_into_source:
        if instances_path is not None or semantic_path is not None:
            raise ValueError("labels_into_source=True writes the labels into the source "
                             "image: leave out instances_path and semantic_path")
        image = check_labels_into_source(source)
        beside = Path(source).parent
    else:
        if instances_path is None or semantic_path is None:
            raise ValueError("give instances_path and semantic_path (.tif or .zarr), or "
                             "labels_into_source=True")
        for path in (instances_path, semantic_path):
            path_format(path)  # a bad suffix fails before any work
        image = open_image(source, max_in_memory_pixels=0)
        beside = Path(instances_path).parent
    if image.axes not in ("yx", "yxc"):
        raise ValueError(
            f"{str(source)!r} has axes {image.axes!r} ({tuple(image.data.shape)}): block-wise "
            "prediction from a file takes 2-D images; predict a large stack with "
            "napari_segkit.predict(model, open_image(path).data) (dask) and write the labels "
            "with napari_segkit.io_zarr_write"
        )
    work = Path(tempfile.mkdtemp(prefix=".segkit-blocks-", dir=work_dir or beside))
    try:
        done = predict_blocks_to_zarr(
            model, image.data, work, rgb=image.axes == "yxc", tile_size=tile_size,
            overlap=overlap, batch_size=batch_size, device=device, tta=tta, block=block,
            dask_overlap=dask_overlap, progress=progress, stop=stop, client=client,
            source=source, **postprocess)
        _write_labels(done, image, instances_path, semantic_path)
        with dask.config.set(scheduler="synchronous"):  # one block in memory at a time
            table = blockwise_object_table(
                da.from_zarr(done.instances, chunks=(done.block, done.block)), image.data)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return table


def _shape(region: tuple[slice, slice]) -> tuple[int, int]:
    return tuple(s.stop - s.start for s in region)  # type: ignore[return-value]


def _write_labels(done: BlockLabels, image: Any, instances_path: Any, semantic_path: Any,
                  ) -> None:
    """The labels of :func:`predict_blocks_to_zarr` streamed from its zarr arrays to the
    label files (TIFF or OME-Zarr by suffix), or into ``image``'s ``labels/`` group when
    no paths are given. Local threads, a few chunks in memory, whatever the scheduler."""
    import dask
    import dask.array as da

    from .io_zarr_write import add_labels

    instances_dtype = label_dtype(done.n_objects)
    with dask.config.set(scheduler="threads"):  # the temporary arrays are on this machine
        if instances_path is None:
            read = (2 * OUTPUT_TILE, 2 * OUTPUT_TILE)
            add_labels(image, {
                "instances": da.from_zarr(done.instances, chunks=read).astype(instances_dtype),
                "semantic": da.from_zarr(done.semantic, chunks=read)})
            return
        geometry = {"scale": image.scale, "units": image.units, "translate": image.translate,
                    "zarr_format": image.zarr_format or 2}
        write_label_image(instances_path, done.instances, dtype=instances_dtype, **geometry)
        write_label_image(semantic_path, done.semantic, dtype=np.uint8, **geometry)
