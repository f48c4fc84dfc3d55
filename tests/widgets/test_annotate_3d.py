"""The Annotate dock on a 3-D image layer: clicks on slices -> 3-D masks with the image's scale."""

from __future__ import annotations

import numpy as np

from napari_segkit._sample_data import nuclei3d_synth
from napari_segkit._widgets.annotate import AnnotateWidget
from napari_segkit.annotations import SPARSE_OBJECT
from napari_segkit.metrics import match_instances


def test_clicks_on_a_stack_give_3d_masks_with_its_scale(make_napari_viewer):
    viewer = make_napari_viewer()
    for data, kwargs, kind in nuclei3d_synth():
        getattr(viewer, f"add_{kind}")(data, **kwargs)
    gt = viewer.layers["nuclei3d_synth ground truth"].data
    sample = viewer.layers["nuclei3d_synth clicks"]
    nuclei = sample.data[np.asarray(sample.features["class"] == "nucleus")]
    widget = AnnotateWidget(viewer)
    widget.image.value = viewer.layers["nuclei3d_synth"]
    clicks = widget.add_clicks_layer()
    assert clicks.ndim == 3 and tuple(clicks.scale) == (1.0, 0.25, 0.25)
    clicks.add(nuclei)  # each click keeps its slice (z, y, x)
    widget.annotation_layer.value = clicks
    widget.mode.value = "click"
    out = widget.convert()
    assert out is not None and out.data.shape == gt.shape
    assert tuple(out.scale) == (1.0, 0.25, 0.25)
    assert match_instances(gt, out.data).f1 >= 0.9
    spans = [np.ptp(np.nonzero(out.data == k)[0]) + 1 for k in range(1, int(out.data.max()) + 1)]
    assert np.median(spans) >= 3  # volumes, not single-slice disks
    widget.mode.value = "sparse"
    sparse = widget.convert()
    assert sparse.data.shape == gt.shape and (sparse.data == SPARSE_OBJECT).any()
