"""The main command's viewer: three docks and a sample image with its annotations."""

from __future__ import annotations

from napari_segkit._widgets.launch import DOCKS, open_viewer


def test_open_viewer_docks_everything_with_sample_data(qtbot):
    viewer, docks = open_viewer("fluo_256", show=False)
    try:
        assert set(docks) == set(DOCKS)
        assert [layer.name for layer in viewer.layers] == [
            "fluo_256", "fluo_256 ground truth", "fluo_256 clicks"]
        assert docks["Train"].image.value is viewer.layers["fluo_256"]
        assert docks["Annotate and convert"].image.value is viewer.layers["fluo_256"]
    finally:
        viewer.close()


FREEZE = """
import threading, time, gc
from qtpy.QtWidgets import QApplication
from napari_segkit._widgets.launch import open_viewer
viewer, docks = open_viewer("fluo_256", show=False, freeze_startup=True)
end = time.monotonic() + 200
while any(t.name == "segkit-warm-up" for t in threading.enumerate()) and time.monotonic() < end:
    QApplication.processEvents(); time.sleep(0.05)
t0 = time.perf_counter(); gc.collect(); ms = 1000 * (time.perf_counter() - t0)
print("FROZEN", gc.get_freeze_count(), ms)
viewer.close()
"""


def test_the_launched_viewer_keeps_startup_objects_out_of_full_collections(tmp_path):
    """A full garbage collection scanned napari's, Qt's and torch's ~0.5 M objects and held
    the GUI thread for about a second; the launched viewer freezes them after warm-up."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1",
           "QT_QPA_PLATFORM": "offscreen"}
    out = subprocess.run([sys.executable, "-c", FREEZE], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    line = [s for s in out.stdout.splitlines() if s.startswith("FROZEN")]
    assert line, out.stderr[-2000:]
    frozen, collect_ms = int(line[0].split()[1]), float(line[0].split()[2])
    assert frozen > 100_000  # napari, Qt and torch objects
    assert collect_ms < 300  # a full collection no longer scans them


RAISES = """
from napari_segkit._widgets.launch import open_viewer
viewer, docks = open_viewer("he_rgb", show=True)
raise RuntimeError("a script that fails with the viewer open")
"""


def test_a_script_that_fails_with_the_viewer_open_exits_without_aborting(tmp_path):
    """Python tearing the docks down at exit in its own order deleted their timers before
    the docks' close call-backs stopped them; the exception there aborted the process
    (exit 134, "Aborted") instead of reporting the script's own error. (Once, in a full
    run beside two benchmarks, the process ended with a segmentation fault in the teardown
    instead of exit 1; the likely cause, the Train dock's warm-up still importing torch,
    is awaited at exit now: the test below.)"""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", RAISES], env=env, capture_output=True,
                         text=True, timeout=300, cwd=tmp_path)
    assert out.returncode not in (134, -6), (out.returncode, out.stderr[-2000:])  # SIGABRT
    assert "a script that fails" in out.stderr
    assert "has been deleted" not in out.stderr, out.stderr[-2000:]


WARM_UP_THEN_FAIL = """
import atexit, threading
atexit.register(lambda: print("WARM-UP ALIVE AT EXIT", any(
    t.name == "segkit-warm-up" and t.is_alive() for t in threading.enumerate()), flush=True))
from napari_segkit._widgets.train_worker import warm_up_imports
warm_up_imports()  # torch takes seconds to import
raise RuntimeError("a script that fails at once")
"""


def test_exit_waits_for_the_warm_up_that_imports_torch(tmp_path):
    """A daemon thread still importing torch while the interpreter tears itself down can
    crash it (a segmentation fault seen once in the script above); the warm-up is awaited
    at exit (the hook registered first runs last, after napari-segkit's)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", WARM_UP_THEN_FAIL], env=env,
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert "a script that fails at once" in out.stderr
    assert "WARM-UP ALIVE AT EXIT False" in out.stdout, (out.stdout, out.stderr[-2000:])
    assert out.returncode == 1, out.stderr[-2000:]
