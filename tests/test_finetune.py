"""Fine-tuning the shipped model: gentle defaults, and never worse than the start."""

from __future__ import annotations

import torch

from napari_segkit.model_io import load_default_model
from napari_segkit.training import FINE_TUNE_LR, NEW_MODEL_LR, TrainConfig, train


def _events(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return events, done.value


def test_default_model_loads_and_says_where_it_came_from():
    model = load_default_model()
    prov = model.provenance
    assert model.config.n_classes == 3 and model.class_names == ["background", "interior", "boundary"]
    assert "train" in prov["data"] and prov["val_scores"]["n_images"] == 23


def test_fine_tuning_starts_from_a_validated_baseline_and_keeps_the_best(fluo_256):
    image, labels, coords, features = fluo_256
    cfg = TrainConfig(steps=6, patch_size=64, batch_size=2, val_every=3, num_threads=1, seed=0)
    events, model = _events(train([image[:160]], [labels[:160]], config=cfg, init="default",
                                  val_images=[image[160:]], val_labels=[labels[160:]]))
    validations = [e for e in events if e.kind == "validation"]
    assert validations[0].step == 0  # the starting model is scored before any step
    assert events[1].lr <= FINE_TUNE_LR < NEW_MODEL_LR
    best = max(validations, key=lambda e: (e.val_f1, e.val_iou))
    assert events[-1].val_f1 == best.val_f1 >= validations[0].val_f1
    # BatchNorm statistics of the shipped model are kept while fine-tuning
    start = load_default_model()
    bn = [m for m in model.net.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    bn0 = [m for m in start.net.modules() if isinstance(m, torch.nn.BatchNorm2d)][0]
    assert torch.equal(bn.running_mean, bn0.running_mean)
