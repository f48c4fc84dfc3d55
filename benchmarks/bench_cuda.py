"""What only a GPU shows: the CUDA path of training and prediction, measured in one run.

1. **Training a new model** (the default UNet configuration, the Train dock's batch and
   patch size) on the sample images: steps/s on CUDA with mixed precision, without it,
   and on this machine's CPU cores (a ratio from one run), the peak GPU memory, the loss
   after the last step, and the GPU memory still allocated once ``train()`` has returned
   (target: 0 bytes; the model comes back on the CPU in float32).
2. **A training stopped half-way** keeps its best weights: the checkpoint on disk loads and
   equals the returned model, and the GPU memory is freed.
3. **Prediction** with the shipped default model on CUDA (float16 autocast) against the
   CPU (float32), on ``val/`` of the nuclei collection (or the sample images): mean and
   largest absolute difference of the probabilities, F1 of the CUDA objects against the
   CPU objects, F1@0.5 of each against the ground truth, time per image, and the GPU
   memory left allocated afterwards.

    python benchmarks/bench_cuda.py [--steps 300] [--data DIR] [--json F]

Without a CUDA GPU it says so and exits with status 2 (fine-tuning on a GPU:
``bench_finetune.py --device cuda``).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SAMPLES = ("fluo_512", "fluo_256", "fluo_dense", "he_rgb")


def sample_pairs():
    from napari_segkit._sample_data import read_sample

    pairs = [read_sample(s) for s in SAMPLES]
    return [im for im, _ in pairs], [lb for _, lb in pairs]


def val_pairs(data: Path | None):
    """val/ of the nuclei collection when there is one, else the sample images."""
    from napari_segkit import io

    if data is not None and (data / "val" / "images").is_dir():
        files = sorted((data / "val" / "images").glob("*.tif"))
        return ([io.read_image(f) for f in files],
                [io.read_labels(data / "val" / "labels" / f.name) for f in files], "val/")
    images, labels = sample_pairs()
    return images, labels, "sample images"


def allocated() -> int:
    import torch

    gc.collect()
    torch.cuda.synchronize()
    return int(torch.cuda.memory_allocated())


def run_training(images, labels, device: str, amp, steps: int, out: Path,
                 stop_at: int | None = None, threads: int | None = None) -> dict:
    """One training; its speed (after a warm-up of a fifth of the steps), memory, result."""
    import torch

    from napari_segkit.training import TrainConfig, train

    cfg = TrainConfig(steps=steps, device=device, amp=amp, seed=0, val_every=steps,
                      log_every=1, num_threads=threads)
    stop = threading.Event()
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    before = allocated() if device == "cuda" else 0
    warm, t_warm, t_end, last, kinds = max(2, steps // 5), None, None, None, []
    gen = train(images, labels, config=cfg, out_path=out, stop=stop)
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            model = done.value
            break
        kinds.append(ev.kind)
        if ev.kind == "step":
            last = ev
            if ev.step == warm:
                t_warm = time.perf_counter()
            t_end = time.perf_counter()
            if stop_at is not None and ev.step >= stop_at:
                stop.set()
    timed = last.step - warm
    row = {
        "device": device, "amp": amp, "steps": last.step, "final_kind": kinds[-1],
        "steps_per_s": timed / (t_end - t_warm) if t_warm and timed > 0 else None,
        "loss": last.loss, "model_device": str(next(model.net.parameters()).device),
        "model_dtype": str(next(model.net.parameters()).dtype),
    }
    del gen
    if device == "cuda":
        row["peak_gpu_mb"] = torch.cuda.max_memory_allocated() / 2**20
        row["gpu_mb_allocated_before"] = before / 2**20
        row["gpu_mb_allocated_after"] = allocated() / 2**20
    return row, model


def same_weights(a, b) -> float:
    """Largest absolute difference between two networks' weights."""
    sa, sb = a.net.state_dict(), b.net.state_dict()
    return max(float((sa[k].float() - sb[k].float()).abs().max()) for k in sa)


