"""torch runtime: device choice, the thread count that is restored, the model on a device."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_segkit import runtime
from napari_segkit.runtime import (
    TorchForward,
    cpuinfo_has_bf16,
    model_on_device,
    select_device,
    torch_threads,
    training_precision,
)


def test_select_device():
    assert select_device("cpu").type == "cpu"
    assert select_device(None).type in ("cpu", "cuda", "mps")
    with pytest.raises(ValueError):
        select_device("tpu")


def test_cpuinfo_bf16_flags():
    zen4 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 avx512_vnni\n"
    old_x86 = "processor\t: 0\nflags\t\t: fpu sse avx2 avx512f avx512bw\n"
    arm = "processor\t: 0\nFeatures\t: fp asimd sve bf16 i8mm\n"
    sapphire = "flags\t\t: avx512f amx_tile amx_bf16\n"
    assert cpuinfo_has_bf16(zen4) and cpuinfo_has_bf16(arm) and cpuinfo_has_bf16(sapphire)
    assert not cpuinfo_has_bf16(old_x86) and not cpuinfo_has_bf16("")
    assert isinstance(runtime.cpu_has_native_bf16(), bool)


@pytest.mark.parametrize("native", [True, False])
def test_training_precision_by_device_and_cpu(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    cpu, cuda, mps = torch.device("cpu"), torch.device("cuda"), torch.device("mps")
    assert training_precision(cuda, "auto") is torch.float16
    assert training_precision(cuda, True) is torch.float16
    assert training_precision(cuda, False) is None
    # the CPU: bfloat16 where it is native (else emulated, slower than float32), or forced
    assert training_precision(cpu, "auto") is (torch.bfloat16 if native else None)
    assert training_precision(cpu, True) is torch.bfloat16
    assert training_precision(cpu, False) is None
    assert training_precision(mps, "auto") is None


def test_torch_threads_are_restored_even_after_an_error():
    before = torch.get_num_threads()
    with torch_threads(1):
        assert torch.get_num_threads() == 1
    assert torch.get_num_threads() == before
    with pytest.raises(RuntimeError), torch_threads(1):
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before
    with torch_threads(None):
        assert torch.get_num_threads() == before


def test_model_on_device_restores_the_training_mode(tiny_model):
    net = tiny_model.net
    net.train()
    with model_on_device(net, torch.device("cpu")) as on_device:
        assert on_device is net and not net.training
    assert net.training
    net.eval()


def test_forward_gives_probabilities(tiny_model):
    forward = TorchForward(tiny_model.net.eval(), tiny_model.config.n_classes, torch.device("cpu"))
    probs = forward(np.random.default_rng(0).random((2, 1, 32, 40), dtype=np.float32))
    assert probs.shape == (2, 4, 32, 40) and probs.dtype == np.float32
    np.testing.assert_allclose(probs[:, :3].sum(1), 1.0, atol=1e-5)
    assert ((probs[:, 3] > 0) & (probs[:, 3] < 1)).all()


def test_channels_last_prediction_matches_and_restores_the_weights(tiny_model):
    net, k = tiny_model.net.eval(), tiny_model.config.n_classes
    cpu = torch.device("cpu")
    batch = np.random.default_rng(1).random((2, 1, 48, 40), dtype=np.float32)
    plain = TorchForward(net, k, cpu)(batch)
    weights = [p for p in net.parameters() if p.ndim == 4]
    with model_on_device(net, cpu, channels_last=True) as on_device:
        assert weights[0].is_contiguous(memory_format=torch.channels_last)
        fast = TorchForward(on_device, k, cpu, channels_last=True)(batch)
    assert all(p.is_contiguous() for p in weights)
    np.testing.assert_allclose(fast, plain, atol=1e-5)


def test_concurrent_predictions_on_one_network_do_not_disturb_each_other(tiny_config, fluo_256):
    """dask runs blocks in threads on one shared model: a block that ends and puts the
    network back in train mode must not do so while another block runs it."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    from napari_segkit.model_io import SegModel
    from napari_segkit.prediction import predict_probabilities

    torch.manual_seed(1)
    model = SegModel.new(tiny_config)
    model.net.train()  # a network left in train mode: BatchNorm would use batch statistics
    stats = {k: v.clone() for k, v in model.net.state_dict().items() if "running" in k}
    image = fluo_256[0][:128, :128]
    alone = predict_probabilities(model, image, tile_size=64, device="cpu")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: predict_probabilities(model, image, tile_size=64,
                                                                device="cpu"), range(8)))
    for r in results:
        np.testing.assert_allclose(r, alone, atol=1e-5)
    for k, v in model.net.state_dict().items():
        if "running" in k:
            assert torch.equal(v, stats[k]), k
    assert model.net.training
