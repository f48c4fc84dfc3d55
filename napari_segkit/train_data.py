"""What a training run learns from and is validated on, image by image.

:func:`prepare_training_data` turns the user's images and annotations (instance, semantic
or sparse labels, or clicks, each with an optional fully annotated region) into network
inputs, training :class:`~napari_segkit.targets.Targets` and a validation set:

- a separate validation set when one is given (full instance labels);
- otherwise, for instance labels and for clicks, the bottom strip of *every* image is held
  out (:mod:`napari_segkit.holdout`) and scored by masks or by counting;
- otherwise (semantic / sparse labels, ready-made targets) whole images are held out and
  scored by foreground IoU (:func:`napari_segkit.sampling.split_validation`).

3-D stacks become 2-D training planes with a 3-D held-out part
(:mod:`napari_segkit.stack_training`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._common import IGNORE_INDEX, background_mask, classes_of, counted, label_dtype
from .click_targets import region_mask, targets_from_clicks
from .color_augment import with_color_variants
from .holdout import HeldOut, split_holdout
from .normalization import Normalization
from .object_size import median_object_diameter
from .sampling import split_validation
from .stack_training import check_stack_inputs, stack_planes, stack_scales, validation_part
from .targets import Targets, instance_targets, label_targets

__all__ = ["TrainingData", "as_image_list", "check_has_objects", "compact_ids",
           "labels_source_of", "looks_partial", "partial_annotation_warnings", "points_of",
           "prepare_training_data", "unannotated_count", "unannotated_objects"]


@dataclass
class TrainingData:
    """Network inputs and targets to train on, and what validation scores."""

    x: list[np.ndarray]
    targets: list[Targets]
    val_x: list[np.ndarray] = field(default_factory=list)
    val_targets: list[Targets] = field(default_factory=list)
    val_instances: list = field(default_factory=list)
    holdout: list[HeldOut] = field(default_factory=list)
    #: what the targets come from: "points" (clicks), ``TrainConfig.labels_kind`` (every
    #: image labelled, e.g. "instances": full masks), that kind + "+points" (some images
    #: labelled, the others clicked) or "targets" (ready-made, e.g. corrections)
    labels_source: str = "instances"
    #: median diameter of the annotated objects (px), for test-time zoom
    object_diameter: float | None = None

    @property
    def has_validation(self) -> bool:
        return bool(self.holdout) or bool(self.val_x)

    @property
    def n_validation(self) -> str:
        if self.holdout:
            return counted(len(self.holdout), "held-out strips")
        return counted(len(self.val_x), "validation images")


def as_image_list(x, n=None) -> list:
    """One array or a sequence of arrays -> a list (``None`` -> ``n`` Nones)."""
    if x is None:
        return [None] * (n or 0)
    if isinstance(x, np.ndarray) and (n is None or x.ndim in (2, 3) and n == 1):
        return [x]
    return list(x)


def points_of(p):
    """Accept (N,2) arrays, (coords, classes) tuples or (coords, DataFrame with 'class')."""
    if p is None:
        return None, None
    if isinstance(p, tuple) and len(p) == 2:
        coords, cls = p
        if hasattr(cls, "columns"):
            cls = classes_of(cls)
        return np.asarray(coords, float)[:, -2:], cls
    return np.asarray(p, float)[:, -2:], None


def compact_ids(labels):
    """Instance labels renumbered 1..N when their ids run far beyond the number of pixels
    (e.g. uint64 ids around 2**40, which per-id tables cannot hold); others as they are."""
    if labels is None:
        return None
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iu" or labels.size == 0:
        return labels
    hi, lo = int(labels.max()), int(labels.min())
    if lo < 0 or hi < max(labels.size, np.iinfo(np.uint16).max):
        return labels
    uniq, inverse = np.unique(labels, return_inverse=True)
    out = inverse.reshape(labels.shape) + (0 if uniq[0] == 0 else 1)
    return out.astype(label_dtype(len(uniq)))


def labels_source_of(labels: Sequence, cfg) -> str:
    """:attr:`TrainingData.labels_source` of images with these label images (None: the
    image has clicks instead)."""
    given = sum(lb is not None for lb in labels)
    if not given:
        return "points"
    return cfg.labels_kind if given == len(labels) else f"{cfg.labels_kind}+points"


def check_has_objects(targets: Sequence[Targets], source: str) -> None:
    """ValueError when no training target marks any object (nothing to learn from)."""
    if any(bool(np.any(t.classes > 0)) for t in targets):
        return
    if source == "points":
        raise ValueError("the clicks mark no object: they are all background clicks or lie "
                         "outside their images; click on at least one object (nucleus) to train")
    raise ValueError("the label images hold no object (every pixel is background); label at "
                     "least one object (1..N) in one image to train")


def targets_for(image, labels, points, cfg, n_classes: int, guide_model=None,
                region=None) -> Targets:
    """Training targets of one image from its labels or its clicks (``cfg``: TrainConfig).

    With ``guide_model`` (fine-tuning from clicks) the clicks correct the model's own
    mirror-averaged predictions (:func:`napari_segkit.click_targets.click_guided_instances`).
    """
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != np.asarray(image).shape[:2]:
            raise ValueError(
                f"labels shape {labels.shape} does not match image shape {np.shape(image)[:2]}"
            )
        t = label_targets(labels, cfg.labels_kind, n_classes, cfg.boundary_width)
        if region is not None:  # outside the annotated region nothing is known
            outside = ~region_mask(region, labels.shape)
            t.classes[outside] = IGNORE_INDEX
            t.center_mask[outside] = False
        return t
    coords, cls = points_of(points)
    if coords is None or len(coords) == 0:
        raise ValueError("each training image needs labels or points; this one has neither")
    guide = fg = None
    if guide_model is not None:
        from .prediction import predict

        guess = predict(guide_model, image, tta=True)
        guide, fg = guess.instances, guess.probabilities
    return targets_from_clicks(image, coords, cls, boundary_width=cfg.boundary_width,
                               guide=guide, guide_probabilities=fg, region=region,
                               distill=cfg.click_distill, click_centres=cfg.click_centres,
                               grow_all_clicked=cfg.grow_all_clicked)


#: partial annotations: at most this many images are checked (one prediction each), and
#: no more pixels / voxels than this in all (a stack's prediction holds 16 bytes a voxel)
PARTIAL_CHECK_IMAGES = 8
PARTIAL_CHECK_PIXELS = 2**25
#: ... and an image is reported when the model finds at least this many objects that no
#: annotation touches, and they are at least this fraction of annotations + such objects
PARTIAL_MIN_OBJECTS = 3
PARTIAL_MIN_FRACTION = 0.2


def unannotated_objects(instances: np.ndarray, foreground: np.ndarray, annotated: np.ndarray,
                        region=None, *, min_area: float = 0.0, confidence: float = 0.7) -> int:
    """How many predicted objects (``instances``) no ``annotated`` pixel (a mask's, or a
    click's) touches: objects the model is sure of (mean ``foreground`` probability >=
    ``confidence``), of ``min_area`` pixels or more, with most of their pixels inside
    ``region`` (None: the whole image). Nuclei nobody annotated, or the model's false
    objects."""
    from scipy import ndimage as ndi

    instances = np.asarray(instances)
    n = int(instances.max())
    if n == 0:
        return 0
    ids = np.arange(1, n + 1)
    touched = np.zeros(n + 1, bool)
    touched[np.unique(instances[np.asarray(annotated, bool)])] = True
    big = np.bincount(instances.ravel(), minlength=n + 1)[1:] >= min_area
    sure = np.asarray(ndi.mean(foreground, instances, ids)) >= confidence
    inside = True if region is None else \
        np.asarray(ndi.mean(region_mask(region, instances.shape), instances, ids)) > 0.5
    return int(np.sum(~touched[1:] & big & sure & inside))


def _object_sizes(labels: np.ndarray) -> np.ndarray:
    """Pixel counts of the objects of ``labels`` (ids without pixels left out)."""
    sizes = np.bincount(np.asarray(labels).ravel())[1:]
    return sizes[sizes > 0]


def unannotated_count(prediction, labels=None, points=None, region=None) -> tuple[int, int]:
    """(objects of ``prediction`` that no annotation touches, annotations) of one 2-D image
    or (Z, Y, X) stack annotated with instance ``labels`` (masks), or of one 2-D image
    annotated with ``points`` (clicks, in any form
    :func:`points_of` takes; a background click on an object counts as touching it):
    :func:`unannotated_objects` of at least a quarter of the median mask's, or predicted
    object's, area; annotations are masks, or nucleus clicks."""
    instances = prediction.instances
    if labels is not None:
        annotated, sizes = np.asarray(labels) > 0, _object_sizes(labels)
        n_ann = len(sizes)
    else:
        coords, cls = points_of(points)
        annotated = np.zeros(instances.shape, bool)
        px = np.round(coords).astype(int)
        ok = np.all((px >= 0) & (px < annotated.shape), axis=1)
        annotated[px[ok, 0], px[ok, 1]] = True
        # nucleus clicks on the image (those outside it are skipped by training too)
        n_ann = int(np.sum(~background_mask(cls, len(coords))[ok]))
        sizes = _object_sizes(instances)
    area = float(np.median(sizes)) if sizes.size else 0.0
    free = unannotated_objects(instances, 1.0 - prediction.probabilities[0], annotated, region,
                               min_area=0.25 * area)
    return free, n_ann


