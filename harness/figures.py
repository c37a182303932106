"""The report's figures: the drawing kit every section uses, and the leaderboard's figures.

The leaderboard's figures take `cells`, one row per cell (harness/report/read.py's
`frame`): `score`, `spread` and `solved` are the verdict over its seeds (the numbers
the tables print), `score_len_<L>` and `spread_len_<L>` the verdict at a longer
length it was tested at, `baseline[_len_<L>]` and `solved_bar[_len_<L>]` the lines
drawn beside them; `trials` has one row per trial (child run), hyperparameters in
`hp:<name>`. A feature's figures (the frontier's, the probes') live beside its
section and draw with this kit.

Figures are drawn on bare `Figure` objects (no pyplot state) with fixed settings,
and `png` writes them without a timestamp or version, so the same tables give
the same bytes. A report names each figure by a `Drawing` (the function and its
arguments) and `draw` draws them all, on every core (`processes`).
"""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import matplotlib
import matplotlib.ticker
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

STYLE = {
    "font.family": "DejaVu Sans",
    "font.size": 9,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "svg.hashsalt": "harness",
    "path.simplify": False,
}
DPI = 90
PALETTE = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
    "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf",
]  # fmt: skip


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes without metadata that changes between builds."""
    buffer = io.BytesIO()
    with matplotlib.rc_context(STYLE):
        fig.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()


@dataclass(frozen=True)
class Drawing:
    """A figure to draw: one of this module's figure functions and its arguments."""

    function: Callable[..., Figure | None]
    args: tuple

    def png(self) -> bytes | None:
        """The figure's PNG bytes; None where the function found nothing to draw."""
        fig = self.function(*self.args)
        return None if fig is None else png(fig)


FRAMEWORKS = ("jax", "tensorflow", "torch")  # their native threads make a forked child unsafe


def processes(count: int) -> int:
    """How many processes draw `count` figures: one per core, forked from this one, which
    draws alone where there is one core or a thread a fork would not carry (a framework's,
    or another Python thread)."""
    if threading.active_count() > 1 or any(name in sys.modules for name in FRAMEWORKS):
        return 1
    return max(1, min(count, os.cpu_count() or 1))


def draw(drawings: list[Drawing], workers: int) -> list[bytes | None]:
    """Each drawing's PNG bytes, in `workers` processes (`processes`; matplotlib draws on
    one core)."""
    if workers == 1:
        return [d.png() for d in drawings]
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
        return list(pool.map(Drawing.png, drawings))


def text(value: object) -> str:
    """A store value made safe for matplotlib text (no mathtext)."""
    return str(value).replace("$", r"\$")


def family_colors(families) -> dict[str, str]:
    """One colour per family, the same in every figure of a report."""
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(sorted(set(families)))}


def new(
    rows: int = 1,
    cols: int = 1,
    width: float = 6.0,
    height: float = 3.6,
    *,
    sharey: bool | str = False,
    margins: tuple[float, float, float, float] = (0.8, 0.2, 0.4, 0.55),
    gaps: tuple[float, float] = (0.75, 0.85),
):
    """A figure of rows x cols panels, `width` x `height` inches each, laid out by fixed
    margins (left, right, top, bottom) and gaps (across, down) in inches. A constrained
    layout measures every text once more before drawing: 40% of a report's build."""
    left, right, top, bottom = margins
    across, down = gaps
    size = (width * cols, height * rows)
    with matplotlib.rc_context(STYLE):
        fig = Figure(figsize=size)
        axes = fig.subplots(rows, cols, squeeze=False, sharey=sharey)
    panel = (
        (size[0] - left - right - across * (cols - 1)) / cols,
        (size[1] - top - bottom - down * (rows - 1)) / rows,
    )
    fig.subplots_adjust(
        left=left / size[0],
        right=1 - right / size[0],
        top=1 - top / size[1],
        bottom=bottom / size[1],
        wspace=across / panel[0],
        hspace=down / panel[1],
    )
    return fig, axes


def length_axis(ax, lengths, label: str) -> None:
    """Log-scaled length axis labelled with the lengths themselves."""
    values = sorted({int(L) for L in lengths}, reverse=True)
    ticks = values[:1]
    for length in values[1:]:  # from the longest down, keeping the labels apart
        if math.log10(ticks[-1] / length) >= 0.12:
            ticks.append(length)
    ticks.reverse()
    ax.set_xscale("log")
    ax.set_xticks(ticks, [str(L) for L in ticks])
    ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
    ax.set_xlabel(label)


def _ylabel(cells: pd.DataFrame, what: str) -> str:
    row = cells.iloc[0]
    better = "lower" if row["direction"] == "min" else "higher"
    return f"{what} {text(row['metric'])} ({better} is better)"


