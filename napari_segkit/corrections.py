"""The correction loop: the user fixes what the current model got wrong, the model retrains.

After a prediction the user clicks the nuclei the model missed (class ``"nucleus"``),
clicks the objects that are not nuclei (class ``"background"``), clicks each nucleus of
an object that merged several, and may edit the instance labels directly. Those
corrections, with the earlier ones, become training targets on top of the current
model's own prediction (:func:`correction_targets`): a background click removes its
object, a click on nothing adds a nucleus, several clicks in one object split it, and the
model's objects that nobody corrected are left out of the loss, and so is the edge
where a corrected object meets one of them (a click on one piece of a nucleus the model
cut in two does not teach that the nucleus ends where the other piece begins; on the
development split of the fluorescence images, 3 rounds from the shipped model, this
halved the first round's loss of F1; the scoring split did not confirm it: README,
"Measured"). (Taught as predicted,
``TrainConfig.correction_unclicked="keep"``, uncorrected objects let a model that is
often wrong teach itself its own errors, and the corrections changed nothing.)
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

from ._common import is_background

CLASSES = ("nucleus", "background")


@dataclass
class Corrections:
    """The user's corrections on one image (they accumulate over rounds).

    points : (row, col) of each click
    classes : ``"nucleus"`` or ``"background"`` per click
    labels : optionally an edited instance label image, taken as the truth where it has
        objects and as background elsewhere (instead of the model's prediction)
    """

    points: list = field(default_factory=list)
    classes: list = field(default_factory=list)
    labels: np.ndarray | None = None

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
    def coords(self) -> np.ndarray:
        return np.asarray(self.points, float).reshape(-1, 2)


def correction_targets(model, image: np.ndarray, corrections: Corrections, *,
                       boundary_width: int = 1, prediction=None, distill: bool = False,
                       unclicked: str = "unknown"):
    """Training targets for one image: the current model's prediction (or the edited
    labels) corrected by the clicks (see module docstring).

    ``prediction`` may pass a :class:`napari_segkit.prediction.Prediction` of ``model`` on
    ``image`` already at hand; otherwise one is made (mirror-averaged). ``distill``: where
    the clicks change nothing, the targets are the model's own confident classes and
    centre map instead of targets re-derived from its instances (see
    :func:`napari_segkit.click_targets.targets_from_clicks`). ``unclicked``: the
    model's objects that nobody corrected are left out of the loss (``"unknown"``, the
    default) or kept as objects (``"keep"``).
    """
    from .click_targets import targets_from_clicks
    from .prediction import predict
    from .targets import instance_targets

    if corrections.labels is not None and len(corrections) == 0:
        base = np.asarray(corrections.labels)  # the user's edits alone: nothing to predict
    else:
        if prediction is None:
            prediction = predict(model, image, tta=True)
        base = prediction.instances if corrections.labels is None else np.asarray(corrections.labels)
    if base.shape != np.shape(image)[:2]:
        raise ValueError(f"edited labels of shape {base.shape} do not match the image "
                         f"{np.shape(image)[:2]}")
    if len(corrections) == 0:
        return replace(instance_targets(base, boundary_width), instances=base)
    return targets_from_clicks(image, corrections.coords, list(corrections.classes),
                               boundary_width=boundary_width, guide=base,
                               guide_probabilities=prediction.probabilities,
                               unclicked=unclicked, distill=distill)


def correction_training(
    model, images: Sequence[np.ndarray], corrections: Sequence[Corrections], *,
    config=None, out_path: str | os.PathLike | None = None,
    stop: threading.Event | Callable[[], bool] | None = None,
) -> Generator:
    """Fine-tune ``model`` (the current one: a SegModel, a model file or ``"default"``) on its own
    prediction corrected by the user; a :func:`napari_segkit.training.train` generator
    (yields progress events, returns the retrained model; ``model`` is not modified)."""
    from .model_io import as_model
    from .training import TrainConfig, train

    if len(images) != len(corrections):
        raise ValueError(f"got {len(images)} images and {len(corrections)} corrections; "
                         "give one Corrections (possibly empty) per image")
    model = as_model(model)  # only predicted with here; train() trains a copy
    cfg = replace(config) if config is not None else TrainConfig(time_budget_s=60.0, steps=10**7)
    cfg.val_fraction = 0.0
    targets = [correction_targets(model, im, c, boundary_width=cfg.boundary_width,
                                  distill=cfg.click_distill,
                                  unclicked=cfg.correction_unclicked)
               for im, c in zip(images, corrections, strict=True)]
    return (yield from train(list(images), targets=targets, config=cfg, init=model,
                             out_path=out_path, stop=stop))


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
    edited_labels : the instances as the user left them (brush / eraser edits); they
        count as corrections only when they differ from ``predicted_labels``
    """
    coords = np.asarray(coords, float).reshape(-1, np.shape(coords)[-1] if np.size(coords) else 2)
    if len(coords) and coords.shape[1] > 2 and np.ptp(coords[:, :-2], axis=0).any():
        raise ValueError("corrections work on one 2-D image; the clicks lie on several planes")
    classes = ["nucleus"] * len(coords) if classes is None else [str(c) for c in classes]
    labels = None
    if edited_labels is not None and predicted_labels is not None:
        edited = np.asarray(edited_labels)
        if edited.shape != np.shape(predicted_labels):
            raise ValueError(f"the edited instances {edited.shape} do not match the prediction "
                             f"{np.shape(predicted_labels)}; predict again before correcting")
        if not np.array_equal(edited, predicted_labels):
            labels = edited.copy()
    return Corrections([tuple(p[-2:]) for p in coords], classes, labels)