def partial_annotation_warnings(model, images: Sequence, labels: Sequence,
                                points: Sequence | None = None,
                                regions: Sequence | None = None, scale=None) -> list[str]:
    """Warnings for images whose instance masks or clicks look partial: inside the fully
    annotated region every pixel without a mask, and every object without a click, is
    taught as background, so nuclei left out there teach the model to miss them.
    ``model`` (the one being fine-tuned) predicts the first :data:`PARTIAL_CHECK_IMAGES`
    annotated images (:data:`PARTIAL_CHECK_PIXELS` pixels or voxels in all; larger ones
    are left unchecked); an image is reported when it finds :data:`PARTIAL_MIN_OBJECTS` or
    more objects that no annotation touches (:func:`unannotated_count`) and they are
    :data:`PARTIAL_MIN_FRACTION` or more of annotations + such objects. A warning, not an
    error: they may be the model's own false objects.

    (Z, Y, X) stacks (voxel size ``scale``, as for training) are checked when they have
    masks; clicks in a stack are not (far from every click, unclicked nuclei that are not
    clearly dark are left out of the training there, not taught as background)."""
    from .prediction import predict

    stacks = check_stack_inputs(images)
    n = len(images)
    points = [None] * n if points is None else list(points)
    regions = [None] * n if regions is None else list(regions)
    scales = stack_scales(scale, n) if stacks else [None] * n
    out: list[str] = []
    checked = pixels = 0
    for i, (image, lab, pts) in enumerate(zip(images, labels, points, strict=True)):
        size = int(np.prod(np.shape(image)[:3 if stacks else 2]))
        if (checked >= PARTIAL_CHECK_IMAGES or pixels + size > PARTIAL_CHECK_PIXELS
                or (lab is None and (stacks or points_of(pts)[0] is None))):
            continue
        checked, pixels = checked + 1, pixels + size
        prediction = predict(model, image, scale=scales[i])
        free, n_ann = unannotated_count(prediction, lab, pts, regions[i])
        if not looks_partial(free, n_ann):
            continue
        out.append(_partial_text(free, n_ann, lab is not None, regions[i], stacks,
                                 f"Image {i + 1}" if n > 1 else ""))
    return out


