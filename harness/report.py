"""`harness report`: the leaderboard (markdown), an HTML report and PNG figures, from MLflow alone.

The store is read in pages of runs (params, metrics and tags come with each
page), never run by run and never from the tuner folders. Everything is
sorted and figures are written without timestamps, so one store always gives
byte-identical files. Every value from the store is escaped: `|`, `<` and `>`
in markdown, `html.escape` in HTML.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import UserError
from harness.tracking import KIND, PARENT, TRIAL_ID, Tracker, _retry, resolve_uri

STATUS = "harness.status"
PAGE = 1000
START, END = "<!-- leaderboard:start -->", "<!-- leaderboard:end -->"
CELL_METRICS = (
    "test_score", "solved", "baseline", "solved_bar", "seed_mean", "seed_std", "seed_count",
    "parameters", "seconds_per_epoch", "epochs_to_solve", "trials_completed", "trials_diverged",
    "trials_failed",
)  # fmt: skip
MACHINE = ("device", "backend", "framework", "keras")
CAPTIONS = {
    "score_vs_length": "Test score versus sequence length per family (log-scaled length); "
    "dashed: the trivial baseline, dotted: the solved bar, circled: solved.",
    "length_generalisation": "Length generalisation: each line is a best model trained at one "
    "length and tested at longer ones.",
    "anytime": "Anytime performance of the search: the best validation score so far versus "
    "wall-clock time, one line per cell.",
    "hyperparameters": "Each trial's validation score versus each hyperparameter, per family: "
    "a best score at the edge of a range, or few trials near it, means the budget was short.",
    "cost_vs_length": "Cost: seconds per epoch of the best model versus length per family, "
    "log-log; the fitted slope is the exponent of length.",
    "gradient_flow": "Gradient flow: the mean norm of d(loss at the last step)/d(x_t) versus the "
    "distance from the last step, log scale, at initialisation and after training.",
    "rotation_oracle": "Counting mod 8: the hand-built rotation counter (weights set, not trained) "
    "beside the learned models, each tested at its training length and at longer ones.",
    "hindsight": "Hindsight: first_token accuracy versus length, forward families solid, "
    "bidirectional dashed; dotted: the solved bar, dashed black: chance.",
    "cost_scaling": "Cost scaling: seconds and peak memory per training step versus length, "
    "log-log, fitted exponents in the legend; dotted: where attention becomes slower than an LSTM.",
}
PROBE_TAG = "harness.probe"
SERIES = ("grad_norm/", "step_seconds/", "step_memory_mb/", "test_accuracy/")
"""Probe metrics whose history (one value per distance or length) the report reads."""
ORACLE = "rotation_oracle"
IMAGE_CHECK = (
    'window.addEventListener("load", function () {\n'
    "  var images = Array.prototype.slice.call(document.images);\n"
    "  document.body.dataset.images = images.length;\n"
    "  document.body.dataset.imagesLoaded = images.filter(function (image) {\n"
    "    return image.complete && image.naturalWidth > 0;\n"
    "  }).length;\n"
    "});"
)


@dataclass
class Results:
    """What the report reads from one experiment."""

    experiment: str
    cells: pd.DataFrame  # one row per finished cell: params, tags, metrics of its parent run
    trials: pd.DataFrame  # one row per trial of those cells: times, objective, hp:<name>
    unfinished: int = 0  # parent runs not FINISHED (running, interrupted)
    superseded: int = 0  # older finished runs of the same task, length and family
    unreadable: int = 0  # parent runs without a usable task, length, family or direction
    probes: dict[str, Probe] = field(default_factory=dict)  # the latest finished run per probe


@dataclass
class Probe:
    """A probe's parent run: params, last metric values, and the histories of its series."""

    name: str
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    series: dict[str, list[tuple[int, float]]]
    machine: str = ""  # device, Keras, backend and framework from the run's tags


@dataclass
class Table:
    headers: list[str]
    rows: list[list[str]]


