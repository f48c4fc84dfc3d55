"""Synthetic nuclei stacks: exact labels, touching pairs, anisotropy, reproducibility."""

from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage as ndi

from napari_segkit.synthetic import synthetic_nuclei_image, synthetic_nuclei_stack


@pytest.fixture(scope="module")
def stack():
    return synthetic_nuclei_stack((32, 128, 128), spacing=(1.0, 0.25, 0.25), seed=3)


def _contacts(labels: np.ndarray) -> set[tuple[int, int]]:
    """Pairs of labels that share a face."""
    pairs = set()
    for axis in range(labels.ndim):
        a = np.moveaxis(labels, axis, 0)
        lo, hi = a[:-1].ravel(), a[1:].ravel()
        keep = (lo > 0) & (hi > 0) & (lo != hi)
        for p, q in zip(lo[keep], hi[keep]):
            pairs.add((int(min(p, q)), int(max(p, q))))
    return pairs


def test_shapes_dtypes_and_consecutive_labels(stack):
    assert stack.image.shape == stack.labels.shape == (32, 128, 128)
    assert stack.image.dtype == np.uint16 and stack.labels.dtype == np.uint16
    n = int(stack.labels.max())
    assert n >= 20
    assert np.array_equal(np.unique(stack.labels), np.arange(n + 1))
    assert stack.centres.shape == (n, 3) and stack.radii.shape == (n,)
    assert stack.spacing == (1.0, 0.25, 0.25)


def test_each_label_is_one_piece_around_its_centre(stack):
    labels = stack.labels
    for k, sl in enumerate(ndi.find_objects(labels), start=1):
        _, pieces = ndi.label(labels[sl] == k)
        assert pieces == 1
        z, y, x = np.round(stack.centres[k - 1]).astype(int)
        assert labels[z, y, x] == k


def test_volumes_match_the_drawn_radii(stack):
    voxel = float(np.prod(stack.spacing))
    volumes = np.bincount(stack.labels.ravel())[1:] * voxel
    expected = 4 / 3 * np.pi * stack.radii**3
    touched = np.isin(np.arange(1, len(volumes) + 1), stack.touching.ravel())
    ratio = volumes / expected
    # untouched nuclei are the whole ellipsoid (voxelised); touching ones lose a cap
    assert np.all(np.abs(ratio[~touched] - 1) < 0.2)
    assert np.all((ratio[touched] > 0.6) & (ratio[touched] < 1.2))


def test_touching_pairs_touch_and_no_other_pair_does(stack):
    assert len(stack.touching) >= 3
    contacts = _contacts(stack.labels)
    listed = {(int(min(p, q)), int(max(p, q))) for p, q in stack.touching}
    assert listed <= contacts
    assert contacts <= listed


def test_nuclei_are_brighter_than_background_and_noise_is_poisson(stack):
    inside = stack.image[stack.labels > 0].astype(float)
    outside = stack.image[ndi.distance_transform_edt(stack.labels == 0, sampling=stack.spacing) > 2]
    assert np.median(inside) > 2 * np.median(outside)
    clean = synthetic_nuclei_stack((16, 64, 64), photons=None, seed=3, n_nuclei=5)
    noisy = synthetic_nuclei_stack((16, 64, 64), photons=300.0, seed=3, n_nuclei=5)
    assert np.array_equal(clean.labels, noisy.labels)
    residual = noisy.image.astype(float) - clean.image
    # shot noise: the spread grows with the signal
    bright = clean.image > np.percentile(clean.image, 95)
    dark = clean.image < np.percentile(clean.image, 20)
    assert residual[bright].std() > 1.5 * residual[dark].std()


def test_anisotropy_keeps_physical_sizes():
    fine = synthetic_nuclei_stack((64, 96, 96), spacing=(0.5, 0.25, 0.25), n_nuclei=8,
                                  photons=None, seed=11)
    coarse = synthetic_nuclei_stack((16, 96, 96), spacing=(2.0, 0.25, 0.25), n_nuclei=8,
                                    photons=None, seed=11)
    v_fine = np.bincount(fine.labels.ravel())[1:] * np.prod(fine.spacing)
    v_coarse = np.bincount(coarse.labels.ravel())[1:] * np.prod(coarse.spacing)
    expected = 4 / 3 * np.pi * fine.radii**3
    assert abs(np.median(v_fine / expected) - 1) < 0.1
    assert abs(np.median(v_coarse / (4 / 3 * np.pi * coarse.radii**3)) - 1) < 0.15
    # a nucleus spans ~4 x more planes at 0.5 um than at 2 um
    z_fine = np.mean([s[0].stop - s[0].start for s in ndi.find_objects(fine.labels)])
    z_coarse = np.mean([s[0].stop - s[0].start for s in ndi.find_objects(coarse.labels)])
    assert 2.5 < z_fine / z_coarse < 5.0


def test_seeds_are_reproducible():
    a = synthetic_nuclei_stack((16, 64, 64), seed=5)
    b = synthetic_nuclei_stack((16, 64, 64), seed=5)
    c = synthetic_nuclei_stack((16, 64, 64), seed=6)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.labels, c.labels)


def test_fast_for_a_32x128x128_stack():
    start = time.process_time()
    synthetic_nuclei_stack((32, 128, 128), seed=0)
    assert time.process_time() - start < 5.0  # about 0.5 s on a quiet core


def test_two_d_variant():
    img = synthetic_nuclei_image((128, 128), n_nuclei=12, seed=2)
    assert img.image.shape == img.labels.shape == (128, 128)
    assert img.labels.max() == 12 and img.centres.shape == (12, 2)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"shape": (64, 64)}, "shape must be 3"),
        ({"spacing": (1.0, 0.25)}, "spacing must be 3"),
        ({"spacing": (1.0, 0.0, 0.25)}, "spacing must be 3"),
        ({"radius_um": (4.0, 2.0)}, "radius_um"),
        ({"radius_um": (0.5, 1.0)}, "below the voxel size"),
        ({"n_nuclei": 500}, "could place only"),
        ({"photons": 0}, "photons"),
        ({"touching_fraction": 1.5}, "touching_fraction"),
        ({"shape": (4, 128, 128)}, "do not fit"),
    ],
)
def test_bad_input_says_what_to_change(kwargs, match):
    args = {"shape": (16, 64, 64), "seed": 0, **kwargs}
    with pytest.raises(ValueError, match=match):
        synthetic_nuclei_stack(**args)