def _partial_text(free: int, n_ann: int, masks: bool, region, stack: bool, image: str) -> str:
    """What :func:`partial_annotation_warnings` says about one image (``image``: its name
    when there are several)."""
    where = "the whole stack" if stack else \
        "the whole image" if region is None else "the fully annotated region"
    if masks:
        what, left = "masks", f"every {'voxel' if stack else 'pixel'} without a mask"
        fix = "paint them too"
    else:
        what, left, fix = "clicks", "every object without a click", "click them too"
    mark = ("" if stack else ", or mark where you annotated every nucleus (Train dock: a "
            "Shapes rectangle under 'Fully annotated'; Python: regions=)")
    text = (f"the starting model finds {free} objects that none of your {counted(n_ann, what)} "
            f"touches. In {where} {left} is taught as background, so if those are nuclei "
            f"you left out, the model learns to miss them: {fix}{mark}. If they are not "
            "nuclei, carry on.")
    return f"{image}: {text}" if image else text[0].upper() + text[1:]


def looks_partial(free: int, n_annotated: int) -> bool:
    """Whether ``free`` unannotated objects next to ``n_annotated`` annotations make an
    image look partly annotated (:data:`PARTIAL_MIN_OBJECTS`, :data:`PARTIAL_MIN_FRACTION`)."""
    return free >= PARTIAL_MIN_OBJECTS and free >= PARTIAL_MIN_FRACTION * (free + n_annotated)


