"""The report's figures: one function per figure, each taking the report's tables for one task.

`cells` has one row per cell (harness/report/read.py's `frame`): `score`, `spread`,
`seeds` and `solved` are the verdict over its seeds (the numbers the tables print),
`test_score` and `test_score_len_<L>` the search seed's best model at its length and
longer ones; `trials` one row per trial (child run), hyperparameters in `hp:<name>`.
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


def colors(cells: pd.DataFrame) -> dict[str, str]:
    """One colour per family, the same in every figure of a report."""
    families = sorted(cells["family"].unique())
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(families)}


def _new(
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


def _direction(cells: pd.DataFrame) -> str:
    return cells["direction"].iloc[0]


def _ylabel(cells: pd.DataFrame, what: str) -> str:
    row = cells.iloc[0]
    better = "lower" if row["direction"] == "min" else "higher"
    return f"{what} {text(row['metric'])} ({better} is better)"


def _scale_y(ax, values) -> None:
    """Log y when the scores are positive and span more than two decades (losses, MSE)."""
    values = np.asarray([v for v in values if np.isfinite(v)], dtype=float)
    if len(values) and values.min() > 0 and values.max() / values.min() > 100:
        ax.set_yscale("log")


def _length_axis(ax, lengths, label: str) -> None:
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


def _baseline(ax, cells: pd.DataFrame) -> None:
    """The trivial predictor's score and the solved bar, at the lengths the cells ran."""
    by_length = cells.groupby("length")[["baseline", "solved_bar"]].first().sort_index()
    ax.plot(by_length.index, by_length["baseline"], "k--", lw=1.2, label="trivial baseline")
    ax.plot(
        by_length.index, by_length["solved_bar"], ":", color="#2ca02c", lw=1.2, label="solved bar"
    )


def score_vs_length(cells: pd.DataFrame, task: str) -> Figure:
    """Test score (mean and spread over seeds) versus length per family, baseline drawn."""
    palette, rows = colors(cells), cells[cells["task"] == task]
    fig, axes = _new()
    ax = axes[0, 0]
    for family, group in rows.groupby("family", sort=True):
        group = group.sort_values("length")
        score = group["score"]
        ax.errorbar(
            group["length"],
            score,
            yerr=group["spread"],
            color=palette[family],
            marker="o",
            capsize=3,
            label=text(family),
        )
        solved = group[group["solved"]]
        ax.scatter(
            solved["length"],
            score[group["solved"]],
            s=120,
            facecolors="none",
            edgecolors=palette[family],
            linewidths=1.5,
        )
    _baseline(ax, rows)
    _scale_y(ax, [*rows["score"], *rows["baseline"]])
    _length_axis(ax, rows["length"], "sequence length (log scale); circled: solved")
    ax.set_ylabel(_ylabel(rows, "test"))
    ax.set_title(f"{text(task)}: test score versus length")
    ax.legend(fontsize=8)
    return fig


def length_generalisation(cells: pd.DataFrame, task: str) -> Figure | None:
    """Best model trained at L, tested at L and at the longer lengths; None without such tests."""
    palette, rows = colors(cells), cells[cells["task"] == task]
    longer = sorted(
        (c for c in rows.columns if c.startswith("test_score_len_")),
        key=lambda c: int(c.rsplit("_", 1)[1]),
    )
    if not longer or rows[longer].isna().all().all():
        return None
    fig, axes = _new()
    ax = axes[0, 0]
    lengths = sorted(rows["length"].unique())
    labelled = set()
    for _, row in rows.sort_values(["family", "length"]).iterrows():
        points = [(row["length"], row["test_score"])] + [
            (int(c.rsplit("_", 1)[1]), row[c]) for c in longer if pd.notna(row[c])
        ]
        if len(points) < 2:
            continue
        xs, ys = zip(*points, strict=True)
        family = row["family"]
        ax.plot(
            xs,
            ys,
            marker="o",
            color=palette[family],
            label=None if family in labelled else text(family),
        )
        labelled.add(family)
    _baseline(ax, rows)
    _scale_y(ax, rows[["test_score", *longer]].to_numpy().ravel())
    tested = [*lengths, *(int(c.rsplit("_", 1)[1]) for c in longer)]
    _length_axis(ax, tested, "test length (log scale); each line starts at its training length")
    ax.set_ylabel(_ylabel(rows, "test"))
    ax.set_title(f"{text(task)}: length generalisation")
    ax.legend(fontsize=7)
    return fig


