"""The frontier's section of the leaderboard: its brackets by budget, the cells that confirmed
their failures, and a figure per task (harness/frontier.py finds and records the brackets).

A feature's section lives beside the feature and reaches the report as a
`harness.report.Feature` that `harness report` passes in: the report imports no feature.
"""

from __future__ import annotations

import math
from dataclasses import replace

from harness import figures
from harness.budget import Budget
from harness.frontier import Bracket, FrontierResult, Step, confirming_runs, latest_frontiers
from harness.report import Shown
from harness.report.read import Results
from harness.report.render import figure_file
from harness.report.tables import Section, Table, number, run_anchor, score_text, short


def section(results: Results) -> Shown | None:
    """The leaderboard's frontier section (a `harness.report.Feature`), showing the cells that
    confirm the frontiers' failures; None without a frontier run."""
    frontiers = latest_frontiers(results.runs, unfinished=True)
    if not frontiers:
        return None
    part = frontier_section(frontiers, {cell.run_id: cell for cell in results.cells})
    return Shown(part, confirming_runs(frontiers))


def frontier_section(frontiers: list[FrontierResult], cells: dict) -> Section:
    """The frontier matrix of each parameter budget (`matrix`, unfinished frontiers marked
    so), then for the finished ones the cells that confirmed the failures (`cells`: the
    report's cells by run id) and a figure per task and budget."""
    part = Section(
        "Frontier",
        [
            "The longest length each family solves at an equal parameter budget. [a, b): "
            "solved at length a, failed at length b, the failure confirmed with another "
            "search seed (under a grid search, by the cell's own seeds); ≥ a: solved up to "
            "the largest length tried; < b: failed at the smallest. Beside each bracket, "
            "(k/n, k/n): how many of their seeds solve at the longest solved length, then at "
            "the shortest failed one (one k/n where the bracket has one end); ≈: either of "
            "the two verdicts is near the bar (it flips if one seed whose 95% interval holds "
            "the bar flips). A seed solves when its own test score meets the bar, a cell when "
            "more than half of its seeds do (a cell stored before that rule: when the mean "
            "over its seeds does, as then). Each column is "
            "one task under one training budget (its letter names it below the table): "
            "compare brackets within a column, never across columns of one task. A column "
            "of fixed-length cells (no frontier run) shows their mean test score instead. "
            "A frontier not finished shows as unfinished, with the lengths it has probed so far."
        ],
        markdown_figures=None,
    )
    for params, group, fixed in by_parameters(frontiers, cells):
        table, caption, values = matrix(group, fixed, cells)
        budget = f"{params:,} parameters" if params else "no parameter budget"
        part.tables.append((f"Frontier matrix, {budget}. {caption}", table))
        name = figure_file("frontier_matrix", "all", str(params or "none"))
        part.figures.append((name, "frontier_matrix", figures.Drawing(matrix_figure, values)))
    finished = [f for f in frontiers if f.finished]
    for key in sorted({f.budget_key for f in finished}):
        group = [f for f in finished if f.budget_key == key]
        part.tables += confirmation_tables(group, cells)
        for task in sorted({f.task for f in group}):
            own = {f.family: f.bracket for f in group if f.task == task}
            part.figures.append(
                (
                    figure_file("frontier", task, key),
                    "frontier",
                    figures.Drawing(figure, (task, own)),
                )
            )
    return part


def by_parameters(frontiers: list[FrontierResult], cells: dict) -> list[tuple]:
    """(parameter budget, its frontiers, its cells that no frontier probed) for every
    parameter budget of a frontier, or of such a cell where it names one, smallest first."""
    probed = {s.run_id for f in frontiers for s in f.bracket.steps}
    groups: dict = {}
    for result in frontiers:
        groups.setdefault(result.budget.params, ([], []))[0].append(result)
    for cell in cells.values():
        params = cell.budget.params
        if cell.run_id not in probed and (params is not None or params in groups):
            groups.setdefault(params, ([], []))[1].append(cell)
    ordered = sorted(groups.items(), key=lambda item: (item[0] is None, item[0] or 0))
    return [(params, group, fixed) for params, (group, fixed) in ordered]


