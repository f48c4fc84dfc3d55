"""Fine-tuning that adapts a model without making it forget (replay, weight pull, EMA, AdaBN).

A few minutes of training on a few user images move a pretrained network far from what
it knew; these helpers keep it close while it adapts:

- **replay**: every batch mixes in patches of the data the shipped model was trained on
  (:class:`ReplaySet`, a compact file inside the package), so the loss keeps asking for
  what the model already did well;
- **weight pull** (:class:`WeightAnchor`, "L2-SP"): a decay of the weights towards their
  starting values instead of towards zero;
- **EMA** (:class:`WeightEMA`): an exponential moving average of the weights, the model
  that is validated and handed back (smoother than the last step's weights);
- **AdaBN** (:func:`adapt_batchnorm`): BatchNorm statistics re-estimated on the user's
  images, a cheap correction for a shift of the input distribution (e.g. RGB brightfield
  seen by a model trained mostly on fluorescence);
- **frozen layers** (:func:`freeze_levels`): the first encoder levels of a UNet keep their
  weights, so only the later layers adapt (and the backward pass stops before them);
- **a blend with the start** (:func:`blend_states`, "WiSE-FT"): the weights part of the
  way from the start to the fine-tuned ones, which the trainer keeps instead when the
  held-out masks show better outlines.

:class:`FineTuner` bundles them for :func:`napari_segkit.training.train`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ._common import IGNORE_INDEX
from .sampling import PatchSampler, augment_intensity

REPLAY_PATH = Path(__file__).resolve().parent / "models" / "replay_nuclei.npz"
#: normalised intensities are stored as uint8 over this range (percentile 1 -> 0, 99.8 -> 1)
REPLAY_RANGE = (-0.25, 1.75)


# --------------------------------------------------------------------------- replay
def quantise_input(x: np.ndarray) -> np.ndarray:
    """Normalised float input -> uint8 over :data:`REPLAY_RANGE` (values outside are clipped)."""
    lo, hi = REPLAY_RANGE
    return np.clip(np.round((x - lo) / (hi - lo) * 255.0), 0, 255).astype(np.uint8)


def dequantise_input(q: np.ndarray) -> np.ndarray:
    lo, hi = REPLAY_RANGE
    return (q.astype(np.float32) * np.float32((hi - lo) / 255.0) + np.float32(lo)).astype(np.float32)


def cut_replay_patches(
    x: np.ndarray, targets, n: int, patch: int, rng: np.random.Generator, fg_prob: float = 0.6
) -> dict[str, np.ndarray]:
    """``n`` patches of one prepared image ``x`` (C, H, W) and its :class:`Targets`, stored
    compactly: uint8 input, int8 classes, uint8 centre (x255), bool centre mask.

    Patches are centred on an object pixel with probability ``fg_prob`` (as in training),
    else anywhere; images smaller than ``patch`` are padded (classes ignored there).
    """
    sampler = PatchSampler([x], [targets], patch, fg_prob=fg_prob, augment=False, rng=rng)
    xs, cls, ctr, cm = sampler.sample(n)
    return {"image": quantise_input(xs), "classes": cls.astype(np.int8),
            "center": np.round(ctr * 255).astype(np.uint8), "center_mask": cm}


@dataclass
class ReplaySet:
    """Pre-cut, normalised training patches of the shipped model's own data.

    Attributes
    ----------
    image : float32 (N, C, P, P)
    classes : int8 (N, P, P)
    center : float32 (N, P, P)
    center_mask : bool (N, P, P)
    sources : names of the images the patches come from
    """

    image: np.ndarray
    classes: np.ndarray
    center: np.ndarray
    center_mask: np.ndarray
    sources: tuple[str, ...] = ()

    def __len__(self) -> int:
        return int(self.image.shape[0])

    @property
    def patch_size(self) -> int:
        return int(self.image.shape[-1])

    def sample(self, k: int, patch: int, rng: np.random.Generator, augment: bool = True):
        """``k`` random patches of side ``patch`` (cropped or padded with ignored classes),
        flipped / rotated / intensity-jittered like the user's patches when ``augment``."""
        c = self.image.shape[1]
        x = np.empty((k, c, patch, patch), np.float32)
        cls = np.full((k, patch, patch), IGNORE_INDEX, np.int64)
        ctr = np.zeros((k, patch, patch), np.float32)
        cm = np.zeros((k, patch, patch), bool)
        p = self.patch_size
        for b, i in enumerate(rng.integers(len(self), size=k)):
            s = min(p, patch)
            y0, x0 = (int(v) for v in rng.integers(0, p - s + 1, size=2))
            sl = (slice(y0, y0 + s), slice(x0, x0 + s))
            xi, ci = self.image[i][(slice(None), *sl)], self.classes[i][sl]
            ti, mi = self.center[i][sl], self.center_mask[i][sl]
            if augment:
                r = int(rng.integers(4))
                xi, ci, ti, mi = (np.rot90(a, r, axes=(-2, -1)) for a in (xi, ci, ti, mi))
                if rng.random() < 0.5:
                    xi, ci, ti, mi = (a[..., ::-1] for a in (xi, ci, ti, mi))
            if s < patch:  # a larger training patch: the replay patch in its top-left corner
                x[b] = np.pad(xi, ((0, 0), (0, patch - s), (0, patch - s)), mode="reflect")
            else:
                x[b] = xi
            cls[b, :s, :s], ctr[b, :s, :s], cm[b, :s, :s] = ci, ti, mi
            if augment:
                augment_intensity(x[b], rng)
        return x, cls, ctr, cm


