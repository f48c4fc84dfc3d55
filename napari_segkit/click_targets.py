"""Training targets from clicks: one click per object says where an object is, the model
(when one is fine-tuned) says what it looks like.

- :func:`targets_from_clicks` turns the clicks of one image into :class:`Targets`;
- :func:`click_guided_instances` corrects a model's predicted instances with the clicks
  (splits merges, adds misses, drops unclicked objects in a fully annotated region);
- :func:`region_mask` is where an image is fully annotated (a mask, a box or a polygon).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import watershed

from ._common import IGNORE_INDEX, background_mask
from .annotations import clicks_to_labels
from .normalization import prepare_input
from .targets import BACKGROUND, BOUNDARY, Targets, instance_targets

__all__ = ["GuidedInstances", "check_unclicked", "click_guided_instances", "near_points",
           "object_radius", "region_mask", "targets_from_clicks", "unclicked_unknown"]


def region_mask(region, shape: tuple[int, int]) -> np.ndarray:
    """The fully annotated region of an image as a bool mask of ``shape``.

    ``region`` is ``None`` (the whole image), a bool / 0-1 mask of ``shape``, a box
    ``(row0, col0, row1, col1)`` (end exclusive) or a polygon, an ``(N, 2)`` array of
    (row, col) vertices with N >= 3.
    """
    shape = tuple(int(v) for v in shape[:2])
    if region is None:
        return np.ones(shape, bool)
    arr = np.asarray(region)
    if arr.shape == shape:
        return arr.astype(bool)
    if arr.shape == (4,):
        r0, c0, r1, c1 = (int(round(float(v))) for v in arr)
        if r1 <= r0 or c1 <= c0:
            raise ValueError(f"a region box is (row0, col0, row1, col1) with row1 > row0 and "
                             f"col1 > col0, got {tuple(arr.tolist())}")
        mask = np.zeros(shape, bool)
        mask[max(r0, 0):max(r1, 0), max(c0, 0):max(c1, 0)] = True
        return mask
    if arr.ndim == 2 and arr.shape[1] == 2 and arr.shape[0] >= 3:
        from skimage.draw import polygon

        mask = np.zeros(shape, bool)
        rr, cc = polygon(arr[:, 0], arr[:, 1], shape=shape)
        mask[rr, cc] = True
        return mask
    raise ValueError(
        f"a region must be None, a mask of the image's shape {shape}, a box (row0, col0, "
        f"row1, col1) or polygon vertices (N, 2); got an array of shape {arr.shape}"
    )


def check_unclicked(unclicked: str) -> None:
    """A ValueError unless ``unclicked`` names a rule for objects nobody clicked."""
    if unclicked not in ("negative", "keep", "unknown"):
        raise ValueError(f"unclicked must be 'negative', 'keep' or 'unknown', not {unclicked!r}")


def _split_classes(points, classes) -> tuple[np.ndarray, np.ndarray]:
    points = np.asarray(points, dtype=float).reshape(-1, 2)
    if classes is not None and len(classes) != len(points):
        raise ValueError(f"got {len(classes)} classes for {len(points)} clicks; give one per click")
    return points, background_mask(classes, len(points))


def targets_from_clicks(
    image: np.ndarray,
    points: np.ndarray,
    classes: np.ndarray | list | None = None,
    *,
    ring: int | None = None,
    background_radius: int | None = None,
    boundary_width: int = 1,
    guide: np.ndarray | None = None,
    guide_probabilities: np.ndarray | None = None,
    region=None,
    unclicked: str = "negative",
    distill: bool = False,
    confidence: float = 0.6,
    known: np.ndarray | None = None,
    click_centres: bool = False,
    grow_all_clicked: bool = False,
) -> Targets:
    """Training targets from one click per object (plus optional background clicks).

    With ``guide`` (instance labels that a model predicted for this image, when an
    existing model is fine-tuned) the clicks correct the model instead of replacing it:
    clicks say where objects are, the model's own outlines give their shapes, see
    :func:`click_guided_instances`. ``region`` (see :func:`region_mask`; default the whole
    image) is where every object was clicked: there an object without a click is
    background (``unclicked="negative"``), outside it nothing is known except the clicked
    objects. ``unclicked="keep"`` (used for corrections) keeps the model's objects that
    nobody clicked as they are.

    Without a guide, clicks become pseudo instance masks with
    :func:`napari_segkit.annotations.clicks_to_labels` (seeded watershed with per-click
    thresholds; with ``grow_all_clicked``, inside ``region`` every object has a click, so
    no unclicked object competes there and a nucleus with two centres grows whole); those
    masks give full instance targets (with ``click_centres`` the centre target of each
    peaks at its click, :func:`click_centre_map`: the click is certain, the mask's outline
    is not), except where they are uncertain:

    - a ring of ``ring`` px just outside each pseudo-mask may be ignored (the true edge may
      lie there). Default (None): none, since the masks grown from clicks follow their
      nuclei closely enough to teach their edges (on the development split, 5 val/ images,
      150 steps from scratch, 3 seeds: F1 0.546 +- 0.022, AP 0.307 +- 0.039 without a ring,
      0.525 +- 0.032 / 0.233 +- 0.030 with 2 px; so too in 3-D, see
      :data:`napari_segkit.stack_training.RING_PIXELS`); with a guide, 2 px around the few
      masks grown for clicks the model missed, which come from its weak foreground;
    - background far from every click (more than ``background_radius`` px, default 3x the
      median pseudo-object radius) is kept as background only where the image is clearly
      dark (below the Otsu threshold of the normalised image); elsewhere it is ignored,
      since it may hold objects nobody clicked;
    - a disk around each background click is background;
    - with a guide, the edge where a known object meets a predicted object left out of
      the loss (nobody clicked it, outside ``region`` or ``unclicked="unknown"``) is left
      out too: the clicked object may go on there.

    Parameters
    ----------
    image : ndarray
        2-D gray or RGB image.
    points : ndarray (N, 2)
        Click coordinates (row, col).
    classes : sequence of str, optional
        Per click ``"nucleus"`` (object) or ``"background"``; default all objects.
    guide_probabilities : ndarray (K + 1, H, W), optional
        The model's probabilities (background, interior, boundary, centre) behind
        ``guide``: outlines for clicked objects the model missed come from its foreground
        where it shows a blob of plausible size, and merged objects are split along its
        boundary class.
    distill : with ``guide_probabilities``: where the clicks change nothing (an object
        the model found, holding one click; background the model saw and nobody
        contradicted), the targets are the model's own classes where it is confident
        (max probability >= ``confidence``, else ignored) and its own centre map, so
        training changes the model only where the clicks correct it (self-training).
    known : bool mask, with ``guide``: pixels the user drew or erased by hand (brush
        edits of the instances). Every object of ``guide`` that has a pixel there is the
        user's own outline: taught as it is, clicked or not, inside ``region`` or out; a
        known pixel without an object is background.
    click_centres, grow_all_clicked : without ``guide`` (a new model), see above; the
        training defaults (``TrainConfig``) turn both on.
    """
    points, is_bg = _split_classes(points, classes)
    shape = np.shape(image)[:2]
    inside = region_mask(region, shape)
    # a flat image has nothing to grow clicks on: with a guide, the model's objects do it
    grow = len(points) and (guide is None or np.ptp(np.asarray(image)) > 0)
    # the whole image (no region) as True: no image-sized mask to look up per centre
    every = (region is None or inside) if (grow_all_clicked and guide is None) else False
    labels = np.asarray(clicks_to_labels(image, points, classes=classes, all_clicked=every)) \
        if grow else \
        np.zeros(shape, np.int32)
    obj_pts = points[~is_bg]
    unknown = None
    grown = labels > 0
    if guide is not None:
        fg_prob = bd_prob = None
        if guide_probabilities is not None:
            fg_prob = 1.0 - guide_probabilities[0]
            bd_prob = guide_probabilities[BOUNDARY] if len(guide_probabilities) > 3 else None
        g = click_guided_instances(np.asarray(guide), labels, obj_pts, background=points[is_bg],
                                   region=inside, unclicked=unclicked,
                                   foreground=fg_prob, boundary=bd_prob, known=known)
        labels, unknown, grown = g.labels, g.unknown, g.grown
    t = instance_targets(labels, boundary_width)
    fg = labels > 0
    if click_centres and guide is None and len(obj_pts):
        t.center = click_centre_map(labels, obj_pts)

    # ring outside each grown (uncertain) mask: unknown
    if ring is None:
        ring = 0 if guide is None else 2
    if ring > 0 and grown.any():
        near_edge = ndi.binary_dilation(grown, iterations=ring) & ~fg
        t.classes[near_edge] = IGNORE_INDEX
        t.center_mask[near_edge] = False

    radius = object_radius(labels, fallback=10.0)
    if guide is None:
        unknown = unclicked_unknown(prepare_input(image, 1)[0], fg, _pixels(obj_pts, shape),
                                    radius, far=background_radius)
        unknown |= ~inside & ~fg
    if unknown is not None and known is not None and guide is not None:
        unknown &= ~np.asarray(known, bool)  # what the user drew or erased is certain
    if unknown is not None:
        t.classes[unknown] = IGNORE_INDEX
        t.center_mask[unknown] = False

    # disks around background clicks: background
    if is_bg.any():
        disk = near_points(shape, _pixels(points[is_bg], shape), max(radius, 3.0)) & ~fg
        t.classes[disk] = BACKGROUND
        t.center_mask[disk] = True
    if guide is not None and unknown is not None:
        _unknown_edges(t, _unknown_objects(np.asarray(guide), unknown), fg)
    if distill and guide is not None and guide_probabilities is not None:
        _keep_model_where_uncorrected(t, np.asarray(guide), labels, guide_probabilities,
                                      confidence)
    t.instances = labels
    return t


def click_centre_map(labels: np.ndarray, clicks: np.ndarray) -> np.ndarray:
    """Per object ``i + 1`` (grown from click ``i``): 1 at its click, falling linearly
    with the distance from it to 0 at the object's farthest pixel (float32)."""
    out = np.zeros(labels.shape, np.float32)
    for i, sl in enumerate(ndi.find_objects(labels)):
        if sl is None or i >= len(clicks):
            continue
        obj = labels[sl] == i + 1
        rr, cc = np.nonzero(obj)
        d = np.hypot(rr + sl[0].start - clicks[i][0], cc + sl[1].start - clicks[i][1])
        out[sl][obj] = (1.0 - d / (d.max() + 1.0)).astype(np.float32)
    return out


