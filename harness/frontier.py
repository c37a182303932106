"""The frontier: the longest length a family solves on a task at a parameter budget.

The search (`search`, a generator: it yields the length to probe and is sent whether
that cell was solved) starts at the minimum length and doubles while the cell is
solved; at the first failure it bisects (geometric middles) between the longest
solved and the shortest failed length until their ratio is at most 1 + resolution,
using only lengths the task accepts. Then it confirms the shortest failure with
another search seed (a failure by bad luck would end a frontier too early): if the
confirming cell solves, the search goes on above it. Under a grid search no other
search seed is tried: the cell's own seeds (a majority, with two more on a split vote)
are the confirmation. Last, it checks that the failure
persists at twice that length (or the maximum), unless that length already failed: a
cell that solves there flags the frontier non-monotone and the search goes on from it.
The result is a bracket: longest solved and shortest failed length, "at least" the
maximum when it was solved, "below" the minimum when that failed.

Cells probed: the doubling steps, the bisections, the confirming cell and the check above.
Exact geometric middles would need at most ceil(log2(log(failed/solved) / log(1 +
resolution))) bisections between the last solved and first failed doubling; a middle
rounded up to an accepted length leaves the lower part wider than the exact half, which
costs at most one bisection more (tests/test_frontier.py checks every threshold from the
minimum to 400 for minima 2 to 100 and resolutions 0.01 to 1).
Every probe is an ordinary cell (the same key, data cache, resume and MLflow runs),
so a frontier interrupted resumes where it stopped, and a cell another frontier ran
is reused. A frontier is recorded as its own kind of run, naming its cells. The runner
(harness/runner.py's `run_frontier`) drives the search; its report section is
harness/frontier_report.py.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Generator
from dataclasses import asdict, dataclass, field

from harness.budget import Budget
from harness.results import (
    BUDGET_KEY,
    CELLS,
    FAMILY,
    FRONTIER,
    FRONTIER_CELLS,
    KIND,
    LONGEST_SOLVED,
    MAX_LENGTH,
    MIN_LENGTH,
    NON_MONOTONE,
    SEED,
    SEEDS,
    SHORTEST_FAILED,
    TASK,
    CellResult,
    StoredRun,
    normalise,
)

Accepted = Callable[[float, bool], "int | None"]
"""The task's accepted length nearest a length, from above (True) or below; None outside."""


@dataclass(frozen=True)
class Ask:
    """What a frontier search wants probed: a length, with which attempt's seeds, and why."""

    length: int
    attempt: int  # 0: the frontier's own seeds; 1: another search seed, to confirm a failure
    role: str  # "double", "bisect", "confirm", "check"


@dataclass(frozen=True)
class Step:
    """One probed cell and whether it was solved (its run, once recorded)."""

    length: int
    attempt: int
    role: str
    solved: bool
    run_id: str = ""
    score: float = math.nan

    @classmethod
    def of(cls, ask: Ask, result: CellResult | None) -> Step:
        """The step a probed cell's result makes; a cell without a readable result failed."""
        if result is None:
            return cls(ask.length, ask.attempt, ask.role, False)
        verdict = result.verdict
        return cls(
            ask.length, ask.attempt, ask.role, bool(verdict.solved), result.run_id, verdict.mean
        )


@dataclass
class Bracket:
    """The frontier: the longest solved and the shortest failed length, and every step."""

    minimum: int
    maximum: int
    solved: int | None
    failed: int | None
    steps: list[Step] = field(default_factory=list)
    non_monotone: bool = False

    def text(self) -> str:
        """How a table prints it: [solved, failed), ≥ maximum, or < minimum."""
        mark = " (non-monotone)" if self.non_monotone else ""
        if self.failed is None:
            return f"≥ {self.solved}{mark}"
        if self.solved is None:
            return f"< {self.failed}{mark}"
        return f"[{self.solved}, {self.failed}){mark}"


