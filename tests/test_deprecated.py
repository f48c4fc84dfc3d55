"""Yesterday's module names keep working: napari_segkit.convert and napari_segkit.data
forward to the new homes of their names, with a DeprecationWarning."""

from __future__ import annotations

import pytest

import napari_segkit
from napari_segkit import annotations, normalization, sampling


def test_convert_forwards_to_annotations():
    with pytest.warns(DeprecationWarning, match="napari_segkit.annotations"):
        assert napari_segkit.convert.convert_points is annotations.convert_points
    with pytest.warns(DeprecationWarning):
        from napari_segkit.convert import MODES
    assert MODES is annotations.MODES


def test_data_forwards_to_normalization_and_sampling():
    with pytest.warns(DeprecationWarning, match="napari_segkit.normalization"):
        from napari_segkit.data import prepare_input
    assert prepare_input is normalization.prepare_input
    with pytest.warns(DeprecationWarning, match="napari_segkit.sampling"):
        assert napari_segkit.data.PatchSampler is sampling.PatchSampler
    with pytest.raises(AttributeError):
        napari_segkit.data.no_such_name  # noqa: B018


def test_the_facade_still_names_every_public_function():
    for name in napari_segkit.__all__:
        assert getattr(napari_segkit, name) is not None
