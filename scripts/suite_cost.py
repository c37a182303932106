"""An upper bound on a suite's frontier work, one trial at a time, from a per-step cost.

Every cell is taken to run all its epochs (no early stop at the solved bar) for every
trial and every retrain, and each frontier the longest it can be: the frontier search
(harness/frontier.py) is replayed against every threshold length, and the one that
probes the most sequence steps is kept. The cost of one training step of one batch
per sequence step is given (the default, 32 us, is the H200's: a GRU on JAX took
0.509 s for an epoch of 16 batches at T=1000, ../shared/gpu-h200-2026-11-26); a
bidirectional family counts twice, validation batches a third (forward only).

    .venv/bin/python scripts/suite_cost.py seed [--step-seconds 32e-6]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness import frontier  # noqa: E402
from harness.suites import load_suite  # noqa: E402
from tasks import get_task  # noqa: E402


def longest_steps(spec, task) -> int:
    """The most sequence steps (summed over distinct probed lengths) any outcome needs."""
    worst = 0
    for k in range(200):
        threshold = spec.min_length * 1.05**k
        probes = frontier.search(
            spec.min_length, spec.max_length, spec.resolution, task.accepted_length
        )
        lengths, ask = set(), next(probes)
        try:
            while True:
                lengths.add(ask.length)
                ask = probes.send(ask.length <= threshold)
        except StopIteration:
            pass
        worst = max(worst, sum(task.sequence_steps(length) for length in lengths))
        if threshold > 2 * spec.max_length:
            break
    return worst


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("suite")
    parser.add_argument("--step-seconds", type=float, default=32e-6)
    args = parser.parse_args()
    total = 0.0
    print(f"{'task':<13} {'family':<12} {'steps':>7} {'epochs/cell':>11} {'minutes':>8}")
    for spec in load_suite(args.suite).frontiers:
        task, budget = get_task(spec.task), spec.budget
        batches = math.ceil(budget.n_train / budget.batch_size)
        batches += math.ceil(budget.n_val / budget.batch_size) / 3
        epochs = (budget.max_trials + spec.seeds - 1) * budget.epochs
        steps = longest_steps(spec, task)
        seconds = steps * batches * epochs * args.step_seconds
        seconds *= 2 if spec.family.startswith("bi") else 1
        total += seconds
        print(f"{spec.task:<13} {spec.family:<12} {steps:7} {epochs:11} {seconds / 60:8.1f}")
    print(f"at most {total / 3600:.1f} hours one trial at a time ({args.step_seconds:g} s a step)")


if __name__ == "__main__":
    main()
