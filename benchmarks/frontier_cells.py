"""Cells a frontier search runs against a fixed grid of lengths of the same resolution.

For a given solves(L) (a threshold: solved up to T), the frontier (harness/frontier.py:
doubling, bisection, a confirming cell with another seed, a check above) is run
against the function; the fixed grid probes every length min x (1 + resolution)^i up
to max, which a fixed sweep needs to locate T as finely. Prints both counts, their
ratio, and the bracket the frontier found, for several thresholds and resolutions.
Cells are the unit of cost: each is a whole Keras Tuner search.

    .venv/bin/python benchmarks/frontier_cells.py [--min 25] [--max 3200] [--task adding]
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.frontier import search  # noqa: E402
from tasks import get_task  # noqa: E402


def frontier_cells(solves, minimum: int, maximum: int, resolution: float, accepted):
    steps = search(minimum, maximum, resolution, accepted)
    count, ask = 0, next(steps)
    try:
        while True:
            count += 1
            ask = steps.send(solves(ask.length))
    except StopIteration as stop:
        return count, stop.value


def grid_cells(minimum: int, maximum: int, resolution: float, accepted) -> int:
    """The distinct accepted lengths of the geometric grid min x (1 + resolution)^i <= max."""
    lengths, steps = set(), math.ceil(math.log(maximum / minimum) / math.log(1 + resolution))
    for i in range(steps + 1):
        length = accepted(min(maximum, minimum * (1 + resolution) ** i), True)
        if length is not None:
            lengths.add(length)
    return len(lengths)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--min", type=int, default=25)
    parser.add_argument("--max", type=int, default=3200)
    parser.add_argument("--task", default="adding")
    args = parser.parse_args()
    accepted = get_task(args.task).accepted_length
    print(f"task {args.task}, lengths {args.min}..{args.max}")
    print(f"{'threshold':>9} {'resolution':>10} {'frontier':>9} {'grid':>5} {'ratio':>6}  bracket")
    for resolution in (0.5, 0.25, 0.1):
        grid = grid_cells(args.min, args.max, resolution, accepted)
        for threshold in (40, 300, 1000, 3000, 5000):
            count, bracket = frontier_cells(
                lambda length, t=threshold: length <= t, args.min, args.max, resolution, accepted
            )
            print(
                f"{threshold:9d} {resolution:10.2f} {count:9d} {grid:5d} "
                f"{count / grid:6.2f}  {bracket.text()}"
            )


if __name__ == "__main__":
    main()
