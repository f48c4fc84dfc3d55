import json

import pytest
import torch

from napari_segkit.model import UNetConfig
from napari_segkit.model_io import ModelFileError, SegModel, load_model, save_model


@pytest.fixture
def model():
    torch.manual_seed(0)
    m = SegModel.new(UNetConfig(width=4, depth=2))
    m.provenance = {"note": "test"}
    return m


def test_roundtrip_identical_outputs(model, tmp_path):
    path = save_model(model, tmp_path / "m.safetensors")
    back = load_model(path)
    assert back.config == model.config
    assert back.class_names == ["background", "interior", "boundary"]
    assert back.provenance["note"] == "test" and "segkit_version" in back.provenance
    x = torch.randn(1, 1, 29, 41)
    model.net.eval()
    with torch.no_grad():
        assert torch.equal(model.net(x), back.net(x))
    assert [p.name for p in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left


def test_half_precision_file_loads_as_float32(model, tmp_path):
    path = save_model(model, tmp_path / "h.safetensors", half=True)
    back = load_model(path)
    assert next(back.net.parameters()).dtype == torch.float32


def test_half_precision_keeps_values_float16_cannot_hold(model, tmp_path):
    """A BatchNorm running variance above 65,504 would be stored as infinity in float16
    (the channel's output then becomes constant): such a tensor stays float32."""
    from safetensors import safe_open

    name = next(k for k in model.net.state_dict() if k.endswith("running_var"))
    with torch.no_grad():
        model.net.get_buffer(name)[0] = 1e6
    path = save_model(model, tmp_path / "h.safetensors", half=True)
    with safe_open(str(path), "pt") as f:
        dtypes = {k: f.get_slice(k).get_dtype() for k in f.keys()}
    assert dtypes[name] == "F32"
    assert dtypes[name.replace("running_var", "running_mean")] == "F16"
    back = load_model(path).net.state_dict()[name]
    assert torch.isfinite(back).all() and back[0] == 1e6


@pytest.mark.parametrize("kind", ["truncated", "random", "json", "empty", "missing"])
def test_corrupt_files_raise_model_file_error(model, tmp_path, kind):
    good = save_model(model, tmp_path / "good.safetensors").read_bytes()
    bad = tmp_path / "bad.safetensors"
    if kind == "truncated":
        bad.write_bytes(good[: len(good) // 2])
    elif kind == "random":
        bad.write_bytes(bytes(range(256)) * 10)
    elif kind == "json":
        bad.write_text(json.dumps({"weights": [1, 2, 3]}))
    elif kind == "empty":
        bad.write_bytes(b"")
    with pytest.raises(ModelFileError, match="cannot load model file") as err:
        load_model(bad)
    assert isinstance(err.value, ValueError)
    assert "napari-segkit" in str(err.value)


def test_foreign_and_incompatible_files(model, tmp_path):
    from safetensors.torch import save_file

    p = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(p))
    with pytest.raises(ModelFileError, match="no napari-segkit metadata"):
        load_model(p)
    save_file({"w": torch.zeros(2)}, str(p), metadata={"segkit": "{not json"})
    with pytest.raises(ModelFileError, match="corrupt"):
        load_model(p)
    meta = {"format": "napari-segkit-model", "format_version": 1,
            "config": UNetConfig(width=4, depth=2).to_dict()}
    save_file({"w": torch.zeros(2)}, str(p), metadata={"segkit": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="do not fit"):
        load_model(p)
    meta["format_version"] = 99
    save_file({"w": torch.zeros(2)}, str(p), metadata={"segkit": json.dumps(meta)})
    with pytest.raises(ModelFileError, match="upgrade"):
        load_model(p)


def test_saved_model_file_is_readable_by_others(tmp_path):
    import stat

    from napari_segkit.model import UNetConfig
    from napari_segkit.model_io import SegModel, save_model

    path = save_model(SegModel.new(UNetConfig(width=4, depth=2)), tmp_path / "m.safetensors")
    assert path.stat().st_mode & stat.S_IRGRP  # not the 0600 of a temporary file


def test_default_names_the_shipped_model_everywhere_a_model_is_taken():
    from napari_segkit.model_io import as_model, load_default_model_cached

    assert as_model("default") is load_default_model_cached()
    with pytest.raises(ModelFileError, match="does not exist"):
        as_model("no_such_model.safetensors")
