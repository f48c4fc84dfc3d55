"""The Predict dock on a multiscale layer whose full level refuses to be read whole:
block by block, with progress and Cancel, multiscale Labels out, a block-wise table
(issue 12)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("napari")

from napari_segkit import io, lazy_prediction, predict_blocks  # noqa: E402
from napari_segkit._sample import sample_path  # noqa: E402
from napari_segkit._widgets.predict import MODEL_FILE, PredictWidget  # noqa: E402

SCALE = (0.5, 0.5)
BLOCK = 512


class WholeReadTrap:
    """A 2-D array-like that serves parts of itself but raises when read whole
    (``np.asarray`` on it, or a slice that covers all of it)."""

    def __init__(self, data: np.ndarray) -> None:
        self._data = data
        self.shape, self.dtype, self.ndim, self.size = data.shape, data.dtype, data.ndim, data.size
        self.parts_read = 0

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key):
        part = self._data[key]
        if np.size(part) >= self._data.size:
            raise AssertionError("the full-resolution level was read whole")
        self.parts_read += 1
        return part

    def __array__(self, dtype=None, copy=None):
        raise AssertionError("np.asarray was called on the full-resolution level")


@pytest.fixture
def errors(predict_errors):
    return predict_errors


@pytest.fixture
def lazy_dock(make_napari_viewer, tiny_model_path, monkeypatch):
    # blocks and read chunks smaller than the 2,048^2 image (real images: 2,048 px blocks)
    monkeypatch.setattr(predict_blocks, "block_size_for", lambda *a, **k: BLOCK)
    monkeypatch.setattr(lazy_prediction, "READ_BLOCK", BLOCK)
    tile = io.read_image(sample_path("fluo_512.tif"))
    variants = [tile, tile[:, ::-1], tile[::-1], tile.T, tile[::-1, ::-1]]
    full = np.block([[variants[(i + 2 * j) % 5] for j in range(4)] for i in range(4)])
    trap = WholeReadTrap(full)  # napari shows a coarser level, the dock must not read it
    viewer = make_napari_viewer()
    layer = viewer.add_image([trap, *(full[::f, ::f] for f in (2, 4, 8))], multiscale=True,
                             name="big", scale=SCALE, contrast_limits=(0, 255))
    widget = PredictWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.image.value = layer
    widget.model_source.value = MODEL_FILE
    widget.model_file.value = tiny_model_path
    return viewer, widget, trap, full


def test_multiscale_layer_is_predicted_block_by_block_without_reading_it_whole(
        lazy_dock, qtbot, errors):
    viewer, widget, trap, full = lazy_dock
    seen = []
    widget._relay.progressed.connect(lambda done, total: seen.append((done, total)))
    reads_before = trap.parts_read
    assert widget.run() is not None
    qtbot.waitUntil(lambda: widget.worker is None, timeout=120_000)
    assert errors == []
    assert trap.parts_read >= reads_before + 16  # 16 blocks, each read with context
    assert seen and seen[-1][0] == seen[-1][1] and widget.progress.value == 1000
    instances = viewer.layers["big instances"]
    semantic = viewer.layers["big semantic"]
    assert instances.multiscale and semantic.multiscale
    assert len(instances.data) >= 2 and instances.data[0].shape == full.shape
    assert "big probability" not in viewer.layers  # no probabilities kept
    np.testing.assert_allclose(instances.scale, SCALE)
    labels = np.asarray(instances.data[0])  # the labels (on disk), not the image
    n = int(labels.max())
    assert set(np.unique(labels)) - {0} == set(range(1, n + 1))  # 1..N, none skipped
    table = instances.features
    assert len(table) == n == widget.summary["n_objects"]
    assert table["area_px"].sum() == np.count_nonzero(labels)
    assert "area_um2" not in table or np.allclose(table["area_um2"], table["area_px"] * 0.25)
    assert widget.table.rowCount() == n
    assert f"{n} object" in widget.counts.value
    assert widget.outcome.probabilities is None and widget.outcome.levels is not None


def test_cancel_stops_a_block_wise_prediction(lazy_dock, qtbot, errors):
    viewer, widget, _trap, _full = lazy_dock
    worker = widget.run()
    assert worker is not None
    widget.cancel()
    qtbot.waitUntil(lambda: widget.worker is None, timeout=60_000)
    assert widget.stage.value == "Cancelled."
    assert "big instances" not in viewer.layers and errors == []


def test_post_processing_changes_ask_for_a_new_prediction():
    from napari_segkit.workflows import PredictOutcome, PredictRequest, refine

    outcome = PredictOutcome(levels={"instances": [], "semantic": []})
    with pytest.raises(ValueError, match="press Predict again"):
        refine(outcome, PredictRequest(np.zeros((4, 4)), "x", "default"), None)
