"""The work a suite plans, counted in batch-steps: one training batch through one sequence
step. An epoch of a cell is its training batches times the task's sequence steps at its
length; a cell runs every epoch of every trial and retrain at most (early stops only cut
it), and a frontier probes at most the cells of its costliest outcome. What one
batch-step costs differs by family and machine: `scripts/suite_cost.py` prices the plan
from the cost probe's step times, the progress display from the epochs a run has timed.
"""

from __future__ import annotations

import math

from harness import frontier
from harness.budget import Budget
from harness.suites import Cell, FrontierSpec


def epoch_work(task, length: int, budget: Budget) -> int:
    """Batch-steps of one training epoch."""
    return math.ceil(budget.n_train / budget.batch_size) * task.sequence_steps(length)


def cell_epochs(budget: Budget, retrains: int) -> int:
    """The most epochs a cell trains: every trial's executions and every retrain, in full."""
    return (budget.trials * budget.executions_per_trial + retrains) * budget.epochs


def most_retrains(cell: Cell) -> int:
    """The retrains a cell may train: its extra seeds, and the two that a split vote adds
    (harness/evaluation.py's `tie_seeds`), which only several seeds can cast."""
    return len(cell.extra_seeds) + (2 if cell.extra_seeds else 0)


def cell_work(cell: Cell) -> int:
    """The most batch-steps a cell trains (its grid's points, or trials, and its seeds)."""
    from tasks import get_task

    task = get_task(cell.task)
    return epoch_work(task, cell.length, cell.budget) * cell_epochs(
        cell.budget, most_retrains(cell)
    )


def frontier_outcomes(spec: FrontierSpec) -> list[list[Cell]]:
    """The distinct cells a frontier probes, for every family whose solved lengths are
    monotone (it solves up to some length and fails above): the search's decision tree
    walked, each answer the monotone past does not force tried both ways. A family that
    solves above a failure probes on (a non-monotone frontier)."""
    from tasks import get_task

    task = get_task(spec.task)
    outcomes, pending = [], [()]
    while pending:
        answers = pending.pop()
        asks = frontier.search(
            spec.min_length, spec.max_length, spec.resolution, task.accepted_length, spec.confirms
        )
        cells, solved, failed = {}, 0, math.inf
        step, ask = 0, next(asks)
        try:
            while True:
                cells[(ask.length, ask.attempt)] = spec.cell(ask)
                if step < len(answers):
                    answer = answers[step]
                elif ask.length <= solved or ask.length >= failed:  # the past forces it
                    answer = ask.length <= solved
                    answers = (*answers, answer)
                else:
                    pending += [(*answers, True), (*answers, False)]
                    break
                solved = max(solved, ask.length) if answer else solved
                failed = failed if answer else min(failed, ask.length)
                step, ask = step + 1, asks.send(answer)
        except StopIteration:
            outcomes.append(list(cells.values()))
    return outcomes


def costliest_cells(spec: FrontierSpec) -> list[Cell]:
    """The cells of the frontier outcome that trains the most (`frontier_outcomes`)."""
    return max(frontier_outcomes(spec), key=lambda cells: sum(cell_work(c) for c in cells))


def frontier_work(spec: FrontierSpec) -> int:
    """The most batch-steps a frontier trains."""
    return sum(cell_work(cell) for cell in costliest_cells(spec))


def units_work(cells, frontiers) -> dict[str, int]:
    """The most batch-steps of each unit of a run, by its key (a cell's or a frontier's)."""
    work = {cell.key: cell_work(cell) for cell in cells}
    work.update({spec.key: frontier_work(spec) for spec in frontiers})
    return work


class Remaining:
    """A run's work left, at most, and the time it takes at the rate its epochs ran so far.

    A unit's work left is its planned work (`units_work`) less the work of the epochs it
    has trained; a unit done has none. Both the plan and the early stops make it an upper
    bound on the work; the time is that work at the mean seconds per batch-step of every
    epoch timed so far (all families together), shared by the units that run side by side.
    """

    def __init__(self, work: dict[str, int], side_by_side: int = 1):
        self.left = dict(work)
        self.side_by_side = max(1, side_by_side)
        self.seconds = 0.0
        self.work = 0

    def epoch(self, unit: str, work: int, seconds: float) -> None:
        if work > 0 and unit in self.left:
            self.left[unit] = max(0, self.left[unit] - work)
            self.seconds += seconds
            self.work += work

    def done(self, unit: str) -> None:
        self.left.pop(unit, None)

    def seconds_left(self) -> float | None:
        """None until an epoch has been timed."""
        if not self.work:
            return None
        rate = self.seconds / self.work
        return sum(self.left.values()) * rate / self.side_by_side


def duration(seconds: float) -> str:
    """A duration as people read it: 45 s, 12 min, 3 h 05 min."""
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"