@dataclass
class Section:
    """One task: its tables, the cost slopes and its figures (file name, kind, PNG bytes)."""

    task: str
    metric: str
    direction: str
    scores: Table
    costs: Table
    slopes: dict[str, float]
    figures: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class ProbeSection:
    """One probe's part of the report: a title, paragraphs, tables and figures."""

    title: str
    paragraphs: list[str]
    tables: list[tuple[str, Table]]  # (caption, table)
    figures: list[tuple[str, str, bytes]] = field(default_factory=list)


@dataclass
class Written:
    leaderboard: Path
    html: Path
    figures: list[Path]


# -- reading the store ----------------------------------------------------------


def open_store(uri: str | None) -> Tracker:
    """A checked Tracker; a SQLite file that does not exist is an error, never created."""
    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"tracking store '{uri}' does not exist: run `harness run` first, "
            "or give --tracking-uri"
        )
    tracker = Tracker(uri)
    tracker.check()
    return tracker


def suite_experiment(suite: str) -> str:
    """The experiment a suite writes to: its name (read from the file when given a path)."""
    if suite.endswith(".toml") or Path(suite).is_file():
        from harness.suites import load_suite

        return load_suite(suite).name
    return suite


def read_store(
    tracker: Tracker, experiment: str, progress: Callable[[str], None] = lambda line: None
) -> Results:
    """Every active run of `experiment`, in pages, split into finished cells and their trials."""
    from mlflow.entities import ViewType

    client = tracker.client
    found = _retry(lambda: client.get_experiment_by_name(experiment))
    if found is None or found.lifecycle_stage != "active":
        raise UserError(
            f"experiment '{experiment}' does not exist in '{tracker.uri}': {_experiments(tracker)}"
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
            break
    results = _tables(experiment, runs)
    results.probes = _probes(client, runs)
    if results.cells.empty and not results.probes:
        raise UserError(
            f"experiment '{experiment}' in '{tracker.uri}' has no finished cells "
            f"({len(runs)} runs): {_experiments(tracker)}"
        )
    return results


def _experiments(tracker: Tracker) -> str:
    names = sorted(e.name for e in _retry(lambda: tracker.client.search_experiments()))
    return f"experiments are {', '.join(names)}" if names else "the store has no experiments"


def _probes(client, runs: list) -> dict[str, Probe]:
    """The latest finished probe run of each probe, with the histories of its series."""
    latest = {}
    for run in sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id)):
        tags = run.data.tags
        if tags.get(KIND) == "probe" and run.info.status == "FINISHED" and tags.get(PROBE_TAG):
            latest[tags[PROBE_TAG]] = run
    probes = {}
    for name, run in sorted(latest.items()):
        series = {}
        for key in sorted(k for k in run.data.metrics if k.startswith(SERIES)):
            history = _retry(
                lambda key=key, run_id=run.info.run_id: client.get_metric_history(run_id, key)
            )
            series[key] = sorted({m.step: m.value for m in history}.items())
        tags = {k: run.data.tags.get(f"harness.{k}", "unknown") for k in MACHINE}
        machine = (
            f"{tags['device']}; Keras {tags['keras']} on {tags['backend']} ({tags['framework']})"
        )
        probes[name] = Probe(
            name, run.info.run_id, dict(run.data.params), dict(run.data.metrics), series, machine
        )
    return probes


def _cell_row(run) -> dict | None:
    params, tags = run.data.params, run.data.tags
    try:
        length = int(params["length"])
        row = {k: params[k] for k in ("task", "family", "metric", "direction")}
    except (KeyError, ValueError):
        return None
    if row["direction"] not in ("min", "max"):
        return None
    row.update(
        run_id=run.info.run_id,
        start_time=run.info.start_time,
        length=length,
        status=tags.get(STATUS, ""),
    )
    row.update({k: tags.get(f"harness.{k}", "unknown") for k in MACHINE})
    row.update({k: np.nan for k in CELL_METRICS})
    row.update(run.data.metrics)
    return row


def _trial_row(run) -> dict:
    info, data = run.info, run.data
    row = {
        "run_id": info.run_id,
        "parent_id": data.tags[PARENT],
        "trial_id": data.tags.get(TRIAL_ID, ""),
        "status": data.tags.get(STATUS, ""),
        "start_time": info.start_time,
        "end_time": info.end_time,
        "objective": data.metrics.get("objective", np.nan),
    }
    row.update({f"hp:{k}": v for k, v in data.params.items()})
    return row


