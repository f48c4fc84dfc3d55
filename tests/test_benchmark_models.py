"""The model files the benchmarks start from are in the repository and load."""

import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


def test_the_no_colour_start_model_of_the_rgb_rows_is_shipped_and_loads():
    sys.path.insert(0, str(BENCH))
    try:
        from bench_finetune import NO_COLOUR_MODEL, start_path
    finally:
        sys.path.remove(str(BENCH))
    from napari_segkit.model_io import load_model

    assert start_path("no-colour") == str(NO_COLOUR_MODEL)
    assert start_path("default") == "default"
    model = load_model(NO_COLOUR_MODEL)
    assert model.provenance["name"] == "nuclei model, no colour images"
    assert model.provenance["training"]["steps"] == 960
    assert model.config.in_channels == 1
