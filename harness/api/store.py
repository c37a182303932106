"""Reading a store: `status`, `verify`, `report` and `results` (a DataFrame)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from harness import backend
from harness.api.common import (
    DEFAULT_WORKDIR,
    Progress,
    experiment_name,
    open_reader,
    quiet,
    writable,
)
from harness.errors import UserError


@dataclass
class Status:
    """Each cell's state in a store, and a line per frontier."""

    experiment: str
    cells: list  # harness.cells.CellStatus
    frontiers: list[str]


def status(
    store: str | None = None, *, experiment: str | None = None, suite: str | None = None
) -> Status:
    """Each cell of `experiment` (or of `suite`'s): done, partial, diverged, failed or not
    started, with its running trials; read from the store alone."""
    from harness.cells import cell_states, frontier_states
    from harness.suites import load_suite

    chosen = load_suite(suite) if suite else None
    reader = open_reader(store, runs_only=True)
    name = experiment_name(reader, suite, experiment)
    listed = chosen.cells if chosen and not chosen.frontiers else None  # frontiers pick as they go
    return Status(name, cell_states(reader, name, listed), frontier_states(reader, name))


def part_keys(suite: str | None, part: str | None) -> set[str] | None:
    """The keys of the cells and frontiers of `part` of `suite` (None: no part named)."""
    if part is None:
        return None
    if suite is None:
        raise UserError("--part names a part of a suite: give --suite too")
    from harness.cells import select_cells

    _, cells, frontiers = select_cells(suite, (), (), (), {}, None, (), (), part)
    return {item.key for item in (*cells, *frontiers)}


def verify(
    store: str | None = None,
    *,
    experiment: str | None = None,
    suite: str | None = None,
    part: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
    progress: Progress = quiet,
):
    """Every number the report would show, recomputed from the stored models: a
    `harness.verify.Verification` (its `checks`, `mismatches`, `unscored`, `experiment`).
    Never trains; uses the JAX compilation cache a run left in `compile_cache`, if any."""
    from harness import verify as checking

    keys = part_keys(suite, part)
    tracker = open_reader(store, runs_only=False)
    name = experiment_name(tracker, suite, experiment)
    backend.load_frameworks()
    if compile_cache is not None and Path(compile_cache).is_dir():
        backend.use_compile_cache(Path(compile_cache))
    return checking.verify(tracker, name, progress, keys)


@dataclass
class Reported:
    """What `report` wrote."""

    experiment: str
    leaderboard: Path
    html: Path
    figures: list[Path]
    readme_changed: bool | None  # None: no README asked for


def report(
    store: str | None = None,
    out: str | Path = "reports",
    *,
    experiment: str | None = None,
    suite: str | None = None,
    readme: str | Path | None = None,
    readme_block: str = "leaderboard",
    progress: Progress = quiet,
):
    """Write leaderboard.md, index.html and figures under `out` from the store alone; with
    `readme`, also refresh its `readme_block`."""
    from harness import frontier_report
    from harness import report as reporting

    reader = open_reader(store, runs_only=True)
    name = experiment_name(reader, suite, experiment)
    out = writable(Path(out), "output folder")
    written = reporting.build(reader, name, out, progress, features=[frontier_report.section])
    changed = None
    if readme is not None:
        changed = reporting.update_readme(Path(readme), written.leaderboard, readme_block)
    return Reported(name, written.leaderboard, written.html, written.figures, changed)


RESULT_COLUMNS = (
    "experiment", "budget", "budget_key", "task", "length", "family", "seed", "metric",
    "direction", "test_score", "interval_low", "interval_high", "solved_bar", "baseline",
    "seed_solved", "cell_solved", "near_bar", "verdict", "run_id",
)  # fmt: skip
"""The columns of `results`: one row per cell and seed."""


def results(store: str | None = None, *, experiment: str | None = None, suite: str | None = None):
    """The store's cells as a pandas DataFrame, one row per cell and seed (RESULT_COLUMNS):
    each seed's test score with its 95% interval and whether it meets the bar, and the
    cell's verdict, as the report judges them."""
    import pandas as pd

    from harness.report.read import read_store
    from tasks.base import meets

    reader = open_reader(store, runs_only=True)
    name = experiment_name(reader, suite, experiment)
    rows = []
    for cell in read_store(reader, name).cells:
        verdict = cell.verdict
        label = cell.budget.label(len(cell.seeds), cell.seed)
        for seed in cell.seeds:
            score = cell.seed_scores.get(seed, math.nan)
            low, high = cell.interval(seed) or (math.nan, math.nan)
            rows.append(
                (name, label, cell.budget_key, cell.task, cell.length, cell.family, seed,
                 cell.metric, cell.direction, score, low, high, cell.solved_bar, cell.baseline,
                 meets(score, cell.solved_bar, cell.direction), verdict.solved,
                 verdict.near_bar, verdict.text(), cell.run_id)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))
