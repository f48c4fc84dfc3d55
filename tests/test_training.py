import threading

import numpy as np
import pytest
import torch

from napari_segkit import training
from napari_segkit._sample import sample_path
from napari_segkit.io import read_image, read_labels, read_points_csv
from napari_segkit.losses import forward_for_training
from napari_segkit.model_io import load_model
from napari_segkit.normalization import prepare_input
from napari_segkit.prediction import predict_prepared
from napari_segkit.training import TrainConfig, train
from napari_segkit.workflows import run_training


@pytest.fixture(scope="module")
def fluo():
    return read_image(sample_path("fluo_256.tif")), read_labels(sample_path("fluo_256_labels.tif"))


def fg_iou(model, image, labels):
    x = prepare_input(image, 1, model.normalization)
    probs = predict_prepared(model.net.eval(), x, "cpu", 3)
    pred, gt = probs[0] < 0.5, labels > 0
    return (pred & gt).sum() / max((pred | gt).sum(), 1)


def test_overfits_small_real_crop(fluo, tiny_config):
    image, labels = fluo
    img, lab = image[:96, :96], labels[:96, :96]
    cfg = TrainConfig(steps=120, patch_size=64, batch_size=8, lr=5e-3, val_fraction=0,
                      model=tiny_config, augment=False, num_threads=1, seed=0)
    events = []
    threads_before = torch.get_num_threads()
    model = run_training([img], [lab], config=cfg, on_event=events.append)
    kinds = [e.kind for e in events]
    assert kinds[0] == "start" and kinds[-1] == "done"
    assert events[-1].model is model
    assert fg_iou(model, img, lab) > 0.8
    assert model.provenance["training"]["steps"] == 120
    assert torch.get_num_threads() == threads_before  # restored after training on 1 thread


@pytest.mark.slow
def test_point_supervision_beats_untrained(fluo, tiny_config):
    image, labels = fluo
    coords, feats = read_points_csv(sample_path("fluo_256_points.csv"))
    # train on the top 3/4 of the image, validate on the bottom quarter with true masks
    top = coords[:, 0] < 192
    cfg = TrainConfig(steps=150, patch_size=64, batch_size=8, model=tiny_config, num_threads=1,
                      val_every=50, seed=1)
    gen = train([image[:192]], points=[(coords[top], list(feats["class"][top]))], config=cfg,
                val_images=[image[192:]], val_labels=[labels[192:]])
    events = list(gen)
    val = [e for e in events if e.kind == "validation"]
    first = val[0].val_iou
    best = events[-1].model
    untrained = run_training([image[:64]], [labels[:64]],
                             config=TrainConfig(steps=0, model=tiny_config, val_fraction=0))
    base = fg_iou(untrained, image[192:], labels[192:])
    trained = fg_iou(best, image[192:], labels[192:])
    # a short CPU run: far from converged, but clearly better than no training
    assert trained > max(base + 0.2, 0.3), (base, trained, first)


@pytest.mark.parametrize("amp, dtype", [(True, torch.bfloat16), (False, torch.float32)])
def test_cpu_mixed_precision_trains_in_bfloat16_and_hands_back_float32(
        fluo, tmp_path, tiny_config, monkeypatch, amp, dtype):
    image, labels = fluo
    seen = []

    def recording(net, x):
        logits, aux = forward_for_training(net, x)
        weights = [p for p in net.parameters() if p.dim() == 4]
        seen.append((logits.dtype, x.is_contiguous(memory_format=torch.channels_last)
                     and all(w.is_contiguous(memory_format=torch.channels_last)
                             for w in weights)))
        return logits, aux

    monkeypatch.setattr(training, "forward_for_training", recording)
    cfg = TrainConfig(steps=4, patch_size=64, batch_size=4, model=tiny_config, val_every=2,
                      num_threads=1, device="cpu", amp=amp, seed=0)
    out = tmp_path / "m.safetensors"
    events = []
    model = run_training([image], [labels], config=cfg, out_path=out, on_event=events.append)
    assert "checkpoint" in [e.kind for e in events[:-1]]  # one written mid-run...
    # ...and every step before and after it ran channels-last (batches and convolution
    # weights), in bfloat16 when asked
    assert seen == [(dtype, True)] * 4
    assert ("bfloat16" in events[0].message) == amp  # the start says so
    state = model.net.state_dict()
    for v in state.values():  # handed back in float32 and the usual layout
        assert v.dtype in (torch.float32, torch.int64) and v.is_contiguous()
        assert torch.isfinite(v.float()).all()
    for k, v in load_model(out).net.state_dict().items():
        assert torch.equal(v, state[k])


def test_stop_leaves_loadable_model(fluo, tmp_path, tiny_config):
    image, labels = fluo
    stop = threading.Event()
    out = tmp_path / "stopped.safetensors"
    cfg = TrainConfig(steps=1000, patch_size=64, batch_size=4, model=tiny_config, val_every=5,
                      num_threads=1, log_every=1)  # every step reported, on a GPU too
    kinds = []
    for ev in train([image], [labels], config=cfg, out_path=out, stop=stop):
        kinds.append(ev.kind)
        if ev.kind == "step" and ev.step == 7:
            stop.set()
    assert kinds[-1] == "stopped"
    assert "checkpoint" in kinds
    assert kinds.count("step") == 7
    model = load_model(out)
    assert model.provenance["training"]["steps"] == 7
    assert list(tmp_path.iterdir()) == [out]


def test_time_budget_and_different_sizes(fluo, tiny_config):
    image, labels = fluo
    he = read_image(sample_path("he_rgb.tif"))
    he_lab = read_labels(sample_path("he_rgb_labels.tif"))
    cfg = TrainConfig(steps=10_000, time_budget_s=3.0, patch_size=48, batch_size=2,
                      model=tiny_config, val_every=10**6, num_threads=1)
    events = list(train([image, he, image[:40, :30]], [labels, he_lab, labels[:40, :30]],
                        config=cfg))
    assert events[-1].kind == "done"
    assert events[-1].elapsed_s < 20
    assert events[-1].step < 10_000


def test_bad_inputs(fluo, tiny_config):
    image, labels = fluo
    with pytest.raises(ValueError, match="match"):
        next(train([image], [labels[:10]], config=TrainConfig(model=tiny_config)))
    with pytest.raises(ValueError, match="neither"):
        next(train([image], config=TrainConfig(model=tiny_config)))
    assert np.asarray(image).ndim == 2
