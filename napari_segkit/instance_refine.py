"""Better seeds and size-aware clean-up for the centre-map watershed (numpy / scipy /
scikit-image only), used by :func:`napari_segkit.postprocess.instances_from_probabilities`.

The two instance errors of a seeded watershed pull in opposite directions:

- **merged clumps**: seeds taken as regions of ``centre > threshold`` join when the
  centre map stays above the threshold across the neck between touching nuclei;
- **over-split large nuclei**: a nucleus larger than the model's training objects gets
  a bumpy centre map, and every bump above the threshold becomes a seed.

:func:`h_maxima_seeds` answers both with one rule: a seed is a regional maximum of the
(lightly smoothed) centre map that rises at least ``h`` above the saddle to any higher
maximum, however high the saddle is (splits clumps) and however many bumps a plateau
has (keeps a large nucleus whole). :func:`merge_small_fragments` then merges pieces
much smaller than the image's typical object into the neighbour they share most of
their outline with.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.morphology import local_maxima, reconstruction


def h_maxima_seeds(center: np.ndarray, foreground: np.ndarray, h: float = 0.1,
                   floor: float = 0.2, smooth: float = 1.0) -> np.ndarray:
    """Seed mask: the h-maxima of the centre map inside the foreground.

    Parameters
    ----------
    center : float array in [0, 1] (1 at object centres)
    foreground : bool array, same shape
    h : float
        Minimum height of a maximum above the saddle to a higher one, in centre-map
        units (the centre target is normalised per object, so ``h`` means "a dip of
        h times the object's own depth").
    floor : float
        Maxima lower than this are ignored (faint blobs on the background).
    smooth : float
        Gaussian sigma (pixels) applied first, so that pixel noise makes no maxima.
    """
    if not 0.0 < h < 1.0:
        raise ValueError(f"h must be in (0, 1), got {h}")
    c = np.asarray(center, np.float32)
    if smooth > 0:
        c = ndi.gaussian_filter(c, smooth)
    c = np.where(foreground, c, 0.0).astype(np.float64)
    # every maximum is lowered to h below its top, but no lower than the saddle to a
    # higher one (reconstruction by dilation): maxima with a dynamic below h melt into
    # one plateau with their neighbours, and each remaining plateau is one seed
    rec = reconstruction(c - h, c, method="dilation")
    peaks = local_maxima(rec, allow_borders=True)
    return peaks & (rec >= floor - h) & (c >= floor) & foreground


def merge_small_fragments(labels: np.ndarray, fraction: float = 0.25,
                          min_shared: float = 0.2) -> np.ndarray:
    """Merge objects smaller than ``fraction`` x the median object area into the
    touching object they share the longest border with, when that border is at least
    ``min_shared`` of the fragment's outline (an isolated small nucleus stays).

    Returns a new label image (ids may have gaps).
    """
    labels = np.asarray(labels)
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"fraction must be in (0, 1), got {fraction}")
    n = int(labels.max())
    if n < 3:
        return labels
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    present = areas[1:] > 0
    median = float(np.median(areas[1:][present]))
    small = np.flatnonzero((areas < fraction * median) & (areas > 0))
    small = small[small > 0]
    if small.size == 0:
        return labels
    out = labels.copy()
    boxes = ndi.find_objects(labels)
    struct = ndi.generate_binary_structure(labels.ndim, 1)
    # smallest first, so a chain of fragments collapses into the big piece
    for obj in small[np.argsort(areas[small], kind="stable")]:
        box = boxes[obj - 1]
        if box is None:
            continue
        box = tuple(slice(max(s.start - 1, 0), s.stop + 1) for s in box)
        region = out[box]
        mask = region == obj
        if not mask.any():
            continue
        ring = ndi.binary_dilation(mask, struct) & ~mask
        around = region[ring]
        touching = around[around > 0]
        if touching.size == 0:
            continue
        ids, counts = np.unique(touching, return_counts=True)
        best = int(np.argmax(counts))
        if counts[best] >= min_shared * ring.sum():
            region[mask] = ids[best]
    return out
