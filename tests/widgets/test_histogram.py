"""The Predict dock's histogram: whole-number count ticks, bars from precomputed counts."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from napari_segkit._widgets.histogram import HistogramPlot, integer_ticks


@given(st.integers(min_value=0, max_value=10**7))
def test_integer_ticks_cover_the_tallest_bar_in_few_whole_steps(top):
    ticks = integer_ticks(top)
    assert ticks[0] == 0 and ticks[-1] >= max(top, 1)
    assert all(isinstance(t, int) for t in ticks)
    assert 2 <= len(ticks) <= 6
    steps = set(np.diff(ticks).tolist())
    assert len(steps) == 1 and ticks[-2] < max(top, 1)  # even steps, no empty one on top


def test_bars_are_drawn_from_counts_and_bad_edges_are_refused(qtbot):
    plot = HistogramPlot()
    qtbot.addWidget(plot)
    plot.set_colors("#262930", "#f0f1f2")
    plot.resize(300, 170)
    plot.show_values([10, 12, 12, 30], "area (px²)", bins=4)
    assert plot.counts.tolist() == [3, 0, 0, 1] and plot.y_ticks()[-1] == 3
    image = plot.grab().toImage()
    pixels = [image.pixelColor(x, 100) for x in range(image.width())]
    assert any(p.blue() - p.red() > 100 for p in pixels)  # a blue bar is painted
    with pytest.raises(ValueError, match="one more bin edge"):
        plot.show_counts(np.array([1, 2]), np.array([0.0, 1.0]), "x")
    plot.show_values([], "area (px²)")
    assert plot.empty()