def _unknown_objects(guide: np.ndarray, unknown: np.ndarray) -> np.ndarray:
    """Pixels of the predicted objects of ``guide`` that lie wholly in ``unknown``."""
    n = int(guide.max())
    if n == 0 or not unknown.any():
        return np.zeros(guide.shape, bool)
    known_pixels = np.bincount(guide.ravel(), weights=(~unknown).ravel(), minlength=n + 1)
    whole = known_pixels == 0
    whole[0] = False
    return whole[guide]


def _unknown_edges(t: Targets, uncertain: np.ndarray, known: np.ndarray, width: int = 2) -> None:
    """Where a known object meets a predicted object nobody clicked (``uncertain``: its
    pixels, left out of the loss), the edge between them is left out too, in place: the
    clicked object may go on there (a nucleus the model cut into pieces, clicked on one
    piece), so its outline on that side is not taught as boundary or background."""
    if not uncertain.any() or not known.any():
        return
    edge = ndi.binary_dilation(uncertain, iterations=width)
    edge &= ndi.binary_dilation(known, iterations=width)
    edge &= (t.classes == BACKGROUND) | (t.classes == BOUNDARY)
    t.classes[edge] = IGNORE_INDEX
    t.center_mask[edge] = False


def object_radius(labels: np.ndarray, spacing=None, fallback: float = 10.0) -> float:
    """Radius of a disk (2-D) or ball (3-D) of the median object size of ``labels``, in
    the units of ``spacing`` (pixels when None); ``fallback`` without objects."""
    sizes = np.bincount(np.asarray(labels).ravel())[1:]
    sizes = sizes[sizes > 0]
    if not sizes.size:
        return float(fallback)
    size = float(np.median(sizes)) * (1.0 if spacing is None else float(np.prod(spacing)))
    if np.ndim(labels) == 3:
        return float(np.cbrt(3.0 * size / (4.0 * np.pi)))
    return float(np.sqrt(size / np.pi))


