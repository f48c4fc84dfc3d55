"""Qt-free jobs shared by the docks, the CLI and the demo.

* :func:`predict_and_measure` / :func:`run_prediction`: predict one image, measure its
  objects and, with ground truth (labels or one click per object), score them. The
  Predict dock runs it in a worker thread, the CLI and the demo call it directly.
* :func:`predict_folder`: every TIFF / ``.zarr`` image of a folder -> label images (TIFF
  or OME-Zarr, :mod:`napari_segkit.label_outputs`) and one objects table; large images go
  block by block (:mod:`napari_segkit.predict_blocks`), with a tqdm bar of tiles
  (:class:`TileProgress`) when asked.
* :func:`run_training`: run a :func:`napari_segkit.training.train` generator to the end
  with an ``on_event`` callback; :class:`TrainingProgress` is such a callback (a tqdm
  bar for terminals and logs).
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from . import (
    io,
    label_outputs,
    lazy_prediction,
    model_io,
    postprocess,
    postprocess_fit,
    predict_blocks,
    prediction,
    schedulers,
)
from ._common import image_kind, is_stopped
from .image_layout import read_image_as
from .memory_limits import tiff_array_info
from .outcome_text import summary_counts
from .output_paths import check_not_inside, check_output_folder
from .prediction_results import (
    STATUS_VALUES,
    PostprocessSettings,
    measure_prediction,
    status_image,
)
from .progress_bars import TileProgress, TrainingProgress
from .train_config import run_to_end
from .training import TrainEvent, train

__all__ = [
    "DEFAULT_MODEL",
    "PredictOutcome",
    "PredictRequest",
    "STATUS_VALUES",
    "TileProgress",
    "TrainingProgress",
    "PostprocessSettings",
    "open_model",
    "predict_and_measure",
    "predict_folder",
    "refine",
    "run_prediction",
    "run_training",
    "status_image",
]

log = logging.getLogger("napari_segkit")

#: How the docks name the shipped nuclei model (the CLI says "default").
DEFAULT_MODEL = "Default nuclei model"


def open_model(source: Any) -> model_io.SegModel:
    """A model from a :class:`~napari_segkit.model_io.SegModel`, ``"default"`` /
    :data:`DEFAULT_MODEL` (the shipped model) or a model file path. Files are cached
    while they stay unchanged (shared: predict with them, do not train them)."""
    if isinstance(source, model_io.SegModel):
        return source
    if source in ("default", DEFAULT_MODEL):
        return model_io.load_default_model_cached()
    return model_io.load_model_cached(source)


# --------------------------------------------------------------------------- one image
@dataclass
class PredictRequest:
    """One image to predict and measure, with what the job needs (plain arrays, no layers)."""

    image: Any  # numpy; a lazy 2-D image (dask, zarr) is predicted block by block
    image_name: str
    model: Any  # a SegModel, a model file path, "default" or DEFAULT_MODEL
    scale: tuple[float, ...] | None = None  # only when the image is scaled or has units
    units: str | None = None
    translate: tuple[float, ...] | None = None
    gt_labels: np.ndarray | None = None
    gt_points: np.ndarray | None = None  # (N, D) in image data pixels
    gt_classes: list | None = None
    tta: bool = False  # test-time augmentation (4 mirror images)
    tile_size: int = 256
    device: Any = None
    diameter: Any = None  # test-time zoom: None, "auto" or pixels (see prediction.predict)
    settings: PostprocessSettings | None = None  # None: prediction.predict's defaults
    gt_name: str = "ground truth"  # how messages name the ground truth


@dataclass
class PredictOutcome:
    """Result of :func:`predict_and_measure`; ``error`` / ``cancelled`` when there is none."""

    probability: np.ndarray | None = None  # foreground probability
    probabilities: np.ndarray | None = None  # all channels (classes, then centre), kept
    n_classes: int = 0  # class channels at the front of ``probabilities``
    semantic: np.ndarray | None = None
    instances: np.ndarray | None = None
    table: pd.DataFrame | None = None  # predicted objects (with status when GT labels)
    missed_table: pd.DataFrame | None = None
    missed: np.ndarray | None = None  # labels of the missed GT objects (GT ids)
    status: np.ndarray | None = None  # 1 matched, 2 false positive, per predicted pixel
    scores: dict | None = None  # metrics.evaluate_instances against gt_labels
    click_scores: dict | None = None  # metrics.points_vs_instances against gt_points
    summary: dict[str, Any] = field(default_factory=dict)
    class_names: list[str] = field(default_factory=list)
    zoom: float = 1.0  # test-time zoom applied, and the nucleus diameter it came from
    diameter: float | None = None
    model_diameter: float | None = None  # the model's training nucleus diameter, if known
    settings: PostprocessSettings | None = None  # the post-processing that made instances
    warnings: list[str] = field(default_factory=list)  # e.g. ground-truth clicks left out
    error: str | None = None
    cancelled: bool = False
    #: block-wise predictions of lazy images: label levels (dask, level 0 = ``instances``
    #: / ``semantic``) by name, to show as multiscale Labels; no probabilities are kept
    levels: dict[str, list] | None = None


def run_prediction(
    request: PredictRequest, *, progress=None, stop=None, stage=None
) -> PredictOutcome:
    """:func:`predict_and_measure` that never raises for bad input, a bad model file or a
    Stop: the outcome then carries ``error`` (a message for the user) or ``cancelled``.
    Unexpected errors are logged with their traceback."""
    try:
        return predict_and_measure(request, progress=progress, stop=stop, stage=stage)
    except prediction.PredictionCancelled:
        return PredictOutcome(cancelled=True)
    except (ValueError, FileNotFoundError) as err:
        return PredictOutcome(error=f"Predicting {request.image_name!r}: {err}")
    except Exception as err:  # noqa: BLE001 - a dock never crashes napari
        log.exception("prediction failed")
        return PredictOutcome(
            error=f"Predicting {request.image_name!r} failed unexpectedly "
            f"({type(err).__name__}: {err}). Details in the log."
        )


def predict_and_measure(
    request: PredictRequest, *, progress=None, stop=None, stage=None
) -> PredictOutcome:
    """Predict, post-process, measure and (with ground truth) score one image.

    ``progress(done, total)`` follows the tiles, ``stage(text)`` the steps; ``stop`` as in
    :func:`napari_segkit.prediction.predict`. Raises ValueError for bad input.
    """
    say = stage or (lambda _text: None)
    say("Loading model...")
    model = open_model(request.model)
    request.settings = settings_or_fitted(model, request.settings, np.shape(request.image))
    if lazy_prediction.is_blockwise_input(request.image):
        return _predict_lazy(request, model, progress, stop, say)
    request.image = np.asarray(request.image)  # lazy stacks: read here, off the GUI thread
    say("Predicting...")
    extra = {} if request.settings is None else {"fg_threshold": request.settings.fg_threshold}
    result = prediction.predict(model, request.image, progress=progress, stop=stop,
                                tta=request.tta, tile_size=request.tile_size,
                                device=request.device, diameter=request.diameter,
                                scale=request.scale, instances=False, **extra)
    out = PredictOutcome(
        probabilities=np.asarray(result.probabilities), n_classes=result.n_classes,
        semantic=np.asarray(result.semantic), class_names=list(model.class_names),
        zoom=float(result.zoom), diameter=result.diameter, model_diameter=model.object_diameter,
    )
    label = str(request.model) if isinstance(request.model, (str, Path)) else "in-memory model"
    out.summary = {"image": request.image_name, "model": label}
    if request.diameter is not None:
        out.summary.update(diameter_px=result.diameter, zoom=float(result.zoom))
    say("Measuring...")
    return refine(out, request, request.settings)


def _predict_lazy(request: PredictRequest, model: model_io.SegModel, progress: Any, stop: Any,
                  say: Callable[[str], Any]) -> PredictOutcome:
    """:func:`predict_and_measure` of a lazy 2-D image: block by block at full resolution
    (:func:`napari_segkit.lazy_prediction.predict_lazy`), never loaded whole."""
    if request.diameter is not None:
        raise ValueError("test-time zoom (diameter) works on images in memory; this image "
                         "is predicted block by block: leave the diameter empty")
    say("Predicting block by block...")
    extra = {} if request.settings is None else request.settings.postprocess_kwargs(
        model.config.n_extra > 0)
    done = lazy_prediction.predict_lazy(
        model, request.image, scale=request.scale, units=request.units,
        translate=request.translate, tile_size=request.tile_size, tta=request.tta,
        device=request.device, progress=progress, stop=stop, **extra)  # fmt: skip
    warn = []
    if request.gt_labels is not None or request.gt_points is not None:
        warn.append(f"{request.gt_name} was not scored: scores need an image in memory, and "
                    f"{request.image_name!r} was predicted block by block")
    instances, table = done.instances[0], done.table
    label = str(request.model) if isinstance(request.model, (str, Path)) else "in-memory model"
    area = int(table["area_px"].sum()) if "area_px" in table else 0
    summary = {"image": request.image_name, "model": label,
               **summary_counts(table, int(np.prod(instances.shape)), area,
                                done.class_pixels, list(model.class_names))}
    return PredictOutcome(
        n_classes=model.config.n_classes, semantic=done.semantic[0], instances=instances,
        table=table, summary=summary, class_names=list(model.class_names),
        model_diameter=model.object_diameter, settings=request.settings, warnings=warn,
        levels={"instances": done.instances, "semantic": done.semantic})


def refine(outcome: PredictOutcome, request: PredictRequest,
           settings: PostprocessSettings | None) -> PredictOutcome:
    """A new outcome from the probabilities ``outcome`` kept: instances with ``settings``,
    their table, match and scores (post-processing only, no forward pass)."""
    probs, k = kept_probabilities(outcome, "apply new post-processing settings: press "
                                  "Predict again"), outcome.n_classes
    fg = outcome.probability  # the foreground map does not change with post-processing
    if fg is None:
        fg = postprocess.foreground_probability(probs[:k]).astype(np.float32)
    geometry = {"scale": request.scale, "units": request.units, "translate": request.translate}
    measured = measure_prediction(
        probs, k, request.image, settings=settings, zoom=outcome.zoom, geometry=geometry,
        gt_labels=request.gt_labels, gt_points=request.gt_points,
        gt_classes=request.gt_classes, gt_name=request.gt_name, tile_size=request.tile_size,
    )  # fmt: skip
    out = replace(
        outcome, probability=fg, instances=measured.instances, table=measured.table,
        missed_table=measured.missed_table, missed=measured.missed, status=measured.status,
        scores=measured.scores, click_scores=measured.click_scores,
        warnings=list(measured.warnings), settings=settings,
    )  # fmt: skip
    keep = ("image", "model", "diameter_px", "zoom")
    out.summary = {key: outcome.summary[key] for key in keep if key in outcome.summary}
    out.summary.update(summary_counts(
        out.table, out.instances.size, np.count_nonzero(out.instances),
        np.bincount(out.semantic.ravel(), minlength=len(out.class_names)), out.class_names,
        mean_foreground_probability=float(fg.mean()) if fg.size else float("nan")))
    out.summary.update(measured.summary)
    return out


def kept_probabilities(outcome: PredictOutcome, block_wise: str) -> np.ndarray:
    """The probabilities ``outcome`` kept for post-processing; a ValueError for the user
    when there are none (nothing predicted, or a block-wise prediction: ``block_wise``
    says what cannot be done then and what to do instead)."""
    if outcome.probabilities is not None:
        return outcome.probabilities
    if outcome.levels is not None:
        raise ValueError(f"a block-wise prediction keeps no probabilities, so it cannot "
                         f"{block_wise}")
    raise ValueError("there is no prediction to post-process: press Predict first")


def fit_to_ground_truth(outcome: PredictOutcome, gt_labels: Any,
                        min_size: int | None = None) -> postprocess_fit.PostprocessFit:
    """The probability threshold and split level whose instances match ``gt_labels`` (full
    instance masks of the predicted image) best, on the probabilities ``outcome`` kept
    (post-processing only, no forward pass; see :mod:`napari_segkit.postprocess_fit`).
    ``min_size``: the minimum object size to fit with (None: the default)."""
    probs = kept_probabilities(outcome, "be fitted: fit on a smaller image or a crop")
    if probs.ndim != 3:
        raise ValueError("fitting the threshold and split level works on 2-D images; for a "
                         "stack, set them by hand")
    if gt_labels is None:
        raise ValueError("choose a Labels layer with every nucleus of this image painted as "
                         "the ground truth first (clicks say where nuclei are, not their "
                         "outlines, so they cannot fit a threshold)")
    gt = np.asarray(gt_labels)
    if gt.shape != probs.shape[1:]:
        raise ValueError(f"the ground truth {gt.shape} does not match the predicted image "
                         f"{probs.shape[1:]}; choose the labels of this image")
    return postprocess_fit.fit_postprocess([probs], [gt], outcome.n_classes,
                                           min_size=min_size, zoom=outcome.zoom)


# --------------------------------------------------------------------------- folders
def predict_folder(
    model: Any, images: str | Path | list[Path], out: str | Path, *, tile_size: int = 256,
    tta: bool = False, device: Any = None, log: Callable[[str], Any] = print,
    diameter: Any = None, axes: str | None = None, channel: int | None = None,
    settings: PostprocessSettings | None = None,
    progress: Callable[[int, int], Any] | None = None, stop: Any = None,
    progress_bar: bool = False, scheduler: Any = "threads", labels_format: str = "auto",
    labels_into_source: bool = False,
) -> pd.DataFrame:
    """Predict every image of a folder (or a list of image files) into ``out``: label
    images ``<stem>_instances`` and ``<stem>_semantic`` per image, and one objects table.

    Images are sized from their header first: ``.zarr`` images (OME-Zarr or plain zarr,
    2-D) and those :func:`napari_segkit.predict_blocks.blockwise_reason` names (large
    planes, or more than the memory budget) are predicted block by block, file to file,
    with memory bounded by the block; ``log`` says so. The others are predicted in memory.

    Parameters
    ----------
    model
        As in :func:`open_model`.
    images
        A folder (its ``.tif`` files and ``.zarr`` folders), or a list of image files.
    out
        Output folder; not the image folder.
    tile_size, tta, device
        As in :func:`napari_segkit.prediction.predict`.
    log
        Receives a line per image (and what goes block by block).
    diameter
        Test-time zoom (see :func:`napari_segkit.prediction.predict`); in-memory images only.
    axes, channel
        How the TIFFs' axes are read (see :func:`napari_segkit.image_layout.read_image_as`;
        ambiguous layouts are reported on stderr).
    settings
        Post-processing (None: the model's fitted settings for 2-D images, else the defaults).
    progress
        ``progress(done_images, total_images)`` follows the images.
    stop
        A callable or ``threading.Event``: ends the run at the next tile batch; the images
        finished until then are kept, written and returned (check ``stop`` to know the run
        was cut short).
    progress_bar
        A tqdm bar of tiles per image on stderr (:class:`TileProgress`).
    scheduler
        ``"threads"`` (here), ``"local:N"`` (a local dask cluster of N worker processes,
        started and shut down for this call), a dask scheduler address
        (``"tcp://host:8786"``) or a :class:`distributed.Client`: the blocks of the images
        predicted block by block run on its workers (see :mod:`napari_segkit.schedulers`);
        smaller images are predicted here. The results are the same whatever the scheduler.
    labels_format
        ``"auto"``: standalone multiscale OME-Zarr label images (``<stem>_instances.zarr``,
        the source's scale, units and zarr format, written chunk by chunk) for the images
        predicted block by block, zlib TIFFs (``<stem>_instances.tif``) for those
        predicted in memory; ``"zarr"`` / ``"tif"``: always that format.
    labels_into_source
        Write the labels of the (``.zarr``) images into their own ``labels/`` group
        (``instances``, ``semantic``) instead of ``out``. Every image must be a writable
        OME-Zarr image without labels of those names (never overwritten), else ValueError
        before any prediction (:func:`napari_segkit.label_outputs.check_label_options`).

    Returns
    -------
    pandas.DataFrame
        The objects of all images (an ``image`` column first), also written as
        ``out/objects.csv``; interrupted (Ctrl-C), ``objects.csv`` keeps the objects of
        the images already done.
    """
    if isinstance(scheduler, str):
        scheduler = schedulers.parse_scheduler(scheduler)  # a typo fails before any work
    files = ([Path(p) for p in images] if isinstance(images, list)
             else io.prediction_inputs(images))
    out = check_output_folder(out, "out")
    if out.resolve() in {p.resolve().parent for p in files}:
        check_not_inside(out, files[0].parent, "out")
    label_outputs.check_label_options(files, labels_format, labels_into_source)
    model = open_model(model)
    out.mkdir(parents=True, exist_ok=True)
    options = {"tile_size": tile_size, "tta": tta, "device": device, "diameter": diameter,
               "axes": axes, "channel": channel, "settings": settings, "stop": stop,
               "labels_format": labels_format, "into_source": labels_into_source}
    with schedulers.open_client(scheduler, log=log) as client:
        return _predict_files(model, files, out, log, progress, stop, progress_bar,
                              {**options, "client": client})


def _predict_files(model: model_io.SegModel, files: list[Path], out: Path,
                   log: Callable[[str], Any], progress: Any, stop: Any, progress_bar: bool,
                   options: dict) -> pd.DataFrame:
    """The loop of :func:`predict_folder` over its images."""
    tables: list[pd.DataFrame] = []
    try:
        for done, path in enumerate(files):
            if progress is not None:
                progress(done, len(files))
            if is_stopped(stop):
                break
            bar = TileProgress(io.image_stem(path)) if progress_bar else None
            try:
                table = _predict_file(model, Path(path), out, bar, log, **options)
            except prediction.PredictionCancelled:
                break
            finally:
                if bar is not None:
                    bar.close()
            table.insert(0, "image", io.image_stem(path))
            tables.append(table)
            log(f"{io.image_stem(path)}: {len(table)} objects")
        else:
            if progress is not None:
                progress(len(files), len(files))
    except KeyboardInterrupt:
        if tables:  # what is done is kept: the table of the images already predicted
            pd.concat(tables, ignore_index=True).to_csv(out / "objects.csv", index=False)
            log(f"interrupted after {len(tables)} of {len(files)} images; "
                f"{out / 'objects.csv'} holds their objects")
        raise
    objects = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(
        columns=["image", "label"])
    objects.to_csv(out / "objects.csv", index=False)
    return objects


def settings_or_fitted(model: model_io.SegModel, settings: PostprocessSettings | None,
                       shape: tuple[int, ...]) -> PostprocessSettings | None:
    """The post-processing asked for; without it, the model's fitted one for a 2-D image
    (``SegModel.postprocess``, see :mod:`napari_segkit.postprocess_fit`); else None (the
    defaults)."""
    fitted = model.postprocess
    if settings is not None or not fitted or image_kind(tuple(shape)) not in ("gray", "rgb"):
        return settings
    return PostprocessSettings(fg_threshold=fitted["fg_threshold"], split=fitted["split"])


def _predict_file(model: model_io.SegModel, path: Path, out: Path, progress: Any,
                  log: Callable[[str], Any], *, tile_size: int, tta: bool, device: Any,
                  diameter: Any, axes: str | None, channel: int | None,
                  settings: PostprocessSettings | None, stop: Any, client: Any = None,
                  labels_format: str = "auto", into_source: bool = False) -> pd.DataFrame:
    """One image of :func:`predict_folder`: its label files written, its table returned."""
    if path.suffix.lower() == ".zarr":
        from .io_zarr import open_image

        if axes is not None or channel is not None:
            raise ValueError(f"{path.name}: --axes / --channel apply to TIFF files; a .zarr "
                             "image is read with the axes its metadata gives")
        lazy = open_image(path, max_in_memory_pixels=0).data
        shape, dtype, reason = tuple(lazy.shape), lazy.dtype, "a .zarr image"
    else:
        shape, dtype = tiff_array_info(path)
        reason = predict_blocks.blockwise_reason(shape, dtype)
    stem = io.image_stem(path)
    fmt = label_outputs.labels_format_for(labels_format, blockwise=reason is not None)
    instances_path, semantic_path = label_outputs.label_paths(out, stem, fmt)
    if reason is not None:
        if diameter is not None:
            raise ValueError(
                f"{path.name} ({' x '.join(map(str, shape))}) is predicted block by block, "
                "which does not zoom images: leave out --diameter, or resize the image first"
            )
        log(f"{stem}: {' x '.join(map(str, shape))} {dtype} image; {reason}: predicting "
            "block by block")
        settings = settings_or_fitted(model, settings, shape)
        extra = {} if settings is None else settings.postprocess_kwargs(
            model.config.n_extra > 0, stack=image_kind(shape) == "stack")
        paths = () if into_source else (instances_path, semantic_path)
        return predict_blocks.predict_file_blockwise(
            model, path, *paths, labels_into_source=into_source, tile_size=tile_size,
            tta=tta, device=device, progress=progress, stop=stop, client=client,
            work_dir=out, **extra)
    image, note = read_image_as(path, axes, channel)
    if note:
        print(f"note: {note}", file=sys.stderr)
    request = PredictRequest(image, stem, model, tta=tta, tile_size=tile_size,
                             device=device, diameter=diameter, settings=settings)
    with warnings.catch_warnings():  # read_image_as has told how the axes were read
        warnings.filterwarnings("ignore", "an image of shape", UserWarning)
        outcome = predict_and_measure(request, progress=progress, stop=stop)
    geometry = label_outputs.source_geometry(path, outcome.instances.shape) if fmt == "zarr" else {}
    for target, labels in ((instances_path, outcome.instances), (semantic_path, outcome.semantic)):
        label_outputs.write_label_image(target, labels, **geometry)
    return outcome.table


# --------------------------------------------------------------------------- training
def run_training(*args: Any, on_event: Callable[[TrainEvent], Any] | None = None,
                 **kwargs: Any) -> model_io.SegModel:
    """Run :func:`napari_segkit.training.train` (same arguments) to the end and return the
    final model; ``on_event`` receives every event. The generator is closed on an error
    (e.g. Ctrl-C in ``on_event``), so its thread count and device memory are restored."""
    return run_to_end(train(*args, **kwargs), on_event)