def _tables(experiment: str, runs: list) -> Results:
    parents = [r for r in runs if r.data.tags.get(KIND) == "cell"]
    finished = [r for r in parents if r.info.status == "FINISHED"]
    rows = [row for row in map(_cell_row, finished) if row is not None]
    cells = pd.DataFrame(rows, columns=None if rows else ["run_id", "task", "length", "family"])
    kept = len(cells)
    if rows:  # the latest finished run of each (task, length, family); older budgets are superseded
        cells = (
            cells.sort_values(["start_time", "run_id"])
            .drop_duplicates(["task", "length", "family"], keep="last")
            .sort_values(["task", "family", "length"])
            .reset_index(drop=True)
        )
        cells = cells[sorted(cells.columns)]
    ids = set(cells["run_id"])
    trial_rows = [
        _trial_row(r)
        for r in runs
        if r.data.tags.get(KIND) == "trial" and r.data.tags.get(PARENT) in ids
    ]
    trials = pd.DataFrame(
        trial_rows,
        columns=None
        if trial_rows
        else ["run_id", "parent_id", "trial_id", "status", "start_time", "end_time", "objective"],
    )
    trials = trials[sorted(trials.columns)].sort_values(["parent_id", "start_time", "run_id"])
    return Results(
        experiment,
        cells,
        trials.reset_index(drop=True),
        unfinished=len(parents) - len(finished),
        superseded=kept - len(cells),
        unreadable=len(finished) - kept,
    )


# -- tables ----------------------------------------------------------------------------


def _finite(value) -> bool:
    return isinstance(value, int | float | np.number) and bool(np.isfinite(value))


def _num(value, digits: int = 4) -> str:
    return f"{value:.{digits}g}" if _finite(value) else "—"


def score_text(row) -> str:
    """Mean ± std over seeds where extra seeds ran, else the test score; ✓ when solved."""
    if not _finite(row["test_score"]):
        return "diverged" if row["status"].startswith("all trials") else "—"
    if row["seed_count"] > 1 and _finite(row["seed_mean"]):
        text = f"{row['seed_mean']:.4g} ± {_num(row['seed_std'], 2)}"
    else:
        text = f"{row['test_score']:.4g}"
    return text + (" ✓" if row["solved"] == 1 else "")


def score_table(rows: pd.DataFrame) -> Table:
    """One row per family, one column per length, the longest length solved; baseline and bar."""
    lengths = sorted(rows["length"].unique())
    arrow = "≤" if rows["direction"].iloc[0] == "min" else "≥"
    table = Table(["family", *(f"L={L}" for L in lengths), "longest solved"], [])
    for family, group in rows.groupby("family", sort=True):
        by_length = {row["length"]: row for _, row in group.iterrows()}
        solved = group.loc[group["solved"] == 1, "length"]
        table.rows.append(
            [
                family,
                *(score_text(by_length[L]) if L in by_length else "" for L in lengths),
                f"L={solved.max()}" if len(solved) else "—",
            ]
        )
    first = rows.groupby("length")[["baseline", "solved_bar"]].first()
    table.rows.append(["trivial baseline", *(_num(first.loc[L, "baseline"]) for L in lengths), ""])
    table.rows.append(
        ["solved bar", *(f"{arrow} {_num(first.loc[L, 'solved_bar'])}" for L in lengths), ""]
    )
    return table


def cost_table(rows: pd.DataFrame) -> Table:
    """Cost of each cell's best model, and how many of the cell's trials diverged."""
    table = Table(
        [
            "family",
            "length",
            "parameters",
            "seconds per epoch",
            "epochs to solve",
            "diverged trials",
        ],
        [],
    )
    for _, row in rows.iterrows():
        diverged = f"{_num(row['trials_diverged'])} of {_num(row['trials_completed'])}"
        if _finite(row["trials_failed"]) and row["trials_failed"] > 0:
            diverged += f" ({row['trials_failed']:.0f} failed)"
        table.rows.append(
            [
                row["family"],
                str(row["length"]),
                f"{row['parameters']:,.0f}" if _finite(row["parameters"]) else "—",
                _num(row["seconds_per_epoch"], 3),
                f"{row['epochs_to_solve']:.0f}" if _finite(row["epochs_to_solve"]) else "—",
                diverged,
            ]
        )
    return table


