"""Model-agnostic tiling: tile positions, blending, and the block geometry of dask and
block-wise prediction."""

from __future__ import annotations

import numpy as np
import pytest

from napari_segkit.tiling import BlockGrid, count_tiles, predict_tiled, tile_positions


def test_tile_positions_even_and_flush() -> None:
    pos = tile_positions(1000, 256, 0.25)
    assert pos[0] == 0 and pos[-1] == 1000 - 256
    steps = np.diff(pos)
    assert steps.max() - steps.min() <= 1 and steps.max() <= 256 * 0.75
    assert tile_positions(200, 256, 0.25) == [0]


@pytest.mark.parametrize("tile", [64, 96, (64, 128), 512])
def test_predict_tiled_matches_untiled_for_local_forward(tile) -> None:
    from scipy import ndimage as ndi

    rng = np.random.default_rng(0)
    arr = rng.random((2, 203, 317)).astype(np.float32)

    def forward(b: np.ndarray) -> np.ndarray:
        smooth = ndi.uniform_filter(b[:, 0], size=(1, 5, 5), mode="reflect")
        return np.stack([smooth, b[:, 1] * 2, b[:, 0] + b[:, 1]], axis=1)

    full = forward(arr[None])[0]
    tiled = predict_tiled(forward, arr, 3, tile_size=tile, overlap=0.25, batch_size=3)
    assert tiled.shape == full.shape and tiled.dtype == np.float32
    assert np.abs(tiled - full).max() < 5e-3


def test_count_tiles_is_what_predict_tiled_runs():
    calls = []
    predict_tiled(lambda b: calls.append(len(b)) or b[:, :1], np.zeros((1, 203, 317), np.float32),
                  1, tile_size=64, batch_size=1)
    assert count_tiles((203, 317), tile_size=64) == len(calls) == 4 * 7


def test_block_grid_cores_tile_the_image_and_regions_add_the_margin():
    grid = BlockGrid.from_chunks((100, 100, 50), (120, 80), margin=16)
    assert (grid.n_rows, grid.n_cols) == (3, 2) and [b.index for b in grid.blocks] == list(range(6))
    covered = np.zeros((250, 200), int)
    for b in grid.blocks:
        covered[b.core] += 1
        ry, rx = b.region
        assert ry.start == max(0, b.core[0].start - 16) and ry.stop == min(250, b.core[0].stop + 16)
        assert rx.start == max(0, b.core[1].start - 16) and rx.stop == min(200, b.core[1].stop + 16)
        region = np.arange(250 * 200).reshape(250, 200)[b.region]
        np.testing.assert_array_equal(region[b.core_in_region],
                                      np.arange(250 * 200).reshape(250, 200)[b.core])
    assert (covered == 1).all()
    assert [len(r) for r in grid.rows()] == [2, 2, 2]
    assert BlockGrid.regular((250, 200), 100, 8).y_edges == [0, 100, 200, 250]


def test_neighbours_are_the_blocks_whose_regions_reach_a_core():
    grid = BlockGrid.regular((300, 300), 100, margin=30)
    centre = grid.blocks[4]
    assert [b.index for b in grid.neighbours(centre)] == list(range(9))
    for other in grid.blocks:
        src, dst = other.reach_into(centre)
        assert np.prod([s.stop - s.start for s in src]) == np.prod([s.stop - s.start for s in dst])
    far = BlockGrid.regular((300, 500), 100, margin=30)
    assert far.blocks[0].reach_into(far.blocks[4]) is None


def test_a_block_owns_the_objects_centred_in_its_core():
    grid = BlockGrid.regular((40, 80), 40, margin=10)
    labels = np.zeros((40, 50), np.uint16)  # the region of the left block: x 0..50
    labels[20:30, 36:48] = 1  # centre x 41.5: in the margin, owned by the right block
    labels[5:15, 30:38] = 2  # centre x 33.5: in the core (x < 40)
    owned = grid.blocks[0].keep_owned(labels)
    assert owned.dtype == np.uint32 and set(np.unique(owned)) == {0, 1}
    np.testing.assert_array_equal(owned == 1, labels == 2)
    with pytest.raises(ValueError, match="margin"):
        BlockGrid.regular((40, 80), 40, margin=-1)
