"""Training benchmarks, each pair measured side by side in one run.

0. The patch sampler's speed, without and with zoom augmentation (ms per batch).
1. Throughput of ``training.train()`` against a bare PyTorch loop on the same network,
   batch, patch size, precision and memory layout (target: train() >= 0.85 of the bare
   loop); then ``train()`` in float32 against mixed precision (bfloat16 on a CPU that
   computes it natively, ``TrainConfig.amp``), alternated in one run.
2. GUI responsiveness while the Train dock trains: the longest gap between 10 ms timer
   ticks of the Qt event loop, and its 99th percentile (targets: < 100 ms, < 50 ms),
   next to the same figures when the training runs on the GUI thread.

Run: ``.venv/bin/python benchmarks/bench_training.py [--steps 60] [--seconds 20]``
(needs a display for part 2: run under ``xvfb-run -a`` on a headless machine).
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np


def _sample_pair():
    from napari_segkit._sample_data import read_sample

    return read_sample("fluo_512")


# --------------------------------------------------------------------------- 0. sampler
def sampler_speed(batches: int = 100) -> None:
    """Milliseconds to cut one batch of 8 patches of 128 px on one thread, without and
    with zoom augmentation (the default model's recipe zooms by 0.5-2): on a GPU the
    sampler, not the network, can bound the steps per second."""
    from napari_segkit._sample_data import read_sample
    from napari_segkit.training import TrainConfig, Trainer

    pairs = [read_sample(n) for n in ("fluo_512", "fluo_256", "fluo_dense", "he_rgb")]
    images, labels = [im for im, _ in pairs], [lb for _, lb in pairs]
    print("[0] patch sampler, batch 8 of 128 px, one thread:")
    for zoom in (None, (0.5, 2.0)):
        trainer = Trainer(TrainConfig(device="cpu", scale_range=zoom, seed=0))
        trainer.prepare_data(images, labels, [None] * len(images))
        trainer.sampler.sample(8)
        t0 = time.perf_counter()
        for _ in range(batches):
            trainer.sampler.sample(8)
        ms = (time.perf_counter() - t0) / batches * 1e3
        print(f"    {'zoom 0.5-2' if zoom else 'no zoom':10s}: {ms:5.1f} ms per batch")


# --------------------------------------------------------------------------- 1. throughput
def bare_loop_steps_per_s(cfg, steps: int, warmup: int = 5) -> float:
    """The floor: random tensors already in memory, one forward/backward/step per batch."""
    import torch

    from napari_segkit.model import UNet
    from napari_segkit.runtime import mixed_precision, select_device, training_precision
    from napari_segkit.scoring import segmentation_loss
    from napari_segkit.training import NEW_MODEL_LR

    torch.manual_seed(0)
    device = select_device(cfg.device)
    precision = training_precision(device, cfg.amp)  # as train() runs: same precision
    net = UNet(cfg.model).to(device).to(memory_format=torch.channels_last).train()
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr or NEW_MODEL_LR, weight_decay=cfg.weight_decay)
    b, p, k = cfg.batch_size, cfg.patch_size, cfg.model.n_classes
    x = torch.randn(b, cfg.model.in_channels, p, p, device=device).contiguous(
        memory_format=torch.channels_last)
    classes = torch.randint(0, k, (b, p, p), device=device)
    center = torch.rand(b, p, p, device=device)
    mask = torch.ones(b, p, p, device=device)
    t0 = None
    for i in range(warmup + steps):
        if i == warmup:
            t0 = time.perf_counter()
        with mixed_precision(device, precision):
            logits = net(x)
        loss = segmentation_loss(logits.float(), classes, center, mask, k, None,
                                 cfg.dice_weight, cfg.center_weight)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        float(loss.detach())  # the same one sync per step that train() makes on the CPU
    return steps / (time.perf_counter() - t0)


def train_steps_per_s(cfg, steps: int, warmup: int = 5, init=None) -> float:
    from napari_segkit.training import train

    image, labels = _sample_pair()
    cfg.steps, cfg.val_every = warmup + steps, 10**9  # no validation inside the timing
    times = {}
    for ev in train([image], [labels], config=cfg, init=init,
                    val=([image[:64, :64]], [labels[:64, :64]])):
        if ev.kind == "step" and ev.step == warmup:
            times["start"] = time.perf_counter()
        if ev.kind == "step" and ev.step == warmup + steps:
            times["end"] = time.perf_counter()
    return steps / (times["end"] - times["start"])


def throughput(steps: int, threads: int | None = None) -> None:
    import torch

    from napari_segkit.training import TrainConfig

    threads = threads or max(1, (os.cpu_count() or 2) - 1)
    cfg = TrainConfig(device="cpu", num_threads=threads, seed=0)
    torch.set_num_threads(threads)
    print(f"[1] throughput: UNet {cfg.model.to_dict()}, batch {cfg.batch_size}, "
          f"patch {cfg.patch_size}, {threads} thread(s), {steps} timed steps each")
    # alternate the two to spread machine noise over both
    bare, ours = [], []
    for _ in range(2):
        bare.append(bare_loop_steps_per_s(cfg, steps // 2))
        ours.append(train_steps_per_s(TrainConfig(device="cpu", num_threads=threads, seed=0), steps // 2))
    b, o = float(np.mean(bare)), float(np.mean(ours))
    print(f"    bare PyTorch loop : {b:6.2f} steps/s")
    print(f"    training.train()  : {o:6.2f} steps/s")
    print(f"    ratio             : {o / b:6.3f}  (target >= 0.85)")
    precision(steps, threads)


def precision(steps: int, threads: int) -> None:
    """train() steps per second in float32 against mixed precision, alternated."""
    from napari_segkit.runtime import cpu_has_native_bf16
    from napari_segkit.training import TrainConfig

    print(f"[1b] train() in float32 vs mixed precision (bfloat16 autocast), {threads} "
          f"thread(s); this CPU computes bfloat16 natively: {cpu_has_native_bf16()} "
          f"(amp='auto' uses it only then)")
    for what, init in (("a new model (default UNet)", None),
                       ("fine-tuning the shipped model", "default")):
        runs: dict = {False: [], True: []}
        for _ in range(2):
            for amp in (False, True):
                cfg = TrainConfig(device="cpu", num_threads=threads, seed=0, amp=amp)
                runs[amp].append(train_steps_per_s(cfg, steps // 2, init=init))
        f32, mixed = float(np.mean(runs[False])), float(np.mean(runs[True]))
        print(f"    {what}:")
        print(f"      float32          : {f32:6.2f} steps/s")
        print(f"      bfloat16 autocast: {mixed:6.2f} steps/s")
        print(f"      ratio            : {mixed / f32:6.2f}x")


# --------------------------------------------------------------------------- 2. GUI
def gui_responsiveness(seconds: float) -> None:
    from qtpy.QtCore import QElapsedTimer, QTimer
    from qtpy.QtWidgets import QApplication

    from napari_segkit._widgets.launch import open_viewer

    viewer, docks = open_viewer("fluo_256", show=True)
    app = QApplication.instance()
    widget = docks["Train"]
    widget.image.value = viewer.layers["fluo_256"]
    widget.annotation_layer.value = viewer.layers["fluo_256 clicks"]
    widget.init.value = "none"
    widget.minutes.value = seconds / 60 + 5
    import tempfile

    widget.out.value = os.path.join(tempfile.mkdtemp(), "bench.safetensors")

    def measure(duration: float) -> np.ndarray:
        gaps, clock = [], QElapsedTimer()
        clock.start()
        last = [clock.elapsed()]
        timer = QTimer()
        timer.setInterval(10)

        def tick():
            now = clock.elapsed()
            gaps.append(now - last[0])
            last[0] = now

        timer.timeout.connect(tick)
        timer.start()
        end = time.perf_counter() + duration
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.001)
        timer.stop()
        return np.asarray(gaps[1:], float)

    def pump(done, timeout: float) -> None:
        """Run the Qt event loop until ``done()`` or ``timeout`` seconds."""
        end = time.perf_counter() + timeout
        while not done() and time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.005)

    def stepped(n: int):
        return lambda: (ev := widget.last_event) is not None and ev.kind == "step" and ev.step >= n

    def stop_latency_s() -> float:
        t_stop = time.perf_counter()
        widget.stop()
        pump(lambda: widget.start_button.enabled, 120)
        return time.perf_counter() - t_stop

    idle = measure(2.0)
    widget.start()
    pump(stepped(2), 60)  # let the worker get past its set-up (targets, first steps)
    steps_before = widget.last_event.step
    busy = measure(seconds)
    steps_done = widget.last_event.step - steps_before
    stop_latency = stop_latency_s()

    # Stop while fine-tuning the shipped (larger, depth-4) default model, dock defaults
    widget.init.value = "default"
    widget.start()
    pump(stepped(3), 120)
    ft_steps = widget.last_event.step
    pump(lambda: False, 5.0)
    ft_step_s = 5.0 / max(widget.last_event.step - ft_steps, 1)
    ft_stop_latency = stop_latency_s()
    patch = widget.patch.value

    # the same training on the GUI thread: run train() steps between timer ticks
    from napari_segkit.training import TrainConfig, train

    data = widget.collect_data()
    gen = train(data["images"], labels=data["labels"], points=data["points"],
                config=TrainConfig(time_budget_s=seconds + 60, steps=10**7, patch_size=patch, seed=0),
                init=None)
    gaps, clock = [], QElapsedTimer()
    clock.start()
    last = clock.elapsed()
    end = time.perf_counter() + seconds
    next(gen)  # set-up
    n_gui_steps = 0
    while time.perf_counter() < end:
        ev = next(gen)  # one step on the GUI thread, then let Qt run
        n_gui_steps += ev.kind == "step"
        app.processEvents()
        now = clock.elapsed()
        gaps.append(now - last)
        last = now
    gen.close()
    on_gui = np.asarray(gaps, float)
    viewer.close()

    def row(name, g):
        return (f"    {name:<28} max gap {g.max():7.1f} ms   p99 {np.percentile(g, 99):7.1f} ms   "
                f"median {np.median(g):5.1f} ms   ({len(g)} ticks)")

    print(f"[2] GUI responsiveness: 10 ms Qt timer, {seconds:g} s each (targets: max < 100 ms, p99 < 50 ms)")
    print(row("idle viewer", idle))
    print(row("Train dock (worker thread)", busy) + f"   {steps_done} training steps")
    print(row("training on the GUI thread", on_gui) + f"   {n_gui_steps} training steps")
    print(f"    Stop -> training ended, best weights saved: {stop_latency:.2f} s (target < 1 s)")
    print(f"    the same when fine-tuning the default model (patch {patch}, "
          f"~{ft_step_s:.2f} s/step): {ft_stop_latency:.2f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=40, help="timed steps per throughput run")
    ap.add_argument("--seconds", type=float, default=20.0, help="duration of each GUI measurement")
    ap.add_argument("--skip-gui", action="store_true")
    ap.add_argument("--threads", type=int, default=None,
                    help="torch threads for the throughput runs (default: all cores but one)")
    args = ap.parse_args()
    sampler_speed()
    throughput(args.steps, args.threads)
    if not args.skip_gui:
        gui_responsiveness(args.seconds)


if __name__ == "__main__":
    main()
