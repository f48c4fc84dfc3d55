"""3-D instances of a stack predicted slice by slice by a 2-D model (instances3d, predict)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_segkit.instances3d import stack_instances
from napari_segkit.metrics import match_instances
from napari_segkit.synthetic import synthetic_nuclei_stack

DEFAULT_MODEL = Path(__file__).resolve().parents[1] / "napari_segkit/models/default_nuclei.safetensors"


def planewise_probabilities(labels: np.ndarray) -> np.ndarray:
    """What an ideal 2-D model predicts for each plane: background / interior / boundary
    probabilities and a centre map normalised per object *cross-section*."""
    fg = labels > 0
    boundary = np.zeros_like(fg)
    centre = np.zeros(labels.shape, np.float32)
    for z in range(labels.shape[0]):
        plane = labels[z]
        boundary[z] = fg[z] & (ndi.grey_erosion(plane, size=3) != ndi.grey_dilation(plane, size=3))
        for k, sl in enumerate(ndi.find_objects(plane), start=1):
            if sl is None:
                continue
            d = ndi.distance_transform_edt(np.pad(plane[sl] == k, 1))[1:-1, 1:-1]
            centre[z][sl] = np.where(plane[sl] == k, d / d.max(), centre[z][sl])
    interior = fg & ~boundary
    return np.stack([~fg, interior, boundary, centre]).astype(np.float32)


@pytest.fixture(scope="module")
def stack():
    return synthetic_nuclei_stack((24, 96, 96), spacing=(1.0, 0.25, 0.25), seed=51,
                                  touching_fraction=0.5)


def test_ideal_planewise_predictions_give_the_3d_objects(stack):
    probs = planewise_probabilities(stack.labels)
    labels = stack_instances(probs, 3, scale=stack.spacing)
    match = match_instances(stack.labels, labels)
    assert match.f1 >= 0.95
    assert abs(int(labels.max()) - int(stack.labels.max())) <= 1
    # objects are joined across slices: each spans as many planes as its truth
    spans = [s[0].stop - s[0].start for s in ndi.find_objects(labels)]
    assert np.median(spans) >= 4


def test_pairs_stacked_in_z_are_split(stack):
    # the 2-D rule on the volume (seeds = centre > 0.5) joins nuclei whose columns touch
    probs = planewise_probabilities(stack.labels)
    volume = match_instances(stack.labels, stack_instances(probs, 3, scale=stack.spacing))
    columns = match_instances(stack.labels, stack_instances(probs, 3, stack_method="centre"))
    assert volume.f1 >= columns.f1
    assert volume.f1 >= 0.95


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the shipped default model is missing")
def test_predict_a_stack_with_the_default_model_gives_3d_objects(stack):
    import dask.array as da

    from napari_segkit.model_io import load_model
    from napari_segkit.prediction import predict

    model = load_model(DEFAULT_MODEL)
    result = predict(model, stack.image, scale=stack.spacing, tile_size=128)
    assert result.instances.shape == stack.image.shape
    match = match_instances(stack.labels, result.instances)
    assert match.f1 >= 0.85
    assert abs(int(result.instances.max()) - int(stack.labels.max())) <= 3
    # a dask stack gives the same objects (2 x 2 blocks in y, x; all of z in each)
    lazy = predict(model, da.from_array(stack.image, chunks=(8, 48, 48)), scale=stack.spacing,
                   tile_size=128, dask_overlap=32)
    blocks = np.asarray(lazy.instances.compute(scheduler="synchronous"))
    assert match_instances(result.instances, blocks).f1 >= 0.97
    whole = predict(model, da.from_array(stack.image, chunks=(8, 96, 96)), scale=stack.spacing,
                    tile_size=128)
    single = np.asarray(whole.instances.compute(scheduler="synchronous"))
    assert match_instances(result.instances, single).f1 == 1.0


def test_bad_input():
    probs = np.zeros((4, 4, 8, 8), np.float32)
    probs[0] = 1
    with pytest.raises(ValueError, match="3 positive voxel sizes"):
        stack_instances(probs, 3, scale=(1.0, 1.0))
    with pytest.raises(ValueError, match="stack_method='centre'"):
        stack_instances(probs, 3, seed_threshold=0.4)
    with pytest.raises(ValueError, match="stack_method must be"):
        stack_instances(probs, 3, stack_method="slices")
    with pytest.raises(ValueError, match=r"\(K, Z, Y, X\)"):
        stack_instances(probs[:, 0], 3)
    assert stack_instances(probs, 3).max() == 0


@pytest.mark.skipif(not DEFAULT_MODEL.is_file(), reason="the shipped default model is missing")
def test_predict_workflow_on_the_sample_stack_measures_3d_objects():
    from napari_segkit._sample_data import nuclei3d_synth
    from napari_segkit.workflows import PredictRequest, run_prediction

    (image, kwargs, _), (gt, _, _), _ = nuclei3d_synth()
    out = run_prediction(PredictRequest(image, "stack", "default", scale=kwargs["scale"],
                                        units="um", gt_labels=gt))
    assert out.error is None and out.instances.shape == gt.shape
    assert out.scores["f1"] >= 0.85
    assert {"volume_um3", "centroid_z_um"} <= set(out.table.columns)
    assert len(out.table) == out.instances.max()