def save_replay_set(path, parts: list[dict[str, np.ndarray]], sources: list[str]) -> Path:
    """Write the patches cut by :func:`cut_replay_patches` as one compressed ``.npz``;
    ``parts[i]`` holds the patches of image ``sources[i]`` (recorded per patch, so that
    :func:`load_replay_set` can leave images out)."""
    if len(parts) != len(sources):
        raise ValueError(f"got {len(parts)} parts of patches but {len(sources)} source names")
    path = Path(path)
    arrays = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    index = np.concatenate([np.full(len(p["image"]), i, np.int16) for i, p in enumerate(parts)])
    np.savez_compressed(path, **arrays, sources=np.asarray(sources), source_index=index)
    return path


def _excluded(source: str, exclude) -> bool:
    """``source`` ("split/name") is named in ``exclude``: by its name, with or without a
    file extension or a folder ("name", "name.tif", "train/name")."""
    name = Path(source).name
    return any(name in (Path(str(e)).name, Path(str(e)).stem) for e in exclude)


def load_replay_set(path=None, in_channels: int = 1, exclude=()) -> ReplaySet:
    """The shipped replay set (or ``path``), without the patches of the images named in
    ``exclude`` (e.g. images a fine-tuned model will be scored on); a ValueError says what
    to do when it cannot be used (missing file, a model whose input channels differ, or
    nothing left)."""
    path = Path(path) if path is not None else REPLAY_PATH
    if not path.is_file():
        fix = "reinstall napari-segkit" if path == REPLAY_PATH else \
            "check TrainConfig.replay_path (scripts/make_replay_set.py writes one)"
        raise ValueError(f"no replay set at {path}; {fix}, or fine-tune with replay_fraction=0")
    with np.load(path, allow_pickle=False) as z:
        sources = [str(s) for s in z["sources"]]
        keep = slice(None)
        if exclude:
            if "source_index" not in z.files:
                raise ValueError(f"the replay set {path} does not record which image each patch "
                                 "comes from, so none can be left out; rebuild it with "
                                 "scripts/make_replay_set.py")
            dropped = [_excluded(s, exclude) for s in sources]
            keep = ~np.asarray(dropped)[z["source_index"]]
            if not keep.any():
                raise ValueError(f"leaving out {len(exclude)} image(s) empties the replay set "
                                 f"{path.name}; fine-tune with replay_fraction=0")
            sources = [s for s, d in zip(sources, dropped) if not d]
        image = dequantise_input(z["image"][keep])
        if image.shape[1] != in_channels:
            raise ValueError(
                f"the replay set has {image.shape[1]} input channel(s) but the model has "
                f"{in_channels}; fine-tune this model with replay_fraction=0"
            )
        return ReplaySet(image, z["classes"][keep].astype(np.int8),
                         z["center"][keep].astype(np.float32) / 255.0,
                         z["center_mask"][keep].astype(bool), tuple(sources))


def mix_replay(batch, replay: ReplaySet, fraction: float, rng: np.random.Generator,
               augment: bool = True):
    """Replace the last ``round(fraction * B)`` samples of ``batch`` (x, classes, centre,
    centre mask as :meth:`PatchSampler.sample` returns them) by replay patches, in place."""
    x, cls, ctr, cm = batch
    k = int(round(float(fraction) * x.shape[0]))
    if k <= 0:
        return batch
    k = min(k, x.shape[0] - 1)  # keep at least one patch of the user's data
    rx, rc, rt, rm = replay.sample(k, x.shape[-1], rng, augment)
    x[-k:], cls[-k:], ctr[-k:], cm[-k:] = rx, rc, rt, rm
    return x, cls, ctr, cm