def search(
    minimum: int, maximum: int, resolution: float, accepted: Accepted, confirm: bool = True
) -> Generator[Ask, bool, Bracket]:
    """The frontier's probes, one at a time; returns the bracket (see the module's text).
    Without `confirm` a failure is not probed again with another search seed (a grid
    search's seeds confirm it within the cell)."""
    steps: list[Step] = []
    longest: int | None = None
    failures: set[int] = set()
    non_monotone = False

    def probe(length: int, role: str, attempt: int = 0):
        solved = bool((yield Ask(length, attempt, role)))
        steps.append(Step(length, attempt, role, solved))
        return solved

    def doubled(length: int) -> int | None:
        above = accepted(min(2 * length, maximum), False)
        return above if above is not None and above > length else None

    def middle(low: int | None, high: int) -> int | None:
        if low is None or high / low <= 1 + resolution:
            return None
        centre = math.sqrt(low * high)
        for nearest in (accepted(centre, True), accepted(centre, False)):
            if nearest is not None and low < nearest < high:
                return nearest
        return None  # no accepted length in between: the resolution is met as closely as it can be

    length = accepted(minimum, True)
    while length is not None:
        if (yield from probe(length, "double")):
            longest, length = length, doubled(length)
            continue
        failures.add(length)
        length = None
        while length is None:
            shortest = min(f for f in failures if longest is None or f > longest)
            between = middle(longest, shortest)
            if between is not None:
                if (yield from probe(between, "bisect")):
                    longest = between
                else:
                    failures.add(between)
                continue
            if confirm and (yield from probe(shortest, "confirm", attempt=1)):  # bad luck
                failures.discard(shortest)
                longest = shortest
                if any(f > longest for f in failures):
                    continue
                length = doubled(longest)
                if length is None:
                    break
                continue
            above = doubled(shortest)
            if above is None or above in failures or not (yield from probe(above, "check")):
                return Bracket(minimum, maximum, longest, shortest, steps, non_monotone)
            non_monotone, longest, length = True, above, doubled(above)
            if length is None:
                break
    return Bracket(minimum, maximum, longest, None, steps, non_monotone)


# -- a frontier's run (its names: harness/results.py) -----------------------------------------


def record_step(tracker, run_id: str, steps: list[Step]) -> None:
    """The frontier's steps so far, as a tag (JSON) naming each probed cell's run."""
    tracker.log(run_id, tags={FRONTIER_CELLS: json.dumps([asdict(s) for s in steps])})


def bracket_metrics(bracket: Bracket) -> dict[str, float]:
    metrics = {CELLS: len(bracket.steps), NON_MONOTONE: int(bracket.non_monotone)}
    if bracket.solved is not None:
        metrics[LONGEST_SOLVED] = bracket.solved
    if bracket.failed is not None:
        metrics[SHORTEST_FAILED] = bracket.failed
    return metrics


@dataclass
class FrontierResult:
    """A frontier run read back: its spec's params, its bracket, its budget."""

    run_id: str
    task: str
    family: str
    budget_key: str
    budget: Budget
    seed: int
    seeds: int
    bracket: Bracket
    finished: bool

    @classmethod
    def from_run(cls, run: StoredRun) -> FrontierResult | None:
        tags, params = normalise(FRONTIER, run.status, run.tags, run.params)
        metrics = run.metrics
        try:
            steps = [Step(**s) for s in json.loads(tags.get(FRONTIER_CELLS, "[]"))]
            solved = metrics.get(LONGEST_SOLVED)
            failed = metrics.get(SHORTEST_FAILED)
            bracket = Bracket(
                int(params[MIN_LENGTH]),
                int(params[MAX_LENGTH]),
                None if solved is None else int(solved),
                None if failed is None else int(failed),
                steps,
                bool(metrics.get(NON_MONOTONE, 0)),
            )
            budget = Budget.from_params(params)
            return cls(
                run.run_id,
                params[TASK],
                params[FAMILY],
                tags.get(BUDGET_KEY, ""),
                budget,
                int(params[SEED]),
                int(params[SEEDS]),
                bracket,
                run.status == "FINISHED",
            )
        except (KeyError, ValueError, TypeError):
            return None


def latest_frontiers(runs: list[StoredRun], unfinished: bool = False) -> list[FrontierResult]:
    """The latest finished frontier of each (budget, task, family), from runs oldest first;
    with `unfinished`, the latest frontier run of each, finished or not."""
    latest: dict[tuple, FrontierResult] = {}
    for run in runs:
        if run.tags.get(KIND) == FRONTIER and (unfinished or run.status == "FINISHED"):
            result = FrontierResult.from_run(run)
            if result is not None:
                latest[(result.budget_key, result.task, result.family)] = result
    return list(latest.values())


def confirming_runs(frontiers: list[FrontierResult]) -> set[str]:
    """The cell runs that confirm a frontier's failure with another search seed."""
    return {s.run_id for f in frontiers for s in f.bracket.steps if s.attempt and s.run_id}
