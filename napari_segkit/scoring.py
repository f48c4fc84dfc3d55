"""How good a network is while it trains: the loss training minimises and the validation
scores its best weights are chosen by (torch)."""

from __future__ import annotations

from .losses import segmentation_loss
from .metrics import match_instances
from .postprocess import instances_from_probabilities
from .prediction import predict_prepared

__all__ = ["segmentation_loss", "validate"]


def validate(net, val_x, val_targets, val_instances, device, n_classes: int) -> dict:
    """Foreground IoU over labelled pixels (pooled) and, when every validation image has
    full instance labels, instance F1@0.5 (pooled) with its ``counts`` (TP, FP, FN)."""
    was_training = net.training
    net.eval()
    inter = union = 0
    tp = fp = fn = 0
    f1_ok = True
    try:
        for x, t, inst in zip(val_x, val_targets, val_instances, strict=True):
            probs = predict_prepared(net, x, device, n_classes)
            known = t.classes >= 0
            pred_fg = probs[0] < 0.5
            gt_fg = t.classes >= 1
            inter += int((pred_fg & gt_fg & known).sum())
            union += int(((pred_fg | gt_fg) & known).sum())
            if inst is None or not f1_ok:
                f1_ok = False
                continue
            m = match_instances(inst, instances_from_probabilities(probs, n_classes=n_classes), 0.5)
            tp, fp, fn = tp + m.tp, fp + m.fp, fn + m.fn
    finally:
        net.train(was_training)
    iou = inter / union if union else 0.0
    f1 = (2 * tp / max(2 * tp + fp + fn, 1)) if f1_ok and val_instances else None
    return {"val_iou": float(iou), "val_f1": None if f1 is None else float(f1),
            "counts": (tp, fp, fn) if f1 is not None else None}