# --------------------------------------------------------------------------- weights
class WeightAnchor:
    """Decoupled L2-SP: after each optimiser step, ``w -= lr * strength * (w - w_start)``.

    A weight decay towards the starting weights instead of towards zero: directions the
    user's data ask for are learnt, while weights the data do not constrain drift back.
    """

    def __init__(self, net: torch.nn.Module, strength: float) -> None:
        self.strength = float(strength)
        self.params = [p for p in net.parameters() if p.requires_grad]
        self.start = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def pull(self, lr: float) -> None:
        f = float(lr) * self.strength
        if f <= 0:
            return
        f = min(f, 1.0)
        for p, p0 in zip(self.params, self.start, strict=True):
            p.sub_(p.detach() - p0, alpha=f)

    def distance(self) -> float:
        """Relative L2 distance of the current weights from the start."""
        num = sum(float(((p.detach() - p0) ** 2).sum()) for p, p0 in zip(self.params, self.start))
        den = sum(float((p0**2).sum()) for p0 in self.start)
        return float(np.sqrt(num / max(den, 1e-12)))


class WeightEMA:
    """Exponential moving average of a network's weights; ``decay`` close to 1 averages
    over about ``1 / (1 - decay)`` steps. Buffers (BatchNorm statistics) are copied as
    they are.

    The average starts at the starting weights, so early on it also stays near them.
    """

    def __init__(self, net: torch.nn.Module, decay: float) -> None:
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"ema_decay must be in [0, 1), got {decay}")
        self.decay = float(decay)
        self.averaged = {k for k, _ in net.named_parameters()}
        self.shadow = {k: v.detach().clone() for k, v in net.state_dict().items()}

    @torch.no_grad()
    def update(self, net: torch.nn.Module, decay: float | None = None) -> None:
        d = self.decay if decay is None else float(decay)
        for k, v in net.state_dict().items():
            s = self.shadow[k]
            if k in self.averaged:
                s.lerp_(v.detach(), 1.0 - d)  # exact where v == s (frozen layers)
            else:
                s.copy_(v)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v.clone() for k, v in self.shadow.items()}


# --------------------------------------------------------------------------- AdaBN
def _batchnorms(net: torch.nn.Module) -> list[torch.nn.modules.batchnorm._BatchNorm]:
    return [m for m in net.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]


