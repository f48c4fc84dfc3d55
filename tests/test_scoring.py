"""The training loss ignores unlabelled pixels; validation scores a bare network."""

from __future__ import annotations

import numpy as np
import torch

from napari_segkit.normalization import prepare_input
from napari_segkit.scoring import segmentation_loss, validate
from napari_segkit.targets import instance_targets


def test_loss_ignores_unlabelled_pixels():
    logits = torch.randn(2, 4, 8, 8, requires_grad=True)
    classes = torch.full((2, 8, 8), -1, dtype=torch.long)
    classes[:, :2] = 1
    loss = segmentation_loss(logits, classes, torch.zeros(2, 8, 8), torch.zeros(2, 8, 8, dtype=bool), 3)
    loss.backward()
    assert torch.isfinite(loss)
    assert logits.grad[:, :3, 4:].abs().sum() == 0  # ignored pixels get no gradient


def test_validation_scores_are_in_range(tiny_model, fluo_256):
    image, labels, _, _ = fluo_256
    x = prepare_input(image[:64, :64], 1)
    net = tiny_model.net.eval()
    scores = validate(net, [x], [instance_targets(labels[:64, :64])], [labels[:64, :64]], "cpu", 3)
    assert 0.0 <= scores["val_iou"] <= 1.0 and 0.0 <= scores["val_f1"] <= 1.0
    tp, fp, fn = scores["counts"]
    assert scores["val_f1"] == 2 * tp / max(2 * tp + fp + fn, 1)
    no_instances = validate(net, [x], [instance_targets(labels[:64, :64])], [None], "cpu", 3)
    assert no_instances["val_f1"] is None and no_instances["counts"] is None
    assert not net.training  # the mode it had is restored
    assert np.isclose(no_instances["val_iou"], scores["val_iou"])
