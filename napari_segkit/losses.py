"""Training losses for the class logits (+ the centre channel), selected by name.

Every loss is a *pixel term* plus a *region term* on the class logits, plus the
centre channel's BCE (where ``center_mask`` is set), so the kinds differ in one
respect each from today's default ``"ce_dice"``:

| ``kind`` | pixel term | region term |
| --- | --- | --- |
| ``"ce_dice"`` | class-weighted cross-entropy | soft Dice of the foreground (classes >= 1) |
| ``"bce_dice"`` | class-weighted one-vs-rest BCE of each class's softmax probability | soft Dice of the foreground |
| ``"jaccard"`` | class-weighted cross-entropy | Lovász-softmax (Berman et al. 2018), a convex surrogate of the per-class Jaccard index |
| ``"soft_jaccard"`` | class-weighted cross-entropy | soft Jaccard (IoU) of the foreground |
| ``"focal"`` | focal loss (Lin et al. 2017), gamma 2, class weights as alpha | soft Dice of the foreground |

Pixels whose class is ``IGNORE_INDEX`` (-1) take part in no term (zero gradient), and
the centre BCE counts only where ``center_mask`` is set.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._common import IGNORE_INDEX

LOSSES = ("ce_dice", "bce_dice", "jaccard", "soft_jaccard", "focal")
FOCAL_GAMMA = 2.0


def check_loss(kind: str) -> str:
    """``kind`` if it names a loss, else a ValueError listing the names."""
    if kind not in LOSSES:
        raise ValueError(f"unknown loss {kind!r}; choose one of {LOSSES}")
    return kind


# --------------------------------------------------------------------------- pixel terms
def _cross_entropy(cls_logits, classes, weights):
    """Weighted mean cross-entropy over labelled pixels (0, not NaN, when there are none).

    ``F.cross_entropy``'s own weighted mean, so ``"ce_dice"`` is the loss the default model
    was trained with, to the bit; ignored pixels get no gradient, so the guard adds none.
    """
    ce = F.cross_entropy(cls_logits, classes, weight=weights, ignore_index=IGNORE_INDEX)
    return torch.where((classes != IGNORE_INDEX).any(), ce, ce.new_zeros(()))


def _known_mean(per_pixel: torch.Tensor, classes: torch.Tensor, weights) -> torch.Tensor:
    """Weighted mean over labelled pixels (weights by the pixel's class, as cross-entropy
    does with ``weight=``)."""
    known = classes != IGNORE_INDEX
    safe = classes.clamp_min(0)
    w = known.float() if weights is None else weights[safe] * known
    return (per_pixel * w).sum() / w.sum().clamp_min(1e-6)


def _bce_of_softmax(cls_logits, classes, weights):
    """One-vs-rest BCE of each class's softmax probability, summed over classes."""
    logp = torch.log_softmax(cls_logits, dim=1)
    # log(1 - p) computed stably from the log-probabilities
    log1mp = torch.log1p(-logp.exp().clamp(max=1 - 1e-6))
    onehot = F.one_hot(classes.clamp_min(0), cls_logits.shape[1]).permute(0, 3, 1, 2).float()
    per_pixel = -(onehot * logp + (1 - onehot) * log1mp).sum(dim=1)
    return _known_mean(per_pixel, classes, weights)


def _focal(cls_logits, classes, weights, gamma: float = FOCAL_GAMMA):
    logp = torch.log_softmax(cls_logits, dim=1)
    logp_t = logp.gather(1, classes.clamp_min(0)[:, None])[:, 0]
    per_pixel = -((1 - logp_t.exp()) ** gamma) * logp_t
    return _known_mean(per_pixel, classes, weights)


# --------------------------------------------------------------------------- region terms
def _foreground(cls_logits, classes):
    known = (classes != IGNORE_INDEX).float()
    prob = torch.softmax(cls_logits, dim=1)
    fg_p = (1.0 - prob[:, 0]) * known
    fg_t = (classes >= 1).float() * known
    return fg_p, fg_t


def soft_dice_loss(cls_logits, classes) -> torch.Tensor:
    """1 - soft Dice of the foreground (classes >= 1) over labelled pixels, smoothed by 1."""
    fg_p, fg_t = _foreground(cls_logits, classes)
    inter = (fg_p * fg_t).sum()
    return 1.0 - (2 * inter + 1.0) / (fg_p.sum() + fg_t.sum() + 1.0)


