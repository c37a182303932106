"""Probes: measurements of the mechanisms behind the leaderboard, recorded in MLflow.

- `gradients`: how much of the loss signal at the last step reaches each earlier input.
- `rotation`: the seed's constructive counter (a 2-D rotation), scored on `counting`.
- `cost`: time and peak memory per training step as sequence length grows.

A probe writes one parent run tagged `harness.kind = "probe"` and `harness.probe = NAME`
into the suite's experiment: its settings as params, its curves as metrics whose
step is the distance or the length, its fitted slopes as plain metrics. Each probe
module measures and records (`record`); harness/probes/report.py holds the three
sections that read those records back and writes them as the probes' own report
(reports/probes/). This module holds what they share: starting a probe's run, reading
the latest ones, the cells of a suite's budget and their stored models (harness/stored.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.provenance import environment_tags
from harness.results import (
    KIND,
    PROBE,
    PROBE_NAME,
    CellResult,
    CellState,
    machine_of,
    run_order,
    standing_cells,
)
from harness.tracking import Tracker


@dataclass
class ProbeRun:
    """A probe's parent run: params, last metric values, and the histories of its series."""

    name: str
    run_id: str
    params: dict[str, str]
    metrics: dict[str, float]
    series: dict[str, list[tuple[int, float]]]
    machine: str = ""


def loglinear_fit(x, y) -> tuple[float, float]:
    """(slope, intercept) of log(y) against x over the finite positive y; nan when < 2 points."""
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(y) & (y > 0) & np.isfinite(x)
    if keep.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(x[keep], np.log(y[keep]), 1)
    return float(slope), float(intercept)


def loglog_fit(x, y) -> tuple[float, float]:
    """(exponent, log-constant) of y = c * x^exponent fitted on log-log axes."""
    x = np.asarray(x, dtype=float)
    return loglinear_fit(np.log(x), y)


def start_probe(
    tracker: Tracker, experiment: str, probe: str, params: dict, tags: dict | None = None
) -> str:
    """A parent run for one probe, its settings as params and the machine as tags."""
    experiment_id = tracker.experiment_id(experiment)
    run_id = tracker.start_run(
        experiment_id,
        f"probe {probe}",
        {KIND: PROBE, PROBE_NAME: probe, **environment_tags(), **(tags or {})},
    )
    tracker.log(run_id, params=params)
    return run_id


def latest_probes(tracker: Tracker, runs: list, series_prefixes: tuple[str, ...]) -> dict:
    """The latest finished run of each probe among `runs`, with its series' histories."""
    latest = {}
    for run in sorted(runs, key=run_order):
        tags = run.tags
        if tags.get(KIND) == PROBE and run.status == "FINISHED" and tags.get(PROBE_NAME):
            latest[tags[PROBE_NAME]] = run
    probes = {}
    for name, run in sorted(latest.items()):
        series = {
            key: tracker.metric_history(run.run_id, key)
            for key in sorted(k for k in run.metrics if k.startswith(series_prefixes))
        }
        probes[name] = ProbeRun(
            name,
            run.run_id,
            dict(run.params),
            dict(run.metrics),
            series,
            machine_of(run.tags),
        )
    return probes


def suite_budgets(suite: str) -> set[str]:
    """The budget keys of a suite's cells and frontiers: the cells a probe may read."""
    from harness.suites import load_suite

    loaded = load_suite(suite)
    return {c.budget_key for c in loaded.cells} | {f.budget_key for f in loaded.frontiers}


def finished_cells(
    tracker: Tracker, experiment: str, task: str, budgets: set[str] | None
) -> list[CellResult]:
    """The done cells of `task` a probe reads, oldest first: of each (length, family), the
    run standing for it in the report (results.standing_cells) under one of `budgets`;
    with budgets None (an experiment named, no suite), the latest budget's."""
    experiment_id = tracker.experiment_id(experiment, create=False)
    if experiment_id is None:
        return []
    standing, _ = standing_cells(tracker.runs(experiment_id, f"params.task = '{task}'"))
    latest = {}
    for cell, _ in standing:  # oldest first: the latest budget's wins
        if budgets is None or cell.budget_key in budgets:
            latest[(cell.length, cell.family)] = cell
    done = [c for c in latest.values() if c.state is CellState.DONE]
    return sorted(done, key=lambda c: (c.start_time, c.run_id))


def load_model(tracker: Tracker, run_id: str):
    """The best model of a cell run (harness/stored.py), or None without one."""
    import tempfile
    from pathlib import Path

    from harness.stored import model_file, stored_model

    with tempfile.TemporaryDirectory() as tmp:
        return stored_model(tracker, run_id, model_file(), Path(tmp))
