"""`harness report`: the leaderboard (markdown), an HTML page and PNG figures, from MLflow alone.

Three steps, a module each: read the store (read.py: which run stands for each
cell), build the tables (tables.py), render (render.py). The frontier comes first;
then one group of tables per budget, a table per task.
"""

from __future__ import annotations

from collections.abc import Callable
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
    hindsight_table,
    is_bidirectional,
    machines,
    runs_table,
    score_table,
)

CAPTIONS = {
    "score_vs_length": "Test score versus sequence length per family (log-scaled length): the "
    "mean over seeds with their spread; dashed: the trivial baseline, dotted: the solved bar, "
    "circled: solved.",
    "length_generalisation": "Length generalisation: each line is the search's best model "
    "trained at one length and tested at longer ones.",
    "anytime": "Anytime performance of the search: the best validation score so far versus "
    "wall-clock time, one line per cell.",
    "hyperparameters": "Each trial's validation score versus each hyperparameter, per family: "
    "a best score at the edge of a range, or few trials near it, means the budget was short.",
    "hindsight": "Hindsight: first_token accuracy versus length, forward families solid, "
    "bidirectional dashed; dotted: the solved bar, dashed black: chance.",
    "frontier": "The frontier: every length probed for each family, filled where the cell was "
    "solved, hollow where it failed (log-scaled length); the bar spans the bracket between the "
    "longest solved and the shortest failed length.",
}
HOW_TO_READ = (
    "Each score is a cell's mean test score over its seeds (the search's best model and each "
    "retrain of its hyperparameters, each at its best validation epoch; a seed that diverged "
    "scores the trivial baseline) ± their standard deviation. ✓ marks a cell whose mean meets "
    "the task's solved bar; (k of n) counts the seeds that meet it alone. A table compares "
    "cells of one budget; each score names its MLflow run (the runs table, or hover in the "
    "HTML report). `make leaderboard` writes a report only after `harness verify` has "
    "recomputed every number from the stored models; `harness verify` checks any store."
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


def hindsight_section(cells: list, key: str) -> Section | None:
    """first_token, forward versus bidirectional, when both ran under this budget."""
    from harness import figures

    first = [c for c in cells if c.task == "first_token"]
    if len({is_bidirectional(c.family) for c in first}) < 2:
        return None
    return Section(
        "Hindsight: first_token",
        [
            "A forward RNN must carry the first token across all L steps; the backward pass "
            "of a bidirectional one reads it one step before its end. 'Stops solving at' is "
            "the shortest tested length whose cell is not solved."
        ],
        [("Accuracy by length, forward versus bidirectional:", hindsight_table(first))],
        [
            (
                f"hindsight_{key}.png",
                "hindsight",
                figures.Drawing(figures.hindsight, (frame(first), is_bidirectional)),
            )
        ],
    )


def notes(results: Results) -> list[str]:
    found = [
        f"Cell {cell.task} L={cell.length} {cell.family}: run {cell.run_id[:8]} supersedes "
        f"{n} earlier finished run{'s' * (n != 1)} of the same budget."
        for cell, n in results.superseded
    ]
    if results.unfinished:
        found.append(
            f"Unfinished cell runs (running or interrupted), left out: {results.unfinished}."
        )
    if results.unreadable:
        found.append(
            "Cell runs without a task, length, family or direction, left out: "
            f"{results.unreadable}."
        )
    legacy = sum(cell.legacy for cell in results.cells)
    if legacy:
        found.append(
            f"{legacy} cells were recorded before 2026-11-26: their seconds per epoch include "
            "compiling, their fused-kernel tag was predicted rather than observed, and no "
            "retrain's model was kept, so `harness verify` cannot recompute them: their "
            "numbers are shown as the store holds them, unverified."
        )
    return found


def leaderboard(results: Results) -> Document:
    """The leaderboard document: the frontier first, then a group of tables per budget (a
    budget whose cells only confirm frontiers' failures is shown in the frontier's section)."""
    from harness.frontier import confirming_runs, frontier_section, latest_frontiers

    frontiers = latest_frontiers(results.runs)
    confirming = confirming_runs(frontiers)
    groups = [
        group
        for group in budgets(results.cells)
        if not all(cell.run_id in confirming for cell in group[2])
    ]
    shown = sum(len(cells) for _, _, cells in groups)
    apart = len(results.cells) - shown
    doc = Document(
        f"Leaderboard: {results.experiment}",
        [
            f"MLflow experiment {results.experiment}, {shown} cells under {len(groups)} "
            f"budget{'s' * (len(groups) != 1)}"
            + (f" and {apart} confirming frontiers' failures" if apart else "")
            + ". Machine and backend:"
        ],
        machines(results.cells),
        captions=dict(CAPTIONS),
    )
    doc.sections.append(Section("How to read it", [HOW_TO_READ, *notes(results)]))
    found = frontier_section(frontiers, {cell.run_id: cell for cell in results.cells})
    if found is not None:
        doc.sections.append(found)
    for key, label, cells in groups:
        group = Section(f"Budget {key}", [f"{label}; {len(cells)} cells."])
        for task in sorted({c.task for c in cells}):
            group.parts.append(
                task_section(results, [c for c in cells if c.task == task], task, key)
            )
        hindsight = hindsight_section(cells, key)
        if hindsight is not None:
            group.parts.append(hindsight)
        doc.sections.append(group)
    return doc


def build(
    store: Store,
    experiment: str,
    out: Path,
    progress: Callable[[str], None] = lambda line: None,
) -> Written:
    """Read the experiment and write leaderboard.md, index.html and figures/*.png under `out`."""
    results = read_store(store, experiment, progress)
    return render.write(leaderboard(results), out, progress=progress)


__all__ = ["build", "has_markers", "update_readme", "Written"]
