"""An upper bound on a suite's training time, one trial at a time, from a per-step cost.

The work is harness/plan.py's, in batch-steps (one training batch through one sequence
step): every epoch of every trial and retrain of every cell and of every frontier probe,
each frontier at its costliest outcome (its confirming cell and the check above
included), validation batches at a third of a training batch, and each model's tests at
the cell's longer lengths (forward only, a third). The price of a batch-step is, per
family, the cost probe's step seconds at its longest length measured without running out
of memory, divided by that length and scaled from the probe's batch to the suite's
(`--costs`, a store holding a `harness probe cost` run); a family the probe did not time
costs `--step-seconds` (the default, 32 us, is the H200's for a GRU: 0.509 s for an epoch
of 16 batches at T=1000, ../shared/gpu-h200-2026-11-26); a bidirectional family costs
twice its forward one.

    .venv/bin/python scripts/suite_cost.py state [--costs sqlite:///mlflow.db]
        [--experiment state] [--step-seconds 32e-6] [--workers 2]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import plan  # noqa: E402
from harness.probes import latest_probes  # noqa: E402
from harness.probes.cost import BATCH  # noqa: E402
from harness.suites import load_suite, suite_experiment  # noqa: E402
from harness.tracking import Tracker  # noqa: E402
from tasks import get_task  # noqa: E402


def probed_step_seconds(uri: str, experiment: str) -> dict[str, float]:
    """Seconds per batch-step of one sequence at the probe's batch, per family it timed."""
    tracker = Tracker(uri)
    experiment_id = tracker.experiment_id(experiment, create=False)
    if experiment_id is None:
        raise SystemExit(f"no experiment '{experiment}' in {uri}")
    probes = latest_probes(tracker, tracker.runs(experiment_id), ("step_seconds/",))
    if "cost" not in probes:
        raise SystemExit(f"no finished cost probe in experiment '{experiment}' of {uri}")
    seconds = {}
    for key, history in probes["cost"].series.items():
        timed = [(length, value) for length, value in history if math.isfinite(value)]
        if timed:
            length, value = max(timed)
            seconds[key.removeprefix("step_seconds/")] = value / length / BATCH
    return seconds


def price(family: str, batch_size: int, per_sequence: dict[str, float], default: float):
    """Seconds per batch-step of `family` at `batch_size`."""
    forward = family.removeprefix("bi")
    factor = 2 if family != forward and forward in per_sequence else 1
    found = per_sequence.get(family) or per_sequence.get(forward)
    return default if found is None else found * batch_size * factor


def cell_extra_work(cell) -> float:
    """Validation (a third of a training batch-step) and the tests at longer lengths."""
    task, budget = get_task(cell.task), cell.budget
    seeds = 1 + len(cell.extra_seeds)
    epochs = plan.cell_epochs(budget, len(cell.extra_seeds))
    validation = math.ceil(budget.n_val / budget.batch_size) * task.sequence_steps(cell.length)
    tests = math.ceil(budget.n_test / budget.batch_size) * sum(
        task.sequence_steps(length) for length in cell.eval_lengths
    )
    return (epochs * validation + seeds * tests) / 3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--step-seconds", type=float, default=32e-6)
    parser.add_argument("--costs", help="a store with a cost probe run (a tracking URI)")
    parser.add_argument("--experiment", help="its experiment (default: the suite's)")
    parser.add_argument("--workers", type=int, default=1, help="trials side by side")
    args = parser.parse_args()
    suite = load_suite(args.suite)
    per_sequence = {}
    if args.costs:
        experiment = args.experiment or suite_experiment(args.suite)
        per_sequence = probed_step_seconds(args.costs, experiment)
    rows = []
    for cell in suite.cells:
        work = plan.cell_work(cell) + cell_extra_work(cell)
        rows.append((cell.task, cell.family, f"L={cell.length}", work, cell.budget.batch_size))
    for spec in suite.frontiers:
        cells = plan.costliest_cells(spec)
        work = sum(plan.cell_work(c) + cell_extra_work(c) for c in cells)
        span = f"{spec.min_length}-{spec.max_length}: {len(cells)} cells"
        rows.append((spec.task, spec.family, span, work, spec.budget.batch_size))
    total = 0.0
    print(f"{'task':<13} {'family':<14} {'lengths':<22} {'batch-steps':>12} {'minutes':>8}")
    for task, family, span, work, batch in rows:
        seconds = work * price(family, batch, per_sequence, args.step_seconds)
        total += seconds
        print(f"{task:<13} {family:<14} {span:<22} {work:12.3g} {seconds / 60:8.1f}")
    source = "the cost probe's step times" if per_sequence else f"{args.step_seconds:g} s a step"
    hours = total / 3600
    print(f"at most {hours:.1f} hours one trial at a time ({source})", end="")
    print(
        f", {hours / args.workers:.1f} hours with {args.workers} workers"
        if args.workers > 1
        else ""
    )


if __name__ == "__main__":
    main()
