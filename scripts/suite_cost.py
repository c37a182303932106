"""An upper bound on a suite's training time, one trial at a time, from measured step costs.

The work is harness/plan.py's, in batch-steps (one training batch through one sequence
step): every epoch of every trial (a grid's every point) and retrain (the two seeds a
split vote may add included) of every cell and of every frontier probe,
each frontier at its costliest outcome (its confirming cell and the check above
included), validation batches at a third of a training batch, and each model's tests at
the cell's longer lengths (forward only, a third). A batch-step's price comes from a
store (`--costs`, a tracking URI), per family and length:

- the store's cost probe gives its shape in length: the step seconds per sequence step
  at each length it timed, interpolated between them (flat outside);
- the store's cells give its level: their seconds per epoch over their epochs'
  batch-steps, as a multiple of the probe's price at their length (the median of them),
  since the probe times a batch of 16 and a suite trains larger ones;
- a model's parameter budget: a family's cells of that budget give its level if there
  are any; else its other cells do, scaled linearly (70,000 parameters cost 7 times
  10,000; no budget counts as 10,000), as a recurrence's step is about linear in its
  weights.

A family with cells but no probe costs its cells' median; one with a probe but no cells
takes the median multiple of every probed family's cells; one with neither `--step-seconds` (the default, 32 us, is the H200's for a GRU: 0.509 s for an
epoch of 16 batches at T=1000, ../shared/gpu-h200-2026-11-26). A bidirectional family
costs twice its forward one.

    .venv/bin/python scripts/suite_cost.py study [--costs sqlite:///mlflow.db]
        [--experiment state] [--step-seconds 32e-6] [--workers 2]
"""

from __future__ import annotations

import argparse
import bisect
import math
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import plan  # noqa: E402
from harness.budget import Budget  # noqa: E402
from harness.probes import latest_probes  # noqa: E402
from harness.probes.cost import BATCH  # noqa: E402
from harness.results import CELL, KIND, SECONDS_PER_EPOCH  # noqa: E402
from harness.suites import load_suite, suite_experiment  # noqa: E402
from harness.tracking import Tracker  # noqa: E402
from tasks import get_task  # noqa: E402

PARAMS = 10_000
"""The parameter budget a price is quoted for; a cell without one counts as this (`at_size`)."""


def at_size(cells: list[tuple[int, int, float]], params: int | None) -> list[tuple[int, float]]:
    """(length, seconds per sequence-step) of `cells` at `params`: those of that parameter
    budget if any, else all of them scaled linearly."""
    params = params or PARAMS
    same = [(n, s) for n, p, s in cells if p == params]
    return same or [(n, s * params / p) for n, p, s in cells]