def _evidence(labels, points, region, shape, cfg) -> dict | None:
    """What the held-out strip of one image is scored against (masks or clicks)."""
    if labels is not None:
        if cfg.labels_kind != "instances":
            return None
        return {"instances": np.asarray(labels), "region": region_mask(region, shape)}
    coords, cls = points_of(points)
    if coords is None:
        return None
    is_bg = background_mask(cls, len(coords))
    return {"clicks": coords[~is_bg], "background": coords[is_bg],
            "region": region_mask(region, shape)}


def prepare_training_data(
    images: Sequence[np.ndarray],
    labels: Sequence,
    points: Sequence,
    cfg,
    norm: Normalization,
    in_channels: int,
    n_classes: int,
    rng: np.random.Generator,
    *,
    guide_model=None,
    regions: Sequence | None = None,
    targets: Sequence[Targets] | None = None,
    val_images: Sequence[np.ndarray] | None = None,
    val_labels: Sequence[np.ndarray] | None = None,
    scale=None,
) -> TrainingData:
    """Inputs, targets and validation of a training run (see the module docstring).

    With ``cfg.color_variants`` (and augmentation on), every training input carries its
    colour variants stacked after its channels (split again by
    :func:`napari_segkit.color_augment.split_variants`); validation inputs do not.
    3-D stacks become 2-D planes (:mod:`napari_segkit.stack_training`; ``scale``: their
    voxel size (z, y, x), one for all or one per stack).
    """
    if check_stack_inputs(images):
        return _stack_training_data(images, labels, points, cfg, norm, in_channels, n_classes,
                                    regions, targets, val_images, val_labels, scale)
    n = len(images)
    regions = [None] * n if regions is None else list(regions)
    if len(regions) != n:
        raise ValueError(f"got {n} images but {len(regions)} regions; give one per image "
                         f"(None for a fully annotated image)")
    if cfg.labels_kind == "instances":
        labels = [compact_ids(lb) for lb in labels]
    if val_labels is not None:
        val_labels = [compact_ids(lb) for lb in val_labels]
    xs = [norm.prepare(im, in_channels) for im in images]
    if targets is not None:
        tgs = list(targets)
        if len(tgs) != n:
            raise ValueError(f"got {n} images but {len(tgs)} targets")
        for x, t in zip(xs, tgs, strict=True):
            if t.classes.shape != x.shape[1:]:
                raise ValueError(f"targets of shape {t.classes.shape} do not match their image "
                                 f"{x.shape[1:]}")
        source, evidence = "targets", [None] * n
    else:
        tgs = [targets_for(im, lb, pt, cfg, n_classes, guide_model, rg)
               for im, lb, pt, rg in zip(images, labels, points, regions, strict=True)]
        source = labels_source_of(labels, cfg)
        check_has_objects(tgs, source)
        evidence = [_evidence(lb, pt, rg, x.shape[1:], cfg)
                    for lb, pt, rg, x in zip(labels, points, regions, xs, strict=True)]
    full = [np.asarray(lb) if (lb is not None and cfg.labels_kind == "instances")
            else t.instances for lb, t in zip(labels, tgs, strict=True)]
    meta = {"labels_source": source, "object_diameter": median_object_diameter(full)}
    n_variants = getattr(cfg, "color_variants", 0) if cfg.augment else 0
    xs = with_color_variants(images, xs, n_variants, cfg.seed,
                             lambda im: norm.prepare(im, in_channels))
    if val_images is not None:
        va_i = [np.asarray(lb) for lb in val_labels]
        return TrainingData(xs, tgs, [norm.prepare(im, in_channels) for im in val_images],
                            [instance_targets(lb) for lb in va_i], va_i, **meta)
    if cfg.val_fraction > 0 and targets is None and all(e is not None for e in evidence):
        trained, parts = [], []
        for x, t, ev in zip(xs, tgs, evidence, strict=True):
            t2, part = split_holdout(x[:in_channels], t, cfg.val_fraction, **ev)
            trained.append(t2)
            if part is not None:
                parts.append(part)
        return TrainingData(xs, trained, holdout=parts, **meta)
    if targets is not None:  # ready-made targets (corrections): all of them train
        return TrainingData(xs, tgs, **meta)
    # semantic / sparse labels: foreground IoU on held-out images
    tr_x, tr_t, va_x, va_t, va_i = split_validation(xs, tgs, full, cfg.val_fraction, rng)
    return TrainingData(tr_x, tr_t, [x[:in_channels] for x in va_x], va_t, va_i, **meta)


