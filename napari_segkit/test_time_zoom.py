"""Test-time zoom: predict an image at the scale its objects need (the Cellpose
"diameter" idea). This module holds the numpy part (the diameter, the zoom, the scaled
size limits); :func:`napari_segkit.prediction.predict` with ``diameter=`` runs it.

A model works best on objects of the size it was trained on; its file records that
size (:attr:`~napari_segkit.model_io.SegModel.object_diameter`, the median equivalent
diameter of its training objects). ``predict(..., diameter=...)`` zooms the image by
``model diameter / object diameter``, predicts, resizes the probabilities back to the
image's pixels (linear interpolation) and post-processes them there with the size
limits scaled by ``1 / zoom**2``, so instances keep smooth outlines at the image's
resolution.

``diameter="auto"`` estimates the object diameter from a first pass at scale 1
(:func:`napari_segkit.object_size.estimate_diameter` on its foreground): when it is
within :data:`~napari_segkit.object_size.ZOOM_TOLERANCE` of the model's, the first pass
is the result (no extra cost); otherwise the image is predicted again, zoomed by a
factor clipped to :data:`~napari_segkit.object_size.ZOOM_LIMITS`.
"""

from __future__ import annotations

import numpy as np

from .object_size import ZOOM_LIMITS, estimate_diameter, zoom_for
from .postprocess import DEFAULT_SIZES, foreground_probability

#: A given (not estimated) diameter is honoured within these zoom limits.
EXPLICIT_ZOOM_LIMITS = (0.1, 4.0)


def check_zoomable(kind: str | None, model_diameter: float | None) -> None:
    """ValueError unless an image of this kind (``_common.image_kind``) can be zoomed for a
    model whose training object diameter is ``model_diameter``."""
    if kind not in ("gray", "rgb"):
        raise ValueError(f"diameter= works on 2-D gray or colour images, not a {kind or 'bad'} "
                         "image; predict 3-D stacks with diameter=None")
    if model_diameter is None:
        raise ValueError(
            "this model file records no training object diameter (it predates test-time "
            "zoom), so the image cannot be rescaled to it: predict without a diameter "
            "(diameter=None; 'Nucleus diameter' 0 in the Predict dock), or retrain / "
            "fine-tune the model with this napari-segkit"
        )


def scaled_sizes(postprocess: dict, zoom: float) -> dict:
    """Post-processing size limits (pixels at model scale) expressed in image pixels."""
    out = dict(postprocess)
    for key, default in zip(("min_size", "min_seed_size", "max_hole_size"), DEFAULT_SIZES[2],
                            strict=True):
        value = out.get(key)
        out[key] = int(round((default if value is None else value) / zoom**2))
    return out


def diameter_and_zoom(diameter, model_diameter: float, probs_first, k: int,
                      fg_threshold: float) -> tuple[float | None, float]:
    """The object diameter (given, or estimated from the first pass's foreground for
    ``"auto"``; None when nothing was found) and the zoom that brings it to the model's."""
    if isinstance(diameter, str):
        if diameter != "auto":
            raise ValueError(f"diameter must be None, 'auto' or a number of pixels, got {diameter!r}")
        est = estimate_diameter(foreground_probability(probs_first[:k]) > fg_threshold)
        if est is None:
            return None, 1.0
        return est, zoom_for(est, model_diameter, limits=ZOOM_LIMITS)
    try:
        d = float(diameter)
    except (TypeError, ValueError):
        raise ValueError(f"diameter must be None, 'auto' or a number of pixels, got {diameter!r}") from None
    if not np.isfinite(d) or d <= 0:
        raise ValueError(f"diameter must be a positive number of pixels, got {diameter!r}")
    return d, zoom_for(d, model_diameter, tolerance=1.0, limits=EXPLICIT_ZOOM_LIMITS)
