"""Reading the store for a report: which run stands for each cell, its trials, its frontiers.

The store is read in pages of runs (params, metrics and tags come with each page),
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
    PARENT,
    SOLVED,
    SOLVED_BAR,
    STATUS,
    TEST_SCORE,
    TRIAL,
    TRIAL_ID,
    CellResult,
    score_name,
    standing_cells,
)
from harness.tracking import Tracker, _retry

PAGE = 1000


@dataclass
class Results:
    """What a report reads from one experiment."""

    experiment: str
    cells: list[CellResult]  # the run standing for each (budget, task, length, family)
    trials: pd.DataFrame  # one row per trial of those cells: times, objective, hp:<name>
    runs: list  # every active run of the experiment (for the probes' and frontiers' readers)
    superseded: list[tuple[CellResult, int]] = field(default_factory=list)  # (kept, older)
    unfinished: int = 0  # cell runs not FINISHED (running, interrupted)
    unreadable: int = 0  # finished cell runs without a usable task, length, family, direction


def experiment_runs(
    tracker: Tracker, experiment: str, progress: Callable[[str], None] = lambda line: None
) -> list:
    """Every active run of `experiment`, in pages; a UserError naming the others if absent."""
    from mlflow.entities import ViewType

    client = tracker.client
    found = _retry(lambda: client.get_experiment_by_name(experiment))
    if found is None or found.lifecycle_stage != "active":
        raise UserError(
            f"experiment '{experiment}' does not exist in '{tracker.uri}': {experiments(tracker)}"
        )
    runs, token = [], None
    while True:
        page = _retry(
            lambda token=token: client.search_runs(
                [found.experiment_id], "", ViewType.ACTIVE_ONLY, PAGE, page_token=token
            )
        )
        runs.extend(page)
        progress(f"read {len(runs):,} runs of experiment '{experiment}'")
        token = page.token
        if not token:
            return sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id))


def experiments(tracker: Tracker) -> str:
    names = sorted(e.name for e in _retry(lambda: tracker.client.search_experiments()))
    return f"experiments are {', '.join(names)}" if names else "the store has no experiments"


def read_store(
    tracker: Tracker, experiment: str, progress: Callable[[str], None] = lambda line: None
) -> Results:
    """The cells of `experiment` (one run standing for each), their trials, every run."""
    runs = experiment_runs(tracker, experiment, progress)
    standing, unreadable = standing_cells(runs)
    cells = sorted(
        (c for c, _ in standing), key=lambda c: (c.task, c.family, c.length, c.budget_key)
    )
    ids = {c.run_id for c in cells}
    trials = trial_frame(
        [r for r in runs if r.data.tags.get(KIND) == TRIAL and r.data.tags.get(PARENT) in ids]
    )
    parents = [r for r in runs if r.data.tags.get(KIND) == CELL]
    results = Results(
        experiment,
        cells,
        trials,
        runs,
        superseded=sorted(((c, n) for c, n in standing if n), key=lambda pair: pair[0].slot),
        unfinished=sum(r.info.status != "FINISHED" for r in parents),
        unreadable=unreadable,
    )
    has_frontiers = any(r.data.tags.get(KIND) == FRONTIER for r in runs)
    if not cells and not has_frontiers:
        raise UserError(
            f"experiment '{experiment}' in '{tracker.uri}' has no finished cells "
            f"({len(runs)} runs): {experiments(tracker)}"
        )
    return results


def trial_frame(runs: list) -> pd.DataFrame:
    """One row per trial run: ids, outcome, times, objective, hp:<name> for each param."""
    rows = []
    for run in runs:
        info, data = run.info, run.data
        row = {
            "run_id": info.run_id,
            "parent_id": data.tags[PARENT],
            "trial_id": data.tags.get(TRIAL_ID, ""),
            "status": data.tags.get(STATUS, ""),
            "start_time": info.start_time,
            "end_time": info.end_time,
            "objective": data.metrics.get("objective", math.nan),
        }
        row.update({f"hp:{k}": v for k, v in data.params.items()})
        rows.append(row)
    columns = ["run_id", "parent_id", "trial_id", "status", "start_time", "end_time", "objective"]
    frame = pd.DataFrame(rows, columns=None if rows else columns)
    frame = frame[sorted(frame.columns)].sort_values(["parent_id", "start_time", "run_id"])
    return frame.reset_index(drop=True)


def frame(cells: list[CellResult]) -> pd.DataFrame:
    """The cells as a table for figures: the verdict's numbers (what tables print) and the
    search seed's best model's scores at its length and longer ones."""
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
            TEST_SCORE: cell.test_score,
        }
        row.update({score_name(length=L): v for L, v in cell.longer.items()})
        rows.append(row)
    columns = ["run_id", "task", "family", "length", "score", SOLVED, TEST_SCORE]
    return pd.DataFrame(rows, columns=None if rows else columns)
