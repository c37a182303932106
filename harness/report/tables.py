"""The report's tables and sections, built from the cells a report reads (no rendering here).

A table compares cells of one budget: the report has one group of tables per budget,
headed by it. Every number in a score table is a cell's verdict over its seeds
(harness/results.py), and each score names the run it comes from.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from harness.budget import hyper_value
from harness.results import (
    BEST_TRIAL,
    COMPILE_SECONDS,
    DEVICE,
    EPOCHS_TO_SOLVE,
    PARAMETERS,
    SECONDS_PER_EPOCH,
    TRIALS_COMPLETED,
    TRIALS_DIVERGED,
    TRIALS_FAILED,
    CellResult,
    CellState,
)

if TYPE_CHECKING:
    import pandas as pd

    from harness.figures import Drawing


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]
    titles: dict[tuple[int, int], str] = field(default_factory=dict)
    """Optional notes on single cells, (row, column) -> text (a tooltip in HTML)."""
    links: dict[tuple[int, int], str] = field(default_factory=dict)
    """Optional links of single cells, (row, column) -> an anchor of the page (HTML only)."""
    anchors: dict[int, str] = field(default_factory=dict)
    """Optional anchors of rows, row -> the name links reach it by (HTML only)."""


@dataclass
class Section:
    """A part of a report: a title, paragraphs, tables, figures and subsections."""

    title: str
    paragraphs: list[str] = field(default_factory=list)
    tables: list[tuple[str, Table]] = field(default_factory=list)  # (caption, table)
    figures: list[tuple[str, str, Drawing]] = field(default_factory=list)  # (file, kind, what)
    parts: list[Section] = field(default_factory=list)
    markdown_figures: int | None = 1
    """How many of its figures the markdown shows (None: all); the HTML page shows all."""


def number(value, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if _finite(value) else "—"


def amount(value) -> str:
    """Three significant digits, whole numbers with thousands separators from 100 up."""
    if not _finite(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def _finite(value) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)


def better(direction: str) -> str:
    return "lower is better" if direction == "min" else "higher is better"


def short(run_id: str) -> str:
    return run_id[:8]


def score_text(cell: CellResult) -> str:
    """A cell's score as tables print it: the verdict, or why there is none."""
    if cell.state in (CellState.DIVERGED, CellState.FAILED):
        return cell.state.value
    return cell.verdict.text()


def provenance(cell: CellResult) -> str:
    """Where a score comes from: its run, trials and seeds (a tooltip, a footnote row)."""
    trials = int(cell.get(TRIALS_COMPLETED)) if _finite(cell.get(TRIALS_COMPLETED)) else 0
    return (
        f"run {short(cell.run_id)}: {trials} trials done, {cell.verdict.seeds_text()}; "
        f"budget {cell.budget_key}"
    )


def budgets(cells: list[CellResult]) -> list[tuple[str, str, list[CellResult]]]:
    """(budget key, label, its cells), the budget with the most cells first."""
    groups: dict[str, list[CellResult]] = {}
    for cell in cells:
        groups.setdefault(cell.budget_key, []).append(cell)
    ordered = sorted(groups.items(), key=lambda item: (-len(item[1]), item[0]))
    return [
        (key, group[0].budget.label(1 + len(group[0].extra_seeds), group[0].seed), group)
        for key, group in ordered
    ]


def score_table(cells: list[CellResult]) -> Table:
    """One row per family, one column per length, the longest length solved; baseline and bar."""
    lengths = sorted({c.length for c in cells})
    arrow = "≤" if cells[0].direction == "min" else "≥"
    table = Table(["family", *(f"L={L}" for L in lengths), "longest solved"], [])
    for family in sorted({c.family for c in cells}):
        by_length = {c.length: c for c in cells if c.family == family}
        solved = [L for L, c in by_length.items() if c.verdict.solved]
        row = len(table.rows)
        for column, length in enumerate(lengths, start=1):
            if length in by_length:
                table.titles[(row, column)] = provenance(by_length[length])
        table.rows.append(
            [
                family,
                *(score_text(by_length[L]) if L in by_length else "" for L in lengths),
                f"L={max(solved)}" if solved else "—",
            ]
        )
    first = {c.length: c for c in sorted(cells, key=lambda c: c.family, reverse=True)}
    table.rows.append(["trivial baseline", *(number(first[L].baseline) for L in lengths), ""])
    table.rows.append(
        ["solved bar", *(f"{arrow} {number(first[L].solved_bar)}" for L in lengths), ""]
    )
    return table


