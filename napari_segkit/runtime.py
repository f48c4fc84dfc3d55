"""What running a network with torch needs: a device, a forward pass on numpy batches,
the network on that device for a while, mixed precision, and a torch thread count.

Process-wide state: torch keeps ONE CPU thread count for the whole process.
:func:`torch_threads` changes it only inside a ``with`` block and restores it after, but
while the block runs (e.g. while a training generator is suspended between two events)
every other torch user of the process, in any thread, runs with that count too.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import platform
import threading
import weakref
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

__all__ = ["TorchForward", "autocast", "cpu_has_native_bf16", "cpuinfo_has_bf16", "mixed_precision",
           "model_on_device", "select_device", "torch_threads", "training_precision"]


def select_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"`` (or ``None``): CUDA, then Apple MPS, then CPU. Explicit names are checked."""
    if isinstance(device, torch.device):
        return device
    device = "auto" if device is None else str(device).lower()
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        mps = getattr(torch.backends, "mps", None)
        if mps is not None and mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device 'cuda' requested but no CUDA GPU is available; use 'auto' or 'cpu'")
    if device == "mps" and not (
        getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    ):
        raise ValueError("device 'mps' requested but Apple MPS is not available; use 'auto' or 'cpu'")
    if not (device == "cpu" or device == "mps" or device.startswith("cuda")):
        raise ValueError(f"unknown device {device!r}; use 'auto', 'cpu', 'cuda' or 'mps'")
    return torch.device(device)


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """Prediction's precision: float16 autocast on CUDA (when ``enabled``); float32 on
    other devices (training's is :func:`training_precision`)."""
    return mixed_precision(device, torch.float16 if enabled and device.type == "cuda" else None)


def cpuinfo_has_bf16(cpuinfo: str) -> bool:
    """Whether ``/proc/cpuinfo`` text lists a native bfloat16 unit: x86 AVX512-BF16 or
    AMX-BF16 ("flags"), Arm BF16 ("Features")."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip().lower() in ("flags", "features"):
            return bool(set(value.split()) & {"avx512_bf16", "amx_bf16", "bf16"})
    return False


@functools.lru_cache(maxsize=1)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bfloat16 in hardware (:func:`cpuinfo_has_bf16`; Linux
    only). Without it bfloat16 is emulated and slower than float32, so mixed precision on
    the CPU is only chosen where this holds."""
    if platform.system() != "Linux" or not torch.backends.mkldnn.is_available():
        return False
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
            return cpuinfo_has_bf16(f.read())
    except OSError:
        return False


def training_precision(device: torch.device, amp: str | bool = "auto") -> torch.dtype | None:
    """The autocast dtype a training step runs in, None for float32.

    CUDA: float16 (with a gradient scaler) unless ``amp`` is False. CPU: bfloat16 when
    ``amp`` is True, or "auto" on a CPU with native bfloat16 (:func:`cpu_has_native_bf16`),
    where a training step of the default UNet runs 1.9x as fast as in float32
    (``benchmarks/bench_training.py`` [1b]). MPS: float32 (not measured there)."""
    if amp is False:
        return None
    if device.type == "cuda":
        return torch.float16
    if device.type == "cpu" and (amp is True or cpu_has_native_bf16()):
        return torch.bfloat16
    return None


def mixed_precision(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    """Autocast to ``dtype`` on ``device`` for the block (None: float32, nothing)."""
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads (None: leave the count alone), then restore
    the previous count. Process-wide while the block runs (see the module notes)."""
    previous = torch.get_num_threads()
    if n is not None:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if n is not None:
            torch.set_num_threads(previous)


_NET_LOCKS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()
_NET_LOCKS_GUARD = threading.Lock()


def _lock_of(net: torch.nn.Module) -> threading.RLock:
    with _NET_LOCKS_GUARD:
        lock = _NET_LOCKS.get(net)
        if lock is None:
            lock = _NET_LOCKS[net] = threading.RLock()
        return lock


@contextlib.contextmanager
def model_on_device(net: torch.nn.Module, device: torch.device,
                    channels_last: bool = False) -> Iterator[torch.nn.Module]:
    """The network in eval mode on ``device`` for the block; its mode and device are
    restored after. ``channels_last``: the weights are held channels-last for the block
    (with channels-last input, oneDNN convolutions on the CPU run faster; outputs differ
    by float rounding only) and put back to the contiguous format after.

    One thread at a time per network: dask runs blocks in threads, and one block putting
    the network back (train mode, another device or layout) while another block runs it
    would corrupt that block's output (BatchNorm in train mode) and the network's statistics.
    """
    with _lock_of(net):
        with _on_device(net, device, channels_last) as moved:
            yield moved


@contextlib.contextmanager
def _on_device(net: torch.nn.Module, device: torch.device,
               channels_last: bool) -> Iterator[torch.nn.Module]:
    # a network may hold only buffers (fixed filters): their device counts too
    first = next(itertools.chain(net.parameters(), net.buffers()), None)
    old_device = first.device if first is not None else None
    was_training = net.training
    net.to(device)
    if channels_last:
        net.to(memory_format=torch.channels_last)
    net.eval()
    try:
        yield net
    finally:
        net.train(was_training)
        if channels_last:
            net.to(memory_format=torch.contiguous_format)
        if old_device is not None and old_device != device:
            net.to(old_device)


class TorchForward:
    """numpy batch (N, C, h, w) -> numpy probabilities (N, K + extra, h, w).

    Softmax over the ``n_classes`` class logits, sigmoid on the extra channels; fp16
    autocast on CUDA (activations computed in float32). ``tta``: the mean over the image
    and its 3 mirror images. ``channels_last``: batches go to the network channels-last
    (for a network held so, see :func:`model_on_device`).
    """

    def __init__(self, net: Any, n_classes: int, device: torch.device, tta: bool = False,
                 channels_last: bool = False) -> None:
        self.net = net
        self.n_classes = n_classes
        self.device = device
        self.tta = bool(tta)
        self.channels_last = bool(channels_last)

    def probabilities(self, x: torch.Tensor) -> torch.Tensor:
        """Probabilities of a batch tensor already on the device."""
        with autocast(self.device):
            logits = self.net(x)
        logits = logits.float()
        k = self.n_classes
        return torch.cat([torch.softmax(logits[:, :k], dim=1), torch.sigmoid(logits[:, k:])], dim=1)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(batch)).to(self.device)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.inference_mode():
            if not self.tta:
                return self.probabilities(x).cpu().numpy()
            # test-time augmentation: the mean over the 4 mirror images (none, x, y, both)
            acc = None
            for dims in ((), (-1,), (-2,), (-2, -1)):
                p = self.probabilities(x.flip(dims) if dims else x)
                p = p.flip(dims) if dims else p
                acc = p if acc is None else acc.add_(p)
            return acc.mul_(0.25).cpu().numpy()
