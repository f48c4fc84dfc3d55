"""The correction loop: the user fixes what the current model got wrong, the model retrains.

After a prediction the user clicks the nuclei the model missed (class ``"nucleus"``),
clicks the objects that are not nuclei (class ``"background"``), and edits the instance
labels directly where a click says too little: paints each nucleus of an object that
merged several with its own label (clicks on each split it too, but along rough cuts
that, over rounds, teach the model to cut large single nuclei: README), merges the
pieces of one nucleus, erases a false object. Those corrections, with the
earlier ones, become training targets on top of the current model's own prediction
(:func:`correction_targets`): what the user drew or erased is taught as drawn, a
background click removes its object, a click on nothing adds a nucleus, several clicks
in one object split it, and the
model's objects that nobody corrected are left out of the loss, and so is the edge
where a corrected object meets one of them (a click on one piece of a nucleus the model
cut in two does not teach that the nucleus ends where the other piece begins; on the
development split of the fluorescence images, 3 rounds from the shipped model, this
halved the first round's loss of F1; the scoring split did not confirm it: README,
"Measured"). (Taught as predicted,
``TrainConfig.correction_unclicked="keep"``, uncorrected objects let a model that is
often wrong teach itself its own errors, and the corrections changed nothing.) When the
user says they corrected every error of an image (``Corrections.reviewed``), its
uncorrected objects are right and taught as predicted.
:func:`retrain_with_corrections` then fine-tunes the *current* model on them (replay,
EMA: see :mod:`napari_segkit.finetune`).

There is no held-out validation here: corrections are by construction where the current
model is wrong, so they cannot score it fairly against the retrained one. The fine-tuning
recipe itself keeps the model close to where it started.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from ._common import counted, is_background

CLASSES = ("nucleus", "background")


def _any(mask) -> bool:
    return mask is not None and bool(np.any(mask))


def _edit_arrays(c: Corrections, shape) -> tuple[np.ndarray, np.ndarray]:
    """``c``'s drawn ids and erased mask as arrays of ``shape`` (zeros where it has none)."""
    painted = np.zeros(shape, np.int32) if c.painted is None else np.asarray(c.painted, np.int32)
    erased = np.zeros(shape, bool) if c.erased is None else np.asarray(c.erased, bool)
    if painted.shape != tuple(shape) or erased.shape != tuple(shape):
        raise ValueError(f"the edits of two rounds differ in shape ({painted.shape} and "
                         f"{tuple(shape)}): they are not of the same image")
    return painted, erased


@dataclass
class Corrections:
    """The user's corrections on one image (they accumulate over rounds).

    points : (row, col) of each click
    classes : ``"nucleus"`` or ``"background"`` per click
    painted : optionally the objects the user drew or edited on the instances (brush,
        fill), one id per object and 0 elsewhere: taught as drawn, on top of each new
        prediction (see :func:`edits_from_layers`)
    erased : optionally where the user erased objects (bool): taught as background
    labels : optionally a whole instance label image that is the truth everywhere (its
        objects are nuclei, the rest background), used instead of the model's prediction
    reviewed : the user corrected every error they found in the image: the objects of the
        prediction nobody corrected are right, and taught as predicted (otherwise they
        are left out of the loss, ``TrainConfig.correction_unclicked``). Measured on the
        development split of the fluorescence images it made the loop worse by its third
        round (the model's own rough outlines taught as right; README), so the Predict
        dock does not offer it
    """

    points: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    labels: np.ndarray | None = None
    painted: np.ndarray | None = None
    erased: np.ndarray | None = None
    reviewed: bool = False

    def __post_init__(self) -> None:
        self.points = [tuple(float(v) for v in p[-2:]) for p in self.points]
        self.classes = [self._check(c) for c in self.classes]
        if len(self.points) != len(self.classes):
            raise ValueError(f"got {len(self.points)} points and {len(self.classes)} classes; "
                             "give one class per point")

    @staticmethod
    def _check(cls) -> str:
        if is_background(cls):
            return "background"
        c = str(cls).strip().lower()
        if c not in CLASSES:
            raise ValueError(f"a correction is 'nucleus' or 'background', not {cls!r}")
        return c

    def add(self, point, cls: str = "nucleus") -> None:
        self.points.append(tuple(float(v) for v in tuple(point)[-2:]))
        self.classes.append(self._check(cls))

    def __len__(self) -> int:
        return len(self.points)

    @property
    def empty(self) -> bool:
        """Nothing to learn from: no click, no drawn or erased pixel, no labels."""
        return (len(self) == 0 and self.labels is None and not _any(self.painted)
                and not _any(self.erased))

    def with_earlier_edits(self, earlier: Corrections | None) -> Corrections:
        """These corrections with the drawn / erased pixels of ``earlier`` rounds on the same
        image kept where this round did not draw or erase (its clicks are not added: the
        corrections layer keeps every click of every round already)."""
        if earlier is None or (not _any(earlier.painted) and not _any(earlier.erased)):
            return self
        shape = np.shape(earlier.painted if earlier.painted is not None else earlier.erased)
        old_p, old_e = _edit_arrays(earlier, shape)
        new_p, new_e = _edit_arrays(self, shape)
        drawn = new_p > 0
        painted = np.where(drawn | new_e, 0, old_p)
        painted[drawn] = new_p[drawn] + painted.max()
        return replace(self, painted=painted, erased=(old_e & ~drawn) | new_e)

    @property
    def coords(self) -> np.ndarray:
        return np.asarray(self.points, float).reshape(-1, 2)