def near_points(shape, idx: np.ndarray, radius: float, spacing=None) -> np.ndarray:
    """Where the image of ``shape`` lies within ``radius`` (in ``spacing`` units) of one of
    the pixel indices ``idx`` (N, ndim)."""
    if not len(idx):
        return np.zeros(shape, bool)
    seeds = np.ones(shape, bool)
    seeds[tuple(np.asarray(idx).T)] = False
    return ndi.distance_transform_edt(seeds, sampling=spacing) <= radius


def unclicked_unknown(gray: np.ndarray, fg: np.ndarray, obj_idx: np.ndarray, radius: float,
                      spacing=None, far: float | None = None) -> np.ndarray:
    """Where training from clicks knows nothing: background farther than ``far`` (default
    3 object ``radius``, at least 8 pixels) from every object click and not clearly dark
    (at or above the Otsu threshold of ``gray``), since it may hold objects nobody clicked.
    2-D or 3-D; distances in ``spacing`` units (pixels when None)."""
    from skimage.filters import threshold_otsu

    pixel = 1.0 if spacing is None else float(np.min(spacing[-2:]))
    far = max(3.0 * radius, 8.0 * pixel) if far is None else float(far)
    dark = gray < threshold_otsu(gray) if np.ptp(gray) > 0 else np.ones(gray.shape, bool)
    away = ~near_points(fg.shape, obj_idx, far, spacing) if len(obj_idx) else \
        np.ones(fg.shape, bool)
    return away & ~fg & ~dark