def machines(cells: pd.DataFrame) -> list[str]:
    """Which machine and backend produced the cells, with how many cells each."""
    if cells.empty:
        return []
    counts = cells.groupby(list(MACHINE)).size().sort_index()
    return [
        f"{device}; Keras {keras} on {backend} ({framework}): {n} cell{'s' * (n != 1)}"
        for (device, backend, framework, keras), n in counts.items()
    ]


def _slug(name: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", name)
    return slug if slug == name else f"{slug}-{hashlib.sha1(name.encode()).hexdigest()[:8]}"


def section(results: Results, task: str) -> Section:
    """A task's tables and figures."""
    from harness import figures

    cells, trials = results.cells, results.trials
    rows = cells[cells["task"] == task]
    cost, slopes = figures.cost_vs_length(cells, task)
    drawn = {
        "score_vs_length": figures.score_vs_length(cells, task),
        "length_generalisation": figures.length_generalisation(cells, task),
        "anytime": figures.anytime(cells, trials, task),
        "hyperparameters": figures.hyperparameters(cells, trials, task),
        "cost_vs_length": cost,
    }
    return Section(
        task,
        rows["metric"].iloc[0],
        rows["direction"].iloc[0],
        score_table(rows),
        cost_table(rows),
        slopes,
        [
            (f"{kind}_{_slug(task)}.png", kind, figures.png(fig))
            for kind, fig in drawn.items()
            if fig is not None
        ],
    )


# -- probe sections ----------------------------------------------------------------------------


def is_bidirectional(family: str) -> bool:
    """Families that wrap a backward pass: by the registry's naming, their names start with bi."""
    return family.startswith("bi")


def _split_key(key: str) -> list[str]:
    return key.split("/")


def gradient_section(probe: Probe) -> ProbeSection:
    """Decay per step and the share of the signal reaching the first input, per family."""
    from harness import figures

    rows = []
    for key, points in probe.series.items():
        kind, *rest = _split_key(key)
        if kind != "grad_norm" or len(rest) != 3:
            continue
        family, length, stage = rest[0], int(rest[1].removeprefix("L")), rest[2]
        rows += [(family, length, stage, step, value) for step, value in points]
    curves = pd.DataFrame(rows, columns=["family", "length", "stage", "distance", "norm"])
    table = Table(
        [
            "family",
            "length",
            "decay per step, init",
            "decay per step, trained",
            "first input / last, init",
            "first input / last, trained",
        ],
        [],
    )
    combos = curves[["family", "length"]].drop_duplicates().sort_values(["family", "length"])
    for family, length in combos.itertuples(index=False):
        name = f"{family}/L{length}"
        table.rows.append(
            [
                family,
                str(length),
                _num(probe.metrics.get(f"decay_per_step/{name}/init", np.nan)),
                _num(probe.metrics.get(f"decay_per_step/{name}/trained", np.nan)),
                _num(probe.metrics.get(f"first_input_ratio/{name}/init", np.nan), 3),
                _num(probe.metrics.get(f"first_input_ratio/{name}/trained", np.nan), 3),
            ]
        )
    sources = sorted(
        f"{k.removeprefix('source/')}: {v}"
        for k, v in probe.params.items()
        if k.startswith("source/")
    )
    paragraphs = [
        f"Task {probe.params.get('task', '?')}, {probe.params.get('batch_size', '?')} examples. "
        "The decay per step is exp(slope) of log-norm fitted against the distance from the last "
        "step: a recurrence that keeps a fraction rho of the signal per step gives rho, and "
        "rho^(L-1) reaches the first input. 'First input / last' is that fraction as measured. "
        f"Machine: {probe.machine}.",
        "Trained models: " + "; ".join(sources) + "." if sources else "",
    ]
    fig = figures.gradient_flow(curves) if not curves.empty else None
    return ProbeSection(
        "Gradient flow",
        [p for p in paragraphs if p],
        [("Decay of the gradient signal per step of distance:", table)],
        [("probe_gradient_flow.png", "gradient_flow", figures.png(fig))] if fig else [],
    )


def rotation_section(cells: pd.DataFrame, probe: Probe | None = None) -> ProbeSection:
    """The rotation oracle's counting scores beside the learned models' at every tested length.

    With the rotation probe's run, the learned models' scores at the oracle's lengths
    (same test data) fill in the lengths the suite did not test them at.
    """
    from harness import figures

    rows = cells[cells["task"] == "counting"]
    longer = [c for c in rows.columns if c.startswith("test_score_len_") and rows[c].notna().any()]
    extra = {}  # (family, training length) -> {test length: accuracy}, from the probe
    for key, points in (probe.series if probe else {}).items():
        parts = key.split("/")
        if len(parts) == 3 and parts[0] == "test_accuracy":
            extra[(parts[1], int(parts[2].removeprefix("L")))] = dict(points)
    tested = sorted(
        {
            *rows["length"],
            *(int(c.rsplit("_", 1)[1]) for c in longer),
            *(L for points in extra.values() for L in points),
        }
    )
    table = Table(["model", *(f"L={L}" for L in tested)], [])
    ordered = rows.assign(learned=rows["family"] != ORACLE)
    for _, row in ordered.sort_values(["learned", "family", "length"]).iterrows():
        by_length = {row["length"]: row["test_score"]}
        by_length.update({int(c.rsplit("_", 1)[1]): row[c] for c in longer if pd.notna(row[c])})
        if row["family"] == ORACLE:
            if row["length"] != rows.loc[rows["family"] == ORACLE, "length"].min():
                continue
            oracle = rows[rows["family"] == ORACLE]
            by_length = dict(zip(oracle["length"], oracle["test_score"], strict=True))
            name = f"{ORACLE} (weights set)"
        else:
            name = f"{row['family']} (trained at L={row['length']})"
            for length, score in extra.get((row["family"], row["length"]), {}).items():
                by_length.setdefault(length, score)
        table.rows.append([name, *(_num(by_length[L]) if L in by_length else "" for L in tested)])
    oracle = rows[rows["family"] == ORACLE]
    exact = bool((oracle["test_score"] == 1.0).all())
    paragraphs = [
        "A linear recurrence on a 2-D state rotated by 2π/8 on every 1 (and left alone on a 0) "
        "counts mod 8; its angle is read out by a fixed Dense layer. Its per-step accuracy is "
        + ("exactly 1 at every length tested" if exact else "below 1 somewhere: see the table")
        + f" (longest: L={oracle['length'].max()}). Learned models: their test score at the "
        "training length and the suite's longer lengths, and, from `harness probe rotation`, "
        "their per-step accuracy on the oracle's test sequences.",
    ]
    fig = figures.rotation_vs_learned(cells, ORACLE, extra)
    return ProbeSection(
        "Counting by rotation",
        paragraphs,
        [("Per-step accuracy on counting by test length:", table)],
        [("probe_rotation_oracle.png", "rotation_oracle", figures.png(fig))],
    )


def hindsight_section(cells: pd.DataFrame) -> ProbeSection:
    """first_token: the length at which each forward and bidirectional family stops solving it."""
    from harness import figures

    rows = cells[cells["task"] == "first_token"]
    lengths = sorted(rows["length"].unique())
    table = Table(
        ["family", "direction", *(f"L={L}" for L in lengths), "longest solved", "stops solving at"],
        [],
    )
    for family, group in rows.groupby("family", sort=True):
        group = group.sort_values("length")
        by_length = {row["length"]: row for _, row in group.iterrows()}
        solved = group.loc[group["solved"] == 1, "length"]
        failed = group.loc[group["solved"] != 1, "length"]
        table.rows.append(
            [
                family,
                "bidirectional" if is_bidirectional(family) else "forward",
                *(score_text(by_length[L]) if L in by_length else "" for L in lengths),
                f"L={solved.max()}" if len(solved) else "—",
                f"L={failed.min()}" if len(failed) else f"solved through L={group['length'].max()}",
            ]
        )
    paragraphs = [
        "A forward RNN must carry the first token across all L steps; the backward pass of a "
        "bidirectional one reads it one step before its end. 'Stops solving at' is the shortest "
        "tested length whose best model misses the solved bar."
    ]
    fig = figures.hindsight(cells, is_bidirectional)
    return ProbeSection(
        "Hindsight: first_token",
        paragraphs,
        [("Accuracy by length, forward versus bidirectional:", table)],
        [("probe_hindsight.png", "hindsight", figures.png(fig))],
    )


def _amount(value) -> str:
    """Three significant digits, whole numbers with thousands separators from 100 up."""
    if not _finite(value):
        return "—"
    return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"


def cost_section(probe: Probe) -> ProbeSection:
    """Time and memory per step by length, their exponents, and the attention/LSTM crossover."""
    from harness import figures

    rows = []
    for key, points in probe.series.items():
        kind, family = key.split("/", 1)
        column = "seconds" if kind == "step_seconds" else "memory_mb"
        rows += [(family, step, column, value) for step, value in points]
    frame = pd.DataFrame(rows, columns=["family", "length", "column", "value"])
    costs = (
        frame.pivot_table(index=["family", "length"], columns="column", values="value")
        .reindex(columns=["seconds", "memory_mb"])
        .reset_index()
        .sort_values(["family", "length"])
    )
    families = sorted(costs["family"].unique())
    slopes = {
        f: (
            probe.metrics.get(f"time_exponent/{f}", np.nan),
            probe.metrics.get(f"memory_exponent/{f}", np.nan),
        )
        for f in families
    }
    oom = {
        f: int(probe.metrics[f"out_of_memory_length/{f}"])
        for f in families
        if f"out_of_memory_length/{f}" in probe.metrics
    }
    crossover = probe.metrics.get("crossover_length", np.nan)
    kind = probe.params.get("crossover", "")
    what, _, how = kind.partition(": ")
    summary = Table(["family", "time exponent", "memory exponent", "out of memory at"], [])
    for f in families:
        summary.rows.append(
            [f, _num(slopes[f][0], 3), _num(slopes[f][1], 3), f"L={oom[f]}" if f in oom else "—"]
        )
    lengths = sorted(costs["length"].unique())
    detail = Table(["length", *(f"{f}: ms / MiB" for f in families)], [])
    for length in lengths:
        cells = []
        for f in families:
            match = costs[(costs["family"] == f) & (costs["length"] == length)]
            if match.empty:
                cells.append("out of memory" if oom.get(f) == length else "")
            else:
                seconds, memory = match.iloc[0]["seconds"], match.iloc[0]["memory_mb"]
                cells.append(f"{_amount(seconds * 1000)} / {_amount(memory)}")
        detail.rows.append([str(length), *cells])
    paragraphs = [
        f"Task {probe.params.get('task', '?')}, batch size {probe.params.get('batch_size', '?')}, "
        f"the median of {probe.params.get('timed_steps', '?')} timed training steps after a "
        "warm-up step. Exponents: slope of log(value) on log(length) over the longer half of "
        f"the lengths. Memory: {probe.params.get('memory_method', '?')}. "
        f"Machine: {probe.machine}.",
        (
            f"Crossover: {what} from L≈{crossover:.0f} ({how})."
            if _finite(crossover)
            else f"Crossover: {kind or 'not measured'}."
        ),
    ]
    fig = figures.cost_scaling(costs, slopes, oom, crossover, how)
    return ProbeSection(
        "Cost scaling",
        paragraphs,
        [("Fitted exponents of length:", summary), ("Per training step:", detail)],
        [("probe_cost_scaling.png", "cost_scaling", figures.png(fig))],
    )


def probe_sections(results: Results) -> list[ProbeSection]:
    """A section per probe found in the store, and the studies read from cells."""
    cells, parts = results.cells, []
    if "gradients" in results.probes:
        parts.append(gradient_section(results.probes["gradients"]))
    if not cells.empty and ((cells["task"] == "counting") & (cells["family"] == ORACLE)).any():
        parts.append(rotation_section(cells, results.probes.get("rotation")))
    first = cells[cells["task"] == "first_token"] if not cells.empty else cells
    if not first.empty and len({is_bidirectional(f) for f in first["family"]}) == 2:
        parts.append(hindsight_section(cells))
    if "cost" in results.probes:
        parts.append(cost_section(results.probes["cost"]))
    return parts


# -- markdown and HTML ------------------------------------------------------------------------


def md(value: object) -> str:
    """A store value safe inside a markdown table or heading."""
    text = " ".join(str(value).split())
    return text.replace("|", r"\|").replace("<", "&lt;").replace(">", "&gt;")


def _better(direction: str) -> str:
    return "lower is better" if direction == "min" else "higher is better"


def _slopes_line(slopes: dict[str, float]) -> str:
    return ", ".join(f"{family} {slope:.2f}" for family, slope in sorted(slopes.items()))


HOW_TO_READ = (
    "Each score is the best model's test score: the mean ± standard deviation over seeds "
    "where extra seeds ran (the search seed and retrains of the best hyperparameters), else "
    "the single run. ✓ marks a cell whose best model meets the task's solved bar; the trivial "
    "baseline row is what a model that learned nothing scores."
)


def _notes(results: Results) -> list[str]:
    counts = {
        "Unfinished cell runs (running or interrupted), left out": results.unfinished,
        "Older finished runs of a cell rerun with another budget, superseded by the latest": (
            results.superseded
        ),
        "Cell runs without a task, length, family or direction, left out": results.unreadable,
    }
    return [f"{what}: {n}." for what, n in counts.items() if n]


def render_markdown(
    results: Results, sections: list[Section], probes: list[ProbeSection] = ()
) -> str:
    lines = [
        f"# Leaderboard: {md(results.experiment)}",
        "",
        f"MLflow experiment {md(results.experiment)}, {len(results.cells)} cells. "
        "Machine and backend:",
        "",
    ]
    lines += [f"- {md(machine)}" for machine in machines(results.cells)]
    lines += ["", HOW_TO_READ, *(["", " ".join(_notes(results))] if _notes(results) else [])]
    for part in sections:
        lines += [
            "",
            f"## {md(part.task)}",
            "",
            f"Metric: {md(part.metric)} ({_better(part.direction)}).",
            "",
        ]
        lines += _md_table(part.scores)
        lines += ["", "Cost of each cell's best model:", ""]
        lines += _md_table(part.costs)
        if part.slopes:
            slopes = md(_slopes_line(part.slopes))
            lines += ["", f"Seconds per epoch grow as length^slope: {slopes}."]
        for name, kind, _ in part.figures:
            if kind == "score_vs_length":
                lines += ["", f"![{md(part.task)}: test score versus length](figures/{name})"]
    for part in probes:
        lines += ["", f"## {md(part.title)}"]
        for paragraph in part.paragraphs:
            lines += ["", md(paragraph)]
        for caption, table in part.tables:
            lines += ["", md(caption), "", *_md_table(table)]
        for name, kind, _ in part.figures:
            lines += ["", f"![{md(part.title)}: {kind}](figures/{name})"]
    return "\n".join(lines) + "\n"


def _md_table(table: Table) -> list[str]:
    rows = [table.headers, ["---"] * len(table.headers), *table.rows]
    return [
        "| " + " | ".join(md(cell) if cell != "---" else cell for cell in row) + " |"
        for row in rows
    ]


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>\n"
        for row in table.rows
    )
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{body}</tbody>\n</table>"


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