def _stack_training_data(stacks, labels, points, cfg, norm, in_channels, n_classes, regions,
                         targets, val_images, val_labels, scale) -> TrainingData:
    """:func:`prepare_training_data` of 3-D stacks (see :mod:`napari_segkit.stack_training`)."""
    n = len(stacks)
    if targets is not None or (regions is not None and any(r is not None for r in regions)):
        raise ValueError("training on 3-D stacks takes 3-D labels or 3-D clicks; ready-made "
                         "targets and annotated regions are 2-D only")
    if getattr(cfg, "color_variants", 0):
        raise ValueError("colour variants do not apply to grayscale stacks; set color_variants=0")
    scales = stack_scales(scale, n)
    separate = val_images is not None
    planes = [stack_planes(st, lb, pt, sc, cfg, norm, in_channels, n_classes,
                           held_out=not separate)
              for st, lb, pt, sc in zip(stacks, labels, points, scales, strict=True)]
    tgs = [t for p in planes for t in p.targets]
    source = labels_source_of(labels, cfg)
    check_has_objects(tgs, source)
    diameters = np.concatenate([p.diameters for p in planes])
    meta = {"labels_source": source,
            "object_diameter": float(np.median(diameters)) if diameters.size else None}
    xs = [x for p in planes for x in p.x]
    if separate:
        if not check_stack_inputs(val_images):
            raise ValueError("validation images of stacks must be 3-D stacks too")
        val_scales = stack_scales(scale if np.ndim(scale) <= 1 else None, len(val_images))
        parts = [validation_part(st, lb, sc, norm, in_channels)
                 for st, lb, sc in zip(val_images, val_labels, val_scales, strict=True)]
        return TrainingData(xs, tgs, holdout=parts, **meta)
    return TrainingData(xs, tgs, holdout=[p.holdout for p in planes if p.holdout is not None],
                        **meta)
