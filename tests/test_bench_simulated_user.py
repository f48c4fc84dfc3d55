"""The simulated user of bench_finetune's correction rows: which errors it clicks, and how
it counts the ones it had already clicked (the README's correction-loop figures use both)."""

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"


@pytest.fixture
def bench(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH))
    import bench_finetune

    return bench_finetune


def _scene():
    """Three nuclei (areas 400 > 225 > 100); the model finds only a false object."""
    gt = np.zeros((64, 64), np.int32)
    gt[2:22, 2:22], gt[30:45, 30:45], gt[50:60, 5:15] = 1, 2, 3
    pred = np.zeros_like(gt)
    pred[50:62, 40:62] = 1  # 264 px on no nucleus: a false object
    return gt, pred


def test_the_user_counts_and_can_skip_errors_it_clicked_before(bench, monkeypatch):
    from napari_segkit import prediction
    from napari_segkit.corrections import Corrections

    gt, pred = _scene()
    monkeypatch.setattr(prediction, "predict", lambda model, image: SimpleNamespace(instances=pred))
    image = np.zeros(gt.shape, np.float32)
    before = Corrections([(10.0, 10.0), (55.0, 50.0), (37.0, 37.0)],
                         ["nucleus", "background", "background"])
    # the largest 3 errors: nucleus 1 (400 px, clicked), the false object (264, clicked),
    # nucleus 2 (225; its click is a background one: not a nucleus click, so not clicked)
    again = bench.simulated_corrections(None, [image], [gt], 3, clicked=[before])[0]
    assert again.repeats == 2
    assert [cls for _, cls in again.clicks] == ["nucleus", "background", "nucleus"]
    skipped = bench.simulated_corrections(None, [image], [gt], 3, clicked=[before],
                                          skip_clicked=True)[0]
    assert skipped.repeats == 2  # counted among the largest before they are passed over
    on = [(int(gt[int(round(r)), int(round(c))]), cls) for (r, c), cls in skipped.clicks]
    assert on == [(2, "nucleus"), (3, "nucleus")]  # the next largest errors instead
    fresh = bench.simulated_corrections(None, [image], [gt], 3)[0]
    assert fresh.repeats == 0 and len(fresh.clicks) == 3


def test_the_user_can_click_every_nucleus_of_a_merged_object(bench, monkeypatch):
    from napari_segkit import prediction

    gt = np.zeros((64, 64), np.int32)
    gt[2:22, 2:22], gt[2:22, 22:40], gt[40:60, 40:59] = 1, 2, 3  # 400, 360, 380 px
    pred = np.zeros_like(gt)
    pred[1:23, 1:43] = 1  # nuclei 1 and 2 merged into one object (IoU 0.43 and 0.39)
    monkeypatch.setattr(prediction, "predict", lambda model, image: SimpleNamespace(instances=pred))
    image = np.zeros(gt.shape, np.float32)

    def clicked(**kw):
        user = bench.simulated_corrections(None, [image], [gt], 2, **kw)[0]
        return [int(gt[int(round(r)), int(round(c))]) for (r, c), _ in user.clicks]

    assert clicked() == [1, 3]  # the two largest errors
    assert clicked(whole_merges=True) == [1, 2]  # the largest, and its merged neighbour
    # the brush instead: each nucleus of the merged object painted as its own label
    user = bench.simulated_corrections(None, [image], [gt], 2, paint_merges=True)[0]
    assert user.painted == [1, 2] and user.clicks == []


def test_the_correction_table_counts_the_seeds_that_rise_every_round(bench, capsys):
    """The issue's target is a rise after every round; the table says in how many seeds,
    and how many steps the rounds made (a time budget makes a different number each run)."""
    start = {"f1": 0.5, "ap": 0.2, "count_err": 10.0}
    run = {"ap": 0.3, "count_err": 5.0, "repeats": [0, 3, 4], "clicks": 30}
    runs = [{**run, "f1": 0.7, "rounds_f1": [0.5, 0.6, 0.65, 0.7], "round_steps": [380, 402, 391]},
            {**run, "f1": 0.6, "rounds_f1": [0.5, 0.6, 0.58, 0.6], "round_steps": [377, 399, 410]}]
    bench.print_table({"start": {"rgb": start, "fluo": start}, "rows": {"correction": runs}})
    out = capsys.readouterr().out
    assert "rising after every round in 1 of 2 seeds" in out
    assert "steps per round: 377-410" in out
