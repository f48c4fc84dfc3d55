"""Every architecture: output shapes for any size, deep supervision, model-file round trip."""

import json

import pytest
import torch

from napari_segkit.model import UNet, UNetConfig
from napari_segkit.model_io import SegModel, load_model, save_model
from napari_segkit.nets import ARCHITECTURES, build_network, network_class

SMALL = {"width": 4, "depth": 3}


@pytest.mark.parametrize("arch", ARCHITECTURES)
@pytest.mark.parametrize("shape", [(2, 1, 37, 53), (1, 1, 64, 64), (1, 1, 5, 3), (1, 1, 1, 9)])
def test_any_size_same_outputs(arch, shape):
    torch.manual_seed(0)
    net = build_network(UNetConfig(arch=arch, **SMALL)).eval()
    with torch.no_grad():
        out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 4, *shape[2:])
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_rgb_input_and_other_outputs(arch):
    cfg = UNetConfig(arch=arch, in_channels=3, n_classes=2, n_extra=0, **SMALL)
    net = build_network(cfg).eval()
    with torch.no_grad():
        assert net(torch.randn(1, 3, 31, 17)).shape == (1, 2, 31, 17)
    with pytest.raises(ValueError, match="expects"):
        net(torch.randn(1, 1, 16, 16))


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_gradients_reach_every_parameter(arch):
    net = build_network(UNetConfig(arch=arch, **SMALL)).train()
    net(torch.randn(2, 1, 32, 40)).square().mean().backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []


@pytest.mark.parametrize("arch", ARCHITECTURES)
def test_model_file_round_trip(arch, tmp_path):
    torch.manual_seed(1)
    model = SegModel.new(UNetConfig(arch=arch, **SMALL))
    back = load_model(save_model(model, tmp_path / f"{arch}.safetensors"))
    assert back.config == model.config and type(back.net) is type(model.net)
    x = torch.randn(1, 1, 29, 41)
    model.net.eval()
    with torch.no_grad():
        assert torch.equal(model.net(x), back.net(x))


def test_registry():
    assert ARCHITECTURES == ("unet", "resunet", "unetpp", "aspp_unet", "unext")
    assert network_class("unet") is UNet
    with pytest.raises(ValueError, match="choose one of"):
        network_class("maskrcnn")
    with pytest.raises(ValueError, match="arch must be one of"):
        UNetConfig(arch="maskrcnn")
    with pytest.raises(ValueError, match="deep_supervision"):
        UNetConfig(arch="unet", deep_supervision=True)
    with pytest.raises(ValueError, match="depth >= 3"):
        build_network(UNetConfig(arch="unext", depth=2, width=4))


def test_unetpp_deep_supervision_heads():
    net = build_network(UNetConfig(arch="unetpp", deep_supervision=True, **SMALL)).train()
    x = torch.randn(2, 1, 24, 40)
    main, aux = net.forward_with_aux(x)
    assert main.shape == (2, 4, 24, 40) and len(aux) == SMALL["depth"] - 1
    assert all(a.shape == main.shape for a in aux)
    net.eval()
    with torch.no_grad():  # prediction: the last head, the same as forward_with_aux's main
        assert torch.allclose(net(x), net.forward_with_aux(x)[0])


def test_old_model_file_without_arch_loads_as_unet(tmp_path):
    """Files written before ``arch`` existed have no such key in their config."""
    from safetensors.torch import save_file

    model = SegModel.new(UNetConfig(**SMALL))
    cfg = model.config.to_dict()
    del cfg["arch"], cfg["deep_supervision"]
    meta = {"format": "napari-segkit-model", "format_version": 1, "config": cfg,
            "normalization": model.normalization, "class_names": model.class_names}
    path = tmp_path / "old.safetensors"
    save_file({k: v.contiguous() for k, v in model.net.state_dict().items()}, str(path),
              metadata={"segkit": json.dumps(meta)})
    back = load_model(path)
    assert back.config.arch == "unet" and isinstance(back.net, UNet)