def _scale_y(ax, values) -> None:
    """Log y when the values are positive and span more than two decades (losses, MSE)."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(values) and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")


REFERENCES = {
    "baseline": ("trivial baseline", {"color": "k", "ls": "--"}),
    "solved_bar": ("solved bar", {"color": "#2ca02c", "ls": ":"}),
}
"""The lines drawn beside the scores: the trivial predictor's score and the solved bar."""


def _references(ax, by_length: dict[str, dict[int, float]]) -> list[float]:
    """Each reference line by length: across the whole panel where it is one value, else
    through its lengths; returns the values drawn."""
    drawn = []
    for column, (label, style) in REFERENCES.items():
        points = sorted(by_length[column].items())
        values = {v for _, v in points}
        if len(values) == 1:
            ax.axhline(points[0][1], lw=1.2, label=label, **style)
        else:
            ax.plot(*zip(*points, strict=True), lw=1.2, marker=".", label=label, **style)
        drawn += [v for _, v in points]
    return drawn


def _at_lengths(rows: pd.DataFrame) -> dict[str, dict[int, float]]:
    """The reference lines' values at the lengths the cells ran."""
    by_length = rows.groupby("length")[list(REFERENCES)].first()
    return {c: {int(L): float(v) for L, v in by_length[c].items()} for c in REFERENCES}


def _versus_length(cells: pd.DataFrame, task: str, title: str, styles: dict | None = None):
    """Each family's seed mean by length with the seeds' standard deviation as error bars
    (the numbers the tables print), circled where solved; `styles`: a family's label
    suffix and line style."""
    palette, rows = family_colors(cells["family"]), cells[cells["task"] == task]
    fig, axes = new()
    ax = axes[0, 0]
    for family, group in rows.groupby("family", sort=True):
        group = group.sort_values("length")
        suffix, ls = (styles or {}).get(family, ("", "-"))
        ax.errorbar(
            group["length"],
            group["score"],
            yerr=group["spread"],
            color=palette[family],
            ls=ls,
            marker="o",
            capsize=3,
            label=text(family) + suffix,
        )
        solved = group[group["solved"].astype(bool)]
        ax.scatter(
            solved["length"],
            solved["score"],
            s=120,
            facecolors="none",
            edgecolors=palette[family],
            linewidths=1.5,
        )
    drawn = _references(ax, _at_lengths(rows))
    _scale_y(ax, [*rows["score"], *drawn])
    length_axis(ax, rows["length"], "sequence length (log scale); circled: solved")
    ax.set_ylabel(_ylabel(rows, "test"))
    ax.set_title(title)
    ax.legend(fontsize=8)
    return fig


def score_vs_length(cells: pd.DataFrame, task: str) -> Figure:
    """Test score (mean and spread over seeds) versus length per family, baseline drawn."""
    return _versus_length(cells, task, f"{text(task)}: test score versus length")


def hindsight(cells: pd.DataFrame, task: str, bidirectional: Callable[[str], bool]) -> Figure:
    """The task's score (seed mean and std) versus length: forward families solid,
    bidirectional dashed."""
    styles = {
        f: (" (bidirectional)", "--") if bidirectional(f) else (" (forward)", "-")
        for f in cells["family"].unique()
    }
    title = f"Hindsight: {text(task)}, forward versus bidirectional"
    return _versus_length(cells, task, title, styles)


def _longer_lengths(cells: pd.DataFrame) -> list[int]:
    """The longer lengths the cells were tested at (their `score_len_<L>` columns)."""
    return sorted(int(c.rsplit("_", 1)[1]) for c in cells.columns if c.startswith("score_len_"))


def length_generalisation(cells: pd.DataFrame, task: str) -> Figure | None:
    """Each cell's seed mean (error bars: the seeds' std) at its training length and at the
    longer lengths it was tested at; None without such tests."""
    palette, rows = family_colors(cells["family"]), cells[cells["task"] == task]
    longer = _longer_lengths(rows)
    if not longer or rows[[f"score_len_{L}" for L in longer]].isna().all().all():
        return None
    fig, axes = new()
    ax = axes[0, 0]
    references = _at_lengths(rows)
    labelled, scores = set(), []
    for _, row in rows.sort_values(["family", "length"]).iterrows():
        points = [(row["length"], row["score"], row["spread"])]
        for L in longer:
            if pd.notna(row[f"score_len_{L}"]):
                points.append((L, row[f"score_len_{L}"], row[f"spread_len_{L}"]))
                for column in REFERENCES:
                    references[column].setdefault(L, row[f"{column}_len_{L}"])
        if len(points) < 2:
            continue
        xs, ys, spreads = zip(*points, strict=True)
        family = row["family"]
        ax.errorbar(
            xs,
            ys,
            yerr=spreads,
            marker="o",
            capsize=3,
            color=palette[family],
            label=None if family in labelled else text(family),
        )
        labelled.add(family)
        scores += ys
    drawn = _references(ax, references)
    _scale_y(ax, [*scores, *drawn])
    tested = [*rows["length"], *longer]
    length_axis(ax, tested, "test length (log scale); each line starts at its training length")
    ax.set_ylabel(_ylabel(rows, "test"))
    ax.set_title(f"{text(task)}: length generalisation")
    ax.legend(fontsize=7)
    return fig


