"""Realistic synthetic nuclei: 3-D stacks (and 2-D images) with exact instance labels.

Ellipsoidal nuclei of varied size, elongation and orientation, some touching, rendered
with per-nucleus brightness, chromatin texture, out-of-focus haze, an uneven background,
an anisotropic Gaussian point-spread function, Poisson (shot) noise and Gaussian read
noise. Sizes, spacing and blur are in physical units (e.g. um); voxel sizes come from
``spacing`` (z, y, x). For training, tests and demos; numpy and scipy only.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

__all__ = ["SyntheticStack", "synthetic_nuclei_stack", "synthetic_nuclei_image"]

_CAMERA_OFFSET = 100.0  # counts added to every voxel, as a camera's bias
_FILL_FRACTION = 0.2  # share of the volume the nuclei fill when n_nuclei is None
_TOUCH_SCALE = (0.85, 0.95)  # centre distance / sum of extents of a touching pair
_APART_SCALE = 1.15  # at least this for every other pair (plus one voxel)
_CANDIDATES = 16  # centres tried at once for each new nucleus


@dataclass(frozen=True)
class SyntheticStack:
    """A synthetic image with its ground truth.

    image : uint16, ``shape``.
    labels : uint16 instances 1..N (0 = background), ``shape``.
    spacing : voxel size per axis, physical units (z, y, x) or (y, x).
    centres : (N, D) float, nucleus ``i + 1``'s centre in voxel coordinates.
    radii : (N,) volume-equivalent radius of each nucleus as drawn (physical units).
    touching : (M, 2) label pairs placed to touch each other.
    """

    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, ...]
    centres: np.ndarray
    radii: np.ndarray
    touching: np.ndarray


def synthetic_nuclei_stack(
    shape: Sequence[int] = (32, 128, 128),
    spacing: Sequence[float] = (1.0, 0.25, 0.25),
    n_nuclei: int | None = None,
    radius_um: tuple[float, float] = (2.0, 4.0),
    elongation: tuple[float, float] = (1.0, 1.6),
    touching_fraction: float = 0.3,
    psf_sigma_um: Sequence[float] = (0.8, 0.15, 0.15),
    photons: float | None = 300.0,
    read_noise: float = 3.0,
    background: float = 0.08,
    background_gradient: float = 0.6,
    haze: float = 0.15,
    intensity_variation: float = 0.3,
    texture: float = 0.25,
    seed: int = 0,
) -> SyntheticStack:
    """A 3-D stack of ellipsoidal nuclei with exact instance labels.

    Parameters
    ----------
    shape, spacing : voxels (z, y, x) and their size in physical units (e.g. um).
    n_nuclei : how many; ``None`` fills about 20 % of the volume (as many as fit).
    radius_um : range of volume-equivalent radii, physical units.
    elongation : range of long / short axis ratios (prolate ellipsoids, random orientation).
    touching_fraction : share of nuclei placed touching an earlier one (shallow overlap,
        contested voxels go to the nearest centre, so every nucleus stays one piece).
    psf_sigma_um : Gaussian blur per axis (z, y, x), physical units (axial > lateral).
    photons : expected photon count of an average nucleus voxel (Poisson noise);
        ``None`` renders the noise-free expected image (and no read noise).
    read_noise : standard deviation of the Gaussian camera noise, in counts.
    background, background_gradient : background level relative to a nucleus, and its
        relative change across the volume (a tilted ramp in a random direction).
    haze : out-of-focus light: this share of the signal, blurred over ~4 radii.
    intensity_variation : relative spread of the brightness between nuclei.
    texture : relative amplitude of the chromatin texture inside nuclei.
    seed : everything random comes from this seed.
    """
    return _synthesize(shape, spacing, 3, n_nuclei, radius_um, elongation, touching_fraction,
                       psf_sigma_um, photons, read_noise, background, background_gradient,
                       haze, intensity_variation, texture, seed)


def synthetic_nuclei_image(
    shape: Sequence[int] = (256, 256),
    spacing: Sequence[float] = (0.25, 0.25),
    n_nuclei: int | None = None,
    radius_um: tuple[float, float] = (2.0, 4.0),
    elongation: tuple[float, float] = (1.0, 1.6),
    touching_fraction: float = 0.3,
    psf_sigma_um: Sequence[float] = (0.15, 0.15),
    photons: float | None = 300.0,
    read_noise: float = 3.0,
    background: float = 0.08,
    background_gradient: float = 0.6,
    haze: float = 0.15,
    intensity_variation: float = 0.3,
    texture: float = 0.25,
    seed: int = 0,
) -> SyntheticStack:
    """The 2-D variant of :func:`synthetic_nuclei_stack`: elliptic nuclei in an (H, W) image."""
    return _synthesize(shape, spacing, 2, n_nuclei, radius_um, elongation, touching_fraction,
                       psf_sigma_um, photons, read_noise, background, background_gradient,
                       haze, intensity_variation, texture, seed)


# ------------------------------------------------------------------------ checks
def _check(shape, spacing, ndim, n_nuclei, radius_um, elongation, touching_fraction,
           psf_sigma_um, photons, read_noise, fractions) -> tuple:
    shape = tuple(int(s) for s in shape)
    spacing = tuple(float(s) for s in spacing)
    psf = tuple(float(s) for s in psf_sigma_um)
    axes = "(z, y, x)" if ndim == 3 else "(y, x)"
    if len(shape) != ndim or min(shape) < 1:
        raise ValueError(f"shape must be {ndim} positive sizes {axes}; got {shape}")
    if len(spacing) != ndim or not all(np.isfinite(s) and s > 0 for s in spacing):
        raise ValueError(f"spacing must be {ndim} positive voxel sizes {axes}; got {spacing}")
    if len(psf) != ndim or not all(np.isfinite(s) and s >= 0 for s in psf):
        raise ValueError(f"psf_sigma_um must be {ndim} blur widths >= 0 {axes}; got {psf}")
    r0, r1 = (float(r) for r in radius_um)
    if not 0 < r0 <= r1:
        raise ValueError(f"radius_um must be (min, max) with 0 < min <= max; got {radius_um}")
    if r0 < max(spacing):
        raise ValueError(
            f"the smallest radius {r0} is below the voxel size {max(spacing)}: nuclei would "
            "be a voxel or two; give larger radii or a finer spacing"
        )
    e0, e1 = (float(e) for e in elongation)
    if not 1.0 <= e0 <= e1:
        raise ValueError(f"elongation must be (min, max) with 1 <= min <= max; got {elongation}")
    if not 0.0 <= touching_fraction <= 1.0:
        raise ValueError(f"touching_fraction must be between 0 and 1; got {touching_fraction}")
    if n_nuclei is not None and int(n_nuclei) < 0:
        raise ValueError(f"n_nuclei must be >= 0 or None; got {n_nuclei}")
    if photons is not None and not (np.isfinite(photons) and photons > 0):
        raise ValueError(f"photons must be > 0, or None for a noise-free image; got {photons}")
    if not read_noise >= 0:
        raise ValueError(f"read_noise must be >= 0 counts; got {read_noise}")
    for name, value in fractions.items():
        if not 0.0 <= value <= (1.0 if name != "background_gradient" else 2.0):
            raise ValueError(f"{name} must be between 0 and 1 (a relative amount); got {value}")
    return shape, spacing, psf, (r0, r1), (e0, e1)


# ---------------------------------------------------------------------- geometry
def _random_ellipsoid(rng, ndim, radius_range, elongation_range) -> tuple[np.ndarray, np.ndarray, float]:
    """(axes matrix A with x^T A x <= 1 inside, half-extent per axis, radius)."""
    radius = rng.uniform(*radius_range)
    ratio = rng.uniform(*elongation_range)
    semi = radius * np.array([ratio ** ((ndim - 1) / ndim)] + [ratio ** (-1 / ndim)] * (ndim - 1))
    q, r = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    rot = q * np.sign(np.diag(r))  # a uniformly random orthogonal matrix
    a = rot @ np.diag(1.0 / semi**2) @ rot.T
    half_extent = np.sqrt(np.diag(np.linalg.inv(a)))  # bounding box of the ellipsoid
    return a, half_extent, radius


def _extents(a: np.ndarray, directions: np.ndarray) -> np.ndarray:
    """Distances from the centre to the surface along unit directions (M, D)."""
    return 1.0 / np.sqrt(np.einsum("mi,ij,mj->m", directions, a, directions))


def _place(rng, shape, spacing, n_nuclei, radius_range, elongation_range, touching_fraction):
    ndim = len(shape)
    size = np.asarray(shape) * np.asarray(spacing)  # physical extent
    voxel = max(spacing)
    if n_nuclei is None:
        mean_volume = (4 / 3 * np.pi if ndim == 3 else np.pi) * np.mean(radius_range) ** ndim
        target, required = int(_FILL_FRACTION * np.prod(size) / mean_volume), False
    else:
        target, required = int(n_nuclei), True
    nuclei: list[tuple[np.ndarray, np.ndarray, float]] = []  # (centre, A, radius)
    centres = np.zeros((target, ndim))
    forms = np.zeros((target, ndim, ndim))
    longest = np.zeros(target)
    touching: list[tuple[int, int]] = []
    failures = 0
    while len(nuclei) < target and failures < 20:
        a, half, radius = _random_ellipsoid(rng, ndim, radius_range, elongation_range)
        lo, hi = half + 0.5 * np.asarray(spacing), size - half - 0.5 * np.asarray(spacing)
        if (hi <= lo).any():
            raise ValueError(
                f"nuclei of radius up to {radius_range[1]} do not fit in a volume of "
                f"{tuple(np.round(size, 2))} (shape x spacing); give a larger shape or smaller radii"
            )
        partner = None
        if nuclei and rng.random() < touching_fraction:
            partner = int(rng.integers(len(nuclei)))
            u = rng.normal(size=(_CANDIDATES, ndim))
            u /= np.linalg.norm(u, axis=1, keepdims=True)
            c_p, a_p, _ = nuclei[partner]
            reach = _extents(a_p, u) + _extents(a, u)
            candidates = c_p + u * (reach * rng.uniform(*_TOUCH_SCALE, size=_CANDIDATES))[:, None]
        else:
            candidates = rng.uniform(lo, hi, size=(_CANDIDATES, ndim))
        k = len(nuclei)
        ok = np.all((candidates >= lo) & (candidates <= hi), axis=1)
        ok &= _clear(candidates, a, centres[:k], forms[:k], longest[:k], partner, voxel)
        if not ok.any():
            failures += 1
            continue
        failures = 0
        centre = candidates[int(np.argmax(ok))]
        nuclei.append((centre, a, radius))
        centres[k], forms[k], longest[k] = centre, a, _semi_max(a)
        if partner is not None:
            touching.append((partner + 1, len(nuclei)))
    if required and len(nuclei) < target:
        raise ValueError(
            f"could place only {len(nuclei)} of {target} nuclei without deep overlaps; "
            "ask for fewer nuclei, smaller radii or a larger shape"
        )
    return nuclei, touching


def _clear(candidates, a, centres, forms, longest, partner, voxel) -> np.ndarray:
    """Which candidate centres keep their distance from every nucleus but the partner.

    The partner may overlap a candidate shallowly; every other nucleus stays apart by its
    extent along the centre line (x 1.15) and by its bounding sphere (longest semi-axes:
    extents along the centre line do not bound elongated ellipsoids sideways), plus one
    voxel.
    """
    if not len(centres):
        return np.ones(len(candidates), bool)
    d = candidates[:, None, :] - centres[None, :, :]  # (M, N, D)
    dist = np.linalg.norm(d, axis=2)
    u = d / np.maximum(dist, 1e-12)[..., None]
    reach = 1.0 / np.sqrt(np.einsum("mni,nij,mnj->mn", u, forms, u)) + 1.0 / np.sqrt(
        np.einsum("mni,ij,mnj->mn", u, a, u))
    apart = np.maximum(_APART_SCALE * reach, longest + _semi_max(a)) + voxel
    ok = dist >= apart
    if partner is not None:
        ok[:, partner] = dist[:, partner] >= _TOUCH_SCALE[0] * reach[:, partner] * 0.999
    return ok.all(axis=1) & (dist > 0).all(axis=1)


def _semi_max(a: np.ndarray) -> float:
    """Longest semi-axis of the ellipsoid ``x^T a x <= 1``."""
    return float(1.0 / np.sqrt(np.linalg.eigvalsh(a).min()))


def _rasterize(shape, spacing, nuclei) -> np.ndarray:
    """Instance labels; a voxel inside several nuclei goes to the nearest centre."""
    labels = np.zeros(shape, np.uint16)
    nearest = np.full(shape, np.inf, np.float32)
    spacing = np.asarray(spacing)
    for k, (centre, a, _) in enumerate(nuclei, start=1):
        half = np.sqrt(np.diag(np.linalg.inv(a)))
        lo = np.maximum(np.floor((centre - half) / spacing - 0.5).astype(int), 0)
        hi = np.minimum(np.ceil((centre + half) / spacing + 0.5).astype(int) + 1, shape)
        grids = np.meshgrid(*[(np.arange(a0, a1) + 0.5) * s - c
                              for a0, a1, s, c in zip(lo, hi, spacing, centre)], indexing="ij")
        d = np.stack(grids, axis=-1)
        inside = np.einsum("...i,ij,...j->...", d, a, d) <= 1.0
        dist2 = (d**2).sum(axis=-1).astype(np.float32)
        box = tuple(slice(a0, a1) for a0, a1 in zip(lo, hi))
        win = inside & (dist2 < nearest[box])
        labels[box][win] = k
        nearest[box][win] = dist2[win]
    return labels


# --------------------------------------------------------------------- rendering
def _smooth_noise(rng, shape, sigma_px) -> np.ndarray:
    """Gaussian-filtered white noise with unit standard deviation."""
    field = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma_px)
    sd = float(field.std())
    return field / sd if sd > 0 else field


def _wide_blur(x: np.ndarray, sigma_px) -> np.ndarray:
    """Gaussian blur with a large sigma, through the FFT (periodic edges, fine for haze)."""
    spectrum = ndi.fourier_gaussian(np.fft.rfftn(x), sigma_px, n=x.shape[-1])
    return np.fft.irfftn(spectrum, s=x.shape).astype(np.float32)


def _ramp(rng, shape) -> np.ndarray:
    """A linear ramp in a random direction, from -0.5 to 0.5 across the volume."""
    u = rng.normal(size=len(shape))
    u /= np.linalg.norm(u)
    grids = np.meshgrid(*[np.linspace(0, 1, n, dtype=np.float32) for n in shape],
                        indexing="ij", sparse=True)
    ramp = sum(g * c for g, c in zip(grids, u))
    ramp = np.broadcast_to(ramp, shape).astype(np.float32)
    span = float(ramp.max() - ramp.min())
    return (ramp - ramp.min()) / span - 0.5 if span > 0 else ramp * 0


def _synthesize(shape, spacing, ndim, n_nuclei, radius_um, elongation, touching_fraction,
                psf_sigma_um, photons, read_noise, background, background_gradient, haze,
                intensity_variation, texture, seed) -> SyntheticStack:
    fractions = {"background": background, "background_gradient": background_gradient,
                 "haze": haze, "intensity_variation": intensity_variation, "texture": texture}
    shape, spacing, psf, radius_range, elong_range = _check(
        shape, spacing, ndim, n_nuclei, radius_um, elongation, touching_fraction,
        psf_sigma_um, photons, read_noise, fractions)
    rng = np.random.default_rng(seed)
    nuclei, touching = _place(rng, shape, spacing, n_nuclei, radius_range, elong_range,
                              touching_fraction)
    labels = _rasterize(shape, spacing, nuclei)
    sp = np.asarray(spacing)
    n = len(nuclei)
    brightness = np.clip(1.0 + intensity_variation * rng.standard_normal(n + 1), 0.3, None)
    brightness[0] = 0.0
    signal = brightness[labels].astype(np.float32)
    if texture > 0 and n:
        grain = _smooth_noise(rng, shape, 0.4 / sp)  # chromatin blobs of ~0.4 um
        signal *= np.clip(1.0 + texture * grain, 0.2, None)
    mean_radius = float(np.mean(radius_range))
    if haze > 0 and n:
        signal += haze * _wide_blur(signal, 2.0 * mean_radius / sp)
    signal = ndi.gaussian_filter(signal, np.asarray(psf) / sp) if max(psf) > 0 else signal
    signal += background * (1.0 + background_gradient * _ramp(rng, shape))
    scale = 300.0 if photons is None else float(photons)
    expected = np.clip(signal, 0.0, None) * scale
    if photons is None:
        counts = expected
    else:
        counts = rng.poisson(expected).astype(np.float32)
        counts += read_noise * rng.standard_normal(shape).astype(np.float32)
    image = np.clip(np.round(counts + _CAMERA_OFFSET), 0, np.iinfo(np.uint16).max)
    centres = (np.array([c for c, _, _ in nuclei]).reshape(n, ndim) / sp) - 0.5
    radii = np.array([r for _, _, r in nuclei], dtype=float)
    return SyntheticStack(
        image=image.astype(np.uint16),
        labels=labels,
        spacing=spacing,
        centres=centres,
        radii=radii,
        touching=np.asarray(touching, dtype=int).reshape(-1, 2),
    )