def correction_targets(model, image: np.ndarray, corrections: Corrections, *,
                       boundary_width: int = 1, prediction=None, distill: bool = False,
                       unclicked: str = "unknown"):
    """Training targets for one image: the current model's prediction, with the user's
    drawn and erased pixels pasted on it, corrected by the clicks (see module docstring).

    ``prediction`` may pass a :class:`napari_segkit.prediction.Prediction` of ``model`` on
    ``image`` already at hand; otherwise one is made (mirror-averaged). ``distill``: where
    the clicks change nothing, the targets are the model's own confident classes and
    centre map instead of targets re-derived from its instances (see
    :func:`napari_segkit.click_targets.targets_from_clicks`). ``unclicked``: the
    model's objects that nobody corrected are left out of the loss (``"unknown"``, the
    default) or kept as objects (``"keep"``); drawn objects are always taught, and with
    ``corrections.labels`` every object of the labels is, and with ``corrections.reviewed``
    every object of the prediction (``"keep"``).
    """
    from .click_targets import check_unclicked, targets_from_clicks
    from .prediction import predict
    from .targets import instance_targets

    check_unclicked(unclicked)  # before ``reviewed`` may override it
    shape = np.shape(image)[:2]
    for name in ("labels", "painted", "erased"):
        edit = getattr(corrections, name)
        if edit is not None and np.shape(edit) != shape:
            what = "edited labels" if name == "labels" else f"{name} pixels"
            raise ValueError(f"{what} of shape {np.shape(edit)} do not match the image "
                             f"{shape}; predict again and redo the edits on this image")
    if corrections.labels is not None:  # the user's labels are the truth everywhere
        base = np.asarray(corrections.labels)
        if len(corrections) == 0:
            return replace(instance_targets(base, boundary_width), instances=base)
        unclicked, known, probabilities = "keep", None, None
    else:
        if corrections.reviewed:
            unclicked = "keep"
        if prediction is None:
            prediction = predict(model, image, tta=True)
        base, known = paste_edits(prediction.instances, corrections.painted, corrections.erased)
        if len(corrections) == 0 and known is None:
            return replace(instance_targets(base, boundary_width), instances=base)
        probabilities = prediction.probabilities
    return targets_from_clicks(image, corrections.coords, list(corrections.classes),
                               boundary_width=boundary_width, guide=base,
                               guide_probabilities=probabilities, unclicked=unclicked,
                               distill=distill, known=known)


def lone_clicks_in_large_objects(corrections: Corrections, instances: np.ndarray,
                                 factor: float = 2.0) -> int:
    """How many ``nucleus`` clicks of ``corrections`` are the only one in a predicted object
    of ``instances`` whose area is more than ``factor`` times the median object's.

    Such an object is taught as one nucleus (a click says a nucleus is here, not where it
    ends). When the model merged several nuclei into it, a click on one of them teaches
    the merge, and the error stays round after round: the user should paint each nucleus
    in it with its own label (a click on each also splits it, along rough cuts that teach
    the model to cut large single nuclei in later rounds; README, the correction loop's
    repeated errors)."""
    instances = np.asarray(instances)
    areas = np.bincount(instances.ravel())
    if len(areas) < 2 or not (areas[1:] > 0).any():
        return 0
    large = areas > factor * np.median(areas[1:][areas[1:] > 0])
    large[0] = False
    nuclei = corrections.coords[[c == "nucleus" for c in corrections.classes]]
    idx = np.clip(np.round(nuclei).astype(int), 0, np.array(instances.shape[-2:]) - 1)
    hit = instances[idx[:, 0], idx[:, 1]] if len(idx) else np.zeros(0, int)
    clicks_per_object = np.bincount(hit, minlength=len(areas))
    return int(np.sum(large & (clicks_per_object == 1)))


def lone_click_warning(lone: int) -> str:
    """What to tell the user about ``lone`` clicks counted by
    :func:`lone_clicks_in_large_objects` ("" for none)."""
    if not lone:
        return ""
    one = lone == 1
    return (f"{counted(lone, 'nucleus clicks')} {'is' if one else 'are'} alone in "
            f"{'an object' if one else 'objects'} over twice the usual nucleus size: "
            f"{'that object is' if one else 'each is'} taught as one nucleus. If "
            f"{'it' if one else 'one'} holds several nuclei, paint each of them with its own "
            "label in the instances (a click on each cuts it only roughly) and retrain.")


