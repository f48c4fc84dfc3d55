"""Instances of numpy probabilities too large for one post-processing pass: block by
block with context, each block keeping the objects whose centre lies in its core (the
rule the dask path and :mod:`napari_segkit.predict_blocks` share). numpy only."""

from __future__ import annotations

from typing import Any

import numpy as np

from ._common import label_dtype
from .instances3d import instances_any
from .tiling import Block, BlockGrid, as_pair

__all__ = ["INSTANCE_BLOCK", "LABEL_STRIDE", "block_margin", "blockwise_instances",
           "instances_of", "owned_instances"]

#: Plane size (pixels a side) above which numpy predictions post-process block by block.
INSTANCE_BLOCK = 2048
#: Dask instance labels are ``block_index * LABEL_STRIDE + local_id``.
LABEL_STRIDE = 1 << 16


def block_margin(tile_size: int | tuple[int, int], dask_overlap: int | None) -> int:
    """Context around a block for instances: ``dask_overlap``, by default a quarter tile
    (at least 32)."""
    th, tw = as_pair(tile_size, "tile_size")
    margin = int(dask_overlap) if dask_overlap is not None else max(32, min(th, tw) // 4)
    if margin < 0:
        raise ValueError(f"dask_overlap must be >= 0, got {dask_overlap}")
    return margin


def instances_of(
    probs: np.ndarray,
    n_classes: int,
    *,
    tile_size: int | tuple[int, int] = 256,
    dask_overlap: int | None = None,
    instance_block: int = INSTANCE_BLOCK,
    **postprocess: Any,
) -> np.ndarray:
    """Instance labels of numpy probabilities, block by block for planes larger than
    ``instance_block`` squared (see :func:`predict`)."""
    if probs.shape[-2] * probs.shape[-1] > instance_block**2:
        margin = block_margin(tile_size, dask_overlap)
        return blockwise_instances(probs, n_classes, instance_block, margin, postprocess)
    return instances_any(probs, n_classes, postprocess)


def blockwise_instances(
    probs: np.ndarray, n_classes: int, block: int, margin: int, postprocess: dict | None = None
) -> np.ndarray:
    """Instances of a large numpy prediction, one block at a time (bounded memory).

    Each block is post-processed with ``margin`` pixels of context and owns the objects
    whose centre lies in its core (the dask path's rule); owned objects are numbered on
    from the previous blocks' and pasted whole into one output array.
    """
    owned = []
    total = 0
    for b in BlockGrid.regular(probs.shape[-2:], block, margin).blocks:
        labels = owned_instances(probs[(..., *b.region)], n_classes, b, postprocess or {})
        owned.append((labels.astype(np.uint16), b.region, total))
        total += int(labels.max())
    out = np.zeros(probs.shape[1:], label_dtype(total))
    for labels, region, offset in owned:
        mask = labels > 0
        target = out[(..., *region)]
        target[mask] = labels[mask].astype(out.dtype) + offset
    return out


def owned_instances(region: np.ndarray, n_classes: int, block: Block, postprocess: dict
                     ) -> np.ndarray:
    """Instance labels of a block's region (probabilities over ``block.region``), keeping
    only the objects the block owns (numbered 1..n)."""
    labels = block.keep_owned(instances_any(region, n_classes, postprocess))
    n = int(labels.max())
    if n >= LABEL_STRIDE:
        raise ValueError(
            f"a dask block holds {n} objects (max {LABEL_STRIDE - 1}); use smaller chunks"
        )
    return labels
