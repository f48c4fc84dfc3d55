"""Where to click next: the places where the model is least sure, ordered by value.

:func:`suggest_clicks` predicts the image and its three mirror images, and scores

- every predicted object by how much the four predictions disagree on it, how close its
  foreground probability is to 0.5, whether its centre map has several peaks (two
  nuclei merged?) or none strong (a fragment?), and how far its area is from the image's
  typical nucleus (split or merged);
- every blob the model half sees but did not turn into an object (a missed nucleus?);
- everything the user's clicks contradict: two nucleus clicks in one object, a
  background click on an object, a nucleus click on nothing (highest value).

Objects the user already confirmed (exactly one nucleus click) are not suggested. The
points lie inside their object, for a napari Points layer ``"<image> suggestions"``.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ._common import background_mask

_FLIPS = ((), (1,), (0,), (0, 1))
#: reasons of the places the user's own clicks contradict: the model still disagrees there
CONTRADICTED = ("nucleus clicks in one object", "background click on an object",
                "nucleus click on no object")


def contradicts_clicks(reason: str) -> bool:
    """Whether a suggestion (its ``reason``) is a place the user's clicks contradict."""
    return reason.endswith(CONTRADICTED)


def _flip(a: np.ndarray, axes) -> np.ndarray:
    return np.flip(a, axis=axes) if axes else a


def mirror_probabilities(model, image: np.ndarray) -> np.ndarray:
    """Probabilities of ``image`` and of its 3 mirror images, mapped back: (4, K+1, H, W)."""
    from .prediction import predict_probabilities

    out = []
    for axes in _FLIPS:
        p = predict_probabilities(model, np.ascontiguousarray(_flip(image, axes)))
        out.append(_flip(p, tuple(a + 1 for a in axes)))
    return np.stack(out)


def _inner_point(mask: np.ndarray, offset=(0, 0)) -> tuple[float, float]:
    d = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    r, c = np.unravel_index(np.argmax(d), d.shape)
    return float(r + offset[0]), float(c + offset[1])


def _n_peaks(center: np.ndarray, mask: np.ndarray, h: float = 0.15) -> int:
    """Centre-map maxima inside ``mask`` that stand ``h`` above their surroundings."""
    from skimage.morphology import h_maxima

    c = np.where(mask, center, 0.0)
    if c.max() < 0.3:
        return 0
    peaks = h_maxima(c, h) & mask & (c >= 0.3)
    return int(ndi.label(peaks)[1])


def _click_counts(instances, coords, is_bg, n):
    nuc = np.zeros(n + 1, int)
    bg = np.zeros(n + 1, int)
    missed = []
    if coords is None or len(coords) == 0:
        return nuc, bg, missed
    idx = np.clip(np.round(coords).astype(int), 0, np.array(instances.shape) - 1)
    hit = instances[idx[:, 0], idx[:, 1]]
    for k, h in enumerate(hit):
        if is_bg[k]:
            bg[h] += 1
        elif h:
            nuc[h] += 1
        else:
            missed.append(k)
    return nuc, bg, missed


def suggest_clicks(
    model, image: np.ndarray, clicks=None, n: int = 10, *, classes=None, min_score: float = 0.05
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Points where a click would teach the model most, best first.

    Parameters
    ----------
    model : SegModel, model file or ``"default"``
    image : 2-D gray or RGB image
    clicks : (N, 2) clicks already made on this image (optional), with ``classes``
        (``"nucleus"`` / ``"background"`` per click; default all nuclei)
    n : at most this many points
    min_score : points scoring lower are left out

    Returns
    -------
    coords : (M, 2) float (row, col), M <= n
    scores : (M,) descending; places the user's clicks contradict score 1.3-1.5, the
        others up to 1.3 (:func:`contradicts_clicks` tells them apart by their reason)
    reasons : one short text per point
    """
    from .postprocess import instances_from_probabilities

    if n <= 0:
        return np.zeros((0, 2)), np.zeros(0), []
    probs = mirror_probabilities(model, image)
    k = model.config.n_classes if hasattr(model, "config") else 3
    mean = probs.mean(axis=0)
    fg_all = 1.0 - probs[:, 0]
    fg = fg_all.mean(axis=0)
    spread = fg_all.std(axis=0)
    center = mean[k] if mean.shape[0] > k else mean[1]
    inst = instances_from_probabilities(mean[:k], mean[k] if mean.shape[0] > k else None)
    n_obj = int(inst.max())
    coords = None if clicks is None else np.asarray(clicks, float).reshape(-1, 2)
    is_bg = background_mask(classes, 0 if coords is None else len(coords))
    nuc, bg, missed = _click_counts(inst, coords, is_bg, n_obj)

    cands: list[tuple[float, tuple[float, float], str]] = []
    areas = np.bincount(inst.ravel(), minlength=n_obj + 1)
    typical = float(np.median(areas[1:])) if n_obj else 0.0
    for i, sl in enumerate(ndi.find_objects(inst), start=1):
        if sl is None:
            continue
        box = tuple(slice(max(s.start - 2, 0), s.stop + 2) for s in sl)
        obj = inst[box] == i
        near = ndi.binary_dilation(obj, iterations=2)
        off = (box[0].start, box[1].start)
        if nuc[i] >= 2:
            cands.append((1.5, _inner_point(obj, off), f"{nuc[i]} {CONTRADICTED[0]}"))
            continue
        if bg[i]:
            cands.append((1.4, _inner_point(obj, off), CONTRADICTED[1]))
            continue
        if nuc[i] == 1:
            continue  # confirmed by the user
        disagree = min(float(spread[box][near].mean()) / 0.25, 1.0)
        unsure = 1.0 - float(np.abs(2.0 * fg[box][obj] - 1.0).mean())
        peaks = _n_peaks(center[box], obj)
        ratio = np.log(max(areas[i], 1) / max(typical, 1.0))
        size = min(max(abs(ratio) - np.log(2.0), 0.0) / np.log(4.0), 1.0)
        parts = {"mirror predictions disagree": 0.35 * disagree,
                 "unsure foreground": 0.25 * unsure,
                 "several centres (merged nuclei?)": 0.4 if peaks >= 2 else 0.0,
                 "no clear centre": 0.2 if peaks == 0 else 0.0,
                 ("unusually large" if ratio > 0 else "unusually small"): 0.3 * size}
        score = float(sum(parts.values()))
        reason = max(parts, key=parts.get)
        cands.append((score, _inner_point(obj, off), reason))
    # blobs the model half sees without making an object of them
    blobs, nb = ndi.label((fg > 0.2) & (inst == 0))
    for j, sl in enumerate(ndi.find_objects(blobs), start=1):
        mask = blobs[sl] == j
        if mask.sum() < max(12, 0.2 * typical):
            continue
        peak = float(fg[sl][mask].max())
        score = min(peak / 0.5, 1.0) * 0.6 + 0.4 * min(float(spread[sl][mask].mean()) / 0.25, 1.0)
        cands.append((score, _inner_point(mask, (sl[0].start, sl[1].start)),
                      "faint blob without an object (missed nucleus?)"))
    for kk in missed:
        cands.append((1.3, tuple(float(v) for v in coords[kk]), CONTRADICTED[2]))
    cands = [c for c in cands if c[0] >= min_score]
    cands.sort(key=lambda c: -c[0])
    cands = cands[:n]
    if not cands:
        return np.zeros((0, 2)), np.zeros(0), []
    return (np.array([c[1] for c in cands], float), np.array([c[0] for c in cands], float),
            [c[2] for c in cands])