def _pixels(points: np.ndarray, shape) -> np.ndarray:
    """Click coordinates rounded to pixel indices inside ``shape``."""
    points = np.asarray(points, float).reshape(-1, len(shape))
    return np.clip(np.round(points).astype(int), 0, np.array(shape) - 1)


def _changed_by_clicks(guide: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Pixels where the click-corrected ``labels`` differ from the model's ``guide``
    (objects added, removed, split or merged), widened by 2 px for their outlines."""
    guide = guide.astype(np.int64, copy=False)
    labels = labels.astype(np.int64, copy=False)
    changed = (labels > 0) != (guide > 0)
    both = (labels > 0) & (guide > 0)
    if both.any():
        pairs = np.unique(np.stack([guide[both], labels[both]]), axis=1)
        split = np.bincount(pairs[0], minlength=int(guide.max()) + 1) > 1  # one object -> several
        merged = np.bincount(pairs[1], minlength=int(labels.max()) + 1) > 1  # several -> one
        changed |= split[guide] & (guide > 0)
        changed |= merged[labels] & (labels > 0)
    return ndi.binary_dilation(changed, iterations=2) if changed.any() else changed


def _keep_model_where_uncorrected(t: Targets, guide, labels, probabilities, confidence) -> None:
    """Self-training targets (the model's own confident classes and centre map) wherever
    the clicks did not change the model's instances; in place."""
    probs = np.asarray(probabilities, np.float32)
    n_classes = probs.shape[0] - 1
    keep = ~_changed_by_clicks(guide, labels) & (t.classes != IGNORE_INDEX)
    own = np.argmax(probs[:n_classes], axis=0).astype(t.classes.dtype)
    sure = probs[:n_classes].max(axis=0) >= confidence
    t.classes[keep] = np.where(sure[keep], own[keep], IGNORE_INDEX)
    t.center[keep] = probs[n_classes][keep]
    t.center_mask[keep] = True


@dataclass
class GuidedInstances:
    """Result of :func:`click_guided_instances`.

    labels : one id per object click (click ``k`` -> ``k + 1``), then the model's
        objects kept without a click (``unclicked="keep"``)
    unknown : pixels that are neither object nor background for training
    grown : objects whose outline came from the click, not from the model (uncertain)
    """

    labels: np.ndarray
    unknown: np.ndarray
    grown: np.ndarray


def _grown_mask(k, idx, click_masks, foreground, free, area_range) -> np.ndarray | None:
    """Outline for a click on no predicted object: the model's weaker foreground blob
    around the click when it has a plausible size, else the click-grown mask when that
    has; None when neither has (the caller leaves the place unknown)."""
    r, c = idx[k]
    lo, hi = area_range
    if foreground is not None:
        for t in (0.4, 0.3, 0.2):
            comp, _ = ndi.label((foreground > t) & free)
            own = comp[r, c]
            if own:
                mask = comp == own
                if lo <= mask.sum() <= hi:
                    return mask
                if mask.sum() > hi:
                    break  # lower thresholds only grow it
    own = click_masks[r, c]
    if own:
        mask = (click_masks == own) & free
        if mask.sum() >= 0.5 * lo:  # a click-grown mask is seeded at the click: less strict
            return mask
    return None


def _snap_to_objects(guide: np.ndarray, idx: np.ndarray, hit: np.ndarray, snap: float) -> np.ndarray:
    """Clicks that fall just outside a predicted object (within ``snap`` px) count as in it:
    a click near an object's edge means that object."""
    miss = np.flatnonzero(hit == 0)
    if miss.size == 0 or snap <= 0 or not guide.any():
        return hit
    dist, (ir, ic) = ndi.distance_transform_edt(guide == 0, return_indices=True)
    hit = hit.copy()
    for k in miss:
        r, c = idx[k]
        if dist[r, c] <= snap:
            hit[k] = guide[ir[r, c], ic[r, c]]
    return hit


def click_guided_instances(
    guide: np.ndarray,
    click_masks: np.ndarray,
    clicks: np.ndarray,
    *,
    background: np.ndarray | None = None,
    region: np.ndarray | None = None,
    unclicked: str = "negative",
    foreground: np.ndarray | None = None,
    boundary: np.ndarray | None = None,
    snap: float = 3.0,
    known: np.ndarray | None = None,
) -> GuidedInstances:
    """Model instances corrected by one click per object.

    - a predicted object holding exactly one click keeps the model's mask;
    - a predicted object holding several clicks (touching nuclei the model merged) is
      split between them by a watershed from the clicks on the model's ``boundary``
      probability (without it: on the distance to the object's edge, so the cut follows
      the neck between the nuclei);
    - a click on no predicted object (a nucleus the model missed) takes its mask from the
      model's ``foreground`` probability at a lower threshold when that gives a blob of
      plausible size, else from ``click_masks``
      (:func:`napari_segkit.annotations.clicks_to_labels`);
    - a predicted object holding a ``background`` click and no object click is background;
    - a predicted object without any click is background (a false detection) when it lies
      (mostly) inside ``region`` and ``unclicked="negative"``, kept as an object when
      ``unclicked="keep"``, and unknown otherwise (``"unknown"`` or outside the region).

    - a click within ``snap`` px of a predicted object counts as in it; a predicted object
      without a click that touches exactly one clicked object (in a fully annotated region,
      ``unclicked="negative"``) is a piece of it and merged into it.

    - a predicted object with a pixel in ``known`` (drawn or edited by the user) and no
      click is kept as it is, whatever ``unclicked`` and ``region`` say, unless a
      ``background`` click removes it.

    Outside ``region`` (default: the whole image) only clicked (and drawn) objects are known.
    """
    check_unclicked(unclicked)
    guide = guide.astype(np.int64, copy=False)
    shape = np.array(guide.shape)
    inside = np.ones(guide.shape, bool) if region is None else np.asarray(region, bool)
    clicks = np.asarray(clicks, float).reshape(-1, 2)
    n_obj = int(guide.max())
    idx = np.clip(np.round(clicks).astype(int), 0, shape - 1)
    hit = guide[idx[:, 0], idx[:, 1]] if len(clicks) else np.zeros(0, np.int64)
    hit = _snap_to_objects(guide, idx, hit, snap)
    counts = np.bincount(hit, minlength=n_obj + 1)
    counts[0] = 0
    # one click in the object: the model's mask, labelled by the click
    lut = np.zeros(n_obj + 1, np.int32)
    single = np.flatnonzero(counts[hit] == 1)
    lut[hit[single]] = single + 1
    out = lut[guide]
    # several clicks in one object: split it along its necks
    boxes = ndi.find_objects(guide)
    for obj in np.flatnonzero(counts > 1):
        ks = np.flatnonzero(hit == obj)
        box = boxes[obj - 1]
        mask = guide[box] == obj
        markers = np.zeros(mask.shape, np.int32)
        for kk in ks:  # a snapped click seeds from its object's nearest pixel
            r, c = idx[kk] - (box[0].start, box[1].start)
            if not (0 <= r < mask.shape[0] and 0 <= c < mask.shape[1] and mask[r, c]):
                rr, cc = np.nonzero(mask)
                j = np.argmin((rr - r) ** 2 + (cc - c) ** 2)
                r, c = rr[j], cc[j]
            markers[r, c] = kk + 1
        if boundary is not None:  # the model's own boundary evidence between the nuclei
            relief = ndi.gaussian_filter(boundary[box].astype(np.float32), 1.0)
        else:
            relief = -ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        split = watershed(relief, markers, mask=mask)
        out[box][mask] = split[mask]
    # clicks on nothing: a mask where the model has nothing
    grown = np.zeros(guide.shape, bool)
    misses = np.flatnonzero(hit == 0)
    if misses.size:
        areas = np.bincount(guide.ravel())[1:]
        ref = float(np.median(areas[counts[1:] > 0])) if (counts[1:] > 0).any() else (
            float(np.median(areas[areas > 0])) if (areas > 0).any() else 200.0)
        free = guide == 0
        unsure = np.zeros(guide.shape, bool)
        for k in misses:
            mask = _grown_mask(k, idx, click_masks, foreground, free & (out == 0),
                               (0.2 * ref, 3.0 * ref))
            if mask is not None:
                out[mask] = k + 1
                grown |= mask
            else:  # an object is there, its outline unknown
                unsure[tuple(idx[k])] = True
        if unsure.any():
            r_ref = np.sqrt(ref / np.pi)
            unsure = (ndi.distance_transform_edt(~unsure) <= r_ref) & (out == 0)
    # objects nobody clicked as a nucleus
    area = np.bincount(guide.ravel(), minlength=n_obj + 1)
    in_region = np.bincount(guide.ravel(), weights=inside.ravel(), minlength=n_obj + 1)
    mostly_inside = in_region >= 0.5 * np.maximum(area, 1)
    bg_hit = np.zeros(n_obj + 1, bool)
    if background is not None and len(background):
        b = np.clip(np.round(np.asarray(background, float).reshape(-1, 2)).astype(int), 0, shape - 1)
        bg_hit[guide[b[:, 0], b[:, 1]]] = True
    none = counts == 0
    none[0] = False
    drawn = np.zeros(n_obj + 1, bool)
    if known is not None:
        drawn = np.bincount(guide.ravel(), weights=np.asarray(known, bool).ravel(),
                            minlength=n_obj + 1) > 0
        drawn[0] = False
    drawn_kept = none & drawn & ~bg_hit
    none &= ~drawn_kept
    if unclicked == "negative":
        none &= ~_merge_fragments(guide, out, np.flatnonzero(none & ~bg_hit), boxes, len(clicks))
    negative = none & (bg_hit | (mostly_inside if unclicked == "negative" else False))
    keep = (none & ~negative & (mostly_inside if unclicked == "keep" else False)) | drawn_kept
    unknown_obj = none & ~negative & ~keep
    if keep.any():
        ids = np.zeros(n_obj + 1, np.int32)
        ids[keep] = len(clicks) + 1 + np.arange(int(keep.sum()))
        sel = keep[guide]
        out[sel] = ids[guide[sel]]
    unknown = unknown_obj[guide] | (~inside & (out == 0) & ~negative[guide])
    if misses.size:
        unknown |= unsure
    return GuidedInstances(out, unknown, grown)


def _merge_fragments(guide, out, candidates, boxes, n_clicks: int) -> np.ndarray:
    """Unclicked predicted objects that touch exactly one clicked object are pieces of it
    (every nucleus of a fully annotated region holds a click): merged into it, in place
    of ``out``. Returns which object ids were merged."""
    merged = np.zeros(guide.max() + 1, bool)
    for obj in candidates:
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in boxes[obj - 1])
        mask = guide[box] == obj
        ring = ndi.binary_dilation(mask) & ~mask
        near = np.unique(out[box][ring])
        near = near[(near > 0) & (near <= n_clicks)]
        if near.size == 1:
            out[box][mask] = near[0]
            merged[obj] = True
    return merged
