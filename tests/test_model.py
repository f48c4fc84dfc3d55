import pytest
import torch

from napari_segkit.model import UNet, UNetConfig, pad_to_multiple


@pytest.mark.parametrize("shape", [(1, 1, 37, 53), (2, 1, 5, 3), (1, 1, 64, 64), (1, 1, 1, 9)])
def test_any_size_gray(shape):
    net = UNet(UNetConfig(width=4, depth=3)).eval()
    out = net(torch.randn(*shape))
    assert out.shape == (shape[0], 4, *shape[2:])


def test_rgb_and_extra_channels():
    cfg = UNetConfig(in_channels=3, n_classes=2, n_extra=0, width=4, depth=2, norm="group")
    out = UNet(cfg).eval()(torch.randn(1, 3, 31, 17))
    assert out.shape == (1, 2, 31, 17)


def test_wrong_channels_raise():
    with pytest.raises(ValueError, match="expects"):
        UNet(UNetConfig(width=4, depth=2))(torch.randn(1, 3, 16, 16))


def test_config_roundtrip_and_validation():
    cfg = UNetConfig(width=8, depth=2, dropout=0.1)
    assert UNetConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="upgrade"):
        UNetConfig.from_dict({**cfg.to_dict(), "future": 1})
    with pytest.raises(ValueError):
        UNetConfig(norm="layer")


def test_pad_to_multiple_keeps_content():
    x = torch.arange(15.0).reshape(1, 1, 3, 5)
    y = pad_to_multiple(x, 4)
    assert y.shape == (1, 1, 4, 8)
    assert torch.equal(y[..., :3, :5], x)