def _html_figure(title: str, name: str, kind: str, data: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    return (
        f'<figure><img src="{uri}" alt="{html.escape(title)}: {kind}" '
        f'data-file="{html.escape(name)}">'
        f"<figcaption>{html.escape(CAPTIONS[kind])}</figcaption></figure>"
    )


def render_html(results: Results, sections: list[Section], probes: list[ProbeSection] = ()) -> str:
    """One self-contained page: tables, and figures as data URIs; scripts limited by CSP."""
    digest = base64.b64encode(hashlib.sha256(IMAGE_CHECK.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )
    title = html.escape(f"Report: {results.experiment}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        f"<title>{title}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{title}</h1>",
        f"<p>MLflow experiment {html.escape(results.experiment)}, {len(results.cells)} cells. "
        "Machine and backend:</p>",
        "<ul>" + "".join(f"<li>{html.escape(m)}</li>" for m in machines(results.cells)) + "</ul>",
        f"<p>{html.escape(HOW_TO_READ)}</p>",
        *(f"<p>{html.escape(note)}</p>" for note in _notes(results)),
    ]
    for part in sections:
        task = html.escape(part.task)
        parts += [
            f"<h2>{task}</h2>",
            f"<p>Metric: {html.escape(part.metric)} ({_better(part.direction)}).</p>",
            _html_table(part.scores),
            "<p>Cost of each cell's best model:</p>",
            _html_table(part.costs),
        ]
        if part.slopes:
            parts.append(
                "<p>Seconds per epoch grow as length^slope: "
                f"{html.escape(_slopes_line(part.slopes))}.</p>"
            )
        parts += [_html_figure(part.task, name, kind, data) for name, kind, data in part.figures]
    for part in probes:
        parts.append(f"<h2>{html.escape(part.title)}</h2>")
        parts += [f"<p>{html.escape(paragraph)}</p>" for paragraph in part.paragraphs]
        for caption, table in part.tables:
            parts += [f"<p>{html.escape(caption)}</p>", _html_table(table)]
        parts += [_html_figure(part.title, name, kind, data) for name, kind, data in part.figures]
    parts += [f"<script>{IMAGE_CHECK}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


# -- writing ----------------------------------------------------------------------------


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def build(
    tracker: Tracker,
    experiment: str,
    out: Path,
    progress: Callable[[str], None] = lambda line: None,
) -> Written:
    """Read the experiment and write leaderboard.md, index.html and figures/*.png under `out`."""
    results = read_store(tracker, experiment, progress)
    sections = []
    for task in sorted(results.cells["task"].unique()):
        progress(f"drawing the figures of task '{task}'")
        sections.append(section(results, task))
    progress("drawing the probes' figures")
    probes = probe_sections(results)
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for part in [*sections, *probes]:
        for name, _, data in part.figures:
            _write(folder / name, data)
            written.append(folder / name)
    for stale in sorted(set(folder.glob("*.png")) - set(written)):
        stale.unlink()
    leaderboard, page = out / "leaderboard.md", out / "index.html"
    _write(leaderboard, render_markdown(results, sections, probes).encode())
    _write(page, render_html(results, sections, probes).encode())
    return Written(leaderboard, page, written)


# -- README ---------------------------------------------------------------------------------


def has_markers(readme: Path) -> bool:
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    return START in text and END in text and text.index(START) < text.index(END)


def insert_leaderboard(readme_text: str, leaderboard: str, figures_prefix: str) -> str:
    """The README with the leaderboard's body (headings one level down) between the markers."""
    lines = leaderboard.splitlines()
    if lines and lines[0].startswith("# "):
        lines = lines[1:]
    lines = ["#" + line if line.startswith("#") else line for line in lines]
    block = "\n".join(
        line.replace("](figures/", f"]({figures_prefix}figures/") for line in lines
    ).strip()
    head, rest = readme_text.split(START, 1)
    tail = rest.split(END, 1)[1]
    return f"{head}{START}\n{block}\n{END}{tail}"


def update_readme(readme: Path, leaderboard: Path) -> bool:
    """Refresh the leaderboard between README's markers; True when the README changed."""
    if not has_markers(readme):
        raise UserError(
            f"'{readme}' has no '{START}' ... '{END}' markers: add them to the "
            "README where the leaderboard goes"
        )
    if not leaderboard.is_file():
        raise UserError(f"leaderboard '{leaderboard}' does not exist: run `harness report` first")
    prefix = Path(os.path.relpath(leaderboard.resolve().parent, readme.resolve().parent))
    prefix_text = "" if prefix == Path(".") else prefix.as_posix() + "/"
    text = readme.read_text(encoding="utf-8")
    new = insert_leaderboard(text, leaderboard.read_text(encoding="utf-8"), prefix_text)
    if new != text:
        _write(readme, new.encode())
    return new != text
