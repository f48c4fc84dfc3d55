"""Colour and stain augmentation, so that brightfield / H&E colour images are first-class
training data (numpy + scikit-image only).

Three transforms of a raw image, each returning a new float32 image in [0, 1]:

- :func:`hed_jitter`: stain variation of H&E / haematoxylin images (Tellez et al. 2019):
  the image is split into haematoxylin, eosin and DAB densities
  (``skimage.color.rgb2hed``), each density is scaled and shifted at random, and the
  result is recombined (``hed2rgb``);
- :func:`brightness_contrast_gamma`: per-image brightness, contrast and gamma, and a
  small per-channel colour cast;
- :func:`synthetic_brightfield`: a fluorescence image rendered as a stained brightfield
  image -- the nuclear signal becomes haematoxylin density on a pale eosin background --
  so that the many fluorescence images teach the model what nuclei look like in
  brightfield (dark on bright, inverted by :func:`napari_segkit.data.raw_channels` for
  1-channel models).

:func:`color_variants` makes ``n`` such variants of a training image; the patch sampler
draws a patch from one of them instead of the original with probability
``TrainConfig.color_prob``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .normalization import is_brightfield

#: Stain density jitter of :func:`hed_jitter`: scale in 1 +- HED_SCALE, shift +- HED_SHIFT.
HED_SCALE = 0.2
HED_SHIFT = 0.03


def to_unit_float(image: np.ndarray) -> np.ndarray:
    """An image as float32 in [0, 1]: integer types by their maximum, floats by
    their 99.9th percentile (clipped)."""
    image = np.asarray(image)
    if np.issubdtype(image.dtype, np.integer):
        return image.astype(np.float32) / float(np.iinfo(image.dtype).max)
    x = image.astype(np.float32)
    lo = float(min(x.min(), 0.0))
    hi = float(np.percentile(x, 99.9)) if x.size else 1.0
    return np.clip((x - lo) / max(hi - lo, 1e-6), 0.0, 1.0)


def _rgb_of(image: np.ndarray) -> np.ndarray:
    if image.ndim != 3 or image.shape[-1] not in (3, 4):
        raise ValueError(f"expected a colour image (H, W, 3|4), got shape {image.shape}")
    return to_unit_float(image[..., :3])


def hed_jitter(image: np.ndarray, rng: np.random.Generator, scale: float = HED_SCALE,
               shift: float = HED_SHIFT) -> np.ndarray:
    """Random stain variation of a brightfield colour image (see the module notes)."""
    from skimage.color import hed2rgb, rgb2hed

    hed = rgb2hed(_rgb_of(image))
    alpha = rng.uniform(1.0 - scale, 1.0 + scale, size=3)
    beta = rng.uniform(-shift, shift, size=3)
    return np.clip(hed2rgb(hed * alpha + beta), 0.0, 1.0).astype(np.float32)


def brightness_contrast_gamma(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random gamma (0.7-1.4), contrast (0.75-1.33 about the mean), brightness (+-0.08)
    and a per-channel cast (+-4 %) of a gray or colour image in [0, 1]."""
    x = to_unit_float(image)
    x = np.power(x, float(np.exp(rng.uniform(np.log(0.7), np.log(1.4)))))
    mean = x.mean(axis=(0, 1), keepdims=True)
    x = (x - mean) * float(np.exp(rng.uniform(np.log(0.75), np.log(1.33)))) + mean
    x = x + float(rng.uniform(-0.08, 0.08))
    if x.ndim == 3:
        x = x * rng.uniform(0.96, 1.04, size=x.shape[-1]).astype(np.float32)
    return np.clip(x, 0.0, 1.0).astype(np.float32)


def synthetic_brightfield(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A fluorescence image (gray, nuclei bright) rendered as a haematoxylin-stained
    brightfield colour image (nuclei dark purple on a pale background)."""
    from skimage.color import hed2rgb

    gray = np.asarray(image)
    if gray.ndim != 2:
        raise ValueError(f"expected a 2-D fluorescence image, got shape {gray.shape}")
    g = gray.astype(np.float32)
    lo, hi = np.percentile(g, [1.0, 99.8])
    g = np.clip((g - lo) / max(hi - lo, 1e-6), 0.0, 1.0)
    # stain densities (rgb2hed units) as measured on the H&E images of train/: nuclei
    # haematoxylin 0.035-0.12 on a background of 0.015-0.04, eosin in nuclei about half
    # the haematoxylin, little eosin and DAB on the background
    from scipy import ndimage as ndi

    texture = ndi.gaussian_filter(rng.standard_normal(g.shape).astype(np.float32), rng.uniform(2, 8))
    texture /= max(float(np.abs(texture).max()), 1e-6)
    background = rng.uniform(0.015, 0.04) * (1.0 + 0.3 * texture)
    h = background + g * rng.uniform(0.04, 0.1)
    e = h * rng.uniform(0.1, 0.7) + rng.uniform(0.0, 0.01)
    d = np.full_like(g, rng.uniform(0.0, 0.01))
    hed = np.stack([h, e, d], axis=-1)
    return np.clip(hed2rgb(hed), 0.0, 1.0).astype(np.float32)


def color_variants(image: np.ndarray, n: int, rng: np.random.Generator) -> list[np.ndarray]:
    """``n`` colour variants of a raw training image (float32 in [0, 1]).

    Brightfield colour images get stain jitter then brightness / contrast / gamma;
    fluorescence colour images brightness / contrast / gamma only; gray images become
    synthetic brightfield images (:func:`synthetic_brightfield`), stain-jittered too.
    """
    image = np.asarray(image)
    colour = image.ndim == 3 and image.shape[-1] in (3, 4)
    brightfield = colour and is_brightfield(image[..., :3])
    out = []
    for _ in range(int(n)):
        if brightfield:
            v = brightness_contrast_gamma(hed_jitter(image, rng), rng)
        elif colour:
            v = brightness_contrast_gamma(image[..., :3], rng)
        else:
            v = brightness_contrast_gamma(hed_jitter(synthetic_brightfield(image, rng), rng), rng)
        out.append(v)
    return out


def with_color_variants(images: list, prepared: list, n: int, seed: int,
                        prepare: Callable[[np.ndarray], np.ndarray]) -> list[np.ndarray]:
    """Prepared images with ``n`` prepared colour variants each stacked after their
    channels: (C * (1 + n), H, W) each, so they travel through a hold-out split together
    (``prepared`` unchanged when ``n`` is 0). ``prepare`` turns a raw image into network
    input; the variants come from their own random stream (``seed``)."""
    if n <= 0:
        return prepared
    rng = np.random.default_rng([seed, 7])  # own stream: the sampler's stays as it was
    return [np.concatenate([x, *(prepare(v) for v in color_variants(im, n, rng))])
            for im, x in zip(images, prepared, strict=True)]


def split_variants(stacked: list, in_channels: int) -> tuple[list, list]:
    """Undo :func:`with_color_variants`: the images and, per image, its variants."""
    images = [x[:in_channels] for x in stacked]
    variants = [[x[k:k + in_channels] for k in range(in_channels, x.shape[0], in_channels)]
                for x in stacked]
    return images, variants