def cost_table(cells: list[CellResult]) -> Table:
    """Cost of each cell's best model (epochs after the first; the first's extra is compiling)."""
    table = Table(
        [
            "family",
            "length",
            "parameters",
            "seconds per epoch",
            "compile seconds",
            "epochs to solve",
            "trials done (diverged, failed)",
        ],
        [],
    )
    for cell in sorted(cells, key=lambda c: (c.family, c.length)):
        failed = cell.get(TRIALS_FAILED)
        trials = (
            f"{number(cell.get(TRIALS_COMPLETED))} ({number(cell.get(TRIALS_DIVERGED))}, "
            f"{number(failed) if _finite(failed) else 0})"
        )
        per_epoch = number(cell.get(SECONDS_PER_EPOCH), 3)
        if cell.legacy and per_epoch != "—":
            per_epoch += " (incl. compile)"
        solve = cell.get(EPOCHS_TO_SOLVE)
        table.rows.append(
            [
                cell.family,
                str(cell.length),
                f"{cell.get(PARAMETERS):,.0f}" if _finite(cell.get(PARAMETERS)) else "—",
                per_epoch,
                number(cell.get(COMPILE_SECONDS), 3),
                f"{solve:.0f}" if _finite(solve) else "—",
                trials,
            ]
        )
    return table


def run_anchor(run_id: str) -> str:
    """The HTML anchor of a cell run's row in its runs table."""
    return f"run-{run_id}"


def runs_table(cells: list[CellResult]) -> Table:
    """The run behind each score, to open in the MLflow UI (each row anchored by its run)."""
    table = Table(["family", "length", "run", "state", "trials done", "seeds", "machine"], [])
    for cell in sorted(cells, key=lambda c: (c.family, c.length)):
        table.anchors[len(table.rows)] = run_anchor(cell.run_id)
        trials = cell.get(TRIALS_COMPLETED)
        table.rows.append(
            [
                cell.family,
                str(cell.length),
                short(cell.run_id),
                cell.state.value,
                f"{trials:.0f}" if _finite(trials) else "—",
                cell.verdict.seeds_text(),
                cell.tags.get(DEVICE, "unknown"),
            ]
        )
    return table


def machines(cells: list[CellResult]) -> list[str]:
    """Which machine and backend produced the cells, with how many cells each."""
    counts: dict[str, int] = {}
    for cell in cells:
        counts[cell.machine] = counts.get(cell.machine, 0) + 1
    return [f"{m}: {n} cell{'s' * (n != 1)}" for m, n in sorted(counts.items())]


def is_bidirectional(family: str) -> bool:
    """Families that wrap a backward pass: by the registry's naming, their names start with bi."""
    return family.startswith("bi")


def hindsight_table(cells: list[CellResult]) -> Table:
    """first_token: the length at which each forward and bidirectional family stops solving it."""
    lengths = sorted({c.length for c in cells})
    table = Table(
        ["family", "direction", *(f"L={L}" for L in lengths), "longest solved", "stops solving at"],
        [],
    )
    for family in sorted({c.family for c in cells}):
        own = {c.length: c for c in cells if c.family == family}
        solved = [L for L, c in own.items() if c.verdict.solved]
        failed = [L for L, c in own.items() if not c.verdict.solved]
        table.rows.append(
            [
                family,
                "bidirectional" if is_bidirectional(family) else "forward",
                *(score_text(own[L]) if L in own else "" for L in lengths),
                f"L={max(solved)}" if solved else "—",
                f"L={min(failed)}" if failed else f"solved through L={max(own)}",
            ]
        )
    return table


