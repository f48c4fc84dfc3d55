"""Post-processing fitted to annotated images, as StarDist fits its thresholds.

A network's probabilities become objects through two choices the user can change without
predicting again (:class:`~napari_segkit.prediction_results.PostprocessSettings`): the
probability threshold of the foreground and the split level of touching nuclei. The
shipped defaults (0.5, level 0) suit the images the default model was trained on; on a
user's images other values often match their nuclei better. :func:`fit_postprocess`
tries a small grid of both on images with full instance masks and keeps the pair with
the best F1 at IoU 0.5, pooled over the objects of every image.

The fitted settings belong to the model (``SegModel.postprocess``, saved in its file):
prediction uses them unless told otherwise. Fit them on images the model was *not*
trained on where there are some, and check the result on an image left out of the fit:
a few images do not always pin the settings down (README, "Measured").
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from ._common import image_kind
from .metrics import as_labels, count_objects, match_instances
from .postprocess import SPLIT_LEVELS, instances_from_probabilities
from .prediction_results import PostprocessSettings

#: Thresholds and split levels tried by :func:`fit_postprocess`.
THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)
SPLITS = tuple(range(0, SPLIT_LEVELS + 1, 2))


@dataclass
class PostprocessFit:
    """What :func:`fit_postprocess` found.

    settings : the best pair (the defaults when nothing beats them)
    f1, default_f1 : pooled F1 at IoU 0.5 of ``settings`` and of the defaults
    n_objects : annotated objects the F1 rests on
    table : F1 of every (threshold, split level) tried
    """

    settings: PostprocessSettings
    f1: float
    default_f1: float
    n_objects: int
    table: dict[tuple[float, int], float] = field(default_factory=dict)

    def as_dict(self) -> dict:
        """The settings as ``SegModel.postprocess`` stores them, with the evidence."""
        return {"fg_threshold": self.settings.fg_threshold, "split": self.settings.split,
                "fitted_f1": round(self.f1, 4), "default_f1": round(self.default_f1, 4),
                "n_objects": self.n_objects}

    def summary(self) -> str:
        s = self.settings
        return (f"threshold {s.fg_threshold:.2f}, split level {s.split}: F1@0.5 {self.f1:.3f} "
                f"on {self.n_objects} annotated objects (defaults 0.50, 0: {self.default_f1:.3f})")


def _check(probabilities, labels, n_classes: int) -> list[np.ndarray]:
    if len(probabilities) != len(labels):
        raise ValueError(f"got {len(probabilities)} predictions but {len(labels)} label images")
    if not probabilities:
        raise ValueError("fitting the post-processing needs at least one image with masks")
    out = []
    for i, (p, lb) in enumerate(zip(probabilities, labels, strict=True)):
        lb = as_labels(lb, f"labels {i}")
        if lb.ndim != 2 or np.shape(p)[1:] != lb.shape or np.shape(p)[0] < n_classes:
            raise ValueError(f"image {i}: probabilities {np.shape(p)} do not fit 2-D labels "
                             f"{lb.shape} (expected ({n_classes}+, H, W) and (H, W))")
        out.append(lb)
    if not any(lb.any() for lb in out):
        raise ValueError("the label images hold no objects: paint or convert the nuclei of "
                         "at least one image before fitting")
    return out


def fit_postprocess(
    probabilities: Sequence[np.ndarray],
    labels: Sequence[np.ndarray],
    n_classes: int,
    *,
    thresholds: Sequence[float] = THRESHOLDS,
    splits: Sequence[int] = SPLITS,
    min_size: int | None = None,
    zoom: float = 1.0,
) -> PostprocessFit:
    """The (threshold, split level) whose instances match ``labels`` best.

    ``probabilities``: per image the model's output at the image's pixels (``n_classes``
    class channels, then the centre map when the model has one), as
    :func:`napari_segkit.prediction.predict_probabilities` returns it; ``labels``: full
    instance masks of the same images (every object annotated). Ties go to the pair
    closest to the defaults. ``zoom``: the test-time zoom the probabilities were predicted
    at (object sizes scale with it, as in prediction).
    """
    gts = _check(probabilities, labels, n_classes)
    pairs = {(0.5, 0)} | {(float(t), int(s)) for t in thresholds for s in splits}
    table: dict[tuple[float, int], float] = {}
    n_objects = sum(count_objects(g) for g in gts)
    for t, s in sorted(pairs):
        settings = PostprocessSettings(fg_threshold=t, min_size=min_size, split=s)
        tp = fp = fn = 0
        for p, gt in zip(probabilities, gts, strict=True):
            p = np.asarray(p)
            kwargs = settings.postprocess_kwargs(p.shape[0] > n_classes, zoom)
            pred = instances_from_probabilities(p, n_classes=n_classes, **kwargs)
            m = match_instances(gt, pred)
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
        table[(t, s)] = 2 * tp / max(2 * tp + fp + fn, 1)
    # the best F1; among equals the pair closest to the defaults (the defaults themselves)
    best = max(table, key=lambda k: (table[k], -abs(k[0] - 0.5) - abs(k[1]) / SPLIT_LEVELS))
    return PostprocessFit(PostprocessSettings(fg_threshold=best[0], min_size=min_size,
                                              split=best[1]),
                          table[best], table[(0.5, 0)], n_objects, table)


def fit_model_postprocess(model, images: Sequence[np.ndarray], labels: Sequence[np.ndarray], *,
                          tile_size: int = 256, device=None):
    """``model`` (a SegModel, a model file or ``"default"``) with post-processing fitted to
    ``images`` and their full instance ``labels`` (2-D images); returns the fitted model
    (a copy sharing the network, ``postprocess`` set) and the :class:`PostprocessFit`."""
    import dataclasses

    from .model_io import as_model
    from .prediction import predict_probabilities

    model = as_model(model)
    images, labels = list(images), list(labels)
    if len(images) != len(labels):
        raise ValueError(f"got {len(images)} images but {len(labels)} label images")
    for i, im in enumerate(images):
        if image_kind(np.shape(im)) not in ("gray", "rgb"):
            raise ValueError(f"image {i} of shape {np.shape(im)} is not a 2-D image: fitting the "
                             "post-processing works on 2-D grey or colour images; fit on "
                             "single planes")
    probs = [predict_probabilities(model, im, tile_size=tile_size, device=device)
             for im in images]
    fit = fit_postprocess(probs, labels, model.config.n_classes)
    fitted = dataclasses.replace(model, postprocess=fit.as_dict(),
                                 provenance=dict(model.provenance))
    return fitted, fit
