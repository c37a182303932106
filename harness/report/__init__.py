"""`harness report`: the leaderboard (markdown), an HTML page and PNG figures, from MLflow alone.

Three steps, a module each: read the store (read.py: which run stands for each
cell), build the tables (tables.py), render (render.py). The features' sections come
first (`Feature`: the caller passes them in; this package imports no feature, so a
feature may own its section and import the report); then one group of tables per
budget, a table per task, and a hindsight section for each task that asks for one
(`Task.hindsight`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from harness.report import render
from harness.report.read import Results, Store, frame, read_store
from harness.report.render import Document, Written, figure_file, has_markers, update_readme
from harness.report.tables import (
    Section,
    better,
    budgets,
    cost_table,
    generalisation_table,
    grid_table,
    hindsight_table,
    is_bidirectional,
    machines,
    runs_table,
    score_table,
)
from harness.results import MEAN
from tasks import REGISTRY, TaskError, get_task

CAPTIONS = {
    "score_vs_length": "Test score versus sequence length per family (log-scaled length): the "
    "mean over seeds with their spread; dashed: the trivial baseline, dotted: the solved bar, "
    "circled: solved.",
    "length_generalisation": "Length generalisation: each line is a cell trained at one length "
    "and tested at longer ones, the mean over its seeds with their spread (the table's "
    "numbers); dashed: the trivial baseline, dotted: the solved bar. A length whose test did "
    "not fit in memory has no point (the table says out of memory).",
    "anytime": "Anytime performance of the search: the best validation score so far versus "
    "wall-clock time, one line per cell.",
    "hyperparameters": "Each trial's validation score versus each hyperparameter, per family: "
    "a best score at the edge of a range, or few trials near it, means the budget was short.",
    "hindsight": "Hindsight: the task's score versus length, the mean over seeds with their "
    "spread, forward families solid, bidirectional dashed; dashed black: the trivial baseline, "
    "dotted: the solved bar, circled: solved.",
    "frontier_matrix": "The frontier matrix: each family's longest solved length per column "
    "as a colour (log scale; grey: none solved, or a column of fixed-length cells), the "
    "table's entry written on it.",
    "frontier": "The frontier: every length probed for each family, filled where the cell was "
    "solved, hollow where it failed (log-scaled length); the bar spans the bracket between the "
    "longest solved and the shortest failed length.",
}


def wilson_tasks() -> list[str]:
    """The registry's tasks whose seeds' intervals are Wilson intervals (harness/intervals.py:
    one prediction per sequence, scored by accuracy)."""
    from harness.intervals import by_wilson

    return sorted(name for name, task in REGISTRY.items() if by_wilson(task))


def how_to_read() -> str:
    """The report's "How to read it" paragraph."""
    return (
        "Each score is a cell's mean test score over its seeds (the search's best model and "
        "each retrain of its hyperparameters, each at its best validation epoch; a seed that "
        "diverged scores the trivial baseline) ± their standard deviation, then (k/n): k of "
        "its n seeds solve. A seed solves when its own test score meets the task's solved "
        "bar; a cell is solved (✓) when more than half of its seeds do: a cell has an odd "
        "number of seeds, and a split vote (some seeds solve, some do not) adds two more "
        "seeds, once. Each seed's test score has a 95% interval over its test sequences: a "
        f"Wilson interval where each sequence gives one prediction ({', '.join(wilson_tasks())}), "
        "a t-interval over per-sequence scores for per-step metrics and MSE. ≈ marks a verdict "
        "near the bar: it flips if one seed whose interval holds the bar flips. Under a grid "
        "search, the grid points table gives each point's validation score, ★ on the point "
        "the search chose, and ⇤ (⇥) where that point is the smallest (largest) value of a "
        "numeric axis and no other point ties it: the grid may be too narrow there. Cells "
        "stored before this rule are "
        "judged as they were then, by the mean over their seeds (the notes below count them; "
        "their seeds column says so). A table compares cells of one budget; each score names "
        "its MLflow run (the runs table, or hover in the HTML report). `make leaderboard` "
        "writes a report only after `harness verify` has recomputed every number from the "
        "stored models; `harness verify` checks any store."
    )


def task_section(results: Results, cells: list, task: str, key: str) -> Section:
    """One task within one budget: scores, costs, the runs behind them, figures."""
    from harness import figures

    rows = frame(cells)
    kinds = {
        "score_vs_length": (figures.score_vs_length, (rows, task)),
        "length_generalisation": (figures.length_generalisation, (rows, task)),
        "anytime": (figures.anytime, (rows, results.trials, task)),
        "hyperparameters": (figures.hyperparameters, (rows, results.trials, task)),
    }
    first = cells[0]
    tables = [("", score_table(cells))]
    longer = generalisation_table(cells)
    if longer is not None:
        tables.append(("Tested at longer lengths than trained (mean over seeds):", longer))
    grid = grid_table(cells, results.trials)
    if grid is not None:
        tables.append(
            (
                f"Grid points: each point's validation {first.metric} ({better(first.direction)}),"
                " ★ on the one the search chose; edge ⇤ (⇥): the chosen point is the smallest "
                "(largest) value of a numeric axis and no other point ties it, so the grid may "
                "be too narrow there.",
                grid,
            )
        )
    tables += [
        ("Cost of each cell's best model:", cost_table(cells)),
        ("The run behind each score (`harness ui` opens the store):", runs_table(cells)),
    ]
    return Section(
        task,
        [f"Metric: {first.metric} ({better(first.direction)})."],
        tables,
        [
            (figure_file(kind, task, key), kind, figures.Drawing(function, args))
            for kind, (function, args) in kinds.items()
        ],
    )