@torch.no_grad()
def adapt_batchnorm(net: torch.nn.Module, batches, device=None) -> int:
    """Re-estimate every BatchNorm layer's running mean / variance on ``batches``
    (an iterable of float32 arrays (B, C, H, W)), as a plain average over them (AdaBN).

    The weights are not touched; the network is left in eval mode. Returns the number
    of batches seen (0: nothing changed, e.g. a network without BatchNorm).
    """
    bns = _batchnorms(net)
    if not bns:
        return 0
    device = device or next(net.parameters()).device
    was_training = net.training
    saved = [(m.momentum, m.running_mean.clone(), m.running_var.clone()) for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches
    net.train()
    n = 0
    try:
        for xb in batches:
            net(torch.as_tensor(np.ascontiguousarray(xb), device=device))
            n += 1
    finally:
        for m, (mom, mean, var) in zip(bns, saved, strict=True):
            m.momentum = mom
            if n == 0:
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
        net.train(was_training)
    net.eval()
    return n


# --------------------------------------------------------------------------- frozen layers
def freeze_levels(net: torch.nn.Module, levels: int) -> list[torch.nn.Module]:
    """Keep the weights of the first ``levels`` encoder levels of a UNet (its ``down``
    blocks, from the input) as they are: their parameters stop requiring gradients.
    Returns the frozen blocks (the trainer keeps them in eval mode, so their BatchNorm
    statistics stay too); ``net.requires_grad_(True)`` undoes it."""
    levels = int(levels)
    if levels <= 0:
        return []
    down = getattr(net, "down", None)
    if not isinstance(down, torch.nn.ModuleList):
        raise ValueError(f"frozen_levels needs a UNet with encoder levels ('down' blocks); "
                         f"{type(net).__name__} has none: set frozen_levels=0")
    if levels > len(down):
        raise ValueError(f"frozen_levels={levels} but this UNet has {len(down)} encoder "
                         f"levels; use at most {len(down)} (the whole encoder)")
    blocks = list(down[:levels])
    for block in blocks:
        block.requires_grad_(False)
    return blocks


# --------------------------------------------------------------------------- blend
def blend_states(start: dict, tuned: dict, fraction: float) -> dict:
    """The weights ``start + fraction * (tuned - start)`` (floating-point entries; the
    others, e.g. BatchNorm batch counters, as in ``tuned``). Entries equal in both are
    copied, so an infinite BatchNorm variance stays infinite instead of becoming NaN."""
    if not 0.0 <= fraction <= 1.0:
        raise ValueError(f"a blend fraction must be in [0, 1], got {fraction}")
    out = {}
    for k, v in tuned.items():
        s = start[k]
        if v.is_floating_point():
            out[k] = torch.where(v == s, v, torch.lerp(s, v, float(fraction)))
        else:
            out[k] = v.clone()
    return out


# --------------------------------------------------------------------------- bundle
def ema_decay_for(span: float, step: int, progress: float) -> float:
    """EMA decay that averages over the last ``span`` (a fraction) of a run that is
    ``progress`` (0..1) done after ``step`` steps: ``1 - 1 / (span * expected steps)``."""
    expected = step / max(progress, 1e-9)
    return float(max(0.0, 1.0 - 1.0 / max(span * expected, 1.0)))


@dataclass
class FineTuneSettings:
    """What :class:`FineTuner` does; see the module docstring. 0 / False disables.

    ``ema_span``: the EMA averages over about this fraction of the run (its decay follows
    the run's length, so a 1-minute and a 3-minute run both end averaged over their end).
    ``start_blend``: validated on held-out masks, :func:`blend_states` at this fraction
    replaces the fine-tuned weights when its outlines score better there.
    """

    replay_fraction: float = 0.0
    anchor_strength: float = 0.0
    ema_span: float = 0.0
    adapt_norm: bool = False
    adapt_batches: int = 16
    start_blend: float = 0.0


class FineTuner:
    """The fine-tuning hooks of one training run (used by ``training.train``).

    Call order: :meth:`before_training` once (AdaBN), :meth:`mix` on every batch,
    :meth:`after_step` after every optimiser step, :meth:`weights` for the state to
    validate / keep.
    """

    def __init__(self, net: torch.nn.Module, settings: FineTuneSettings,
                 rng: np.random.Generator, in_channels: int = 1,
                 replay: ReplaySet | None = None, replay_path=None,
                 replay_exclude=()) -> None:
        self.net, self.settings, self.rng = net, settings, rng
        self.replay = None
        if settings.replay_fraction > 0:
            self.replay = replay if replay is not None else load_replay_set(
                replay_path, in_channels, replay_exclude)
        self.anchor = WeightAnchor(net, settings.anchor_strength) if settings.anchor_strength > 0 else None
        self.ema = None

    def before_training(self, sampler, batch_size: int) -> int:
        """AdaBN on patches of the user's images (no augmentation), then start the EMA
        from the (adapted) starting weights. Returns the number of AdaBN batches."""
        n = 0
        if self.settings.adapt_norm:
            aug = sampler.augment
            sampler.augment = False
            try:
                n = adapt_batchnorm(
                    self.net, (sampler.sample(batch_size)[0] for _ in range(self.settings.adapt_batches))
                )
            finally:
                sampler.augment = aug
        if self.settings.ema_span > 0:
            self.ema = WeightEMA(self.net, 0.0)
        return n

    def mix(self, batch, augment: bool = True):
        if self.replay is None:
            return batch
        return mix_replay(batch, self.replay, self.settings.replay_fraction, self.rng, augment)

    def after_step(self, lr: float, step: int = 1, progress: float = 1.0) -> None:
        """``step``: steps done; ``progress``: fraction of the run done (for the EMA)."""
        if self.anchor is not None:
            self.anchor.pull(lr)
        if self.ema is not None:
            self.ema.update(self.net, ema_decay_for(self.settings.ema_span, step, progress))

    def weights(self) -> dict[str, torch.Tensor]:
        """The weights to validate and keep: the EMA when enabled, else the network's."""
        if self.ema is not None:
            return self.ema.state_dict()
        return {k: v.detach().clone() for k, v in self.net.state_dict().items()}
