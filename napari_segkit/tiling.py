"""Sliding-window prediction and block geometry, model-agnostic (numpy only, no torch).

``predict_tiled(forward, array, n_out)``
    Sliding window over a (C, H, W) float32 array. Tiles are evenly spaced (nnU-Net
    style: ``ceil((L - tile) / (tile * (1 - overlap))) + 1`` positions per axis, spread
    evenly, the last flush with the edge), weighted by a Gaussian importance map
    (sigma = tile / 8, clipped to a small minimum so borders still count) and normalised
    by the summed weights (MONAI ``sliding_window_inference`` style). Tiles are run in
    batches; only one batch of tiles exists at a time, so memory is the output size plus
    a few tiles.

    *Separable weights*: the tile grid is a Cartesian product and the importance map is
    an outer product of two 1-D Gaussians, so the summed weight map is itself an outer
    product of two 1-D profiles. No (H, W) weight accumulator is stored; the output is
    normalised row block by row block in place.
:class:`BlockGrid` / :class:`Block`
    A grid of blocks over an image's last two axes (dask chunks, or fixed-size blocks):
    each block's core, its region (the core plus a margin of context), where regions
    meet cores, and which objects a block owns (those whose centre lies in its core).
    Dask prediction, dask instances and block-wise numpy instances all use it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ._common import Cancelled, ProgressCallback, StopFlag, is_stopped

__all__ = [
    "MIN_WEIGHT",
    "Block",
    "BlockGrid",
    "as_pair",
    "count_tiles",
    "gaussian_profile",
    "predict_tiled",
    "round_up",
    "tile_positions",
]

#: Minimum of the 1-D Gaussian importance profile (relative to its peak of 1).
MIN_WEIGHT = 1e-3


def tile_positions(length: int, tile: int, overlap: float) -> list[int]:
    """Start offsets of evenly spaced tiles covering ``length`` (nnU-Net style).

    The first tile starts at 0, the last ends at ``length``; neighbours overlap by
    at least ``overlap * tile`` pixels.
    """
    if tile >= length:
        return [0]
    target_step = max(1.0, tile * (1.0 - overlap))
    n_steps = int(math.ceil((length - tile) / target_step)) + 1
    step = (length - tile) / (n_steps - 1)
    return [int(round(step * i)) for i in range(n_steps)]


def gaussian_profile(tile: int, sigma_scale: float = 1.0 / 8.0) -> np.ndarray:
    """1-D Gaussian importance profile of length ``tile``: peak 1 in the middle,
    clipped below at :data:`MIN_WEIGHT`."""
    sigma = max(tile * sigma_scale, 1e-6)
    x = np.arange(tile, dtype=np.float64) - (tile - 1) / 2.0
    g = np.exp(-0.5 * (x / sigma) ** 2)
    g /= g.max()
    return np.maximum(g, MIN_WEIGHT).astype(np.float32)


def _axis_profiles(
    starts: list[int], tile: int, length: int
) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Weight profile of each tile along one axis, and their sum over the axis.

    A Gaussian, except that the first tile is flat (1) from the image start to its
    centre and the last tile from its centre to the image end: at an image border no
    tile has more context, so the border tile should win over a neighbour's edge.
    """
    g = gaussian_profile(tile)
    half = tile // 2
    profiles: dict[int, np.ndarray] = {}
    for i, s in enumerate(starts):
        p = g.copy()
        if i == 0:
            p[:half] = 1.0
        if i == len(starts) - 1:
            p[half:] = 1.0
        profiles[s] = p
    total = np.zeros(length, np.float32)
    for s, p in profiles.items():
        total[s : s + tile] += p
    return profiles, total


def as_pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    if np.ndim(value) == 0:
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)  # type: ignore[union-attr]
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair  # type: ignore[return-value]


def round_up(n: int, divisor: int) -> int:
    return int(math.ceil(n / divisor)) * divisor