def hindsight_text(task: str) -> str:
    """What the task says about reading it backwards (`Task.hindsight`); empty for a task
    that asks for no hindsight section or that cannot be loaded here (a plug-in elsewhere)."""
    try:
        return get_task(task).hindsight
    except TaskError:
        return ""


def hindsight_section(cells: list, task: str, key: str) -> Section | None:
    """The task's forward versus bidirectional families, when both ran under this budget."""
    from harness import figures

    own = [c for c in cells if c.task == task]
    if len({is_bidirectional(c.family) for c in own}) < 2:
        return None
    return Section(
        f"Hindsight: {task}",
        [
            f"{hindsight_text(task)} 'Stops solving at' is the shortest tested length whose "
            "cell is not solved."
        ],
        [
            (
                f"Test {own[0].metric} by length, forward versus bidirectional:",
                hindsight_table(own),
            )
        ],
        [
            (
                figure_file("hindsight", task, key),
                "hindsight",
                figures.Drawing(figures.hindsight, (frame(own), task, is_bidirectional)),
            )
        ],
    )


def notes(results: Results) -> list[str]:
    lines = [
        f"Cell {cell.label}: run {cell.run_id[:8]} supersedes "
        f"{n} earlier finished run{'s' * (n != 1)} of the same budget."
        for cell, n in results.superseded
    ]
    if results.unfinished:
        lines.append(
            f"Unfinished cell runs (running or interrupted), left out: {results.unfinished}."
        )
    if results.unreadable:
        lines.append(
            "Cell runs without a task, length, family or direction, left out: "
            f"{results.unreadable}."
        )
    by_mean = sum(cell.rule == MEAN for cell in results.cells)
    if by_mean:
        lines.append(
            f"{by_mean} cell{'s were' if by_mean != 1 else ' was'} stored before verdicts by a "
            "majority of seeds: judged as then, by the mean over their seeds (their seeds "
            "column says so)."
        )
    legacy = sum(cell.legacy for cell in results.cells)
    if legacy:
        lines.append(
            f"{legacy} cells were recorded before 2026-11-26: their seconds per epoch include "
            "compiling, their fused-kernel tag was predicted rather than observed, and no "
            "retrain's model was kept, so `harness verify` cannot recompute them: their "
            "numbers are shown as the store holds them, unverified."
        )
    return lines


@dataclass
class Shown:
    """A feature's section of the leaderboard and the cell runs it shows: a budget whose
    cells it all shows gets no tables of its own."""

    section: Section
    cells: set[str] = field(default_factory=set)


Feature = Callable[[Results], Shown | None]
"""A feature's section (the frontier's, say) from what the report read; None: nothing to show."""


def leaderboard(results: Results, features: Sequence[Feature] = ()) -> Document:
    """The leaderboard document: the features' sections first (the frontier matrix leads),
    how to read it, then a group of tables per
    budget (a budget whose cells a feature's section all shows is left to that section)."""
    shown = [part for feature in features if (part := feature(results)) is not None]
    apart_runs = set().union(*(part.cells for part in shown))
    groups = [
        group
        for group in budgets(results.cells)
        if not all(cell.run_id in apart_runs for cell in group[2])
    ]
    counted = sum(len(cells) for _, _, cells in groups)
    apart = len(results.cells) - counted
    doc = Document(
        f"Leaderboard: {results.experiment}",
        [
            f"MLflow experiment {results.experiment}, {counted} cells under {len(groups)} "
            f"budget{'s' * (len(groups) != 1)}"
            + (f" and {apart} confirming frontiers' failures" if apart else "")
            + ". Machine and backend:"
        ],
        machines(results.cells),
        captions=dict(CAPTIONS),
    )
    doc.sections += [part.section for part in shown]
    doc.sections.append(Section("How to read it", [how_to_read(), *notes(results)]))
    for key, label, cells in groups:
        group = Section(f"Budget {key}", [f"{label}; {len(cells)} cells."])
        tasks = sorted({c.task for c in cells})
        for task in tasks:
            group.parts.append(
                task_section(results, [c for c in cells if c.task == task], task, key)
            )
        for task in tasks:
            hindsight = hindsight_section(cells, task, key) if hindsight_text(task) else None
            if hindsight is not None:
                group.parts.append(hindsight)
        doc.sections.append(group)
    return doc


def build(
    store: Store,
    experiment: str,
    out: Path,
    progress: Callable[[str], None] = lambda line: None,
    features: Sequence[Feature] = (),
) -> Written:
    """Read the experiment and write leaderboard.md, index.html and figures/*.png under `out`,
    the `features`' sections first."""
    results = read_store(store, experiment, progress)
    return render.write(leaderboard(results, features), out, progress=progress)


__all__ = ["build", "Feature", "has_markers", "Shown", "update_readme", "Written"]