def soft_jaccard_loss(cls_logits, classes) -> torch.Tensor:
    """1 - soft Jaccard (IoU) of the foreground over labelled pixels, smoothed by 1."""
    fg_p, fg_t = _foreground(cls_logits, classes)
    inter = (fg_p * fg_t).sum()
    return 1.0 - (inter + 1.0) / (fg_p.sum() + fg_t.sum() - inter + 1.0)


def _lovasz_gradient(sorted_truth: torch.Tensor) -> torch.Tensor:
    """Gradient of the Lovász extension of the Jaccard loss at the sorted errors."""
    total = sorted_truth.sum()
    intersection = total - sorted_truth.cumsum(0)
    union = total + (1.0 - sorted_truth).cumsum(0)
    jaccard = 1.0 - intersection / union
    jaccard[1:] = jaccard[1:] - jaccard[:-1].clone()
    return jaccard


def lovasz_softmax_loss(cls_logits, classes) -> torch.Tensor:
    """Lovász-softmax over the labelled pixels of the batch, averaged over the classes
    present (Berman, Rannen Triki & Blaschko, CVPR 2018)."""
    n_classes = cls_logits.shape[1]
    prob = torch.softmax(cls_logits, dim=1).permute(0, 2, 3, 1).reshape(-1, n_classes)
    labels = classes.reshape(-1)
    known = labels != IGNORE_INDEX
    prob, labels = prob[known], labels[known]
    losses = []
    for c in range(n_classes):
        truth = (labels == c).float()
        if truth.sum() == 0:
            continue
        errors = (truth - prob[:, c]).abs()
        errors_sorted, order = torch.sort(errors, descending=True)
        losses.append(torch.dot(errors_sorted, _lovasz_gradient(truth[order])))
    if not losses:
        return cls_logits.sum() * 0.0
    return torch.stack(losses).mean()


# --------------------------------------------------------------------------- total
def segmentation_loss(
    logits: torch.Tensor,
    classes: torch.Tensor,
    center: torch.Tensor,
    center_mask: torch.Tensor,
    n_classes: int,
    weights: torch.Tensor | None = None,
    dice_weight: float = 1.0,
    center_weight: float = 1.0,
    kind: str = "ce_dice",
) -> torch.Tensor:
    """Loss of one batch: pixel term + ``dice_weight`` x region term (see the module
    table) + ``center_weight`` x BCE of the centre channel where ``center_mask``.

    Parameters
    ----------
    logits : (B, n_classes + n_extra, H, W)
    classes : (B, H, W) int64, ``IGNORE_INDEX`` where unknown
    center, center_mask : (B, H, W) centre target in [0, 1] and where it is known
    weights : (n_classes,) class weights or None
    kind : one of :data:`LOSSES`
    """
    check_loss(kind)
    logits = logits.float()
    cls_logits = logits[:, :n_classes]
    if kind == "bce_dice":
        loss = _bce_of_softmax(cls_logits, classes, weights)
    elif kind == "focal":
        loss = _focal(cls_logits, classes, weights)
    else:
        loss = _cross_entropy(cls_logits, classes, weights)
    if dice_weight > 0:
        if kind == "jaccard":
            region = lovasz_softmax_loss(cls_logits, classes)
        elif kind == "soft_jaccard":
            region = soft_jaccard_loss(cls_logits, classes)
        else:
            region = soft_dice_loss(cls_logits, classes)
        loss = loss + dice_weight * region
    if center_weight > 0 and logits.shape[1] > n_classes:
        m = center_mask.float()
        bce = F.binary_cross_entropy_with_logits(logits[:, n_classes], center, reduction="none")
        loss = loss + center_weight * (bce * m).sum() / m.sum().clamp_min(1.0)
    return loss


def forward_for_training(net, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """The network's output and its auxiliary (deep-supervision) outputs, if it has any."""
    with_aux = getattr(net, "forward_with_aux", None)
    if with_aux is None:
        return net(x), []
    return with_aux(x)


def training_loss(logits, aux_logits, *args, **kwargs) -> torch.Tensor:
    """:func:`segmentation_loss` of the output, averaged with that of every auxiliary
    output (deep supervision: all heads count equally)."""
    loss = segmentation_loss(logits, *args, **kwargs)
    if not aux_logits:
        return loss
    for aux in aux_logits:
        loss = loss + segmentation_loss(aux, *args, **kwargs)
    return loss / (1 + len(aux_logits))