def anytime(cells: pd.DataFrame, trials: pd.DataFrame, task: str) -> Figure | None:
    """Best validation score so far versus wall-clock time of the search, a panel per length."""
    palette, rows = colors(cells), cells[cells["task"] == task]
    done = trials[trials["parent_id"].isin(rows["run_id"]) & trials["objective"].notna()]
    if done.empty:
        return None
    lengths = sorted(rows["length"].unique())
    cols = min(len(lengths), 4)
    fig, axes = _new(math.ceil(len(lengths) / cols), cols, width=4.2, sharey=True, gaps=(0.3, 0.85))
    for ax in axes.ravel()[len(lengths) :]:
        ax.set_visible(False)
    better = np.fmin if _direction(rows) == "min" else np.fmax
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
    fig, axes = _new(
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


# -- probes -------------------------------------------------------------------------------------


def _family_colors(families) -> dict[str, str]:
    return {f: PALETTE[i % len(PALETTE)] for i, f in enumerate(sorted(set(families)))}


def gradient_flow(curves: pd.DataFrame) -> Figure:
    """Gradient norm versus distance from the last step (log y), a panel per stage and length.

    `curves` has columns family, length, stage, distance, norm.
    """
    palette = _family_colors(curves["family"])
    stages = [s for s in ("init", "trained") if s in set(curves["stage"])]
    lengths = sorted(curves["length"].unique())
    fig, axes = _new(len(stages), len(lengths), 4.4, 3.2, margins=(0.8, 0.2, 0.65, 0.55))
    for r, stage in enumerate(stages):
        for c, length in enumerate(lengths):
            ax = axes[r, c]
            rows = curves[(curves["stage"] == stage) & (curves["length"] == length)]
            for family, group in rows.groupby("family", sort=True):
                group = group.sort_values("distance")
                ax.plot(
                    group["distance"],
                    group["norm"].where(group["norm"] > 0),
                    color=palette[family],
                    lw=1.3,
                    label=text(family),
                )
            ax.set_yscale("log")
            ax.set_title(f"L={length}, {'at initialisation' if stage == 'init' else 'trained'}")
            ax.set_xlabel("distance from the last step (steps)")
            if c == 0:
                ax.set_ylabel("mean ||d loss / d x_t|| (log scale)")
    axes[0, 0].legend(fontsize=7)
    fig.suptitle("Gradient flow: d(loss at the last step) / d x_t")
    return fig


def rotation_vs_learned(curves: dict[str, dict[int, float]]) -> Figure:
    """Counting accuracy versus test length: the rotation oracle beside the learned models.

    `curves` maps a label to {test length: accuracy}; the oracle's label says "weights set".
    """
    palette = _family_colors(curves)
    fig, axes = _new()
    ax = axes[0, 0]
    tested = []
    for label, points in sorted(curves.items()):
        oracle = "weights set" in label
        xs, ys = zip(*sorted(points.items()), strict=True)
        tested += list(xs)
        ax.plot(
            xs,
            ys,
            marker="s" if oracle else "o",
            ls="-" if oracle else "--",
            lw=2.2 if oracle else 1.5,
            color=palette[label],
            zorder=1 if oracle else 3,
            label=text(label),
        )
    _length_axis(ax, tested, "test length (log scale)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("per-step accuracy (higher is better)")
    ax.set_title("counting mod 8: rotation oracle versus learned models")
    ax.legend(fontsize=7)
    return fig


def hindsight(cells: pd.DataFrame, bidirectional) -> Figure:
    """first_token accuracy versus length: forward families solid, bidirectional dashed."""
    rows = cells[cells["task"] == "first_token"]
    palette = colors(cells)
    fig, axes = _new()
    ax = axes[0, 0]
    for family, group in rows.groupby("family", sort=True):
        group = group.sort_values("length")
        both = bidirectional(family)
        ax.plot(
            group["length"],
            group["score"],
            marker="o",
            ls="--" if both else "-",
            color=palette[family],
            label=f"{text(family)} ({'bidirectional' if both else 'forward'})",
        )
    _baseline(ax, rows)
    _length_axis(ax, rows["length"], "sequence length (log scale)")
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("test accuracy (higher is better)")
    ax.set_title("Hindsight: first_token, forward versus bidirectional")
    ax.legend(fontsize=8)
    return fig


def cost_scaling(
    costs: pd.DataFrame,
    slopes: dict[str, tuple[float, float]],
    oom: dict[str, int],
    crossover: float,
    crossover_kind: str,
) -> Figure:
    """Seconds and MiB per training step versus length, log-log, a panel each.

    `costs` has columns family, length, seconds, memory_mb; `slopes` maps a family to its
    (time, memory) exponents; `oom` the first length that ran out of memory.
    """
    palette = _family_colors(costs["family"])
    crossed = np.isfinite(crossover)  # a dotted line and a second title line
    fig, axes = _new(
        1, 2, 5.0, 3.8, margins=(0.85, 0.2, 0.8 if crossed else 0.55, 0.55), gaps=(1.05, 0)
    )
    panels = (("seconds", 0, "seconds per training step"), ("memory_mb", 1, "peak MiB per step"))
    for column, index, label in panels:
        ax = axes[0, index]
        for family, group in costs.groupby("family", sort=True):
            group = group[group[column] > 0].sort_values("length")
            if group.empty:
                continue
            name = f"{text(family)} (slope {slopes[family][index]:.2f})"
            if family in oom:
                name += f", out of memory at {oom[family]}"
            ax.plot(group["length"], group[column], marker="o", color=palette[family], label=name)
        if crossed:
            ax.axvline(crossover, color="k", ls=":", lw=1.2)
        _length_axis(ax, costs["length"], "sequence length (log scale)")
        ax.set_yscale("log")
        ax.set_ylabel(f"{label} (log scale)")
        ax.legend(fontsize=7, loc="upper left")
    title = "Cost versus length (slope = exponent of L)"
    if crossed:
        title += f"\ndotted: attention slower than an LSTM from L={crossover:.0f} ({text(crossover_kind)})"
    fig.suptitle(title)
    return fig


def frontier(task: str, brackets: dict) -> Figure:
    """Every length probed per family (filled: solved, hollow: failed; diamonds: the
    confirming second seed), the bracket as a bar from longest solved to shortest failed."""
    families = sorted(brackets)
    palette = _family_colors(families)
    longest = max((len(text(f)) for f in families), default=0)
    fig, axes = _new(
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
    ax.set_yticks(range(len(families)), [text(f) for f in families])
    ax.set_ylim(-0.6, len(families) - 0.4)
    _length_axis(ax, lengths or [1], "sequence length (log scale); filled: solved, hollow: failed")
    ax.set_title(f"{text(task)}: frontier per family (bar: the bracket)")
    return fig