def prediction_rows(images, labels) -> dict:
    import torch

    from napari_segkit.metrics import evaluate_instances, match_instances, summarise
    from napari_segkit.model_io import DEFAULT_MODEL_PATH, load_model
    from napari_segkit.prediction import predict

    model = load_model(DEFAULT_MODEL_PATH)
    cpu_rows, gpu_rows, agree, diffs, t_cpu, t_gpu = [], [], [], [], 0.0, 0.0
    predict(model, images[0], device="cuda")  # warm-up: kernels, cuDNN autotuning
    for im, gt in zip(images, labels, strict=True):
        t = time.perf_counter()
        p_cpu = predict(model, im, device="cpu")
        t_cpu += time.perf_counter() - t
        torch.cuda.synchronize()
        t = time.perf_counter()
        p_gpu = predict(model, im, device="cuda")
        torch.cuda.synchronize()
        t_gpu += time.perf_counter() - t
        d = np.abs(np.asarray(p_cpu.probabilities) - np.asarray(p_gpu.probabilities))
        diffs.append((float(d.mean()), float(d.max())))
        cpu_rows.append(evaluate_instances(gt, p_cpu.instances))
        gpu_rows.append(evaluate_instances(gt, p_gpu.instances))
        m = match_instances(p_cpu.instances, p_gpu.instances)
        agree.append((m.tp, m.fp, m.fn))
    tp, fp, fn = (sum(a[i] for a in agree) for i in range(3))
    n = len(images)
    return {
        "images": n,
        "prob_abs_diff_mean": float(np.mean([d[0] for d in diffs])),
        "prob_abs_diff_max": float(max(d[1] for d in diffs)),
        "objects_cpu_vs_cuda_f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "f1_cpu": summarise(cpu_rows)["f1"], "f1_cuda": summarise(gpu_rows)["f1"],
        "ap_cpu": summarise(cpu_rows)["ap_dsb"], "ap_cuda": summarise(gpu_rows)["ap_dsb"],
        "s_per_image_cpu": t_cpu / n, "s_per_image_cuda": t_gpu / n,
        "gpu_mb_allocated_after": allocated() / 2**20,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=300, help="steps of each CUDA training")
    ap.add_argument("--cpu-steps", type=int, default=30, help="steps of the CPU comparison")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nuclei")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available():
        print("no CUDA GPU here: this benchmark measures the CUDA path "
              "(the CPU figures come from the other benchmarks)")
        return 2
    from napari_segkit.model_io import load_model

    props = torch.cuda.get_device_properties(0)
    out = {"gpu": props.name, "gpu_memory_gb": props.total_memory / 1e9,
           "torch": torch.__version__, "cuda": torch.version.cuda}
    print(json.dumps(out))
    images, labels = sample_pairs()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        rows = []
        for device, amp, steps in (("cuda", "auto", args.steps), ("cuda", False, args.steps),
                                   ("cpu", "auto", args.cpu_steps)):
            row, _ = run_training(images, labels, device, amp, steps, tmp / f"{device}{amp}.st",
                                  threads=None if device == "cuda" else torch.get_num_threads())
            rows.append(row)
            print("train", json.dumps(row, default=str), flush=True)
        out["training"] = rows
        amp_row, fp32_row, cpu_row = rows
        out["amp_speedup"] = amp_row["steps_per_s"] / fp32_row["steps_per_s"]
        out["cuda_vs_cpu_speedup"] = amp_row["steps_per_s"] / cpu_row["steps_per_s"]

        ckpt = tmp / "stopped.safetensors"
        row, model = run_training(images, labels, "cuda", "auto", args.steps, ckpt,
                                  stop_at=args.steps // 2)
        row["checkpoint_exists"] = ckpt.is_file()
        row["checkpoint_vs_returned_max_abs"] = (same_weights(load_model(ckpt), model)
                                                 if ckpt.is_file() else None)
        out["stopped"] = row
        print("stopped", json.dumps(row, default=str), flush=True)

    v_images, v_labels, where = val_pairs(args.data)
    out["prediction"] = {"on": where, **prediction_rows(v_images, v_labels)}
    print("prediction", json.dumps(out["prediction"]), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