class Prices:
    """Seconds per batch-step by family, length and batch size, from one store's runs."""

    def __init__(self, uri: str | None, experiment: str | None, default: float):
        self.default = default
        self.shapes: dict[str, list[tuple[int, float]]] = {}
        self.cells: dict[str, list[tuple[int, int, float]]] = {}  # (length, params, s per seq-step)
        if uri:
            self.read(Tracker(uri), experiment)

    def read(self, tracker: Tracker, experiment: str) -> None:
        experiment_id = tracker.experiment_id(experiment, create=False)
        if experiment_id is None:
            raise SystemExit(f"no experiment '{experiment}' in {tracker.uri}")
        runs = tracker.runs(experiment_id)
        probes = latest_probes(tracker, runs, ("step_seconds/",))
        for key, history in probes["cost"].series.items() if "cost" in probes else ():
            timed = sorted((n, s / n / BATCH) for n, s in history if math.isfinite(s))
            if timed:
                self.shapes[key.removeprefix("step_seconds/")] = timed
        for run in runs:
            params, seconds = run.params, run.metrics.get(SECONDS_PER_EPOCH)
            if run.tags.get(KIND) != CELL or run.status != "FINISHED" or not seconds:
                continue
            length, batch = int(params["length"]), int(params["budget.batch_size"])
            budget = Budget(n_train=int(params["budget.n_train"]), batch_size=batch)
            work = plan.epoch_work(get_task(params["task"]), length, budget)
            weights = params.get("budget.params", "")
            weights = int(weights) if weights.isdigit() else PARAMS
            self.cells.setdefault(params["family"], []).append(
                (length, weights, seconds / work / batch)
            )
        if not self.shapes and not self.cells:
            raise SystemExit(f"no cost probe and no finished cell in '{experiment}'")

    def shape(self, family: str, length: int) -> float:
        """The probe's seconds per sequence-step at `length`, interpolated."""
        timed = self.shapes[family]
        at = bisect.bisect_left(timed, (length, -math.inf))
        if at == 0 or at == len(timed):
            return timed[min(at, len(timed) - 1)][1]
        (n0, s0), (n1, s1) = timed[at - 1], timed[at]
        return s0 + (s1 - s0) * (length - n0) / (n1 - n0)

    def per_sequence(self, family: str, length: int, params: int | None) -> float | None:
        """Seconds per sequence-step of `family` at `length` and `params`, or None if nothing
        timed it."""
        cells, probed = self.cells.get(family), family in self.shapes
        if cells and not probed:
            return statistics.median(s for _, s in at_size(cells, params))
        return self.level(family, params) * self.shape(family, length) if probed else None

    def level(self, family: str, params: int | None) -> float:
        """The family's cells' seconds at `params` as a multiple of the probe's; for a family
        without cells, that of every probed family's cells; 1 if none."""
        mine = [family] if self.cells.get(family) else [f for f in self.cells if f in self.shapes]
        ratios = [s / self.shape(f, n) for f in mine for n, s in at_size(self.cells[f], params)]
        return statistics.median(ratios) if ratios else 1.0

    def price(self, family: str, length: int, batch_size: int, params: int | None = None) -> float:
        """Seconds per batch-step of `family` at `length`, `batch_size` and `params`."""
        seconds = self.per_sequence(family, length, params)
        forward = family.removeprefix("bi")
        if seconds is None and forward != family:
            seconds = self.per_sequence(forward, length, params)
            seconds = None if seconds is None else 2 * seconds
        return (
            self.default * (params or PARAMS) / PARAMS if seconds is None else seconds * batch_size
        )

    def source(self) -> str:
        if not self.shapes and not self.cells:
            return f"{self.default:g} s a step"
        return "the store's cost probe and cells" if self.cells else "the cost probe's step times"


def cell_work(cell) -> float:
    """A cell's training, validation (a third of a training batch-step) and tests at its
    longer lengths."""
    task, budget = get_task(cell.task), cell.budget
    seeds = 1 + plan.most_retrains(cell)
    epochs = plan.cell_epochs(budget, plan.most_retrains(cell))
    validation = math.ceil(budget.n_val / budget.batch_size) * task.sequence_steps(cell.length)
    tests = math.ceil(budget.n_test / budget.batch_size) * sum(
        task.sequence_steps(length) for length in cell.eval_lengths
    )
    return plan.cell_work(cell) + (epochs * validation + seeds * tests) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--step-seconds", type=float, default=32e-6)
    parser.add_argument("--costs", help="a store with a cost probe run or cells (a tracking URI)")
    parser.add_argument("--experiment", help="its experiment (default: the suite's)")
    parser.add_argument("--workers", type=int, default=1, help="trials side by side")
    args = parser.parse_args()
    suite = load_suite(args.suite)
    experiment = args.experiment or suite_experiment(args.suite)
    prices = Prices(args.costs, experiment, args.step_seconds)
    rows = [(cell, f"L={cell.length}", [cell]) for cell in suite.cells]
    for spec in suite.frontiers:
        cells = plan.costliest_cells(spec)
        rows.append((spec, f"{spec.min_length}-{spec.max_length}: {len(cells)} cells", cells))
    part_of = {key: part for part, keys in suite.parts.items() for key in keys}
    parts: dict[str, float] = {}
    print(f"{'task':<13} {'family':<14} {'lengths':<22} {'batch-steps':>12} {'minutes':>8}")
    for unit, span, cells in rows:
        work = sum(cell_work(c) for c in cells)
        seconds = sum(
            cell_work(c) * prices.price(c.family, c.length, c.budget.batch_size, c.budget.params)
            for c in cells
        )
        part = part_of.get(unit.key, "")
        parts[part] = parts.get(part, 0.0) + seconds
        print(f"{unit.task:<13} {unit.family:<14} {span:<22} {work:12.3g} {seconds / 60:8.1f}")
    workers = max(1, args.workers)
    if len(parts) > 1:
        for part, seconds in sorted(parts.items()):
            print(f"part {part}: at most {plan.duration(seconds / workers)}", end="")
            print(f" with {workers} workers" if workers > 1 else " one trial at a time")
    hours = sum(parts.values()) / 3600
    print(f"at most {hours:.1f} hours one trial at a time ({prices.source()})", end="")
    print(f", {hours / workers:.1f} hours with {workers} workers" if workers > 1 else "")


if __name__ == "__main__":
    main()
