"""The shared rules: image kinds, background clicks, label dtypes, stop flags."""

from __future__ import annotations

import threading

import numpy as np
import pandas as pd
import pytest

from napari_segkit._common import (
    as_label_dtype,
    background_mask,
    classes_of,
    image_kind,
    is_background,
    is_stopped,
    label_dtype,
    spatial_shape,
)


@pytest.mark.parametrize(
    ("shape", "kind"),
    [((64, 80), "gray"), ((64, 80, 3), "rgb"), ((64, 80, 4), "rgb"), ((3, 64, 80), "stack"),
     ((4, 64, 3), "stack"), ((5, 64, 80, 3), "rgb_stack"), ((5,), None), ((2, 3, 4, 5), None)],
)
def test_image_kind(shape, kind):
    assert image_kind(shape) == kind


def test_spatial_shape_drops_the_colour_axis_only():
    assert spatial_shape((64, 80, 3)) == (64, 80)
    assert spatial_shape((3, 64, 80)) == (3, 64, 80)
    assert spatial_shape((5, 64, 80, 4)) == (5, 64, 80)


def test_background_clicks_one_rule():
    assert is_background("background") and is_background(" Background ")
    assert not is_background("nucleus") and not is_background(None)
    np.testing.assert_array_equal(background_mask(["nucleus", "BACKGROUND", 3], 3),
                                  [False, True, False])
    np.testing.assert_array_equal(background_mask(None, 2), [False, False])
    assert classes_of(pd.DataFrame({"object_id": [1]})) is None
    assert classes_of(None) is None
    assert classes_of(pd.DataFrame({"class": pd.Categorical(["nucleus", "background"])})
                      ).tolist() == ["nucleus", "background"]


def test_label_dtype():
    assert label_dtype(0) is np.uint16 and label_dtype(65534) is np.uint16
    assert label_dtype(65535) is np.uint32 and label_dtype(2**32 - 1) is np.uint32
    assert label_dtype(2**32) is np.uint64
    assert as_label_dtype(np.array([[0, 70000]])).dtype == np.uint32
    with pytest.raises(ValueError, match="negative"):
        as_label_dtype(np.array([-1, 2]))


def test_stop_flags():
    event = threading.Event()
    assert not is_stopped(None) and not is_stopped(event) and not is_stopped(lambda: False)
    event.set()
    assert is_stopped(event) and is_stopped(lambda: True)
