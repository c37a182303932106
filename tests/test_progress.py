"""Watching a run: the work a suite plans (harness/plan.py), the time left the display
estimates from it, and the lines it prints (a real run's: tests/test_report.py's store)."""

from __future__ import annotations

import io
import math

import pytest
from rich.console import Console

from harness import frontier, plan
from harness.budget import Budget
from harness.frontier import Ask
from harness.progress import ConsoleProgress
from harness.suites import Cell, FrontierSpec
from tasks import get_task

BUDGET = Budget(max_trials=3, epochs=4, batch_size=32, n_train=100)


def test_a_cell_plans_every_epoch_of_every_trial_and_retrain():
    cell = Cell("copy", 30, "gru", BUDGET, 0, (1, 2))
    batches, steps = 4, get_task("copy").sequence_steps(30)  # ceil(100 / 32); copy's inputs
    assert steps > 30
    # 3 trials, 2 extra seeds and the 2 a split vote may add, 4 epochs each
    assert plan.cell_work(cell) == batches * steps * (3 + 2 + 2) * 4
    assert plan.cell_work(Cell("copy", 30, "gru", BUDGET)) == batches * steps * 3 * 4


@pytest.mark.parametrize("threshold", [5, 10, 11, 23, 40, 77, 150, 203, 319, 400])
def test_a_frontier_plans_at_least_the_cells_it_probes(threshold):
    """Replayed against a family that solves up to `threshold`, the search probes one of
    the outcomes the plan walks, whose work never exceeds the frontier's planned work."""
    spec = FrontierSpec("adding", "gru", BUDGET, seeds=2, min_length=10, max_length=320)
    task = get_task("adding")
    probes = frontier.search(10, 320, spec.resolution, task.accepted_length)
    asked: dict[tuple, Ask] = {}
    ask = next(probes)
    with pytest.raises(StopIteration):
        while True:
            asked[(ask.length, ask.attempt)] = ask
            ask = probes.send(ask.length <= threshold)
    outcomes = [{(c.length, c.seed) for c in cells} for cells in plan.frontier_outcomes(spec)]
    assert {(spec.cell(a).length, spec.cell(a).seed) for a in asked.values()} in outcomes
    probed = sum(plan.cell_work(spec.cell(a)) for a in asked.values())
    assert 0 < probed <= plan.frontier_work(spec)
    assert any(a.attempt == 1 for a in asked.values()) == (threshold < 320)  # the confirming cell


def test_the_time_left_is_the_work_left_at_the_rate_measured():
    remaining = plan.Remaining({"a": 1000, "b": 3000}, side_by_side=2)
    assert remaining.seconds_left() is None  # nothing timed yet
    remaining.epoch("a", 400, 2.0)  # 5 ms per batch-step
    assert remaining.seconds_left() == pytest.approx((600 + 3000) * 0.005 / 2)
    remaining.epoch("a", 900, 4.5)  # more than planned: none left, never negative
    remaining.done("b")
    assert remaining.seconds_left() == 0
    assert [plan.duration(s) for s in (42, 720, 3 * 3600 + 300)] == ["42 s", "12 min", "3 h 05 min"]


def test_plain_lines_show_each_epoch_and_the_run_state():
    out = io.StringIO()
    progress = ConsoleProgress(Console(file=out, width=200))
    cell = Cell("adding", 10, "gru", BUDGET)
    progress.start("suite s", {cell.key: 1000, "frontier": 5000})
    progress.cell_start(cell, "[1/1]", cell.key)
    progress.trial("epoch", run="trial 0", epoch=2, epochs=4, score=0.5, seconds=1.25, work=500)
    progress.trial("epoch", run="retrain seed 1", epoch=1, epochs=4, score=math.nan, seconds=1.0,
                   work=500)  # fmt: skip
    progress.cell_end(cell, "[1/1]", type("Outcome", (), {"state": "done", "result": None,
                                                          "trials": 3})())  # fmt: skip
    progress.unit_done(cell.key)
    lines = out.getvalue().splitlines()
    assert "[1/1] adding L=10 gru: trial 0 epoch 2 of 4, validation 0.5, 1.2 s per epoch" in lines
    assert any("retrain seed 1 epoch 1 of 4, validation -" in line for line in lines)
    # 1,000 batch-steps timed in 2.25 s; the frontier's 5,000 left take about 11 s
    assert lines[-1] == "suite s: 1 done, 0 running, 1 left, at most about 11 s to go"
