"""OME-NGFF multiscale images and label images written with zarr, block by block.

zarr format 2 -> NGFF 0.4 (``.zattrs``), zarr format 3 -> NGFF 0.5 (``zarr.json``, ``ome``
namespace). Level 0 is stored from a dask array chunk by chunk; each coarser level is
computed from the level just written (read back lazily from disk), halving y and x
(mode of each 2 x 2 block for labels, mean for images), so the source graph -- often
a prediction -- runs once and memory stays at a few chunks. No Qt, no napari imports.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

#: Default chunk edge (y, x) of 2-D planes and of volumes; z chunks hold 16 planes.
CHUNK_2D = 1024
CHUNK_3D = 512
CHUNK_Z = 16
#: Pyramids get levels until the longer side of a plane is at most this.
MIN_LEVEL_SIDE = 1024

ProgressCallback = Callable[[int, int], Any]


def ngff_version(zarr_format: int) -> str:
    return "0.4" if zarr_format == 2 else "0.5"


def read_ome_attrs(group: Any) -> dict:
    """The OME-NGFF attributes of a group (``ome`` namespace for zarr v3)."""
    attrs = dict(group.attrs.asdict())
    if group.metadata.zarr_format == 3:
        return dict(attrs.get("ome", {}))
    return attrs


def update_ome_attrs(group: Any, values: dict) -> None:
    if group.metadata.zarr_format == 3:
        ome = dict(group.attrs.asdict().get("ome", {}))
        ome.update(values)
        ome["version"] = "0.5"
        group.attrs.update({"ome": ome})
    else:
        group.attrs.update(values)


def default_chunks(axes: str, shape: Sequence[int]) -> tuple[int, ...]:
    """One chunk per t / c index, 16 z planes, 1024 (2-D) or 512 (3-D) pixels in y and x."""
    edge = CHUNK_3D if "z" in axes else CHUNK_2D
    sizes = {"t": 1, "c": 1, "z": CHUNK_Z, "y": edge, "x": edge}
    return tuple(max(1, min(n, sizes.get(a, 1))) for a, n in zip(axes, shape))


def auto_levels(shape: Sequence[int]) -> int:
    """Number of levels (halving y and x) until the longer side is <= MIN_LEVEL_SIDE."""
    side, levels = max(shape[-2:]), 1
    while side > MIN_LEVEL_SIDE:
        side, levels = (side + 1) // 2, levels + 1
    return levels


def level_shape(shape: Sequence[int], level: int) -> tuple[int, ...]:
    f = 2**level
    return (*shape[:-2], *(-(-n // f) for n in shape[-2:]))


def axes_metadata(axes: str, unit: str | dict | None) -> list[dict]:
    """NGFF axes; ``unit`` is one unit for every space axis or a dict per axis letter."""
    out = []
    for a in axes:
        kind = {"t": "time", "c": "channel"}.get(a, "space")
        entry = {"name": a, "type": kind}
        u = unit.get(a) if isinstance(unit, dict) else unit
        if kind == "space" and u:
            entry["unit"] = u
        out.append(entry)
    return out


def multiscales_metadata(
    axes: str,
    unit: str | dict | None,
    scale: Sequence[float],
    translate: Sequence[float],
    n_levels: int,
    name: str,
    method: str,
    zarr_format: int,
) -> dict:
    """``multiscales`` for levels ``0..n_levels-1`` with paths "0", "1", ...

    Level k has scale ``scale * 2**k`` in y and x and a translation shifted by half of
    the coarser pixel, as a 2 x 2 block's value sits at the block's centre.
    """
    datasets = []
    for k in range(n_levels):
        f = [2**k if i >= len(axes) - 2 else 1 for i in range(len(axes))]
        s = [float(v) * fi for v, fi in zip(scale, f)]
        t = [float(t0) + (fi - 1) / 2 * float(v) for t0, v, fi in zip(translate, scale, f)]
        transforms: list[dict] = [{"type": "scale", "scale": s}]
        if any(t):
            transforms.append({"type": "translation", "translation": t})
        datasets.append({"path": str(k), "coordinateTransformations": transforms})
    ms = {"axes": axes_metadata(axes, unit), "datasets": datasets, "name": name, "type": method}
    if zarr_format == 2:
        ms["version"] = "0.4"
    return {"multiscales": [ms]}


def _compressor(zarr_format: int) -> Any:
    if zarr_format == 2:
        from numcodecs import Blosc

        return Blosc(cname="zstd", clevel=5, shuffle=Blosc.SHUFFLE)
    from zarr.codecs import BloscCodec

    return BloscCodec(cname="zstd", clevel=5, shuffle="shuffle")


def level_array(group: Any, key: str, shape, chunks, dtype, axes: str, keep: bool) -> Any:
    """Array ``key`` of ``group``: the existing one when ``keep`` and it matches, else a new one."""
    fmt = group.metadata.zarr_format
    if keep and key in group:
        old = group[key]
        if tuple(old.shape) == tuple(shape) and np.dtype(old.dtype) == np.dtype(dtype):
            return old
    extra: dict[str, Any] = {}
    if fmt == 2:
        extra["chunk_key_encoding"] = {"name": "v2", "separator": "/"}
    else:
        extra["dimension_names"] = list(axes)
    chunks = tuple(min(c, n) if n else 1 for c, n in zip(chunks, shape))
    return group.create_array(
        key, shape=tuple(shape), chunks=chunks, dtype=dtype, fill_value=0,
        compressors=_compressor(fmt), overwrite=True, **extra,
    )  # fmt: skip


# --------------------------------------------------------------------------- downsampling
def _pad_even(block: np.ndarray) -> np.ndarray:
    pad = [(0, 0)] * (block.ndim - 2) + [(0, block.shape[-2] % 2), (0, block.shape[-1] % 2)]
    return np.pad(block, pad, mode="edge") if any(p[1] for p in pad) else block


def mode_2x2(block: np.ndarray) -> np.ndarray:
    """Labels: the most frequent value of each 2 x 2 block in y, x; objects win ties with 0.

    Among values with equal votes the first (row-major) wins. Works on views of the four
    corners with uint8 vote counts, so its memory is a small multiple of the output's.
    """
    b = _pad_even(block)
    corners = (b[..., 0::2, 0::2], b[..., 0::2, 1::2], b[..., 1::2, 0::2], b[..., 1::2, 1::2])
    best, best_score = None, None
    for i, v in enumerate(corners):
        votes = np.zeros(v.shape, np.uint8)
        for j, w in enumerate(corners):
            if j != i:
                votes += v == w
        score = votes * np.uint8(2) + (v != 0)
        if best is None:
            best, best_score = v.copy(), score
        else:
            better = score > best_score
            best[better] = v[better]
            np.maximum(best_score, score, out=best_score)
    return best


def mean_2x2(block: np.ndarray) -> np.ndarray:
    """Images: the mean of each 2 x 2 block in y, x (rounded for integer types)."""
    b = _pad_even(block).astype(np.float32)
    m = 0.25 * (b[..., 0::2, 0::2] + b[..., 0::2, 1::2] + b[..., 1::2, 0::2] + b[..., 1::2, 1::2])
    if np.issubdtype(block.dtype, np.integer):
        m = np.rint(m)
    return m.astype(block.dtype)


# --------------------------------------------------------------------------- pyramids
@dataclass
class PyramidJob:
    """One multiscale image to write: ``data`` goes to ``region`` (leading axes) of level 0."""

    group: Any
    data: Any  # dask array of the region's shape
    axes: str
    full_shape: tuple[int, ...]
    chunks: tuple[int, ...]
    scale: tuple[float, ...]
    translate: tuple[float, ...]
    unit: str | dict | None
    n_levels: int
    name: str
    method: str  # "mode" (labels) or "mean" (images)
    lead_region: tuple[slice, ...] = ()  # slices of the leading (non y, x) axes
    extra_attrs: dict = field(default_factory=dict)  # e.g. {"image-label": {...}}
    arrays: list = field(default_factory=list)

    def region(self) -> tuple[slice, ...]:
        lead = self.lead_region or tuple(slice(None) for _ in self.full_shape[:-2])
        return (*lead, slice(None), slice(None))


def _aligned(data: Any, chunks: Sequence[int], region: Sequence[slice]) -> Any:
    """Rechunk ``data`` so every dask chunk covers whole zarr chunks (no two tasks share one)."""
    new, changed = [], False
    for sizes, zc, sl in zip(data.chunks, chunks, region):
        start = sl.start or 0
        bounds = np.cumsum((start, *sizes))[1:-1]
        if start % zc == 0 and all(b % zc == 0 for b in bounds):
            new.append(sizes)
        else:
            changed = True
            new.append(max(zc, (max(sizes) // zc) * zc))
    return data.rechunk(tuple(new)) if changed else data


class _TaskProgress:
    """A dask local-scheduler callback that reports finished / total tasks."""

    def __init__(self, progress: ProgressCallback | None) -> None:
        self.progress = progress

    def __enter__(self):
        if self.progress is None:
            return self
        from dask.callbacks import Callback

        report = self.progress

        class _Cb(Callback):
            def _start_state(self, dsk, state):
                self.total = len(state["ready"]) + len(state["waiting"])
                self.done = 0
                report(0, self.total)

            def _posttask(self, key, result, dsk, state, worker_id):
                self.done += 1
                report(self.done, self.total)

        self._cb = _Cb()
        self._cb.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress is not None:
            self._cb.__exit__(*exc)


def write_pyramids(jobs: Sequence[PyramidJob], keep_existing: bool, progress=None) -> None:
    """Write every job's level 0 in one pass (a shared source graph runs once), then levels."""
    import dask.array as da

    for job in jobs:
        job.arrays = [
            level_array(job.group, str(k), level_shape(job.full_shape, k), job.chunks,
                        job.data.dtype, job.axes, keep_existing)
            for k in range(job.n_levels)
        ]  # fmt: skip
    sources = [_aligned(j.data, j.chunks, j.region()) for j in jobs]
    with _TaskProgress(progress):
        da.store(sources, [j.arrays[0] for j in jobs], regions=[j.region() for j in jobs],
                 lock=False)  # fmt: skip
    for k in range(1, max(j.n_levels for j in jobs)):
        todo = [j for j in jobs if j.n_levels > k]
        sources = []
        for j in todo:
            read = tuple(2 * c if i >= len(j.chunks) - 2 else c for i, c in enumerate(j.chunks))
            prev = da.from_zarr(j.arrays[k - 1], chunks=read)[j.region()]
            func = mode_2x2 if j.method == "mode" else mean_2x2
            out_chunks = (*prev.chunks[:-2], *(tuple(-(-c // 2) for c in ch) for ch in prev.chunks[-2:]))
            sources.append(prev.map_blocks(func, chunks=out_chunks, dtype=prev.dtype))
        da.store(sources, [j.arrays[k] for j in todo], regions=[j.region() for j in todo],
                 lock=False)  # fmt: skip
    for job in jobs:
        meta = multiscales_metadata(job.axes, job.unit, job.scale, job.translate, job.n_levels,
                                    job.name, job.method, job.group.metadata.zarr_format)  # fmt: skip
        update_ome_attrs(job.group, {**meta, **job.extra_attrs})


def check_scale_values(values: Sequence[float] | None, n: int, what: str) -> tuple[float, ...]:
    if values is None:
        return (1.0,) * n if what == "scale" else (0.0,) * n
    out = tuple(float(v) for v in values)
    if len(out) != n or not all(math.isfinite(v) for v in out):
        raise ValueError(f"{what} {tuple(values)} must hold {n} finite numbers, one per axis")
    if what == "scale" and not all(v > 0 for v in out):
        raise ValueError(f"scale {out} must be positive pixel sizes")
    return out