def generalisation_table(cells: list[CellResult]) -> Table | None:
    """Each cell's verdict at its training length and at the longer lengths it was tested at
    (over every seed whose model was tested there); None when no cell was tested longer."""
    tested = sorted({L for c in cells for L in c.longer} | {c.length for c in cells if c.longer})
    if not tested:
        return None
    table = Table(["family (trained at)", *(f"L={L}" for L in tested)], [])
    for cell in sorted(cells, key=lambda c: (c.family, c.length)):
        if not cell.longer:
            continue
        row = [f"{cell.family} (L={cell.length})"]
        for length in tested:
            if length == cell.length:
                row.append(score_text(cell))
            elif cell.out_of_memory_at(length):
                row.append("out of memory")
            elif length in cell.longer:
                row.append(cell.verdict_at(length).text())
            else:
                row.append("")
        table.rows.append(row)
    return table


# -- a grid search's points ---------------------------------------------------------------------

CHOSEN, SMALLEST, LARGEST = "★", "⇤", "⇥"
"""Marks of the grid table: the point the search chose, an edge of an axis it lies on."""


def grid_points(grid: list) -> list[tuple]:
    """A grid's points in order: every combination of its axes' values ([name, values] pairs)."""
    return list(itertools.product(*(values for _, values in grid)))


def edge_marks(grid: list, point: tuple) -> str:
    """⇤ name (⇥ name) for each numeric axis of two values or more on whose smallest
    (largest) value `point` lies: the grid may be too narrow there."""
    marks = []
    for (name, values), value in zip(grid, point, strict=True):
        if len(values) < 2 or not all(_finite(v) and not isinstance(v, bool) for v in values):
            continue
        if value == min(values):
            marks.append(f"{SMALLEST} {name}")
        elif value == max(values):
            marks.append(f"{LARGEST} {name}")
    return ", ".join(marks)


def point_trials(cell: CellResult, grid: list, trials: pd.DataFrame) -> dict[tuple, pd.Series]:
    """The cell's trials by the grid point their params hold (compared as logged: text)."""
    columns = [f"hp:{name}" for name, _ in grid]
    if not set(columns) <= set(trials.columns):
        return {}
    points = {tuple(map(str, point)): point for point in grid_points(grid)}
    by_point = {}
    for _, trial in trials[trials["parent_id"] == cell.run_id].iterrows():
        point = points.get(tuple(str(trial[c]) for c in columns))
        if point is not None:
            by_point[point] = trial
    return by_point


def point_text(trial: pd.Series | None, chosen: bool) -> str:
    """A grid point's validation score (else how its trial ended; — untried), ★ if chosen."""
    if trial is None:
        return "—"
    text = number(trial["objective"]) if _finite(trial["objective"]) else trial["status"] or "—"
    return text + f" {CHOSEN}" * chosen


def grid_table(cells: list[CellResult], trials: pd.DataFrame) -> Table | None:
    """A grid search's cells (None under another tuner): a row per cell, a column per grid
    point with its trial's validation score, ★ on the one the search chose (BEST_TRIAL),
    and the chosen point's edge marks (`edge_marks`) unless another point ties it."""
    budget = cells[0].budget
    grid = budget.grid
    if budget.tuner != "grid" or not grid:
        return None
    points = grid_points(grid)
    names = [name for name, _ in grid]
    headers = [
        ", ".join(f"{n}={hyper_value(v)}" for n, v in zip(names, p, strict=True)) for p in points
    ]
    table = Table(["family", "length", *headers, "edge"], [])
    for cell in sorted(cells, key=lambda c: (c.family, c.length)):
        by_point = point_trials(cell, grid, trials)
        best = cell.tags.get(BEST_TRIAL)
        chosen = next((p for p, trial in by_point.items() if trial["trial_id"] == best), None)
        table.rows.append(
            [
                cell.family,
                str(cell.length),
                *(point_text(by_point.get(p), p == chosen) for p in points),
                edge_marks(grid, chosen) if chosen is not None and alone(by_point, chosen) else "",
            ]
        )
    return table


def alone(by_point: dict[tuple, pd.Series], chosen: tuple) -> bool:
    """Whether the chosen point scores better than every other point tried: a tie (every
    point at 1.0, say) says nothing about the grid's edge."""
    score = by_point[chosen]["objective"]
    return not any(p != chosen and t["objective"] == score for p, t in by_point.items())
