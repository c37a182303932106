"""Reading the store for a report: which run stands for each cell, its trials, its frontiers.

The store's runs are read at once with their params, metrics and tags (a local SQLite
store with sqlite3 alone, tracking.SqliteSnapshot; another through MLflow, in pages),
never run by run and never from the tuner folders. Which run stands for a cell is
harness/results.py's rule (`standing_cells`): within a budget, the latest FINISHED run
of a (task, length, family); older finished runs of it are superseded, and the report
says so. Runs of different budgets are kept apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import pandas as pd

from harness.errors import UserError
from harness.results import (
    BASELINE,
    CELL,
    FRONTIER,
    KIND,
    OBJECTIVE,
    PARENT,
    SOLVED,
    SOLVED_BAR,
    STATUS,
    TRIAL,
    TRIAL_ID,
    CellResult,
    StoredRun,
    at_length,
    run_order,
    standing_cells,
)
from harness.tracking import SqliteSnapshot, Tracker

Store = Tracker | SqliteSnapshot  # a local SQLite store is read without MLflow


@dataclass
class Results:
    """What a report reads from one experiment."""

    experiment: str
    cells: list[CellResult]  # the run standing for each (budget, task, length, family)
    trials: pd.DataFrame  # one row per trial of those cells: times, objective, hp:<name>
    runs: list[StoredRun]  # every active run (for the probes' and frontiers' readers)
    superseded: list[tuple[CellResult, int]] = field(default_factory=list)  # (kept, older)
    unfinished: int = 0  # cell runs not FINISHED (running, interrupted)
    unreadable: int = 0  # finished cell runs without a usable task, length, family, direction


def experiment_runs(
    store: Store, experiment: str, progress: Callable[[str], None] = lambda line: None
) -> list[StoredRun]:
    """Every active run of `experiment`, oldest first; a UserError naming the others if absent."""
    active = store.active_experiments()
    if experiment not in active:
        raise UserError(
            f"experiment '{experiment}' does not exist in '{store.uri}': {experiments(active)}"
        )
    runs = store.runs(active[experiment])
    progress(f"read {len(runs):,} runs of experiment '{experiment}'")
    return sorted(runs, key=run_order)


def experiments(active: dict[str, str]) -> str:
    return (
        f"experiments are {', '.join(sorted(active))}" if active else "the store has no experiments"
    )


def read_store(
    store: Store, experiment: str, progress: Callable[[str], None] = lambda line: None
) -> Results:
    """The cells of `experiment` (one run standing for each), their trials, every run."""
    runs = experiment_runs(store, experiment, progress)
    standing, unreadable = standing_cells(runs)
    cells = sorted(
        (c for c, _ in standing), key=lambda c: (c.task, c.family, c.length, c.budget_key)
    )
    ids = {c.run_id for c in cells}
    trials = trial_frame(
        [r for r in runs if r.tags.get(KIND) == TRIAL and r.tags.get(PARENT) in ids]
    )
    parents = [r for r in runs if r.tags.get(KIND) == CELL]
    results = Results(
        experiment,
        cells,
        trials,
        runs,
        superseded=sorted(((c, n) for c, n in standing if n), key=lambda pair: pair[0].slot),
        unfinished=sum(r.status != "FINISHED" for r in parents),
        unreadable=unreadable,
    )
    has_frontiers = any(r.tags.get(KIND) == FRONTIER for r in runs)
    if not cells and not has_frontiers:
        raise UserError(
            f"experiment '{experiment}' in '{store.uri}' has no finished cells "
            f"({len(runs)} runs): {experiments(store.active_experiments())}"
        )
    return results


def trial_frame(runs: list[StoredRun]) -> pd.DataFrame:
    """One row per trial run: ids, outcome, times, objective, hp:<name> for each param."""
    rows = []
    for run in runs:
        row = {
            "run_id": run.run_id,
            "parent_id": run.tags[PARENT],
            "trial_id": run.tags.get(TRIAL_ID, ""),
            "status": run.tags.get(STATUS, ""),
            "start_time": run.start_time,
            "end_time": run.end_time,
            "objective": run.metrics.get(OBJECTIVE, math.nan),
        }
        row.update({f"hp:{k}": v for k, v in run.params.items()})
        rows.append(row)
    columns = ["run_id", "parent_id", "trial_id", "status", "start_time", "end_time", "objective"]
    frame = pd.DataFrame(rows, columns=None if rows else columns)
    frame = frame[sorted(frame.columns)].sort_values(["parent_id", "start_time", "run_id"])
    return frame.reset_index(drop=True)


def frame(cells: list[CellResult]) -> pd.DataFrame:
    """The cells as a table for figures: the verdict's numbers (what tables print) at the
    cell's length and at each longer length it was tested at (`score_len_<L>`,
    `spread_len_<L>`), with the baseline and solved bar there."""
    rows = []
    for cell in cells:
        verdict = cell.verdict
        row = {
            "run_id": cell.run_id,
            "task": cell.task,
            "family": cell.family,
            "length": cell.length,
            "metric": cell.metric,
            "direction": cell.direction,
            BASELINE: cell.baseline,
            SOLVED_BAR: cell.solved_bar,
            "score": verdict.mean,
            "spread": verdict.std,
            "seeds": verdict.seeds,
            SOLVED: verdict.solved,
        }
        for length in cell.longer:
            at = cell.verdict_at(length)
            row[at_length("score", length)] = at.mean
            row[at_length("spread", length)] = at.std
            for name, default in ((BASELINE, cell.baseline), (SOLVED_BAR, cell.solved_bar)):
                row[at_length(name, length)] = cell.metrics.get(at_length(name, length), default)
        rows.append(row)
    columns = ["run_id", "task", "family", "length", "score", "spread", SOLVED]
    return pd.DataFrame(rows, columns=None if rows else columns)
