"""Prediction of whole images: numpy and dask orchestration of the tiled forward pass.

``predict_probabilities(model, image)``
    SegModel + image (2-D gray, RGB, or a 3-D stack) -> float32 probabilities, through
    :func:`napari_segkit.tiling.predict_tiled` and :class:`napari_segkit.runtime.TorchForward`.
``predict(model, image)``
    -> :class:`Prediction` (probabilities, semantic labels, instance labels); numpy in
    gives numpy out, dask in gives dask out.

Design choices
--------------
* **Blending happens after the activation**: the forward function returns softmax
  probabilities for the class channels and the sigmoid of the extra (centre) channel,
  and tiles of *probabilities* are blended. A weighted mean of probability vectors is
  again a probability vector, so the blended class channels sum to 1 everywhere, and a
  single over-confident tile cannot dominate the blend through a large logit.
* **3-D stacks** (Z, Y, X) are predicted slice by slice with the intensity
  normalisation computed once over the whole stack; the result is channel-first,
  ``(K, Z, Y, X)``; their instances are 3-D (:mod:`napari_segkit.instances3d`).
* **Dask**: see :func:`predict_dask`. Blocks (:class:`napari_segkit.tiling.BlockGrid`)
  are predicted with a margin of context (``dask_overlap``) using normalisation
  computed once over the whole array, and instance labels are made consistent across
  blocks (each object is owned by the block that holds its centre and written whole).
  All block functions are module level and receive the
  :class:`~napari_segkit.model_io.SegModel` (picklable) or a model file path, so graphs
  run on the synchronous, threaded or distributed schedulers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ._common import Cancelled, ProgressCallback, StopFlag, image_kind
from .image_layout import check_array_layout
from .instance_blocks import (  # noqa: F401  (re-exported: prediction is where callers look)
    INSTANCE_BLOCK,
    LABEL_STRIDE,
    block_margin,
    blockwise_instances,
    instances_of,
    owned_instances,
)
from .instances3d import with_voxel_size
from .memory_limits import format_bytes, memory_budget
from .model_io import as_model, load_model_cached
from .normalization import FittedNormalization, Normalization, check_image, subsample_planes
from .object_size import resize_image, resize_probabilities
from .postprocess import fitted_kwargs, semantic_from_probabilities
from .runtime import TorchForward, model_on_device, select_device
from .test_time_zoom import check_zoomable, diameter_and_zoom, scaled_sizes
from .tiling import Block, BlockGrid, as_pair, count_tiles, predict_tiled, round_up

__all__ = [
    "INSTANCE_BLOCK",
    "LABEL_STRIDE",
    "Prediction",
    "PredictionCancelled",
    "block_margin",
    "blockwise_instances",
    "load_model_cached",
    "owned_instances",
    "predict",
    "predict_dask",
    "predict_prepared",
    "predict_probabilities",
]

#: What a stopped prediction raises (:class:`napari_segkit._common.Cancelled`).
PredictionCancelled = Cancelled


def _kind(shape: tuple[int, ...]) -> str:
    kind = image_kind(shape)
    if kind is None:
        raise ValueError(
            f"cannot segment an image of shape {tuple(shape)}: expected (H, W), (H, W, 3), "
            "(Z, Y, X) or (Z, Y, X, 3); select a single time point / channel first"
        )
    return kind


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
    normalization: FittedNormalization | None = None,
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
    model = as_model(model)
    image = np.asarray(image)
    kind = _kind(image.shape)
    check_image(image)
    cfg = model.config
    n_out = cfg.n_classes + cfg.n_extra
    divisor = getattr(cfg, "divisor", 2**cfg.depth)
    th, tw = as_pair(tile_size, "tile_size")
    tile = (round_up(th, divisor), round_up(tw, divisor))
    planes = image[None] if kind in ("gray", "rgb") else image
    rgb = kind in ("rgb", "rgb_stack")
    settings = Normalization.from_dict(model.normalization)
    whole_image = normalization is None  # block paths pass a fixed normalisation
    if normalization is None and kind in ("stack", "rgb_stack"):
        normalization = settings.fit(subsample_planes(planes), cfg.in_channels, rgb)
    h, w = planes.shape[1:3]
    per_plane = count_tiles((h, w), tile_size=tile, overlap=overlap, divisor=divisor)
    total = per_plane * planes.shape[0]
    if whole_image:  # block paths size their blocks themselves
        _check_fits(image.shape, n_out * planes.shape[0] * h * w * 4)
    out = np.empty((n_out, planes.shape[0], h, w), np.float32)
    dev = select_device(device)
    channels_last = dev.type == "cpu"  # faster oneDNN convolutions on the CPU
    with model_on_device(model.net, dev, channels_last) as net:
        forward = TorchForward(net, cfg.n_classes, dev, tta=tta, channels_last=channels_last)
        for z, plane in enumerate(planes):
            if normalization is None:
                x = settings.prepare(plane, cfg.in_channels)
            else:
                x = normalization.apply(plane)
            predict_tiled(
                forward, x, n_out,
                tile_size=tile, overlap=overlap, batch_size=batch_size, divisor=divisor,
                progress=progress, stop=stop, out=out[:, z],
                progress_offset=(z * per_plane, total),
            )  # fmt: skip
    return out[:, 0] if kind in ("gray", "rgb") else out


def _check_fits(shape: tuple[int, ...], need: int) -> None:
    """ValueError before allocating probabilities that do not fit the memory budget."""
    budget = memory_budget()
    if need > budget:
        raise ValueError(
            f"the probabilities of an image of shape {tuple(shape)} take {format_bytes(need)}, "
            f"more than the {format_bytes(budget)} this machine can give them (half of the "
            "free memory): predict it block by block, from a file with "
            "napari_segkit.predict_blocks.predict_file_blockwise (what `napari-segkit "
            "predict` does) or lazily with predict(model, open_image(path).data)"
        )


def predict_prepared(net: Any, x: np.ndarray, device: Any, n_classes: int,
                     max_side: int = 1024) -> np.ndarray:
    """Probabilities of one prepared image (C, H, W) by a bare network already on ``device``
    (what validation during training uses): one tile for images up to ``max_side``,
    blended tiles beyond."""
    forward = TorchForward(net, n_classes, select_device(device))
    return predict_tiled(forward, x, net.config.n_outputs, tile_size=max_side,
                         divisor=net.config.divisor)


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
    #: test-time zoom applied (``predict(..., diameter=...)``), and the object diameter
    #: it was computed from (given or estimated); 1.0 / None without ``diameter``
    zoom: float = 1.0
    diameter: float | None = None

    @property
    def center(self) -> Any:
        """The centre probability map, or None for a model without an extra channel."""
        if self.probabilities.shape[0] <= self.n_classes:
            return None
        return self.probabilities[self.n_classes]


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
    diameter: None | str | float = None,
    scale: Any = None,
    **postprocess: Any,
) -> Prediction:
    """Probabilities, semantic labels and instance labels of one image.

    A (Z, Y, X) stack gets 3-D instances (:func:`napari_segkit.instances3d.stack_instances`)
    measured in its voxel size ``scale`` (z, y, x; None: cubes; unused in 2-D).

    ``diameter`` (2-D images): ``None`` predicts the image as it is; a number (the
    typical object diameter in pixels) or ``"auto"`` (estimated from a first pass, see
    :mod:`napari_segkit.test_time_zoom`) zooms the image so that its objects match the
    size the model was trained on, and maps the result back to the image's pixels.

    ``image`` may be a numpy array (results are numpy) or a dask array (results are
    lazy dask arrays, see :func:`predict_dask`). ``postprocess`` keyword arguments
    (``fg_threshold``, ``seed_threshold``, ``min_size``, ...) go to
    :func:`napari_segkit.postprocess.instances_from_probabilities`; for a 2-D image, a
    model with fitted post-processing (``SegModel.postprocess``, see
    :mod:`napari_segkit.postprocess_fit`) fills in the threshold and seeds not given.
    Other parameters as in :func:`predict_probabilities`.

    Images whose planes are larger than ``instance_block`` squared get their instances
    block by block (``instance_block`` pixels a side, with the dask path's margin and
    ownership rule, one block at a time), so the watershed's memory is bounded by the
    block rather than the image; labels are then renumbered 1..N.
    """
    model = as_model(model)
    if image_kind(np.shape(image)) in ("gray", "rgb"):  # fitted on 2-D images only
        postprocess = {**fitted_kwargs(model.postprocess, model.config.n_extra > 0),
                       **postprocess}
    if _is_dask(image):
        if diameter is not None:
            raise ValueError("diameter= (test-time zoom) works on numpy images; pass "
                             "image.compute() or resize the dask array first")
        return predict_dask(
            model, image, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
            device=device, instances=instances, dask_overlap=dask_overlap, tta=tta,
            **with_voxel_size(_kind(np.shape(image)), scale, postprocess))  # fmt: skip
    check_array_layout(np.shape(image))
    if diameter is not None:
        return _predict_at_diameter(
            model, image, diameter, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
            device=device, progress=progress, stop=stop, instances=instances,
            dask_overlap=dask_overlap, instance_block=instance_block, tta=tta, **postprocess,
        )  # fmt: skip
    probs = predict_probabilities(
        model, image, tile_size=tile_size, overlap=overlap, batch_size=batch_size,
        device=device, progress=progress, stop=stop, tta=tta,
    )  # fmt: skip
    k = model.config.n_classes
    semantic = semantic_from_probabilities(probs[:k])
    labels = None
    if instances:
        labels = instances_of(probs, k, tile_size=tile_size, dask_overlap=dask_overlap,
                              instance_block=instance_block,
                              **with_voxel_size(_kind(np.shape(image)), scale, postprocess))
    return Prediction(probs, semantic, labels, k)


def _predict_at_diameter(model, image, diameter, *, instances: bool, tile_size,
                         dask_overlap, instance_block: int, **kwargs: Any) -> Prediction:
    """:func:`predict` with test-time zoom (see :mod:`napari_segkit.test_time_zoom`)."""
    model = as_model(model)
    image = np.asarray(image)
    check_zoomable(image_kind(image.shape), model.object_diameter)
    prob_keys = ("overlap", "batch_size", "device", "progress", "stop", "tta")
    settings = {key: kwargs.pop(key) for key in prob_keys if key in kwargs}
    postprocess, k = kwargs, model.config.n_classes
    first = None
    if isinstance(diameter, str):
        first = predict_probabilities(model, image, tile_size=tile_size, **settings)
    d, zoom = diameter_and_zoom(diameter, model.object_diameter, first, k,
                                float(postprocess.get("fg_threshold", 0.5)))
    if zoom == 1.0:
        probs = first if first is not None else predict_probabilities(
            model, image, tile_size=tile_size, **settings)
    else:
        zoomed = predict_probabilities(model, resize_image(image, zoom), tile_size=tile_size,
                                       **settings)
        probs = resize_probabilities(zoomed, image.shape[:2])
        postprocess = scaled_sizes(postprocess, zoom)
    labels = None
    if instances:
        labels = instances_of(probs, k, tile_size=tile_size, dask_overlap=dask_overlap,
                              instance_block=instance_block, **postprocess)
    return Prediction(probs, semantic_from_probabilities(probs[:k]), labels, k, zoom, d)


# ---------------------------------------------------------------------------
# dask
# ---------------------------------------------------------------------------


def _is_dask(x: Any) -> bool:
    return type(x).__module__.split(".")[0] == "dask" and hasattr(x, "chunks")


def _predict_block(
    region: np.ndarray,
    model: Any,
    normalization: FittedNormalization,
    crop: tuple[slice, slice],
    settings: dict,
) -> np.ndarray:
    """Probabilities of one dask block predicted with context, cropped to its core."""
    check_image(region)
    probs = predict_probabilities(model, region, normalization=normalization, **settings)
    return np.ascontiguousarray(probs[(Ellipsis, *crop)])


def _assemble_instances(
    core_shape: tuple[int, ...], block: Block, neighbours: list[tuple[np.ndarray, Block]]
) -> np.ndarray:
    """Output labels of one block from the owned objects of itself and its neighbours
    (``(owned labels of the neighbour's region, neighbour)`` pairs)."""
    out = np.zeros(core_shape, np.uint32)
    for labels, other in neighbours:
        overlap = other.reach_into(block)
        if overlap is None:
            continue
        src, dst = overlap
        part = labels[(..., *src)]
        mask = part > 0
        out[(..., *dst)][mask] = part[mask] + np.uint32(other.index * LABEL_STRIDE)
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

    kind = _kind(darr.shape)
    if not np.issubdtype(darr.dtype, np.number) and darr.dtype != bool:
        raise ValueError(f"image must be a real numeric array, got dtype {darr.dtype}")
    loaded = as_model(model)
    cfg = loaded.config
    k, n_out = cfg.n_classes, cfg.n_classes + cfg.n_extra
    margin = block_margin(tile_size, dask_overlap)

    stack = kind in ("stack", "rgb_stack")
    rgb = kind in ("rgb", "rgb_stack")
    chunks = {0: -1} if stack else {}
    if rgb:
        chunks[darr.ndim - 1] = -1
    if chunks:
        darr = darr.rechunk(chunks)
    planes = darr if stack else darr[None]
    norm = Normalization.from_dict(loaded.normalization).fit(
        subsample_planes(planes), cfg.in_channels, rgb
    )

    ys, xs = (1, 2) if stack else (0, 1)
    grid = BlockGrid.from_chunks(darr.chunks[ys], darr.chunks[xs], margin)
    lead = (slice(None),) if stack else ()
    nz = (darr.shape[0],) if stack else ()

    model_key = model if isinstance(model, str) else dask.delayed(model, pure=False, traverse=False)
    settings = {"tile_size": tile_size, "overlap": overlap, "batch_size": batch_size,
                "device": device, "tta": tta}  # fmt: skip
    rows = []
    for row in grid.rows():
        blocks = []
        for b in row:
            region = darr[(*lead, *b.region)]
            block = dask.delayed(_predict_block, pure=True)(
                region, model_key, norm, b.core_in_region, settings
            )
            blocks.append(da.from_delayed(block, shape=(n_out, *nz, *b.shape), dtype=np.float32))
        rows.append(blocks)
    probs = da.block(rows)

    semantic = probs[:k].map_blocks(semantic_from_probabilities, drop_axis=0, dtype=np.uint8)
    labels = _dask_instances(probs, k, grid, postprocess) if instances else None
    return Prediction(probs, semantic, labels, k)


def _dask_instances(probs: Any, k: int, grid: BlockGrid, postprocess: dict) -> Any:
    """Lazy instance labels: each block owns the objects centred in its core and writes
    them whole, also into the neighbouring blocks their regions reach."""
    import dask
    import dask.array as da

    owned = {
        b.index: dask.delayed(owned_instances, pure=True)(
            probs[(..., *b.region)], k, b, postprocess
        )
        for b in grid.blocks
    }
    nz = probs.shape[1:-2]
    rows = []
    for row in grid.rows():
        blocks = []
        for b in row:
            core_shape = (*nz, *b.shape)
            neighbours = [(owned[n.index], n) for n in grid.neighbours(b)]
            block = dask.delayed(_assemble_instances, pure=True)(core_shape, b, neighbours)
            blocks.append(da.from_delayed(block, shape=core_shape, dtype=np.uint32))
        rows.append(blocks)
    return da.block(rows)
