"""Training data: random patches with augmentation, and the validation hold-out (numpy only).

Images reach the sampler already prepared (:func:`napari_segkit.normalization.prepare_input`,
once per image, not per patch) together with their :class:`napari_segkit.targets.Targets`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage.segmentation import relabel_sequential

from ._common import IGNORE_INDEX

__all__ = ["IGNORE_INDEX", "PatchSampler", "augment_intensity", "split_rows", "split_validation"]


class PatchSampler:
    """Random training patches from pre-normalised images and their targets (numpy only).

    Parameters
    ----------
    images : list of float32 (C, H, W)
        Already prepared with :func:`prepare_input` (done once, not per patch).
    targets : list of :class:`napari_segkit.targets.Targets`
    patch_size : int
        Square patch side; smaller images are padded (reflect; targets with ignore).
    fg_prob : float
        Probability that a patch is centred on a labelled object pixel (class >= 1);
        otherwise on a labelled pixel of any class (uniform for fully labelled images).
    augment : bool
        Random flips, 90 degree rotations, intensity scale / shift / gamma.
    scale_range : (float, float), optional
        With ``augment``, zoom each patch by a factor drawn log-uniformly from this range
        (e.g. ``(0.5, 2.0)``: objects appear from half to twice their size), so a model
        meets nuclei of sizes its few training images do not show. The image is resampled
        linearly, classes and masks by nearest neighbour, the centre map linearly.
        ``None`` (default) keeps the pixel size: right when fine-tuning on the images the
        model will be used on.
    rng : numpy Generator
    variants : list of lists of float32 (C, H, W), optional
        Per image, alternative prepared versions of it (colour / stain variants, see
        :func:`napari_segkit.color_augment.color_variants`), same shape as the image.
    variant_prob : float
        With ``augment``, probability that a patch is cut from one of the image's
        variants (chosen uniformly) instead of the image itself.
    """

    def __init__(self, images, targets, patch_size: int = 128, *, fg_prob: float = 0.6,
                 augment: bool = True, scale_range: tuple[float, float] | None = None,
                 rng: np.random.Generator | None = None, variants=None,
                 variant_prob: float = 0.5) -> None:
        if len(images) == 0 or len(images) != len(targets):
            raise ValueError("need at least one image and one target per image")
        self.patch = int(patch_size)
        self.fg_prob = float(fg_prob)
        self.augment = augment
        self.scale_range = _check_scale_range(scale_range)
        self.rng = rng if rng is not None else np.random.default_rng()
        self.images, self.classes, self.center, self.cmask = [], [], [], []
        self.fg_idx, self.lab_idx, weights = [], [], []
        for img, t in zip(images, targets, strict=True):
            img, cls, ctr, cm = _pad_to_patch(img, t.classes, t.center, t.center_mask, self.patch)
            self.images.append(img)
            self.classes.append(cls)
            self.center.append(ctr)
            self.cmask.append(cm)
            flat = cls.ravel()
            self.fg_idx.append(np.flatnonzero(flat >= 1).astype(np.int64))
            lab = np.flatnonzero(flat >= 0)
            self.lab_idx.append(None if lab.size == flat.size else lab.astype(np.int64))
            weights.append(max(lab.size, 1))
        if sum(len(f) for f in self.fg_idx) == 0 and all(
            li is not None and li.size == 0 for li in self.lab_idx
        ):
            raise ValueError("the annotations contain no labelled pixel; annotate some objects")
        w = np.asarray(weights, np.float64)
        self.image_p = w / w.sum()
        self.n_channels = images[0].shape[0]
        self.variant_prob = float(variant_prob)
        self.variants = [[] for _ in images] if variants is None else [
            [_pad_to_patch(v, t.classes, t.center, t.center_mask, self.patch)[0] for v in vs]
            for vs, t in zip(variants, targets, strict=True)]
        for img, vs in zip(self.images, self.variants, strict=True):
            if any(v.shape != img.shape for v in vs):
                raise ValueError("every variant of an image must have the image's shape")

    def _source(self, i: int) -> np.ndarray:
        """Image ``i`` or, with probability ``variant_prob``, one of its variants."""
        vs = self.variants[i]
        if self.augment and vs and self.rng.random() < self.variant_prob:
            return vs[int(self.rng.integers(len(vs)))]
        return self.images[i]

    @property
    def labelled_pixels(self) -> int:
        return int(sum(int((c >= 0).sum()) for c in self.classes))

    def _corner(self, i: int, p: int | None = None) -> tuple[int, int]:
        """Top-left corner of a ``p``-pixel window (default: the patch size) in image ``i``."""
        _, h, w = self.images[i].shape
        p = self.patch if p is None else p
        rng = self.rng
        r = rng.random()
        idx = None
        if r < self.fg_prob and self.fg_idx[i].size:
            idx = self.fg_idx[i][rng.integers(self.fg_idx[i].size)]
        elif self.lab_idx[i] is not None and self.lab_idx[i].size:
            idx = self.lab_idx[i][rng.integers(self.lab_idx[i].size)]
        if idx is None:
            return int(rng.integers(max(h - p, 0) + 1)), int(rng.integers(max(w - p, 0) + 1))
        cy, cx = divmod(int(idx), w)
        # centre with some jitter so the object is not always in the middle
        cy += int(rng.integers(-p // 4, p // 4 + 1))
        cx += int(rng.integers(-p // 4, p // 4 + 1))
        # a window larger than the image (zoomed-out patch) is centred on it
        y0 = np.clip(cy - p // 2, 0, h - p) if p <= h else (h - p) // 2
        x0 = np.clip(cx - p // 2, 0, w - p) if p <= w else (w - p) // 2
        return int(y0), int(x0)

    def _cut(self, i: int):
        """One patch of image ``i`` and its targets, zoomed when ``scale_range`` is set."""
        p, rng = self.patch, self.rng
        source = self._source(i)
        if not (self.augment and self.scale_range):
            y0, x0 = self._corner(i)
            sl = (slice(y0, y0 + p), slice(x0, x0 + p))
            return (source[(slice(None), *sl)], self.classes[i][sl],
                    self.center[i][sl], self.cmask[i][sl])
        lo, hi = self.scale_range
        zoom = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
        src = max(int(round(p / zoom)), 2)  # window side in image pixels
        y0, x0 = self._corner(i, src)
        # sample the window at p x p points (pixel centres: output pixel k reads image
        # coordinate origin + (k + 0.5) * step - 0.5), outside the image: mirrored image,
        # ignored classes. An axis-aligned scaling: affine_transform computes the
        # coordinates on the fly, faster than map_coordinates over a coordinate grid
        step = src / p
        warp = {"matrix": (step, step), "offset": (y0 + 0.5 * step - 0.5, x0 + 0.5 * step - 0.5),
                "output_shape": (p, p)}
        xi = np.stack([ndi.affine_transform(c, order=1, mode="mirror", **warp) for c in source])
        ci = ndi.affine_transform(self.classes[i], order=0, mode="constant", cval=IGNORE_INDEX,
                                  **warp)
        ti = ndi.affine_transform(self.center[i], order=1, mode="constant", cval=0.0, **warp)
        ti *= ci >= 1  # linear resampling bleeds at object edges: no centre outside objects
        mi = ndi.affine_transform(self.cmask[i].view(np.uint8), order=0, mode="constant",
                                  cval=0, **warp).astype(bool)
        return xi, ci, ti, mi

    def sample(self, batch_size: int):
        """Return ``(x (B,C,P,P) float32, classes (B,P,P) int64, center (B,P,P) float32,
        center_mask (B,P,P) bool)``."""
        p, rng = self.patch, self.rng
        x = np.empty((batch_size, self.n_channels, p, p), np.float32)
        cls = np.empty((batch_size, p, p), np.int64)
        ctr = np.empty((batch_size, p, p), np.float32)
        cm = np.empty((batch_size, p, p), bool)
        which = rng.choice(len(self.images), size=batch_size, p=self.image_p)
        for b, i in enumerate(which):
            xi, ci, ti, mi = self._cut(int(i))
            if self.augment:
                k = int(rng.integers(4))
                if k:
                    xi, ci, ti, mi = (np.rot90(a, k, axes=(-2, -1)) for a in (xi, ci, ti, mi))
                if rng.random() < 0.5:
                    xi, ci, ti, mi = (a[..., ::-1] for a in (xi, ci, ti, mi))
            x[b], cls[b], ctr[b], cm[b] = xi, ci, ti, mi
            if self.augment:
                augment_intensity(x[b], rng)
        return x, cls, ctr, cm


def _check_scale_range(scale_range) -> tuple[float, float] | None:
    if scale_range is None:
        return None
    try:
        lo, hi = (float(v) for v in scale_range)
    except (TypeError, ValueError):
        raise ValueError(
            f"scale_range must be two zoom factors (low, high), e.g. (0.5, 2.0); got {scale_range!r}"
        ) from None
    if not (0.1 <= lo <= hi <= 10.0):
        raise ValueError(
            f"scale_range must satisfy 0.1 <= low <= high <= 10, got ({lo}, {hi})"
        )
    return None if lo == hi == 1.0 else (lo, hi)


def augment_intensity(x: np.ndarray, rng: np.random.Generator) -> None:
    """In place: gamma (on the positive part), then scale and shift."""
    if rng.random() < 0.5:
        g = float(np.exp(rng.uniform(np.log(0.7), np.log(1.4))))
        pos = np.maximum(x, 0.0)
        x += np.power(pos, g) - pos
    x *= float(np.exp(rng.uniform(np.log(0.75), np.log(1.33))))
    x += float(rng.uniform(-0.1, 0.1))


def _pad_to_patch(img, cls, ctr, cm, patch: int):
    _, h, w = img.shape
    ph, pw = max(patch - h, 0), max(patch - w, 0)
    if ph == 0 and pw == 0:
        return img, cls, ctr, cm
    pads = ((0, ph), (0, pw))
    mode = "reflect" if ph < h and pw < w else "symmetric"
    img = np.pad(img, ((0, 0), *pads), mode=mode)
    if min(img.shape[1:]) < patch:  # tiny image: repeat until large enough
        img = np.pad(img, ((0, 0), (0, max(patch - img.shape[1], 0)),
                           (0, max(patch - img.shape[2], 0))), mode="wrap")
    cls = np.pad(cls, pads, constant_values=IGNORE_INDEX)
    ctr = np.pad(ctr, pads)
    cm = np.pad(cm, pads)
    return img, cls, ctr, cm


def split_rows(n_rows: int, fraction: float) -> int:
    """Row where a held-out validation strip (the last ``fraction`` of rows) starts."""
    return int(round(n_rows * (1.0 - fraction)))


def split_validation(images: list, targets: list, instances: list, fraction: float,
                     rng: np.random.Generator) -> tuple[list, list, list, list, list]:
    """Hold out whole images (>= 3 images) or the bottom strip of each image.

    Returns ``(train images, train targets, validation images, validation targets,
    validation instance labels)``; ``fraction <= 0`` holds out nothing.
    """
    n = len(images)
    if fraction <= 0:
        return images, targets, [], [], []
    if n >= 3:
        n_val = max(1, int(round(fraction * n)))
        val = set(rng.permutation(n)[:n_val].tolist())
        tr = [i for i in range(n) if i not in val]
        return ([images[i] for i in tr], [targets[i] for i in tr],
                [images[i] for i in sorted(val)], [targets[i] for i in sorted(val)],
                [instances[i] for i in sorted(val)])
    tr_x, tr_t, va_x, va_t, va_i = [], [], [], [], []
    for x, t, inst in zip(images, targets, instances, strict=True):
        r = split_rows(x.shape[1], fraction)
        top, bottom = (slice(0, r), slice(None)), (slice(r, None), slice(None))
        tr_x.append(x[:, :r])
        tr_t.append(t.crop(top))
        va_x.append(x[:, r:])
        va_t.append(t.crop(bottom))
        va_i.append(None if inst is None else relabel_sequential(inst[r:])[0])
    return tr_x, tr_t, va_x, va_t, va_i