def _pad_to(array: np.ndarray, height: int, width: int) -> np.ndarray:
    """Reflect-pad a (C, h, w) array at the bottom/right to at least (height, width)."""
    _, h, w = array.shape
    pad_h, pad_w = max(0, height - h), max(0, width - w)
    if pad_h == 0 and pad_w == 0:
        return array
    mode = "reflect" if min(h, w) > 1 else "edge"
    return np.pad(array, ((0, 0), (0, pad_h), (0, pad_w)), mode=mode)


def count_tiles(
    shape: tuple[int, int],
    *,
    tile_size: int | tuple[int, int] = 256,
    overlap: float = 0.25,
    divisor: int = 1,
) -> int:
    """Number of tiles :func:`predict_tiled` runs for a (H, W) image."""
    th, tw, hp, wp = _tile_geometry(shape, tile_size, divisor)
    return len(tile_positions(hp, th, overlap)) * len(tile_positions(wp, tw, overlap))


def _tile_geometry(
    shape: tuple[int, int], tile_size: int | tuple[int, int], divisor: int
) -> tuple[int, int, int, int]:
    """Tile (th, tw) and padded image size (hp, wp) for an (H, W) image.

    A tile never exceeds the image rounded up to ``divisor`` (small images are not
    padded all the way to a large tile); images smaller than the tile are padded.
    """
    h, w = shape
    th, tw = as_pair(tile_size, "tile_size")
    if th % divisor or tw % divisor:
        raise ValueError(
            f"tile_size {tile_size} must be a multiple of {divisor} for this model; "
            f"use e.g. {round_up(th, divisor)}"
        )
    th, tw = min(th, round_up(h, divisor)), min(tw, round_up(w, divisor))
    return th, tw, max(h, th), max(w, tw)


