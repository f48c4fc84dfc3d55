"""Fine-tuning without forgetting: replay, weight pull, EMA, AdaBN, and the start rule."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from napari_segkit.finetune import (
    FineTuner,
    FineTuneSettings,
    WeightAnchor,
    WeightEMA,
    adapt_batchnorm,
    blend_states,
    dequantise_input,
    ema_decay_for,
    load_replay_set,
    mix_replay,
    quantise_input,
)
from napari_segkit.model import UNet, UNetConfig
from napari_segkit.model_io import load_default_model, load_model
from napari_segkit.training import FINE_TUNE_LR, NEW_MODEL_LR, TrainConfig, train

TINY = UNetConfig(width=4, depth=2)


def _events(gen):
    events = []
    while True:
        try:
            events.append(next(gen))
        except StopIteration as done:
            return events, done.value


def _distance(a: torch.nn.Module, b: dict) -> float:
    return sum(float(((p - b[k]) ** 2).sum()) for k, p in a.state_dict().items()
               if p.is_floating_point())


def test_default_model_loads_and_says_where_it_came_from():
    model = load_default_model()
    prov = model.provenance
    assert model.config.n_classes == 3 and model.class_names == ["background", "interior", "boundary"]
    assert "train" in prov["data"] and prov["val_scores"]["n_images"] == 23


def test_shipped_replay_set_holds_normalised_labelled_patches_of_train_not_val():
    replay = load_replay_set()
    assert len(replay) >= 100 and replay.patch_size == 128 and replay.image.shape[1] == 1
    assert replay.image.dtype == np.float32 and -0.3 < replay.image.mean() < 1.0
    assert set(np.unique(replay.classes)) <= {-1, 0, 1, 2} and (replay.classes >= 1).mean() > 0.1
    assert 0.0 <= replay.center.min() and replay.center.max() <= 1.0
    assert all(s.startswith(("train/", "sample_512/")) for s in replay.sources)
    assert any("00ae65c1" in s for s in replay.sources)  # the H&E image of train/ (he_rgb)
    with pytest.raises(ValueError, match="replay_fraction=0"):
        load_replay_set(in_channels=3)
    x = np.linspace(-0.25, 1.75, 256, dtype=np.float32)
    assert np.abs(dequantise_input(quantise_input(x)) - x).max() < 0.005


def test_replay_set_leaves_out_the_images_named_and_says_when_it_cannot(tmp_path):
    full = load_replay_set()
    he = next(s for s in full.sources if "00ae65c1" in s)
    by_name = load_replay_set(exclude=[he.split("/")[1] + ".tif"])  # a file name works too
    assert he not in by_name.sources and len(by_name.sources) == len(full.sources) - 1
    assert 0 < len(full) - len(by_name) <= 40  # that image's patches, no others
    from napari_segkit.finetune import REPLAY_PATH

    with np.load(REPLAY_PATH) as z:  # the patches that stay are all the other images' patches
        keep = z["source_index"] != list(z["sources"]).index(he)
    assert np.array_equal(by_name.image, full.image[keep])
    assert np.array_equal(by_name.classes, full.classes[keep])
    with pytest.raises(ValueError, match="empties the replay set"):
        load_replay_set(exclude=list(full.sources))
    from napari_segkit.finetune import save_replay_set

    parts = [{"image": np.zeros((2, 1, 8, 8), np.uint8), "classes": np.zeros((2, 8, 8), np.int8),
              "center": np.zeros((2, 8, 8), np.uint8), "center_mask": np.zeros((2, 8, 8), bool)}]
    old = tmp_path / "old.npz"  # a set written before patches recorded their image
    np.savez_compressed(old, **parts[0], sources=np.asarray(["train/a"]))
    assert len(load_replay_set(old)) == 2
    with pytest.raises(ValueError, match="rebuild it with scripts/make_replay_set.py"):
        load_replay_set(old, exclude=["a"])
    with pytest.raises(ValueError, match="check TrainConfig.replay_path"):
        load_replay_set(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="2 source names"):
        save_replay_set(tmp_path / "x.npz", parts, ["a", "b"])


def test_fine_tuning_replays_without_the_excluded_images(fluo_256):
    from napari_segkit.training import Trainer

    image, labels = fluo_256[:2]
    he = next(s for s in load_replay_set().sources if "00ae65c1" in s)
    with pytest.raises(ValueError, match="list of image names"):
        Trainer(TrainConfig(steps=1, replay_exclude=he), init="default")
    cfg = TrainConfig(steps=1, batch_size=2, patch_size=64, device="cpu",
                      replay_fraction=0.5, replay_exclude=(he,))
    trainer = Trainer(cfg, init="default")
    trainer.prepare_data([image], [labels], [None])
    trainer.build_optimiser()
    assert he not in trainer.tuner.replay.sources and len(trainer.tuner.replay.sources) >= 10


@pytest.mark.parametrize(("source", "setting", "replays"), [
    ("masks", None, False),  # every image with full masks: FULL_MASKS_RECIPE, no replay
    ("clicks", None, True),
    ("masks and clicks", None, True),
    ("masks", 0.5, True),  # an explicit setting wins
])
def test_fine_tuning_from_full_masks_replays_nothing(fluo_256, source, setting, replays):
    from napari_segkit.train_config import FINE_TUNE_RECIPE, FULL_MASKS_RECIPE
    from napari_segkit.training import Trainer

    assert FULL_MASKS_RECIPE["replay_fraction"] == 0 < FINE_TUNE_RECIPE["replay_fraction"]
    assert {k: v for k, v in FULL_MASKS_RECIPE.items() if k != "replay_fraction"} == \
        {k: v for k, v in FINE_TUNE_RECIPE.items() if k != "replay_fraction"}
    image, labels, points = fluo_256[:3]
    cfg = TrainConfig(steps=1, batch_size=2, patch_size=64, device="cpu",
                      replay_fraction=setting)
    trainer = Trainer(cfg, init="default")
    lbs = {"masks": [labels, labels], "clicks": [None, None],
           "masks and clicks": [labels, None]}[source]
    trainer.prepare_data([image, image], lbs, [None if lb is not None else points for lb in lbs])
    trainer.build_optimiser()
    assert trainer.labels_source == {"masks": "instances", "clicks": "points",
                                     "masks and clicks": "instances+points"}[source]
    assert (trainer.tuner.replay is not None) == replays
    expected = setting if setting is not None else \
        FINE_TUNE_RECIPE["replay_fraction"] if replays else 0.0
    assert trainer.tuner.settings.replay_fraction == expected


def test_fine_tuning_weighs_classes_as_the_start_models_training_data(fluo_256):
    """A correction teaches a few objects in much background: with
    ``finetune_class_weights="replay"`` the loss keeps the class weights of the replay set
    instead of taking them from those targets (the default)."""
    from napari_segkit.targets import Targets, class_weights
    from napari_segkit.training import Trainer

    image, labels = fluo_256[:2]
    classes = np.where(labels > 0, -1, 0).astype(np.int64)  # the objects left out ...
    classes[100:110, 100:110] = 1  # ... but one, in much background
    classes[100, 100:110] = 2
    t = Targets(classes, np.zeros(classes.shape, np.float32), classes >= 0)
    own = class_weights([classes], 3)
    weights = {}
    for how in ("replay", "targets", None):
        cfg = TrainConfig(steps=1, batch_size=2, patch_size=64, device="cpu",
                          **({} if how is None else {"finetune_class_weights": how}))
        trainer = Trainer(cfg, init="default")
        trainer.prepare_data([image], [None], [None], targets=[t])
        trainer.build_optimiser()
        weights[how] = trainer.weights.cpu().numpy()
    assert np.allclose(weights["targets"], own) and np.allclose(weights[None], own)
    assert np.allclose(weights["replay"], class_weights([trainer.tuner.replay.classes], 3))
    assert weights["replay"][1] < own[1] / 2  # interior: not blown up by the scarce objects
    with pytest.raises(ValueError, match="finetune_class_weights"):
        Trainer(TrainConfig(finetune_class_weights="mine"), init="default")


@pytest.mark.parametrize("patch", [64, 128, 160])
def test_replay_mixing_replaces_the_tail_of_each_batch(patch):
    replay = load_replay_set()
    rng = np.random.default_rng(0)
    x = np.full((8, 1, patch, patch), 7.0, np.float32)
    cls = np.full((8, patch, patch), 1, np.int64)
    ctr = np.zeros((8, patch, patch), np.float32)
    cm = np.ones((8, patch, patch), bool)
    x, cls, ctr, cm = mix_replay((x, cls, ctr, cm), replay, 0.25, rng)
    assert (x[:6] == 7.0).all() and (cls[:6] == 1).all()  # the user's patches stay
    assert (x[6:] != 7.0).all()  # 2 of 8 are replay patches
    assert (cls[6:] == 0).any() and (cls[6:] == 2).any()
    if patch > replay.patch_size:  # padding beyond the stored patch is ignored
        assert (cls[6:, replay.patch_size:, :] == -1).all()
    # never the whole batch
    out = mix_replay((x.copy(), cls.copy(), ctr.copy(), cm.copy()), replay, 1.0, rng)
    assert (out[0][0] == 7.0).all()


def test_weight_pull_draws_weights_back_to_the_start():
    net = UNet(TINY)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    anchor = WeightAnchor(net, strength=100.0)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    d0 = _distance(net, start)
    anchor.pull(lr=0.005)  # lr * strength = 0.5: half way back
    assert _distance(net, start) == pytest.approx(0.25 * d0, rel=1e-4)
    assert anchor.distance() > 0
    anchor.pull(lr=1.0)  # capped at all the way back
    assert _distance(net, start) < 1e-10


def test_ema_follows_the_weights_at_its_rate_and_copies_buffers():
    net = UNet(TINY)
    start = {k: v.clone() for k, v in net.state_dict().items()}
    ema = WeightEMA(net, 0.9)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
        bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
        bn.running_mean.fill_(3.0)
    for _ in range(10):
        ema.update(net)
    w = ema.state_dict()
    name = next(k for k, _ in net.named_parameters())
    expected = start[name] + (1 - 0.9**10)
    assert torch.allclose(w[name], expected, atol=1e-5)
    bn_key = next(k for k in w if k.endswith("running_mean"))
    assert (w[bn_key] == 3.0).all()
    with pytest.raises(ValueError):
        WeightEMA(net, 1.0)
    # a span of 20 % of a 500-step run: decay 1 - 1/100, whatever the step
    assert ema_decay_for(0.2, 50, 0.1) == pytest.approx(0.99)
    assert ema_decay_for(0.2, 500, 1.0) == pytest.approx(0.99)


def test_adabn_reestimates_statistics_and_leaves_weights_alone():
    torch.manual_seed(0)
    net = UNet(TINY)
    weights = {k: v.clone() for k, v in net.named_parameters()}
    first = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    conv = net.down[0][0]
    rng = np.random.default_rng(0)
    batches = [rng.normal(5.0, 2.0, (4, 1, 32, 32)).astype(np.float32) for _ in range(6)]
    assert adapt_batchnorm(net, batches) == 6
    with torch.no_grad():
        feats = torch.cat([conv(torch.from_numpy(b)) for b in batches])
    expected = feats.mean(dim=(0, 2, 3))
    assert torch.allclose(first.running_mean, expected, atol=1e-3)
    assert first.momentum == 0.1 and not net.training
    assert all(torch.equal(v, weights[k]) for k, v in net.named_parameters())
    assert adapt_batchnorm(UNet(UNetConfig(width=4, depth=2, norm="group")), batches) == 0


def test_fine_tuner_bundles_the_hooks():
    net = UNet(TINY)
    rng = np.random.default_rng(0)
    tuner = FineTuner(net, FineTuneSettings(replay_fraction=0.5, anchor_strength=10.0,
                                            ema_span=0.2), rng)

    class Sampler:
        augment = True

        def sample(self, b):
            return (rng.normal(size=(b, 1, 64, 64)).astype(np.float32),
                    np.ones((b, 64, 64), np.int64), np.zeros((b, 64, 64), np.float32),
                    np.ones((b, 64, 64), bool))

    tuner.before_training(Sampler(), 4)
    batch = tuner.mix(Sampler().sample(4))
    assert (batch[1][2:] != 1).any()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(1.0)
    # pulled 10 % back, then averaged half way (a span of 0.2 x 10 steps: decay 0.5)
    tuner.after_step(lr=0.01, step=10, progress=1.0)
    name = next(k for k, _ in net.named_parameters())
    assert torch.allclose(tuner.weights()[name], tuner.anchor.start[0] + 0.45, atol=1e-5)


def test_fine_tuning_validates_the_start_by_counting_held_out_clicks(fluo_256):
    image, labels, coords, features = fluo_256
    cfg = TrainConfig(steps=4, patch_size=64, batch_size=2, val_every=2, num_threads=1, seed=0)
    events, model = _events(train([image], points=[(coords, features)], config=cfg, init="default"))
    validations = [e for e in events if e.kind == "validation"]
    assert validations[0].step == 0 and validations[0].val_f1 > 0.8  # clicks in the strip
    assert events[1].lr <= FINE_TUNE_LR < NEW_MODEL_LR
    assert "held-out strip" in events[0].message
    best = model.provenance["training"]["best"]
    assert best["step"] == 4 and "noise" in best  # fine-tuned weights handed back


def test_fine_tuning_hands_back_the_start_when_it_is_clearly_better(fluo_256):
    image, labels, _, _ = fluo_256
    cfg = TrainConfig(steps=3, patch_size=64, batch_size=2, val_every=3, num_threads=1, seed=0,
                      lr=0.5, ema_span=0.0, replay_fraction=0.0,  # a ruinous learning rate
                      amp=False)  # float32 on any device
    events, model = _events(train([image], [labels], config=cfg, init="default"))
    start = load_default_model()
    assert model.provenance["training"]["best"].get("start_kept")
    assert all(torch.equal(v, start.net.state_dict()[k]) for k, v in model.net.state_dict().items())
    assert events[-1].val_f1 == [e for e in events if e.kind == "validation"][0].val_f1


def test_a_diverged_training_ends_and_keeps_what_validated_before(fluo_256, tmp_path):
    """NaN weights are never kept or validated on: a fine-tuning keeps its start (written
    to out_path), a new model with nothing validated yet ends with a clear error."""
    image, labels, _, _ = fluo_256
    cfg = TrainConfig(steps=40, patch_size=64, batch_size=2, val_every=4, num_threads=1, seed=0,
                      lr=1e6, log_every=1)  # blows the weights up in a few steps
    out = tmp_path / "kept.safetensors"
    events, model = _events(train([image], [labels], config=cfg, init="default", out_path=out))
    last = events[-1]
    assert last.kind == "done" and last.diverged and last.step < 40
    assert last.kept_step == 0 and last.start_kept
    assert "diverged" in last.message and "lower learning rate than 1e+06" in last.message
    start = load_default_model()
    for kept in (model, load_model(out)):
        assert all(torch.equal(v, start.net.state_dict()[k])
                   for k, v in kept.net.state_dict().items())
    new = dataclasses.replace(cfg, model=TINY)
    with pytest.raises(ValueError, match="diverged at step .* kept nothing"):
        _events(train([image], [labels], config=new))


def test_frozen_levels_keep_the_first_encoder_levels_and_hand_back_a_trainable_model(fluo_256):
    from napari_segkit.finetune import freeze_levels
    from napari_segkit.model_io import SegModel

    image, labels, _, _ = fluo_256
    start = SegModel.new(TINY)
    cfg = TrainConfig(steps=4, patch_size=64, batch_size=2, val_fraction=0.0, num_threads=1,
                      seed=0, lr=1e-2, frozen_levels=1, freeze_norm=False)
    _, model = _events(train([image], [labels], config=cfg, init=start))
    before, after = start.net.state_dict(), model.net.state_dict()
    frozen = [k for k in before if k.startswith("down.0.")]
    assert frozen and all(torch.equal(before[k], after[k]) for k in frozen)  # weights and stats
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("down.1."))
    assert all(p.requires_grad for p in model.net.parameters())  # a later training trains all
    with pytest.raises(ValueError, match="new model's layers are random"):
        train([image], [labels], config=TrainConfig(steps=1, frozen_levels=1)).send(None)
    with pytest.raises(ValueError, match="at most 3"):
        freeze_levels(UNet(TINY), 4)
    with pytest.raises(ValueError, match="set frozen_levels=0"):
        freeze_levels(torch.nn.Sequential(torch.nn.Conv2d(1, 1, 3)), 1)
    with pytest.raises(ValueError, match="frozen_levels must be a whole number"):
        train([image], [labels], config=TrainConfig(steps=1, frozen_levels=-1), init=start).send(None)


def test_blend_states_moves_part_of_the_way_and_keeps_equal_entries():
    start = {"w": torch.tensor([0.0, 1.0, 2.0]), "var": torch.tensor([float("inf"), 4.0]),
             "n": torch.tensor(3)}
    tuned = {"w": torch.tensor([4.0, 1.0, -2.0]), "var": torch.tensor([float("inf"), 8.0]),
             "n": torch.tensor(7)}
    b = blend_states(start, tuned, 0.75)
    assert torch.equal(b["w"], torch.tensor([3.0, 1.0, -1.0]))
    assert torch.equal(b["var"], torch.tensor([float("inf"), 7.0]))  # not NaN
    assert int(b["n"]) == 7
    assert all(torch.equal(blend_states(start, tuned, 1.0)[k], tuned[k]) for k in tuned)
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        blend_states(start, tuned, 1.5)
    with pytest.raises(ValueError, match="start_blend"):
        next(train([np.zeros((64, 64), np.float32)], [np.zeros((64, 64), np.int32)],
                   config=TrainConfig(start_blend=1.0), init="default"))


@pytest.mark.parametrize("blend_outline, kept", [(0.60, True), (0.40, False)])
def test_a_blend_with_the_start_stands_in_when_its_held_out_outlines_fit_better(
        fluo_256, monkeypatch, blend_outline, kept):
    """Scripted held-out scores (start, then the fine-tuned weights and their blend at
    every validation): the blend is kept only when its outlines score better."""
    from napari_segkit import training
    from napari_segkit.holdout import HoldOutScore

    calls: list = []

    def fake_score(parts, instances_of):
        calls.append(len(calls))
        outline = 0.5 if len(calls) == 1 or len(calls) % 2 == 0 else blend_outline
        return HoldOutScore(0.8, 80, 20, 20, "mask", outline)

    monkeypatch.setattr(training, "score_holdout", fake_score)
    image, labels, _, _ = fluo_256
    cfg = TrainConfig(steps=2, patch_size=64, batch_size=2, val_every=2, num_threads=1, seed=0,
                      start_blend=0.75)
    events, model = _events(train([image], [labels], config=cfg, init="default"))
    best = model.provenance["training"]["best"]
    assert len(calls) == 3 and best["step"] == 2
    assert best.get("blend") == events[-1].blend == (0.75 if kept else None)
    start = load_default_model().net.state_dict()
    assert any(not torch.equal(v, start[k]) for k, v in model.net.state_dict().items())


def test_masks_painted_on_a_few_nuclei_are_flagged_before_fine_tuning(fluo_256):
    """Inside the fully annotated region unpainted pixels are background, so partial masks
    would teach the model to miss the unpainted nuclei: the start event says so (and the
    model file records it); full masks, or partial ones inside a region drawn around them,
    say nothing."""
    from napari_segkit.train_data import partial_annotation_warnings

    image, labels, _, _ = fluo_256
    ids = np.unique(labels)[1:]
    few = np.where(np.isin(labels, ids[::4]), labels, 0)  # a quarter of the nuclei painted
    cfg = TrainConfig(steps=1, patch_size=64, batch_size=2, num_threads=1, seed=0, val_fraction=0)
    events, model = _events(train([image], [few], config=cfg, init="default"))
    (warning,) = events[0].warnings
    assert events[0].kind == "start" and f"none of your {len(ids[::4])} masks" in warning
    assert "paint them too" in warning and "Fully annotated" in warning
    assert model.provenance["training"]["warnings"] == [warning]
    default = load_default_model()
    assert partial_annotation_warnings(default, [image], [labels]) == []
    # the region around the painted nuclei: the rest of the image is not claimed
    rows, cols = np.nonzero(few)
    box = (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1)
    around = np.zeros(labels.shape, bool)
    for i in ids[::4]:
        around |= labels == i
    assert partial_annotation_warnings(default, [image], [few], regions=[around]) == []
    # a box around them still holds unpainted nuclei; which image it is, is said
    (second,) = partial_annotation_warnings(default, [image, image], [labels, few],
                                            regions=[None, box])
    assert second.startswith("Image 2: the starting model finds")
    assert "In the fully annotated region every pixel" in second


def test_masks_on_a_few_nuclei_of_a_stack_are_flagged_before_fine_tuning():
    """In a (z, y, x) stack every voxel without a mask is background too: masks of a
    quarter of its nuclei warn as training starts (no region to mark in a stack); full
    masks do not, and clicks in a stack are not checked (far from every click the
    unclicked nuclei are left out of the training, not taught as background)."""
    from napari_segkit._sample_data import nuclei3d_synth
    from napari_segkit.train_data import partial_annotation_warnings

    (stack, kwargs, _), (labels, _, _), (clicks, _, _) = nuclei3d_synth()
    scale = kwargs["scale"]
    ids = np.unique(labels)[1:]
    few = np.where(np.isin(labels, ids[::4]), labels, 0)
    default = load_default_model()
    assert partial_annotation_warnings(default, [stack], [labels], scale=scale) == []
    assert partial_annotation_warnings(default, [stack], [None], [clicks[::4]],
                                       scale=scale) == []
    cfg = TrainConfig(steps=1, patch_size=64, batch_size=2, num_threads=1, seed=0, val_fraction=0)
    events, model = _events(train([stack], [few], config=cfg, init="default", scale=scale))
    (warning,) = events[0].warnings
    assert f"none of your {len(ids[::4])} masks" in warning
    assert "In the whole stack every voxel without a mask is taught as background" in warning
    assert "Fully annotated" not in warning


def test_clicks_on_a_few_nuclei_are_flagged_before_fine_tuning(fluo_256):
    """The same for clicks: inside the fully annotated region an object without a click is
    taught as background."""
    from napari_segkit.train_data import partial_annotation_warnings

    image, labels, coords, features = fluo_256
    default = load_default_model()
    assert partial_annotation_warnings(default, [image], [None], [(coords, features)]) == []
    few = coords[::4]
    cfg = TrainConfig(steps=1, patch_size=64, batch_size=2, num_threads=1, seed=0, val_fraction=0)
    events, _ = _events(train([image], points=[few], config=cfg, init="default"))
    (warning,) = events[0].warnings
    assert f"none of your {len(few)} clicks" in warning and "click them too" in warning
    assert "every object without a click is taught as background" in warning
    # clicked where the user marked every nucleus clicked: nothing to say
    rows, cols = np.round(few).astype(int).T
    around = np.zeros(labels.shape, bool)
    for i in np.unique(labels[rows, cols]):
        around |= labels == i
    assert partial_annotation_warnings(default, [image], [None], [few], [around]) == []
