"""CPU prediction in float32 (what napari-segkit does) against bfloat16 autocast.

A measurement for a decision not yet taken: training on the CPU runs in bfloat16 where
the CPU computes it in hardware (``runtime.training_precision``); prediction does not. This
script predicts every ``val/`` image with the shipped model both ways, on one thread, and
prints F1@0.5 and AP (DSB) against the ground truth, how well the two agree (F1 of one's
objects against the other's) and the time. bfloat16 is switched on by replacing
``runtime.autocast`` for the run, so the product code is untouched.

    .venv/bin/python benchmarks/bench_predict_precision.py [--data ../shared/data/nuclei/val]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data" / "nuclei" / "val")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()

    import torch

    from napari_segkit import metrics, runtime
    from napari_segkit.io import read_image, read_labels
    from napari_segkit.model_io import load_default_model
    from napari_segkit.prediction import predict

    torch.set_num_threads(args.threads)
    model = load_default_model()
    float32 = runtime.autocast

    def bfloat16(device, enabled=True):
        if device.type == "cpu":
            return torch.autocast("cpu", dtype=torch.bfloat16)
        return float32(device, enabled)

    counts = {k: np.zeros(3) for k in ("float32", "bfloat16", "agreement")}
    aps: dict = {"float32": [], "bfloat16": []}
    seconds = {"float32": 0.0, "bfloat16": 0.0}
    names = sorted(p.name for p in (args.data / "images").glob("*.tif"))
    print(f"{len(names)} images of {args.data}, {args.threads} thread(s); this CPU computes "
          f"bfloat16 natively: {runtime.cpu_has_native_bf16()}")
    try:
        for name in names:
            image = read_image(args.data / "images" / name)
            truth = read_labels(args.data / "labels" / name)
            found = {}
            for tag, cast in (("float32", float32), ("bfloat16", bfloat16)):
                runtime.autocast = cast
                t0 = time.perf_counter()
                found[tag] = predict(model, image, device="cpu").instances
                seconds[tag] += time.perf_counter() - t0
                m = metrics.match_instances(truth, found[tag])
                counts[tag] += (m.tp, m.fp, m.fn)
                aps[tag].append(metrics.average_precision_dsb(truth, found[tag]))
            m = metrics.match_instances(found["float32"], found["bfloat16"])
            counts["agreement"] += (m.tp, m.fp, m.fn)
    finally:
        runtime.autocast = float32
    for tag, (tp, fp, fn) in counts.items():
        f1 = 2 * tp / max(2 * tp + fp + fn, 1)
        if tag == "agreement":
            print(f"  objects of the two agree: F1 {f1:.4f}")
        else:
            print(f"  {tag:9s}: F1 {f1:.4f}  AP {np.mean(aps[tag]):.3f}  {seconds[tag]:6.1f} s")
    print(f"  time bfloat16 / float32: {seconds['bfloat16'] / seconds['float32']:.2f}")


if __name__ == "__main__":
    main()
