"""Data generation throughput: every task at T=1000, and the adding problem at 100,000 x 1,000.

Prints, for each registered task, seconds per call and time steps generated per second
(best of --repeats), then the headline: `adding` at n=100,000, T=1,000 (800 MB of x)
against the plain vectorised numpy reference below, measured in the same run, with
the ratio and whether it meets the 1 s target.

    .venv/bin/python benchmarks/generation.py [--repeats 5]

Large fresh allocations page-fault on first touch, and that cost varies a lot from
run to run on a shared VM: the headline prints the cold first call apart, then the
best and median of the warm calls, alternating the two implementations.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tasks import REGISTRY  # noqa: E402
from tasks.base import worker_count  # noqa: E402

LENGTH = 1000
EXAMPLES = {"listops": 200}  # tasks with a per-row loop get fewer examples
DEFAULT_EXAMPLES = 10_000
HEADLINE_N, TARGET_S = 100_000, 1.0


def plain_adding(n: int, length: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The reference: the adding problem in plain vectorised numpy, one thread."""
    rng = np.random.default_rng(seed)
    half = length // 2
    x = np.zeros((n, length, 2), dtype=np.float32)
    values = rng.random((n, length), dtype=np.float32)
    x[:, :, 0] = values
    rows = np.arange(n)
    first = rng.integers(0, half, size=n)
    second = rng.integers(half, length, size=n)
    x[rows, first, 1] = 1.0
    x[rows, second, 1] = 1.0
    y = (values[rows, first] + values[rows, second]).astype(np.float32)
    return x, y


def seconds(make) -> float:
    start = time.perf_counter()
    data = make()
    elapsed = time.perf_counter() - start
    del data
    return elapsed


def per_task(repeats: int) -> None:
    print(f"generation at T={LENGTH} (best of {repeats}; {worker_count()} cores)")
    print(f"{'task':<14}{'n':>8}{'steps':>8}{'seconds':>10}{'steps/s':>14}")
    for name, task in REGISTRY.items():
        n = EXAMPLES.get(name, DEFAULT_EXAMPLES)
        steps = task.sequence_steps(LENGTH)
        best = min(seconds(lambda: task.generate(n, LENGTH, 0, "train")) for _ in range(repeats))  # noqa: B023
        print(f"{name:<14}{n:>8}{steps:>8}{best:>10.3f}{n * steps / best:>14.3e}")


def headline(repeats: int) -> None:
    adding = REGISTRY["adding"]
    n, steps = HEADLINE_N, LENGTH
    print(f"\nadding at n={n:,} x T={steps:,} ({n * steps * 8 / 1e6:.0f} MB of x)")
    cold = seconds(lambda: adding.generate(n, steps, 0, "train"))
    times: dict[str, list[float]] = {"plain numpy (reference)": [], "tasks.adding": []}
    for _ in range(repeats):
        times["plain numpy (reference)"].append(seconds(lambda: plain_adding(n, steps, 0)))
        times["tasks.adding"].append(seconds(lambda: adding.generate(n, steps, 0, "train")))
    print(f"{'':<26}{'best s':>9}{'median s':>10}{'steps/s':>12}   all runs")
    for label, runs in times.items():
        best, median = min(runs), statistics.median(runs)
        shown = " ".join(f"{t:.2f}" for t in runs)
        print(f"{label:<26}{best:>9.3f}{median:>10.3f}{n * steps / median:>12.3e}   {shown}")
    plain, ours = (statistics.median(runs) for runs in times.values())
    verdict = "meets" if ours <= TARGET_S else "misses"
    print(f"tasks.adding cold first call: {cold:.3f} s")
    print(f"speed-up (median/median): {plain / ours:.1f}x; {verdict} the {TARGET_S:g} s target")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    per_task(args.repeats)
    headline(args.repeats)


if __name__ == "__main__":
    main()
