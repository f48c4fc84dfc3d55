"""Every loss: finite gradients, ignored pixels get none, class weights act, names checked."""

import pytest
import torch
import torch.nn.functional as F

from napari_segkit.losses import (
    LOSSES,
    check_loss,
    forward_for_training,
    lovasz_softmax_loss,
    segmentation_loss,
    training_loss,
)
from napari_segkit.sampling import IGNORE_INDEX
from napari_segkit.scoring import segmentation_loss as scoring_loss


def _batch(seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, 4, 16, 16, generator=g, requires_grad=True)
    classes = torch.randint(0, 3, (2, 16, 16), generator=g)
    center = torch.rand(2, 16, 16, generator=g)
    mask = torch.ones(2, 16, 16, dtype=torch.bool)
    return logits, classes, center, mask


@pytest.mark.parametrize("kind", LOSSES)
def test_finite_loss_and_gradients(kind):
    logits, classes, center, mask = _batch()
    loss = segmentation_loss(logits, classes, center, mask, 3, kind=kind)
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert torch.isfinite(logits.grad).all() and logits.grad.abs().sum() > 0


@pytest.mark.parametrize("kind", LOSSES)
def test_ignored_pixels_get_zero_gradient(kind):
    logits, classes, center, mask = _batch(1)
    classes[:, :5] = IGNORE_INDEX
    mask[:, :5] = False
    weights = torch.tensor([0.5, 1.0, 3.0])
    segmentation_loss(logits, classes, center, mask, 3, weights, kind=kind).backward()
    assert torch.all(logits.grad[:, :, :5] == 0)
    assert logits.grad[:, :3, 5:].abs().sum() > 0


@pytest.mark.parametrize("kind", LOSSES)
def test_class_weights_change_the_gradient_of_their_class(kind):
    logits, classes, center, mask = _batch(2)
    grads = []
    for w in ([1.0, 1.0, 1.0], [1.0, 1.0, 5.0]):
        lg = logits.detach().clone().requires_grad_(True)
        segmentation_loss(lg, classes, center, mask, 3, torch.tensor(w), dice_weight=0.0,
                          center_weight=0.0, kind=kind).backward()
        grads.append(lg.grad)
    boundary = classes == 2
    share = [g.abs().sum(1)[boundary].sum() / g.abs().sum() for g in grads]
    if kind == "jaccard" or kind == "soft_jaccard":
        assert share[1] > share[0]  # the cross-entropy part is weighted
    else:
        assert share[1] > 1.3 * share[0]


def _reference_ce_dice(logits, classes, center, mask, n_classes, weights):
    """The loss the default model was trained with, written out (cross-entropy with class
    weights + soft Dice of the foreground + BCE of the centre where the mask is set)."""
    cls_logits = logits[:, :n_classes]
    loss = F.cross_entropy(cls_logits, classes, weight=weights, ignore_index=IGNORE_INDEX)
    known = (classes != IGNORE_INDEX).float()
    fg_p = (1.0 - torch.softmax(cls_logits, dim=1)[:, 0]) * known
    fg_t = (classes >= 1).float() * known
    loss = loss + (1.0 - (2 * (fg_p * fg_t).sum() + 1.0) / (fg_p.sum() + fg_t.sum() + 1.0))
    m = mask.float()
    bce = F.binary_cross_entropy_with_logits(logits[:, n_classes], center, reduction="none")
    return loss + (bce * m).sum() / m.sum().clamp_min(1.0)


@pytest.mark.parametrize("seed", range(5))
def test_ce_dice_is_the_default_models_loss_to_the_bit(seed):
    logits, classes, center, mask = _batch(seed)
    classes[0, :4] = IGNORE_INDEX
    mask[1, 8:] = False
    w = torch.tensor([0.5, 1.0, 2.0])
    want = _reference_ce_dice(logits, classes, center, mask, 3, w)
    assert torch.equal(segmentation_loss(logits, classes, center, mask, 3, w, kind="ce_dice"), want)
    assert torch.equal(scoring_loss(logits, classes, center, mask, 3, w), want)


def test_lovasz_is_zero_for_perfect_and_high_for_wrong_predictions():
    classes = torch.randint(0, 3, (1, 8, 8))
    perfect = torch.nn.functional.one_hot(classes, 3).permute(0, 3, 1, 2).float() * 50
    assert lovasz_softmax_loss(perfect, classes) < 1e-6
    wrong = torch.nn.functional.one_hot((classes + 1) % 3, 3).permute(0, 3, 1, 2).float() * 50
    assert lovasz_softmax_loss(wrong, classes) > 0.99


def test_unknown_loss_and_all_ignored():
    with pytest.raises(ValueError, match="choose one of"):
        check_loss("hinge")
    logits, classes, center, mask = _batch()
    classes[:] = IGNORE_INDEX
    mask[:] = False
    for kind in LOSSES:
        loss = segmentation_loss(logits, classes, center, mask, 3, kind=kind)
        assert torch.isfinite(loss)


def test_deep_supervision_averages_heads():
    from napari_segkit.model import UNetConfig
    from napari_segkit.nets import build_network

    torch.manual_seed(0)
    net = build_network(UNetConfig(arch="unetpp", width=4, depth=2, deep_supervision=True))
    x = torch.randn(2, 1, 16, 16)
    _, classes, center, mask = _batch()
    main, aux = forward_for_training(net, x)
    assert len(aux) == 1
    total = training_loss(main, aux, classes, center, mask, 3)
    parts = [segmentation_loss(o, classes, center, mask, 3) for o in (main, *aux)]
    assert torch.allclose(total, sum(parts) / 2)
    plain = build_network(UNetConfig(width=4, depth=2))
    assert forward_for_training(plain, x)[1] == []
