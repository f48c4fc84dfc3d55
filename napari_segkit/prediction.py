"""Tiled prediction with overlap blending, for numpy and dask arrays.

Layers of this module, from the bottom up:

``predict_tiled(forward, array, n_out)``
    Model-agnostic sliding window over a (C, H, W) float32 array. Tiles are evenly
    spaced (nnU-Net style: ``ceil((L - tile) / (tile * (1 - overlap))) + 1`` positions
    per axis, spread evenly, the last flush with the edge), weighted by a Gaussian
    importance map (sigma = tile / 8, clipped to a small minimum so borders still
    count) and normalised by the summed weights (MONAI ``sliding_window_inference``
    style). Tiles are run in batches; only one batch of tiles exists at a time, so
    memory is the output size plus a few tiles.
``predict_probabilities(model, image)``
    SegModel + image (2-D gray, RGB, or a 3-D stack) -> float32 probabilities.
``predict(model, image)``
    -> :class:`Prediction` (probabilities, semantic labels, instance labels); numpy in
    gives numpy out, dask in gives dask out.

Design choices
--------------
* **Blending happens after the activation**: the forward function used by
  :func:`predict_probabilities` returns softmax probabilities for the class channels
  and the sigmoid of the extra (centre) channel, and tiles of *probabilities* are
  blended. A weighted mean of probability vectors is again a probability vector, so
  the blended class channels sum to 1 everywhere, and a single over-confident tile
  cannot dominate the blend through a large logit.
* **Separable weights**: the tile grid is a Cartesian product and the importance map
  is an outer product of two 1-D Gaussians, so the summed weight map is itself an
  outer product of two 1-D profiles. No (H, W) weight accumulator is stored; the
  output is normalised row block by row block in place.
* **3-D stacks** (Z, Y, X) are predicted slice by slice with the intensity
  normalisation computed once over the whole stack; the result is channel-first,
  ``(K, Z, Y, X)``, so post-processing treats 2-D and 3-D alike as ``(K, ...)``.
* **Dask**: see :func:`predict_dask`. Blocks are predicted with a margin of context
  (``dask_overlap``) using normalisation computed once over the whole array, and
  instance labels are made consistent across blocks (each object is owned by the
  block that holds its centre and written whole). All block functions are module
  level and receive the :class:`~napari_segkit.model_io.SegModel` (picklable) or a
  model file path, so graphs run on the synchronous, threaded or distributed
  schedulers.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from .data import check_image

ProgressCallback = Callable[[int, int], Any]
StopFlag = Callable[[], bool] | threading.Event | None

#: Minimum of the 1-D Gaussian importance profile (relative to its peak of 1).
MIN_WEIGHT = 1e-3


class PredictionCancelled(RuntimeError):
    """Raised when a prediction is stopped through its ``stop`` flag."""


Cancelled = PredictionCancelled


# ---------------------------------------------------------------------------
# model-agnostic sliding window
# ---------------------------------------------------------------------------


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


def _is_stopped(stop: StopFlag) -> bool:
    if stop is None:
        return False
    if isinstance(stop, threading.Event) or hasattr(stop, "is_set"):
        return bool(stop.is_set())
    return bool(stop())


def _as_pair(value: int | tuple[int, int], name: str) -> tuple[int, int]:
    if np.ndim(value) == 0:
        pair = (int(value), int(value))
    else:
        pair = tuple(int(v) for v in value)  # type: ignore[union-attr]
        if len(pair) != 2:
            raise ValueError(f"{name} must be an int or a (height, width) pair, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair  # type: ignore[return-value]


def _round_up(n: int, divisor: int) -> int:
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
    th, tw = _as_pair(tile_size, "tile_size")
    if th % divisor or tw % divisor:
        raise ValueError(
            f"tile_size {tile_size} must be a multiple of {divisor} for this model; "
            f"use e.g. {_round_up(th, divisor)}"
        )
    th, tw = min(th, _round_up(h, divisor)), min(tw, _round_up(w, divisor))
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
    _progress_offset: tuple[int, int] | None = None,
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
        When set, :class:`PredictionCancelled` is raised.
    out
        Optional preallocated float32 (n_out, H, W) array to write into.

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
    done0, total = _progress_offset or (0, len(positions))
    buffer = np.empty((min(batch_size, len(positions)), c, th, tw), np.float32)
    for start in range(0, len(positions), batch_size):
        if _is_stopped(stop):
            raise PredictionCancelled("prediction was stopped")
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
# input handling
# ---------------------------------------------------------------------------


def _image_kind(shape: tuple[int, ...]) -> str:
    """'gray' (H, W), 'rgb' (H, W, 3|4), 'stack' (Z, Y, X) or 'rgb_stack' (Z, Y, X, 3|4)."""
    ndim = len(shape)
    if ndim == 2:
        return "gray"
    if ndim == 3 and shape[-1] in (3, 4) and shape[0] > 4:
        return "rgb"
    if ndim == 3:
        return "stack"
    if ndim == 4 and shape[-1] in (3, 4):
        return "rgb_stack"
    raise ValueError(
        f"cannot segment an image of shape {tuple(shape)}: expected (H, W), (H, W, 3), "
        "(Z, Y, X) or (Z, Y, X, 3); select a single time point / channel first"
    )


@dataclass
class FixedNormalization:
    """Intensity normalisation with values computed once (over a whole stack or dask array).

    Applied plane by plane or block by block so that every plane/block sees the same
    mapping as the whole image would. Mirrors :func:`napari_segkit.data.prepare_input`:
    colour images feeding a 1-channel model become luminance, inverted when brightfield;
    the low / high percentiles map to 0 / 1.
    """

    in_channels: int
    rgb: bool
    invert: bool
    low: np.ndarray  # per prepared channel
    high: np.ndarray

    def apply(self, plane: np.ndarray) -> np.ndarray:
        """(H, W) or (H, W, 3|4) plane -> float32 (C, H, W)."""
        from .data import raw_channels, rescale

        x, _ = raw_channels(plane, self.in_channels, self.invert if self.rgb else False)
        return rescale(x, self.low, self.high)


def fit_normalization(
    sample: np.ndarray, in_channels: int, normalization: dict | None, rgb: bool
) -> FixedNormalization:
    """Compute a :class:`FixedNormalization` from ``sample``.

    ``sample`` is a representative (sub-sampled) part of the whole data set as a stack
    of planes (Z, H, W) or (Z, H, W, 3|4).
    """
    from .data import DEFAULT_NORMALIZATION, is_brightfield, percentile_range, raw_channels

    norm = dict(DEFAULT_NORMALIZATION if normalization is None else normalization)
    invert = bool(rgb and in_channels == 1
                  and is_brightfield(sample.reshape(-1, 1, sample.shape[-1])))
    raw = np.concatenate(
        [raw_channels(p, in_channels, invert)[0].reshape(-1, p.shape[0] * p.shape[1])
         for p in sample],
        axis=1,
    )
    if norm.get("method", "percentile") == "none":
        # as prepare_input: the values as they are, inverted luminance shifted to start at 0
        low = raw.min(axis=1) if invert else np.zeros(raw.shape[0])
        return FixedNormalization(in_channels, rgb, invert, low, low + 1.0)
    lo, hi = percentile_range(raw, float(norm.get("low", 1.0)), float(norm.get("high", 99.8)))
    return FixedNormalization(in_channels, rgb, invert, lo, hi)


def _subsample_planes(stack: Any, target: int = 4_000_000) -> np.ndarray:
    """A strided sub-sample of a (Z, H, W[, 3]) numpy or dask stack, about ``target`` pixels."""
    z, h, w = stack.shape[:3]
    step = max(1, int(math.ceil(math.sqrt(z * h * w / target))))
    zstep = max(1, int(math.ceil(z * ((h + step - 1) // step) * ((w + step - 1) // step) / target)))
    sample = stack[::zstep, ::step, ::step]
    if hasattr(sample, "compute"):
        sample = sample.compute()
    return np.asarray(sample)


# ---------------------------------------------------------------------------
# torch
# ---------------------------------------------------------------------------


def resolve_device(device: Any = None) -> Any:
    """``None``/``"auto"`` -> CUDA if available, else Apple MPS, else CPU (see model.select_device)."""
    from .model import select_device

    return select_device(device)


class _TorchForward:
    """numpy batch (N, C, h, w) -> numpy probabilities (N, K + extra, h, w).

    Softmax over the ``n_classes`` class logits, sigmoid on the extra channels; fp16
    autocast on CUDA (activations computed in float32).
    """

    def __init__(self, net: Any, n_classes: int, device: Any, tta: bool = False) -> None:
        self.net = net
        self.n_classes = n_classes
        self.device = device
        self.tta = bool(tta)

    def _probs(self, x):
        import torch

        if self.device.type == "cuda":
            with torch.autocast("cuda", dtype=torch.float16):
                logits = self.net(x)
        else:
            logits = self.net(x)
        logits = logits.float()
        k = self.n_classes
        return torch.cat([torch.softmax(logits[:, :k], dim=1), torch.sigmoid(logits[:, k:])], dim=1)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        import torch

        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        with torch.inference_mode():
            if not self.tta:
                return self._probs(x).cpu().numpy()
            # test-time augmentation: the mean over the 4 mirror images (none, x, y, both)
            acc = None
            for dims in ((), (-1,), (-2,), (-2, -1)):
                p = self._probs(x.flip(dims) if dims else x)
                p = p.flip(dims) if dims else p
                acc = p if acc is None else acc.add_(p)
            return acc.mul_(0.25).cpu().numpy()


class _ModelOnDevice:
    """Context manager: model in eval mode on ``device``; restores mode and device after."""

    def __init__(self, net: Any, device: Any) -> None:
        self.net, self.device = net, device

    def __enter__(self) -> Any:
        params = list(self.net.parameters())
        self.old_device = params[0].device if params else None
        self.was_training = self.net.training
        self.net.to(self.device)
        self.net.eval()
        return self.net

    def __exit__(self, *exc: Any) -> None:
        self.net.train(self.was_training)
        if self.old_device is not None and self.old_device != self.device:
            self.net.to(self.old_device)


def _load_if_path(model: Any) -> Any:
    """Accept a SegModel or a model file path (cached per process, for dask workers)."""
    if isinstance(model, (str,)) or hasattr(model, "__fspath__"):
        return load_model_cached(model)
    return model


_MODEL_CACHE: dict[tuple, Any] = {}
_MODEL_CACHE_LOCK = threading.Lock()


def load_model_cached(path: Any) -> Any:
    """The model in ``path``, loaded once per process while the file stays the same.

    Keyed by the resolved path, modification time and size, so a model retrained into
    the same file is loaded again. Only the last model is kept.
    """
    from pathlib import Path

    from .model_io import load_model

    path = Path(path)
    try:
        st = path.stat()
        key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    except OSError:
        return load_model(path)  # raises ModelFileError saying what is wrong
    with _MODEL_CACHE_LOCK:
        if key not in _MODEL_CACHE:
            model = load_model(path)
            _MODEL_CACHE.clear()
            _MODEL_CACHE[key] = model
        return _MODEL_CACHE[key]


# ---------------------------------------------------------------------------
# numpy prediction
# ---------------------------------------------------------------------------


def predict_probabilities(
    model: Any,
    image: np.ndarray,
    *,
    tile_size: int | tuple[int, int] = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Any = None,
    progress: ProgressCallback | None = None,
    stop: StopFlag = None,
    normalization: FixedNormalization | None = None,
    tta: bool = False,
) -> np.ndarray:
    """Per-pixel class probabilities (softmax) and centre probability (sigmoid).

    Parameters
    ----------
    model
        A :class:`~napari_segkit.model_io.SegModel` or the path of a model file.
    image
        Grayscale (H, W), colour (H, W, 3|4), a stack (Z, Y, X) or a colour stack
        (Z, Y, X, 3|4). Stacks are predicted plane by plane with the intensity
        normalisation computed once over the whole stack.
    tile_size, overlap, batch_size
        Sliding-window settings, see :func:`predict_tiled`. Larger tiles and batches are
        faster on a GPU; memory use grows with ``batch_size * tile_size ** 2``.
    device
        ``None`` (auto: CUDA > MPS > CPU), or anything ``torch.device`` accepts.
    progress
        ``progress(done_tiles, total_tiles)``.
    stop
        Callable or ``threading.Event``; when set, :class:`PredictionCancelled` is raised.
    normalization
        Fixed normalisation to use instead of the per-image one (used for dask blocks).
    tta
        Test-time augmentation: average the predictions of the image and its three
        mirror images (4x the compute; smoother, slightly more accurate maps).

    Returns
    -------
    numpy.ndarray
        float32 ``(K + extra, H, W)`` for 2-D input, ``(K + extra, Z, Y, X)`` for stacks.
        Channels: the model's classes in order (default background, interior, boundary),
        then the extra channel(s) (default: centre).
    """
    from .data import prepare_input

    model = _load_if_path(model)
    image = np.asarray(image)
    kind = _image_kind(image.shape)
    check_image(image)
    cfg = model.config
    n_out = cfg.n_classes + cfg.n_extra
    divisor = getattr(cfg, "divisor", 2**cfg.depth)
    th, tw = _as_pair(tile_size, "tile_size")
    tile = (_round_up(th, divisor), _round_up(tw, divisor))
    planes = image[None] if kind in ("gray", "rgb") else image
    rgb = kind in ("rgb", "rgb_stack")
    if normalization is None and kind in ("stack", "rgb_stack"):
        normalization = fit_normalization(
            _subsample_planes(planes), cfg.in_channels, model.normalization, rgb
        )
    h, w = planes.shape[1:3]
    per_plane = count_tiles((h, w), tile_size=tile, overlap=overlap, divisor=divisor)
    total = per_plane * planes.shape[0]
    out = np.empty((n_out, planes.shape[0], h, w), np.float32)
    dev = resolve_device(device)
    with _ModelOnDevice(model.net, dev) as net:
        forward = _TorchForward(net, cfg.n_classes, dev, tta=tta)
        for z, plane in enumerate(planes):
            if normalization is None:
                x = prepare_input(plane, cfg.in_channels, model.normalization)
            else:
                x = normalization.apply(plane)
            predict_tiled(
                forward, x, n_out,
                tile_size=tile, overlap=overlap, batch_size=batch_size, divisor=divisor,
                progress=progress, stop=stop, out=out[:, z],
                _progress_offset=(z * per_plane, total),
            )  # fmt: skip
    return out[:, 0] if kind in ("gray", "rgb") else out


# ---------------------------------------------------------------------------
# full prediction: probabilities -> semantic -> instances
# ---------------------------------------------------------------------------


@dataclass
class Prediction:
    """Result of :func:`predict`.

    Attributes
    ----------
    probabilities : float32 (K + extra, H, W) or (K + extra, Z, Y, X)
        Class probabilities then the extra (centre) channel(s); numpy or dask.
    semantic : uint8 (H, W) / (Z, Y, X)
        Most probable class per pixel.
    instances : uint16/uint32 (H, W) / (Z, Y, X) or None
        Object labels (0 = background). Numpy results are numbered 1..N; dask results
        are unique but not consecutive (see :func:`predict_dask`).
    n_classes : int
        Number of class channels at the front of ``probabilities``.
    """

    probabilities: Any
    semantic: Any
    instances: Any
    n_classes: int

    @property
    def center(self) -> Any:
        """The centre probability map, or None for a model without an extra channel."""
        if self.probabilities.shape[0] <= self.n_classes:
            return None
        return self.probabilities[self.n_classes]


def _instances(probs: np.ndarray, n_classes: int, postprocess: dict) -> np.ndarray:
    from .postprocess import instances_from_probabilities

    center = probs[n_classes] if probs.shape[0] > n_classes else None
    return instances_from_probabilities(probs[:n_classes], center, **postprocess)


#: Plane size (pixels a side) above which numpy predictions post-process block by block.
INSTANCE_BLOCK = 2048


def predict(
    model: Any,
    image: Any,
    *,
    tile_size: int | tuple[int, int] = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Any = None,
    progress: ProgressCallback | None = None,
    stop: StopFlag = None,
    instances: bool = True,
    dask_overlap: int | None = None,
    instance_block: int = INSTANCE_BLOCK,
    tta: bool = False,
    **postprocess: Any,
) -> Prediction:
    """Probabilities, semantic labels and instance labels of one image.

    ``image`` may be a numpy array (results are numpy) or a dask array (results are
    lazy dask arrays, see :func:`predict_dask`). ``postprocess`` keyword arguments
    (``fg_threshold``, ``seed_threshold``, ``min_size``, ...) go to
    :func:`napari_segkit.postprocess.instances_from_probabilities`. Other parameters as
    in :func:`predict_probabilities`.

    Images whose planes are larger than ``instance_block`` squared get their instances
    block by block (``instance_block`` pixels a side, with the dask path's margin and
    ownership rule, one block at a time), so the watershed's memory is bounded by the
    block rather than the image; labels are then renumbered 1..N.
    """
    if _is_dask(image):
        return predict_dask(
            model, image, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
            device=device, instances=instances, dask_overlap=dask_overlap, tta=tta, **postprocess,
        )  # fmt: skip
    from .postprocess import semantic_from_probabilities

    model = _load_if_path(model)
    probs = predict_probabilities(
        model, image, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
        device=device, progress=progress, stop=stop, tta=tta,
    )  # fmt: skip
    k = model.config.n_classes
    semantic = semantic_from_probabilities(probs[:k])
    labels = None
    if instances:
        if probs.shape[-2] * probs.shape[-1] > instance_block**2:
            th, tw = _as_pair(tile_size, "tile_size")
            margin = int(dask_overlap) if dask_overlap is not None else max(32, min(th, tw) // 4)
            labels = _blockwise_instances(probs, k, instance_block, margin, postprocess)
        else:
            labels = _instances(probs, k, postprocess)
    return Prediction(probs, semantic, labels, k)


def _blockwise_instances(
    probs: np.ndarray, k: int, block: int, margin: int, postprocess: dict
) -> np.ndarray:
    """Instances of a large numpy prediction, one block at a time (bounded memory).

    Each block is post-processed with ``margin`` pixels of context and owns the objects
    whose centre lies in its core (the dask path's rule); owned objects are numbered on
    from the previous blocks' and pasted whole into one output array.
    """
    height, width = probs.shape[-2:]
    lead = (slice(None),) * (probs.ndim - 2)
    core_lead = tuple(slice(0, n) for n in probs.shape[1:-2])
    owned = []
    total = 0
    for y0 in range(0, height, block):
        for x0 in range(0, width, block):
            y1, x1 = min(y0 + block, height), min(x0 + block, width)
            ry0, rx0 = max(0, y0 - margin), max(0, x0 - margin)
            ry1, rx1 = min(height, y1 + margin), min(width, x1 + margin)
            core = (*core_lead, slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
            labels = _block_instances(probs[(*lead, slice(ry0, ry1), slice(rx0, rx1))], k, core,
                                      postprocess)
            n = int(labels.max())
            owned.append((labels.astype(np.uint16), (slice(ry0, ry1), slice(rx0, rx1)), total))
            total += n
    out = np.zeros(probs.shape[1:], np.uint32 if total >= 65535 else np.uint16)
    for labels, (ys, xs), offset in owned:
        mask = labels > 0
        target = out[(..., ys, xs)]
        target[mask] = labels[mask].astype(out.dtype) + offset
    return out


# ---------------------------------------------------------------------------
# dask
# ---------------------------------------------------------------------------

#: Dask instance labels are ``block_index * LABEL_STRIDE + local_id``.
LABEL_STRIDE = 1 << 16


def _is_dask(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "chunks")


def _predict_block(
    region: np.ndarray,
    model: Any,
    normalization: FixedNormalization,
    crop: tuple[slice, slice],
    settings: dict,
) -> np.ndarray:
    """Probabilities of one dask block predicted with context, cropped to its core."""
    check_image(region)
    probs = predict_probabilities(model, region, normalization=normalization, **settings)
    return np.ascontiguousarray(probs[(Ellipsis, *crop)])


def _block_instances(
    region: np.ndarray, n_classes: int, core: tuple[slice, ...], postprocess: dict
) -> np.ndarray:
    """Instance labels of an expanded block region, keeping only the objects it owns.

    A block owns the objects whose centre (mean pixel position, rounded) lies in its
    core; owned objects are renumbered 1..n, others set to 0.
    """
    from scipy import ndimage as ndi

    labels = _instances(region, n_classes, postprocess).astype(np.int64)
    n = int(labels.max())
    owned = np.zeros(n + 1, np.int64)
    if n:
        centres = np.rint(ndi.center_of_mass(np.ones_like(labels), labels, range(1, n + 1)))
        centres = centres.reshape(n, labels.ndim)
        inside = np.ones(n, bool)
        for axis, sl in enumerate(core):
            inside &= (centres[:, axis] >= sl.start) & (centres[:, axis] < sl.stop)
        if inside.sum() >= LABEL_STRIDE:
            raise ValueError(
                f"a dask block holds {int(inside.sum())} objects (max {LABEL_STRIDE - 1}); "
                "use smaller chunks"
            )
        owned[1:][inside] = np.arange(1, int(inside.sum()) + 1)
    return owned[labels].astype(np.uint32)


def _assemble_instances(
    core_shape: tuple[int, ...],
    core_start: tuple[int, ...],
    neighbours: list[tuple[np.ndarray, tuple[int, ...], int]],
) -> np.ndarray:
    """Output labels of one block from the owned objects of itself and its neighbours.

    ``neighbours``: (labels_region, region_start, block_index) for each block whose
    expanded region may reach into this block's core.
    """
    out = np.zeros(core_shape, np.uint32)
    for labels, start, index in neighbours:
        src, dst = [], []
        for cs, n, rs, rn in zip(core_start, core_shape, start, labels.shape, strict=True):
            lo, hi = max(cs, rs), min(cs + n, rs + rn)
            if hi <= lo:
                break
            src.append(slice(lo - rs, hi - rs))
            dst.append(slice(lo - cs, hi - cs))
        else:
            part = labels[tuple(src)]
            mask = part > 0
            out[tuple(dst)][mask] = part[mask] + np.uint32(index * LABEL_STRIDE)
    return out


def predict_dask(
    model: Any,
    darr: Any,
    *,
    tile_size: int | tuple[int, int] = 256,
    overlap: float = 0.25,
    batch_size: int = 4,
    device: Any = None,
    instances: bool = True,
    dask_overlap: int | None = None,
    tta: bool = False,
    **postprocess: Any,
) -> Prediction:
    """Lazy prediction of a dask array, block by block.

    * Intensity normalisation is computed once, from a strided sub-sample of the whole
      array, and applied unchanged in every block (so blocks match a numpy prediction).
    * Each block is predicted on its chunk plus ``dask_overlap`` pixels of context on
      every side (default ``tile_size // 4``, at least 32) and cropped back.
    * Instances: each block is post-processed on its chunk plus ``dask_overlap`` pixels
      of probabilities; the block owns the objects whose centre lies in its chunk and
      writes them whole, also into neighbouring chunks. Objects must be smaller than
      about twice ``dask_overlap``. Labels are ``block_index * 65536 + local_id``
      (uint32): unique, not consecutive (``skimage.segmentation.relabel_sequential``
      renumbers them after ``compute()``).
    * 3-D stacks (Z, Y, X) are re-chunked to hold all of Z in each block.

    ``model`` is a :class:`~napari_segkit.model_io.SegModel` (stored once in the graph)
    or a model file path (loaded once per worker process) -- both work with the
    synchronous, threaded and ``dask.distributed`` schedulers.
    """
    import dask
    import dask.array as da

    kind = _image_kind(darr.shape)
    if not np.issubdtype(darr.dtype, np.number) and darr.dtype != bool:
        raise ValueError(f"image must be a real numeric array, got dtype {darr.dtype}")
    loaded = _load_if_path(model)
    cfg = loaded.config
    k, n_out = cfg.n_classes, cfg.n_classes + cfg.n_extra
    th, tw = _as_pair(tile_size, "tile_size")
    margin = int(dask_overlap) if dask_overlap is not None else max(32, min(th, tw) // 4)
    if margin < 0:
        raise ValueError(f"dask_overlap must be >= 0, got {dask_overlap}")

    stack = kind in ("stack", "rgb_stack")
    rgb = kind in ("rgb", "rgb_stack")
    chunks = {0: -1} if stack else {}
    if rgb:
        chunks[darr.ndim - 1] = -1
    if chunks:
        darr = darr.rechunk(chunks)
    planes = darr if stack else darr[None]
    norm = fit_normalization(_subsample_planes(planes), cfg.in_channels, loaded.normalization, rgb)

    ys, xs = (1, 2) if stack else (0, 1)
    ychunks, xchunks = darr.chunks[ys], darr.chunks[xs]
    ystarts, xstarts = np.cumsum((0, *ychunks)), np.cumsum((0, *xchunks))
    height, width = darr.shape[ys], darr.shape[xs]
    nz = darr.shape[0] if stack else None
    lead = (slice(None),) if stack else ()

    model_key = model if isinstance(model, str) else dask.delayed(model, pure=False, traverse=False)
    settings = {"tile_size": tile_size, "overlap": overlap, "batch_size": batch_size,
                "device": device, "tta": tta}  # fmt: skip
    rows = []
    for i, y0 in enumerate(ystarts[:-1]):
        row = []
        for j, x0 in enumerate(xstarts[:-1]):
            y1, x1 = ystarts[i + 1], xstarts[j + 1]
            ry0, rx0 = max(0, y0 - margin), max(0, x0 - margin)
            ry1, rx1 = min(height, y1 + margin), min(width, x1 + margin)
            region = darr[(*lead, slice(ry0, ry1), slice(rx0, rx1))]
            crop = (slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))
            block = dask.delayed(_predict_block, pure=True)(region, model_key, norm, crop, settings)
            shape = (n_out, *(() if nz is None else (nz,)), y1 - y0, x1 - x0)
            row.append(da.from_delayed(block, shape=shape, dtype=np.float32))
        rows.append(row)
    probs = da.block(rows)

    semantic = probs[:k].map_blocks(_semantic_block, drop_axis=0, dtype=np.uint8)
    labels = None
    if instances:
        labels = _dask_instances(probs, k, margin, ystarts, xstarts, stack, postprocess)
    return Prediction(probs, semantic, labels, k)


def _semantic_block(probs: np.ndarray) -> np.ndarray:
    from .postprocess import semantic_from_probabilities

    return semantic_from_probabilities(probs)


def _dask_instances(
    probs: Any,
    k: int,
    margin: int,
    ystarts: np.ndarray,
    xstarts: np.ndarray,
    stack: bool,
    postprocess: dict,
) -> Any:
    import dask
    import dask.array as da

    height, width = probs.shape[-2:]
    nz = probs.shape[1] if stack else None
    ni, nj = len(ystarts) - 1, len(xstarts) - 1
    # how many blocks away an owned object (at most `margin` outside its core) can reach
    reach_y = int(math.ceil(margin / max(1, min(np.diff(ystarts)))))
    reach_x = int(math.ceil(margin / max(1, min(np.diff(xstarts)))))
    lead = (slice(None),) * (2 if stack else 1)
    zstart = (0,) if stack else ()
    results = {}
    for i in range(ni):
        for j in range(nj):
            y0, y1, x0, x1 = ystarts[i], ystarts[i + 1], xstarts[j], xstarts[j + 1]
            ry0, rx0 = max(0, y0 - margin), max(0, x0 - margin)
            ry1, rx1 = min(height, y1 + margin), min(width, x1 + margin)
            region = probs[(*lead, slice(ry0, ry1), slice(rx0, rx1))]
            core = (*(() if nz is None else (slice(0, nz),)),
                    slice(y0 - ry0, y1 - ry0), slice(x0 - rx0, x1 - rx0))  # fmt: skip
            res = dask.delayed(_block_instances, pure=True)(region, k, core, postprocess)
            results[i, j] = (res, (*zstart, int(ry0), int(rx0)), i * nj + j)
    rows = []
    for i in range(ni):
        row = []
        for j in range(nj):
            y0, y1, x0, x1 = ystarts[i], ystarts[i + 1], xstarts[j], xstarts[j + 1]
            neighbours = [results[a, b]
                          for a in range(max(0, i - reach_y), min(ni, i + reach_y + 1))
                          for b in range(max(0, j - reach_x), min(nj, j + reach_x + 1))]  # fmt: skip
            core_shape = (*(() if nz is None else (nz,)), int(y1 - y0), int(x1 - x0))
            core_start = (*zstart, int(y0), int(x0))
            block = dask.delayed(_assemble_instances, pure=True)(core_shape, core_start, neighbours)
            row.append(da.from_delayed(block, shape=core_shape, dtype=np.uint32))
        rows.append(row)
    return da.block(rows)