def training_label(budget: Budget, seeds: int, seed: int) -> str:
    """A training budget in words: the budget less its parameter count."""
    return replace(budget, params=None).label(seeds, seed)


def training_order(budget: Budget) -> tuple:
    """Smaller training budgets first: by epochs, data, trials."""
    return (budget.epochs, budget.n_train, budget.max_trials, budget.batch_size)


def matrix(group: list[FrontierResult], fixed: list, cells: dict) -> tuple[Table, str, tuple]:
    """Rows families, columns (task, training budget) lettered (a), (b)... in the caption;
    each entry the bracket of a frontier of `group` with its deciding cells' seeds
    (`frontier_entry`). The `fixed` cells (of the same parameter budget, probed by no frontier)
    are columns of their own (task, length), showing the mean test score. In HTML an entry
    links to the runs-table row of the cell it names: the longest solved (else the shortest
    failed). Returns the table, the caption and what `matrix_figure` draws."""
    trainings: dict[str, str] = {}

    def letter(label: str) -> str:
        return trainings.setdefault(label, "abcdefghijklmnopqrstuvwxyz"[len(trainings) % 26])

    columns: dict[str, dict[str, tuple[str, str, float]]] = {}  # header: family: entry
    for result in sorted(group, key=lambda f: (f.task, training_order(f.budget), f.seeds)):
        label = training_label(result.budget, result.seeds, result.seed)
        header = f"{result.task} ({letter(label)})"
        columns.setdefault(header, {})[result.family] = frontier_entry(result, cells)
    for cell in sorted(fixed, key=lambda c: (c.task, c.length, training_order(c.budget))):
        label = training_label(cell.budget, 1 + len(cell.extra_seeds), cell.seed)
        header = f"{cell.task} L={cell.length} ({letter(label)})"
        columns.setdefault(header, {})[cell.family] = (cell.verdict.text(3), cell.run_id, math.nan)
    families = sorted({f for entries in columns.values() for f in entries})
    headers = list(columns)
    table = Table(["family", *headers], [])
    longest = {}
    for row, family in enumerate(families):
        table.rows.append([family])
        for column, header in enumerate(headers, start=1):
            text, run_id, solved = columns[header].get(family, ("", "", math.nan))
            table.rows[-1].append(text)
            if run_id:
                table.links[(row, column)] = run_anchor(run_id)
            longest[(family, header)] = solved
    caption = " ".join(f"({mark}): {label}." for label, mark in trainings.items())
    return table, caption, (families, headers, longest, table.rows)


def frontier_entry(result: FrontierResult, cells: dict) -> tuple[str, str, float]:
    """(the bracket with its deciding cells' seeds, the run it links to, the longest solved
    length): "[40, 57) (3/3, 1/3) ≈", k/n of the longest solved then the shortest failed
    cell (? where the report has no such cell), ≈ where either verdict is near the bar."""
    bracket = result.bracket
    if not result.finished:
        probed = len({s.length for s in bracket.steps if s.attempt == 0})
        return f"unfinished ({probed} lengths probed)", "", math.nan
    deciding = deciding_steps(bracket)
    verdicts = [cells[s.run_id].verdict if s.run_id in cells else None for s in deciding]
    seeds = ", ".join(f"{v.seeds_solved}/{v.seeds}" if v else "?" for v in verdicts)
    near = any(v is not None and v.near_bar for v in verdicts)
    text = bracket.text() + (f" ({seeds})" if seeds else "") + " ≈" * near
    solved = float(bracket.solved) if bracket.solved is not None else math.nan
    return text, deciding[0].run_id if deciding else "", solved


def deciding_steps(bracket: Bracket) -> list[Step]:
    """The probed cells that decide the bracket, those it has: the longest solved, then the
    shortest failed (its first attempt, not the confirmation)."""
    deciding = []
    for length, solved in ((bracket.solved, True), (bracket.failed, False)):
        steps = [s for s in bracket.steps if s.length == length and s.solved == solved]
        if steps:
            deciding.append(min(steps, key=lambda s: s.attempt))
    return deciding