def anytime(cells: pd.DataFrame, trials: pd.DataFrame, task: str) -> Figure | None:
    """Best validation score so far versus wall-clock time of the search, a panel per length."""
    palette, rows = family_colors(cells["family"]), cells[cells["task"] == task]
    done = trials[trials["parent_id"].isin(rows["run_id"]) & trials["objective"].notna()]
    if done.empty:
        return None
    lengths = sorted(rows["length"].unique())
    cols = min(len(lengths), 4)
    fig, axes = new(math.ceil(len(lengths) / cols), cols, width=4.2, sharey=True, gaps=(0.3, 0.85))
    for ax in axes.ravel()[len(lengths) :]:
        ax.set_visible(False)
    better = np.fmin if rows["direction"].iloc[0] == "min" else np.fmax
    for ax, length in zip(axes.ravel(), lengths, strict=False):
        for _, cell in rows[rows["length"] == length].sort_values("family").iterrows():
            own = trials[trials["parent_id"] == cell["run_id"]]
            scored = own[own["objective"].notna()].sort_values(["end_time", "trial_id"])
            if scored.empty:
                continue
            seconds = (scored["end_time"] - own["start_time"].min()) / 1000
            best = better.accumulate(scored["objective"].to_numpy())
            ax.step(
                seconds,
                best,
                where="post",
                marker="o",
                markersize=3,
                color=palette[cell["family"]],
                label=text(cell["family"]),
            )
        ax.set_xlim(left=0)
        ax.set_title(f"{text(task)} L={length}")
        ax.set_xlabel("wall-clock seconds of the search")
    for row in axes:
        row[0].set_ylabel(_ylabel(rows, "best validation"))
    axes[0, 0].legend(fontsize=7)
    return fig


def hyperparameters(cells: pd.DataFrame, trials: pd.DataFrame, task: str) -> Figure | None:
    """Each trial's validation score versus each hyperparameter, one row per family."""
    rows = cells[cells["task"] == task]
    done = trials[trials["parent_id"].isin(rows["run_id"]) & trials["objective"].notna()]
    done = done.merge(rows[["run_id", "family", "length"]], left_on="parent_id", right_on="run_id")
    if done.empty:
        return None
    families = sorted(done["family"].unique())
    names = {
        f: sorted(
            c
            for c in done.columns
            if c.startswith("hp:") and done.loc[done["family"] == f, c].notna().any()
        )
        for f in families
    }
    cols = max(1, max(len(n) for n in names.values()))
    fig, axes = new(
        len(families),
        cols,
        3.2,
        2.6,
        sharey="row",
        margins=(1.0, 1.1, 0.6, 0.55),
        gaps=(0.25, 0.75),
    )
    lengths = sorted(rows["length"].unique())
    shades = dict(
        zip(
            lengths, matplotlib.colormaps["viridis"](np.linspace(0, 0.9, len(lengths))), strict=True
        )
    )
    for r, family in enumerate(families):
        own = done[done["family"] == family]
        for c in range(cols):
            ax = axes[r, c]
            if c >= len(names[family]):
                ax.set_visible(False)
                continue
            name = names[family][c]
            values = own[name].dropna()
            numeric = pd.to_numeric(values, errors="coerce")
            if numeric.notna().all() and not values.isin(["True", "False"]).any():
                xs = numeric
                if numeric.min() > 0 and numeric.max() / numeric.min() >= 100:
                    ax.set_xscale("log")
            else:
                categories = sorted(values.unique())
                xs = values.map({v: i for i, v in enumerate(categories)})
                ax.set_xticks(range(len(categories)), [text(v) for v in categories])
            scored = own.loc[values.index].assign(x=xs).sort_values("length", kind="stable")
            shade = np.array([shades[L] for L in scored["length"]]).reshape(-1, 4)
            ax.scatter(scored["x"], scored["objective"], s=18, c=shade)  # longer lengths on top
            _scale_y(ax, own["objective"])
            ax.set_xlabel(text(name.removeprefix("hp:")))
            if c == 0:
                ax.set_ylabel(f"{text(family)}\nvalidation {text(rows['metric'].iloc[0])}")
    handles = [
        Line2D([], [], ls="", marker="o", markersize=4.5, color=shades[L], label=f"L={L}")
        for L in lengths
    ]
    fig.legend(handles=handles, loc="upper right", fontsize=8, title="length")
    fig.suptitle(f"{text(task)}: trial score versus each hyperparameter")
    return fig
