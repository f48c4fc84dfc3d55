"""Prediction of whole images: tiled == untiled, odd / small / RGB / 3-D inputs, dask ==
numpy, block-wise instances, progress, cancel and bad input."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tifffile
import torch
import torch.nn.functional as F
from torch import nn

from napari_segkit._sample import sample_path
from napari_segkit.metrics import match_instances
from napari_segkit.model import UNetConfig
from napari_segkit.model_io import SegModel
from napari_segkit.normalization import prepare_input
from napari_segkit.postprocess import instances_from_probabilities
from napari_segkit.prediction import PredictionCancelled, predict, predict_probabilities
from napari_segkit.runtime import TorchForward


class BlobNet(nn.Module):
    """Deterministic stand-in for a trained UNet (a random UNet segments nothing useful).

    Class and centre logits come from Gaussian-blurred intensity, so bright nuclei become
    objects with a centre peak; the receptive field (radius 12) is below the tile overlap.
    """

    def __init__(self) -> None:
        super().__init__()
        self.config = UNetConfig(width=4, depth=2)
        self.register_buffer("k1", self._kernel(1.5))
        self.register_buffer("k2", self._kernel(4.0))

    @staticmethod
    def _kernel(sigma: float) -> torch.Tensor:
        r = int(3 * sigma)
        x = torch.arange(-r, r + 1, dtype=torch.float32)
        g = torch.exp(-0.5 * (x / sigma) ** 2)
        g /= g.sum()
        return (g[:, None] * g[None, :])[None, None]

    def _blur(self, x: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        return F.conv2d(F.pad(x, [k.shape[-1] // 2] * 4, mode="replicate"), k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self._blur(x, self.k1), self._blur(x, self.k2)
        fg = 12 * (a - 0.25)
        inner = 12 * (b - 0.35)
        return torch.cat(
            [-fg, fg + inner.clamp(max=0), fg - inner.clamp(min=0) - 1, 12 * (b - 0.45)], 1
        )


@pytest.fixture(scope="module")
def image() -> np.ndarray:
    return tifffile.imread(sample_path("fluo_512.tif"))


@pytest.fixture(scope="module")
def unet(tiny_model) -> SegModel:
    return tiny_model


@pytest.fixture(scope="module")
def blob() -> SegModel:
    net = BlobNet()
    return SegModel(net=net, config=net.config)


def _untiled(model: SegModel, image: np.ndarray) -> np.ndarray:
    x = prepare_input(image, model.config.in_channels, model.normalization)
    model.net.eval()
    return TorchForward(model.net, model.config.n_classes, torch.device("cpu"))(x[None])[0]


def _f1(a: np.ndarray, b: np.ndarray) -> float:
    return match_instances(a, b).f1


# --------------------------------------------------------------------------- core


def test_tiled_unet_equals_untiled_on_real_image(image, unet) -> None:
    tiled = predict_probabilities(unet, image, tile_size=128, overlap=0.25)
    full = _untiled(unet, image)
    assert tiled.shape == (4, 512, 512) and tiled.dtype == np.float32
    assert np.abs(tiled - full).max() < 1e-3
    np.testing.assert_allclose(tiled[:3].sum(0), 1.0, atol=1e-5)


def test_tiled_instances_equal_untiled(image, blob) -> None:
    tiled = predict(blob, image, tile_size=128)
    full = _untiled(blob, image)
    # receptive field radius 12 < overlap 32: only Gaussian-downweighted tile edges differ
    assert np.abs(tiled.probabilities - full).max() < 5e-3
    ref = instances_from_probabilities(full[:3], full[3])
    assert tiled.instances.max() > 20
    assert _f1(ref, tiled.instances) >= 0.99
    assert tiled.semantic.shape == image.shape and tiled.semantic.dtype == np.uint8


def test_small_and_odd_images(unet, image) -> None:
    small = image[:37, :50]
    p = predict_probabilities(unet, small, tile_size=256)
    assert p.shape == (4, 37, 50)
    assert np.isfinite(p).all()
    odd = image[:301, :257]
    p = predict_probabilities(unet, odd, tile_size=128, batch_size=3)
    assert p.shape == (4, 301, 257)
    # the untiled network pads 257 -> 260 itself: compare away from the padded border
    assert np.abs(p - _untiled(unet, odd))[:, :-8, :-8].max() < 1e-3


def test_rgb_image(unet) -> None:
    rgb = tifffile.imread(sample_path("he_rgb.tif"))
    p = predict_probabilities(unet, rgb, tile_size=128)
    assert p.shape == (4, *rgb.shape[:2])
    torch.manual_seed(1)
    rgb_model = SegModel.new(UNetConfig(in_channels=3, width=4, depth=2))
    p3 = predict(rgb_model, rgb, tile_size=128)
    assert p3.probabilities.shape == (4, *rgb.shape[:2])
    assert p3.instances.shape == rgb.shape[:2]


def test_stack_is_channel_first_and_normalised_once(blob, image) -> None:
    stack = np.stack([image[:160, :200], image[160:320, :200] // 4, image[320:480, :200]])
    p = predict(blob, stack, tile_size=128)
    assert p.probabilities.shape == (4, 3, 160, 200)
    assert p.semantic.shape == stack.shape and p.instances.shape == stack.shape
    # a dim plane stays dim: the normalisation is global, not per plane
    per_plane = predict_probabilities(blob, stack[1], tile_size=128)
    assert p.probabilities[1:3, 1].sum() < 0.5 * per_plane[1:3].sum()


def test_dask_equals_numpy(blob, image) -> None:
    da = pytest.importorskip("dask.array")
    import dask

    ref = predict(blob, image, tile_size=128)
    lazy = predict(blob, da.from_array(image, chunks=(200, 256)), tile_size=128)
    assert isinstance(lazy.probabilities, da.Array) and isinstance(lazy.instances, da.Array)
    probs, sem, labels = dask.compute(
        lazy.probabilities, lazy.semantic, lazy.instances, scheduler="threads"
    )
    assert np.abs(probs - ref.probabilities).max() < 0.01
    assert (sem != ref.semantic).mean() < 1e-3
    assert len(np.unique(labels)) - 1 == ref.instances.max()
    assert _f1(ref.instances, labels) >= 0.99


def test_dask_graph_pickles(blob, image) -> None:
    da = pytest.importorskip("dask.array")
    import pickle

    lazy = predict(blob, da.from_array(image[:256, :256], chunks=128), tile_size=128)
    graph = dict(lazy.instances.__dask_graph__())
    assert pickle.loads(pickle.dumps(graph))


def test_progress_and_cancel(unet, image) -> None:
    calls: list[tuple[int, int]] = []
    predict_probabilities(
        unet, image, tile_size=128, batch_size=2, progress=lambda d, t: calls.append((d, t))
    )
    total = calls[-1][1]
    assert calls[-1][0] == total and total >= 16
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)

    stop = threading.Event()

    def cancel_after_first(done: int, total: int) -> None:
        stop.set()

    with pytest.raises(PredictionCancelled):
        predict_probabilities(unet, image, tile_size=128, progress=cancel_after_first, stop=stop)
    with pytest.raises(PredictionCancelled):
        predict(unet, image, tile_size=128, stop=lambda: True)


def test_bad_input(unet, image) -> None:
    with pytest.raises(ValueError, match="shape"):
        predict_probabilities(unet, np.zeros((2, 3, 32, 32)))
    bad = image[:64, :64].astype(np.float32)
    bad[3, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        predict(unet, bad)
    with pytest.raises(ValueError, match="overlap"):
        predict_probabilities(unet, image[:64, :64], overlap=1.0)


def test_large_numpy_images_get_blockwise_instances_equal_to_whole(blob, image) -> None:
    """Above ``instance_block`` the watershed runs block by block: same objects, 1..N."""
    whole = predict(blob, image, tile_size=128)
    blocks = predict(blob, image, tile_size=128, instance_block=200)
    assert isinstance(blocks.instances, np.ndarray)
    n = int(blocks.instances.max())
    assert set(np.unique(blocks.instances)) == set(range(n + 1))
    assert abs(n - int(whole.instances.max())) <= 1
    assert _f1(whole.instances, blocks.instances) >= 0.99


def test_blockwise_instances_of_a_stack(blob, image) -> None:
    stack = np.stack([image[:160, :200], image[160:320, :200]])
    whole = predict(blob, stack, tile_size=128)
    blocks = predict(blob, stack, tile_size=128, instance_block=96)
    assert blocks.instances.shape == stack.shape
    assert _f1(whole.instances, blocks.instances) >= 0.97


def test_model_files_are_cached_until_rewritten(tmp_path) -> None:
    from napari_segkit.model_io import load_model_cached, save_model

    path = tmp_path / "m.safetensors"
    save_model(SegModel.new(UNetConfig(width=4, depth=2)), path)
    first = load_model_cached(path)
    assert load_model_cached(str(path)) is first
    save_model(SegModel.new(UNetConfig(width=8, depth=2)), path)  # retrained into the same file
    again = load_model_cached(path)
    assert again is not first and again.config.width == 8


def test_tta_averages_the_four_mirror_images(unet, image) -> None:
    crop = image[:128, :160]
    plain = predict_probabilities(unet, crop, tile_size=256)
    tta = predict_probabilities(unet, crop, tile_size=256, tta=True)
    # by hand: predict each mirror image, mirror the result back, average
    by_hand = np.mean(
        [np.flip(predict_probabilities(unet, np.flip(crop, axes), tile_size=256),
                 tuple(a + 1 for a in axes))
         for axes in [(), (1,), (0,), (0, 1)]],
        axis=0,
    )
    np.testing.assert_allclose(tta, by_hand, atol=1e-5)
    assert np.abs(tta - plain).max() > 1e-3  # an untrained net is not mirror-symmetric
    # the averaged prediction is mirror-equivariant
    mirrored = predict_probabilities(unet, crop[:, ::-1], tile_size=256, tta=True)
    np.testing.assert_allclose(mirrored[..., ::-1], tta, atol=1e-5)
    # and goes through predict(), numpy and dask alike
    da = pytest.importorskip("dask.array")
    ref = predict(unet, crop, tile_size=256, tta=True)
    np.testing.assert_allclose(ref.probabilities, tta, atol=1e-6)
    lazy = predict(unet, da.from_array(crop, chunks=(128, 160)), tile_size=256, tta=True,
                   instances=False)
    np.testing.assert_allclose(lazy.probabilities.compute(), tta, atol=1e-4)
