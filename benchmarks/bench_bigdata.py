"""Big-image prediction: an OME-Zarr mosaic of real nuclei with the threaded scheduler,
with a local dask cluster, and the same pixels as separate 2,048 px TIFF tiles.

    python benchmarks/bench_bigdata.py --size 8192            # quicker
    python benchmarks/bench_bigdata.py                        # 20,000 x 20,000 (issue 12)
    python benchmarks/bench_bigdata.py --size 8192 --keep /tmp/big   # reuse the data

Steps: ``make_bigdata.py`` writes a ``--size`` x ``--size`` uint8 OME-Zarr (chunks of
2,048) and the same level-0 pixels as ``tile_<row>_<col>.tif`` files. Then, each in a
fresh Python process, :func:`napari_segkit.workflows.predict_folder` (what ``napari-segkit
predict`` runs) with the default model predicts (i) the zarr with ``--scheduler
threads``, (ii) the zarr with ``local:N`` (``--workers``, default 2: worker processes of
one thread), (iii) the TIFF tiles, one file after another, with threads. Each run prints
its wall time, throughput (megapixels per second), object count and peak RSS per
process: the main process (``ru_maxrss``) and, for the cluster, every worker (its own
``ru_maxrss``, asked through ``client.run`` before the cluster stops).

Checks (issue 12): the object counts of (i) and (ii) are identical; the zarr throughput is
at least 0.8x that of the tiles; every process peaks below 2 GB. The exit status is 1 when
a check fails. Figures are indicative on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RSS_LIMIT_MB = 2048
THROUGHPUT_RATIO = 0.8


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_one(source: Path, out: Path, scheduler: str, workers: int) -> dict:
    """One prediction in this process; the figures as a dict (printed as JSON)."""
    from napari_segkit.schedulers import open_client
    from napari_segkit.workflows import predict_folder

    spec = f"local:{workers}" if scheduler == "local" else scheduler
    t0 = time.perf_counter()
    with open_client(spec) as client:
        objects = predict_folder("default", source, out, scheduler=client or "threads",
                                 log=lambda _text: None)
        worker_rss = {}
        if client is not None:
            worker_rss = client.run(_peak_rss_mb)
    wall = time.perf_counter() - t0
    return {"scheduler": spec, "wall_s": wall, "objects": len(objects),
            "main_rss_mb": _peak_rss_mb(), "worker_rss_mb": sorted(worker_rss.values())}


def _child(source: Path, out: Path, scheduler: str, workers: int) -> dict:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    done = subprocess.run([sys.executable, __file__, "--run-one", scheduler, str(source),
                           str(out), "--workers", str(workers)],
                          capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{scheduler} run failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=20000, help="image edge in pixels")
    p.add_argument("--workers", type=int, default=2, help="worker processes of local:N")
    p.add_argument("--sources", type=Path, nargs="+",
                   help="folders of source .tif images (default: make_bigdata's)")
    p.add_argument("--keep", type=Path, help="folder for the data (kept, reused when present)")
    p.add_argument("--run-one", nargs=3, metavar=("SCHEDULER", "SOURCE", "OUT"),
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.run_one:
        scheduler, source, out = args.run_one
        print(json.dumps(run_one(Path(source), Path(out), scheduler, args.workers)))
        return 0

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import make_bigdata

    work = args.keep or Path(tempfile.mkdtemp(prefix="segkit-bigdata-"))
    work.mkdir(parents=True, exist_ok=True)
    zarr_path, tiles = work / f"mosaic_{args.size}.zarr", work / f"tiles_{args.size}"
    try:
        if not (zarr_path / ".zattrs").exists() and not (zarr_path / "zarr.json").exists():
            sources = ["--sources", *map(str, args.sources)] if args.sources else []
            make_bigdata.main(["--out", str(zarr_path), "--size", str(args.size),
                               "--tiles", str(tiles), "--overwrite", *sources])
        pixels = args.size**2
        runs = {}
        for name, source, scheduler in (("zarr, threads", zarr_path, "threads"),
                                        (f"zarr, local:{args.workers}", zarr_path, "local"),
                                        ("TIFF tiles, threads", tiles, "threads")):
            out = work / f"out_{name.split(',')[0].split()[0].lower()}_{scheduler}"
            shutil.rmtree(out, ignore_errors=True)
            r = _child(source, out, scheduler, args.workers)
            r["mpx_s"] = pixels / 1e6 / r["wall_s"]
            runs[name] = r
            workers = ", ".join(f"{v:.0f}" for v in r["worker_rss_mb"]) or "-"
            print(f"{name:<22} {r['wall_s']:8.1f} s {r['mpx_s']:7.3f} Mpx/s "
                  f"{r['objects']:>9} objects  peak RSS main {r['main_rss_mb']:.0f} MB, "
                  f"workers [{workers}] MB", flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    threads, local, tiled = runs.values()
    ratio = threads["mpx_s"] / tiled["mpx_s"]
    best = max(threads["mpx_s"], local["mpx_s"]) / tiled["mpx_s"]
    peak = max(max([r["main_rss_mb"], *r["worker_rss_mb"]]) for r in runs.values())
    checks = {
        "identical counts (threads, local)": threads["objects"] == local["objects"],
        f"zarr/tiff throughput >= {THROUGHPUT_RATIO} (threads {ratio:.2f}, best {best:.2f})":
            ratio >= THROUGHPUT_RATIO,
        f"peak RSS per process < {RSS_LIMIT_MB} MB (max {peak:.0f} MB)": peak < RSS_LIMIT_MB,
    }
    print(f"{args.size} x {args.size} uint8 ({pixels / 1e6:.0f} Mpx), default model, "
          f"{os.cpu_count()} CPUs")
    for text, ok in checks.items():
        print(f"  {'ok  ' if ok else 'FAIL'} {text}")
    return 0 if all(checks.values()) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
