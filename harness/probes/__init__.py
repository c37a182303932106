"""Probes: measurements of the mechanisms behind the leaderboard, recorded in MLflow.

- `gradients`: how much of the loss signal at the last step reaches each earlier input.
- `rotation`: the seed's constructive counter (a 2-D rotation), scored on `counting`.
- `cost`: time and peak memory per training step as sequence length grows.

A probe writes one parent run tagged `harness.kind = "probe"` and `harness.probe = NAME`
into the suite's experiment: its settings as params, its curves as metrics whose
step is the distance or the length, its fitted slopes as plain metrics. The rotation
oracle is scored like a cell (`harness.kind = "cell"`, family `rotation_oracle`), so
the leaderboard shows it beside the learned families.
"""

from __future__ import annotations

import time

import numpy as np

from harness.tracking import KIND, Tracker, _retry

PROBE = "harness.probe"
BATCH = 900  # MLflow takes at most 1000 metrics per log_batch call


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
    from harness.runner import environment_tags

    experiment_id = tracker.experiment_id(experiment)
    run_id = tracker.start_run(
        experiment_id,
        f"probe {probe}",
        {KIND: "probe", PROBE: probe, **environment_tags(), **(tags or {})},
    )
    tracker.log(run_id, params=params)
    return run_id


def log_series(tracker: Tracker, run_id: str, series: dict[str, dict[int, float]]) -> None:
    """Metric histories: for each key, one value per step (distance or length), in batches."""
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [
        Metric(key, float(value), now, int(step))
        for key, values in series.items()
        for step, value in sorted(values.items())
        if np.isfinite(value)
    ]
    for start in range(0, len(points), BATCH):
        chunk = points[start : start + BATCH]
        _retry(lambda chunk=chunk: tracker.client.log_batch(run_id, metrics=chunk))


def best_model(tracker: Tracker, run_id: str):
    """The `best_model.keras` artifact of a cell run, loaded; None when it has none."""
    import tempfile
    import warnings

    import keras

    import search_spaces  # noqa: F401  (registers the custom objects the models need)

    with tempfile.TemporaryDirectory() as tmp:
        try:
            path = tracker.client.download_artifacts(run_id, "best_model.keras", tmp)
        except Exception:  # a cell whose search diverged has no model artifact
            return None
        with warnings.catch_warnings():  # the artifact keeps no optimizer state worth loading
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            return keras.saving.load_model(path)


def finished_cells(tracker: Tracker, experiment: str, task: str) -> list:
    """The latest finished cell run of each (length, family) of `task`, oldest first."""
    experiment_id = tracker.experiment_id(experiment, create=False)
    if experiment_id is None:
        return []
    runs = tracker.runs(experiment_id, f"params.task = '{task}'")
    runs = [r for r in runs if r.data.tags.get(KIND) == "cell" and r.info.status == "FINISHED"]
    latest = {}
    for run in sorted(runs, key=lambda r: (r.info.start_time, r.info.run_id)):
        latest[(run.data.params.get("length"), run.data.params.get("family"))] = run
    return sorted(latest.values(), key=lambda r: (r.info.start_time, r.info.run_id))