def paste_edits(predicted: np.ndarray, painted, erased):
    """The predicted instances with the user's drawn objects on top and erased pixels
    cleared, and the mask of those pixels (None without edits). A predicted object that a
    drawn one covers for more than half is dropped (the drawing replaces it); one covered
    less keeps the rest of its pixels."""
    if not _any(painted) and not _any(erased):
        return predicted, None
    guide = np.asarray(predicted).astype(np.int64, copy=True)
    known = np.zeros(guide.shape, bool)
    if _any(erased):
        known |= np.asarray(erased, bool)
        guide[known] = 0
    if _any(painted):
        drawn = np.asarray(painted) > 0
        n = int(guide.max()) + 1
        before = np.bincount(guide.ravel(), minlength=n)
        guide[drawn] = 0
        after = np.bincount(guide.ravel(), minlength=n)
        covered = after < 0.5 * before
        covered[0] = False
        guide[covered[guide]] = 0
        guide[drawn] = np.asarray(painted, np.int64)[drawn] + n
        known |= drawn
    return guide, known


def correction_training(
    model, images: Sequence[np.ndarray], corrections: Sequence[Corrections], *,
    config=None, out_path: str | os.PathLike | None = None,
    stop: threading.Event | Callable[[], bool] | None = None,
) -> Generator:
    """Fine-tune ``model`` (the current one: a SegModel, a model file or ``"default"``) on its own
    prediction corrected by the user; a :func:`napari_segkit.training.train` generator
    (yields progress events, returns the retrained model; ``model`` is not modified)."""
    from .model_io import as_model
    from .prediction import predict
    from .training import TrainConfig, train

    if len(images) != len(corrections):
        raise ValueError(f"got {len(images)} images and {len(corrections)} corrections; "
                         "give one Corrections (possibly empty) per image")
    for im in images:
        if not (np.ndim(im) == 2 or (np.ndim(im) == 3 and np.shape(im)[-1] in (3, 4))):
            raise ValueError(f"an image of shape {np.shape(im)}: corrections work on 2-D grey "
                             "or RGB images; pick one plane or channel (CLI: --axes, --channel)")
    model = as_model(model)  # only predicted with here; train() trains a copy
    cfg = replace(config) if config is not None else TrainConfig(time_budget_s=60.0, steps=10**7)
    cfg.val_fraction = 0.0
    targets, lone = [], 0
    for im, c in zip(images, corrections, strict=True):
        prediction = None if c.labels is not None else predict(model, im, tta=True)
        targets.append(correction_targets(model, im, c, boundary_width=cfg.boundary_width,
                                          prediction=prediction, distill=cfg.click_distill,
                                          unclicked=cfg.correction_unclicked))
        if prediction is not None:
            lone += lone_clicks_in_large_objects(c, prediction.instances)
    warning = lone_click_warning(lone)
    return (yield from train(list(images), targets=targets, config=cfg, init=model,
                             out_path=out_path, stop=stop, warnings=[warning] if warning else []))


def retrain_with_corrections(model, images, corrections, *, config=None, out_path=None,
                             progress: Callable | None = None):
    """Run :func:`correction_training` to the end and return the retrained model."""
    from .train_config import run_to_end

    return run_to_end(correction_training(model, images, corrections, config=config,
                                          out_path=out_path), progress)


def corrections_from_layers(coords, classes=None, edited_labels=None,
                            predicted_labels=None) -> Corrections:
    """The corrections of one image from what the user has on screen.

    coords : (N, 2+) clicks in image pixels (the last two axes are row, col); classes:
        ``"nucleus"`` / ``"background"`` per click (default all nuclei)
    edited_labels : the instances as the user left them (brush / fill / eraser edits);
        where they differ from ``predicted_labels`` they become drawn and erased pixels
        (:func:`edits_from_layers`)
    """
    coords = np.asarray(coords, float).reshape(-1, np.shape(coords)[-1] if np.size(coords) else 2)
    if len(coords) and coords.shape[1] > 2 and np.ptp(coords[:, :-2], axis=0).any():
        raise ValueError("corrections work on one 2-D image; the clicks lie on several planes")
    classes = ["nucleus"] * len(coords) if classes is None else [str(c) for c in classes]
    painted = erased = None
    if edited_labels is not None and predicted_labels is not None:
        painted, erased = edits_from_layers(edited_labels, predicted_labels)
    return Corrections([tuple(p[-2:]) for p in coords], classes, painted=painted, erased=erased)


def edits_from_layers(edited_labels, predicted_labels):
    """What the user changed on the predicted instances: ``(painted, erased)``, or
    ``(None, None)`` when nothing changed.

    painted : every object the user drew or touched (painted, filled, merged into another,
        partly erased, cut by another id), with its whole outline as left, 0 elsewhere;
        the objects nobody touched are not in it
    erased : pixels that were an object and are background now
    """
    edited = np.asarray(edited_labels)
    predicted = np.asarray(predicted_labels)
    if edited.shape != predicted.shape:
        raise ValueError(f"the edited instances {edited.shape} do not match the prediction "
                         f"{predicted.shape}; predict again before correcting")
    changed = edited != predicted
    if not changed.any():
        return None, None
    touched = np.union1d(edited[changed], predicted[changed])
    touched = touched[touched > 0]
    painted = np.where(np.isin(edited, touched), edited, 0).astype(np.int32)  # the user's ids
    erased = changed & (edited == 0)
    return (painted if painted.any() else None), (erased if erased.any() else None)
