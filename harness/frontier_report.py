"""The frontier's section of the leaderboard: its brackets by budget, the cells that confirmed
their failures, and a figure per task (harness/frontier.py finds and records the brackets).

A feature's section lives beside the feature and reaches the report as a
`harness.report.Feature` that `harness report` passes in: the report imports no feature.
"""

from __future__ import annotations

from harness import figures
from harness.frontier import FrontierResult, confirming_runs, latest_frontiers
from harness.report import Shown
from harness.report.read import Results
from harness.report.render import figure_file
from harness.report.tables import Section, Table, number, score_text, short
from harness.results import budget_label


def section(results: Results) -> Shown | None:
    """The leaderboard's frontier section (a `harness.report.Feature`), showing the cells that
    confirm the frontiers' failures; None without a finished frontier."""
    frontiers = latest_frontiers(results.runs)
    if not frontiers:
        return None
    found = frontier_section(frontiers, {cell.run_id: cell for cell in results.cells})
    return Shown(found, confirming_runs(frontiers))


def frontier_section(frontiers: list[FrontierResult], cells: dict) -> Section:
    """Per budget a table of brackets (rows tasks, columns families) and the table of the
    cells that confirmed its failures (`cells`: the report's cells by run id); a figure per
    task and budget."""
    part = Section(
        "Frontier",
        [
            "The longest length each family solves at an equal parameter budget. [a, b): "
            "solved at length a, failed at length b, the failure confirmed with another "
            "search seed; ≥ a: solved up to the largest length tried; < b: failed at the "
            "smallest. A cell counts as solved when the mean over its seeds meets the bar."
        ],
        markdown_figures=None,
    )
    for key in sorted({f.budget_key for f in frontiers}):
        group = [f for f in frontiers if f.budget_key == key]
        families = sorted({f.family for f in group})
        tasks = sorted({f.task for f in group})
        table = Table(["task", *families], [])
        for task in tasks:
            own = {f.family: f for f in group if f.task == task}
            row = len(table.rows)
            for column, family in enumerate(families, start=1):
                if family in own:
                    probes = ", ".join(
                        f"L={s.length}{'✓' if s.solved else '✗'}" for s in own[family].bracket.steps
                    )
                    table.titles[(row, column)] = f"run {own[family].run_id[:8]}: {probes}"
            table.rows.append(
                [task, *(own[f].bracket.text() if f in own else "" for f in families)]
            )
        first = group[0]
        label = budget_label(first.budget, first.seeds, first.seed)
        part.tables.append((f"Budget {key}: {label}.", table))
        part.tables += confirmation_tables(group, cells)
        for task in tasks:
            own = {f.family: f.bracket for f in group if f.task == task}
            part.figures.append(
                (
                    figure_file("frontier", task, key),
                    "frontier",
                    figures.Drawing(figure, (task, own)),
                )
            )
    return part


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