def matrix_figure(families, headers, longest, rows):
    """The matrix as colours: the log of the longest solved length (grey: none solved or a
    fixed-length column), each entry's text on it."""
    import numpy as np
    from matplotlib import colormaps

    values = np.array([[longest[(f, h)] for h in headers] for f in families], dtype=float)
    fig, axes = figures.new(
        width=1.2 + 1.25 * len(headers),
        height=2.2 + 0.42 * len(families),
        margins=(1.3, 0.9, 0.5, 1.2),
    )
    ax = axes[0, 0]
    cmap = colormaps["viridis"].with_extremes(bad="#dddddd")
    shown = np.ma.masked_invalid(np.log10(values))
    image = ax.imshow(shown, cmap=cmap, aspect="auto")
    for r in range(len(families)):
        for c in range(len(headers)):
            ax.text(c, r, figures.text(rows[r][c + 1]), ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(headers)), [figures.text(h) for h in headers], rotation=30, ha="right")
    ax.set_yticks(range(len(families)), [figures.text(f) for f in families])
    if np.isfinite(values).any():
        bar = fig.colorbar(image, ax=ax, fraction=0.04)
        bar.set_label("log10 of the longest solved length")
    ax.set_title("Frontier matrix: the longest length each family solves")
    return fig


def confirmation_tables(group: list[FrontierResult], cells: dict) -> list:
    """(caption, table) per budget of the cells that confirmed the group's failures: the
    frontier's budget with another search seed, so tables of their own."""
    confirming = {
        s.run_id: cells[s.run_id]
        for f in group
        for s in f.bracket.steps
        if s.attempt and s.run_id in cells
    }
    tables = []
    for key in sorted({cell.budget_key for cell in confirming.values()}):
        own = sorted(
            (c for c in confirming.values() if c.budget_key == key),
            key=lambda c: (c.task, c.family, c.length),
        )
        table = Table(["task", "family", "length", "score", "solved bar", "run"], [])
        for cell in own:
            arrow = "≤" if cell.direction == "min" else "≥"
            table.rows.append(
                [
                    cell.task,
                    cell.family,
                    f"L={cell.length}",
                    score_text(cell),
                    f"{arrow} {number(cell.solved_bar)}",
                    short(cell.run_id),
                ]
            )
        seeds = 1 + len(own[0].extra_seeds)
        tables.append(
            (
                f"Confirmations, budget {key}: the budget above with {seeds} "
                f"seed{'s' * (seeds != 1)} from search seed {own[0].seed}. Each row is a "
                "shortest failure probed again; a ✓ means it solved, and the search went on.",
                table,
            )
        )
    return tables


def figure(task: str, brackets: dict):
    """Every length probed per family (filled: solved, hollow: failed; diamonds: the
    confirming second seed), the bracket as a bar from longest solved to shortest failed."""
    families = sorted(brackets)
    palette = figures.family_colors(families)
    longest = max((len(figures.text(f)) for f in families), default=0)
    fig, axes = figures.new(
        height=1.1 + 0.5 * len(families), margins=(0.3 + 0.075 * longest, 0.2, 0.4, 0.55)
    )
    ax = axes[0, 0]
    lengths = []
    for row, family in enumerate(families):
        bracket, color = brackets[family], palette[family]
        low = bracket.solved if bracket.solved is not None else bracket.minimum
        high = bracket.failed if bracket.failed is not None else bracket.maximum
        ax.plot([low, high], [row, row], color=color, lw=6, alpha=0.3, solid_capstyle="butt")
        for step in bracket.steps:
            lengths.append(step.length)
            ax.scatter(
                [step.length],
                [row + (0.18 if step.attempt else 0)],
                s=46,
                marker="D" if step.attempt else "o",
                facecolors=color if step.solved else "none",
                edgecolors=color,
                linewidths=1.5,
                zorder=3,
            )
    ax.set_yticks(range(len(families)), [figures.text(f) for f in families])
    ax.set_ylim(-0.6, len(families) - 0.4)
    figures.length_axis(
        ax, lengths or [1], "sequence length (log scale); filled: solved, hollow: failed"
    )
    ax.set_title(f"{figures.text(task)}: frontier per family (bar: the bracket)")
    return fig