def predict_tiled(
    forward: Callable[[np.ndarray], np.ndarray],
    array: np.ndarray,
    n_out: int,
    *,
    tile_size: int | tuple[int, int] = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    divisor: int = 1,
    progress: ProgressCallback | None = None,
    stop: StopFlag = None,
    out: np.ndarray | None = None,
    progress_offset: tuple[int, int] | None = None,
) -> np.ndarray:
    """Run ``forward`` over a (C, H, W) array in overlapping tiles and blend the results.

    Parameters
    ----------
    forward
        Callable mapping a float32 batch (N, C, th, tw) to (N, n_out, th, tw) numpy.
        Whatever it returns is blended (use probabilities, see the module notes).
    array
        float32 (C, H, W) input.
    n_out
        Number of output channels of ``forward``.
    tile_size
        Tile edge length (int) or (height, width); must be a multiple of ``divisor``.
        Images smaller than a tile use a smaller tile (rounded up to ``divisor``) and
        are reflect-padded, then cropped back.
    overlap
        Minimum overlap of neighbouring tiles as a fraction of the tile, in [0, 1).
    batch_size
        Tiles per call of ``forward``.
    divisor
        The network needs tile sides divisible by this (2 ** depth for a UNet).
    progress
        Called as ``progress(done_tiles, total_tiles)`` after each batch.
    stop
        A callable returning True, or a ``threading.Event``; checked before every batch.
        When set, :class:`~napari_segkit._common.Cancelled` is raised.
    out
        Optional preallocated float32 (n_out, H, W) array to write into.
    progress_offset
        ``(tiles done before, total tiles)`` when this call is one of several (the planes
        of a stack) whose progress is reported as one.

    Returns
    -------
    numpy.ndarray
        float32 (n_out, H, W).
    """
    array = np.asarray(array)
    if array.ndim != 3:
        raise ValueError(f"predict_tiled expects a (C, H, W) array, got shape {array.shape}")
    if not 0.0 <= overlap < 1.0:
        raise ValueError(f"overlap must be in [0, 1), got {overlap}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1, got {batch_size}")
    c, h, w = array.shape
    th, tw, hp, wp = _tile_geometry((h, w), tile_size, divisor)
    padded = _pad_to(array, hp, wp)

    ys = tile_positions(hp, th, overlap)
    xs = tile_positions(wp, tw, overlap)
    # per-axis profiles (one per tile position); the importance map of the tile at
    # (y, x) is outer(py[y], px[x]), so the summed weights are separable too:
    # W(y, x) = wy(y) * wx(x)
    py, wy = _axis_profiles(ys, th, hp)
    px, wx = _axis_profiles(xs, tw, wp)

    if out is None:
        acc = np.zeros((n_out, hp, wp), np.float32)
    else:
        if out.shape != (n_out, h, w) or out.dtype != np.float32:
            raise ValueError(f"out must be float32 {(n_out, h, w)}, got {out.dtype} {out.shape}")
        out[...] = 0
        acc = out if (hp, wp) == (h, w) else np.zeros((n_out, hp, wp), np.float32)

    positions = [(y, x) for y in ys for x in xs]
    done0, total = progress_offset or (0, len(positions))
    buffer = np.empty((min(batch_size, len(positions)), c, th, tw), np.float32)
    for start in range(0, len(positions), batch_size):
        if is_stopped(stop):
            raise Cancelled("prediction was stopped")
        batch = positions[start : start + batch_size]
        for i, (y, x) in enumerate(batch):
            buffer[i] = padded[:, y : y + th, x : x + tw]
        result = np.asarray(forward(buffer[: len(batch)]))
        if result.shape != (len(batch), n_out, th, tw):
            raise ValueError(
                f"forward returned shape {result.shape}, expected {(len(batch), n_out, th, tw)}"
            )
        for i, (y, x) in enumerate(batch):
            acc[:, y : y + th, x : x + tw] += result[i] * np.outer(py[y], px[x])
        if progress is not None:
            progress(done0 + start + len(batch), total)

    # normalise in row blocks (no full-size temporaries)
    rows = max(1, (1 << 22) // max(1, wp * n_out))
    inv_wx = (1.0 / wx).astype(np.float32)
    for r0 in range(0, hp, rows):
        r1 = min(hp, r0 + rows)
        acc[:, r0:r1] *= (1.0 / wy[r0:r1])[None, :, None] * inv_wx[None, None, :]
    if acc is out:
        return out
    if out is not None:
        out[...] = acc[:, :h, :w]
        return out
    return acc if (hp, wp) == (h, w) else np.ascontiguousarray(acc[:, :h, :w])


# ---------------------------------------------------------------------------
# blocks
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """One block of a :class:`BlockGrid`, over an image's last two axes (y, x).

    ``core``: the pixels the block is responsible for; ``region``: the core grown by the
    grid's margin on every side, clipped to the image (the context it is computed on).
    Both are ``(y slice, x slice)`` in image coordinates; leading axes (channels, planes)
    are always taken whole.
    """

    index: int  # row-major position in the grid
    row: int
    col: int
    core: tuple[slice, slice]
    region: tuple[slice, slice]

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width) of the core."""
        return tuple(s.stop - s.start for s in self.core)  # type: ignore[return-value]

    @property
    def core_in_region(self) -> tuple[slice, slice]:
        """The core, in coordinates of the region (to crop a region's result to its core)."""
        return tuple(  # type: ignore[return-value]
            slice(c.start - r.start, c.stop - r.start)
            for c, r in zip(self.core, self.region, strict=True)
        )

    def reach_into(self, other: Block) -> tuple[tuple[slice, ...], tuple[slice, ...]] | None:
        """Where this block's region overlaps ``other``'s core: (slices into this region,
        slices into the other core), or None when they do not meet."""
        src, dst = [], []
        for r, c in zip(self.region, other.core, strict=True):
            lo, hi = max(r.start, c.start), min(r.stop, c.stop)
            if hi <= lo:
                return None
            src.append(slice(lo - r.start, hi - r.start))
            dst.append(slice(lo - c.start, hi - c.start))
        return tuple(src), tuple(dst)

    def keep_owned(self, labels: np.ndarray) -> np.ndarray:
        """The objects of this block's region ``labels`` (ids 1..N, as post-processing gives
        them) that the block owns, renumbered 1..n (uint32); others become 0.

        A block owns the objects whose centre (mean pixel position, rounded) lies in its
        core, so each object of an image belongs to exactly one block.
        """
        labels = labels.astype(np.int64)
        n = int(labels.max())
        owned = np.zeros(n + 1, np.int64)
        if n:
            centres = np.rint(ndi.center_of_mass(np.ones_like(labels), labels, range(1, n + 1)))
            centres = centres.reshape(n, labels.ndim)
            inside = np.ones(n, bool)
            for axis, sl in zip((-2, -1), self.core_in_region, strict=True):
                inside &= (centres[:, axis] >= sl.start) & (centres[:, axis] < sl.stop)
            owned[1:][inside] = np.arange(1, int(inside.sum()) + 1)
        return owned[labels].astype(np.uint32)


class BlockGrid:
    """Blocks over a (height, width) image whose cores tile it, with a ``margin`` of context.

    ``y_edges`` / ``x_edges`` are the block boundaries along each axis, from 0 to the
    image size (e.g. the cumulated chunk sizes of a dask array).
    """

    def __init__(self, y_edges: Sequence[int], x_edges: Sequence[int], margin: int) -> None:
        if margin < 0:
            raise ValueError(f"the block margin must be >= 0, got {margin}")
        self.y_edges = [int(e) for e in y_edges]
        self.x_edges = [int(e) for e in x_edges]
        self.margin = int(margin)
        self.n_rows, self.n_cols = len(self.y_edges) - 1, len(self.x_edges) - 1
        height, width = self.y_edges[-1], self.x_edges[-1]
        self.blocks: list[Block] = []
        for i, (y0, y1) in enumerate(zip(self.y_edges[:-1], self.y_edges[1:], strict=True)):
            for j, (x0, x1) in enumerate(zip(self.x_edges[:-1], self.x_edges[1:], strict=True)):
                region = (slice(max(0, y0 - margin), min(height, y1 + margin)),
                          slice(max(0, x0 - margin), min(width, x1 + margin)))
                self.blocks.append(Block(i * self.n_cols + j, i, j,
                                         (slice(y0, y1), slice(x0, x1)), region))

    @classmethod
    def regular(cls, shape: tuple[int, int], block: int, margin: int) -> BlockGrid:
        """Blocks of ``block`` pixels a side (smaller at the bottom / right edge)."""
        height, width = shape
        return cls([*range(0, height, block), height], [*range(0, width, block), width], margin)

    @classmethod
    def from_chunks(cls, y_chunks: Sequence[int], x_chunks: Sequence[int], margin: int) -> BlockGrid:
        """One block per chunk (dask ``array.chunks`` along y and x)."""
        return cls(np.cumsum((0, *y_chunks)), np.cumsum((0, *x_chunks)), margin)

    def rows(self) -> list[list[Block]]:
        """The blocks row by row (as ``dask.array.block`` wants them)."""
        return [self.blocks[i * self.n_cols:(i + 1) * self.n_cols] for i in range(self.n_rows)]

    def neighbours(self, block: Block) -> list[Block]:
        """Blocks whose region may reach into ``block``'s core (itself included), row-major."""
        reach_y = int(math.ceil(self.margin / max(1, min(np.diff(self.y_edges)))))
        reach_x = int(math.ceil(self.margin / max(1, min(np.diff(self.x_edges)))))
        return [self.blocks[a * self.n_cols + b]
                for a in range(max(0, block.row - reach_y), min(self.n_rows, block.row + reach_y + 1))
                for b in range(max(0, block.col - reach_x), min(self.n_cols, block.col + reach_x + 1))]
