"""The only door to MLflow: `Tracker` writes through MlflowClient with explicit run ids
and in batches, and reads runs (each a `StoredRun`, harness/results.py: MLflow's own
objects never leave this module), metric histories and artifacts, retrying a store that is
briefly locked or away (`StoreUnavailable` when it stays away); `SqliteSnapshot` reads a
local SQLite store's runs with sqlite3 alone, for the commands that only read runs
(`open_for_reading`).

Structure: one experiment per suite (named after the suite); one parent run per
cell, tagged with the cell key; one nested child run per Keras Tuner trial,
tagged with the trial id; a run per frontier and per probe. The default store is a
SQLite file `mlflow.db` in the current directory (not the `--workdir`), with artifacts
in `mlartifacts/` beside it.
"""

from __future__ import annotations

import fcntl
import logging
import math
import os
import re
import sqlite3
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from harness.errors import StoreUnavailable, UserError, first_line
from harness.results import CELL, CELL_KEY, KIND, PARENT, TRIAL, StoredRun, standing_run

DEFAULT_DB = "mlflow.db"
SCHEMES = {
    "sqlite:///": "sqlite:///PATH",
    "http://": "http://HOST:PORT",
    "https://": "https://HOST",
    "postgresql://": "postgresql://...",
    "postgresql+psycopg2://": "postgresql+psycopg2://...",
    "mysql://": "mysql://...",
    "file:": "file:PATH",
}
"""The tracking URIs accepted: each scheme's prefix and how the error message shows it."""
BATCH = 1000  # MLflow takes at most 1000 metrics per log_batch call
T = TypeVar("T")


def stored(run) -> StoredRun:
    """MLflow's Run (info, data) as a StoredRun: what the Tracker's readers return."""
    info, data = run.info, run.data
    return StoredRun(
        run_id=info.run_id,
        experiment_id=str(info.experiment_id),
        status=info.status,
        start_time=info.start_time,
        end_time=info.end_time,
        run_name=info.run_name,
        tags=dict(data.tags),
        params=dict(data.params),
        metrics=dict(data.metrics),
    )


def resolve_uri(uri: str | None) -> str:
    """--tracking-uri, else MLFLOW_TRACKING_URI, else the local SQLite store (never MLflow's own default)."""
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI")
    if not uri:
        return f"sqlite:///{Path.cwd() / DEFAULT_DB}"
    return uri


def _retry(call: Callable[[], T], attempts: int = 8) -> T:
    """Retry a store call on transient failures (a locked SQLite file, a server restarting).

    Waits 0.2, 0.4, ... 12.8 s between attempts (about 25 s in all), on top of
    MLflow's own HTTP retries (about 2 minutes per call to a server that is down).
    """
    for attempt in range(attempts):
        try:
            return call()
        except Exception as err:  # MLflow wraps driver errors in its own exception types
            transient = any(
                word in str(err).lower()
                for word in ("database is locked", "connection", "max retries", "timed out", "503")
            )
            if not transient:
                raise
            if attempt == attempts - 1:
                raise StoreUnavailable(first_line(err)) from err
            time.sleep(0.2 * 2**attempt)
    raise AssertionError("unreachable")


class Tracker:
    """One MLflow store: experiments, parent runs per cell, child runs per trial."""

    def __init__(self, uri: str | None = None):
        from mlflow.tracking import MlflowClient

        logging.getLogger("mlflow").setLevel(logging.WARNING)

        self.uri = resolve_uri(uri)
        if not self.uri.startswith(tuple(SCHEMES)):
            raise UserError(
                f"tracking URI '{self.uri}' is not supported: "
                f"accepted {', '.join(SCHEMES.values())}"
            )
        self._check_sqlite_folder()
        try:
            if self.uri.startswith("sqlite:///"):
                self.client = self._open_sqlite(MlflowClient)
            else:
                self.client = MlflowClient(tracking_uri=self.uri)
        except Exception as err:
            raise UserError(
                f"tracking store '{self.uri}' cannot be used: {first_line(err)}"
            ) from None

    def _open_sqlite(self, client_class):
        """Open a SQLite store under a file lock (tables created once) and switch it to WAL.

        Several processes may open one new store at once; WAL lets readers go on
        while one writes, and a writer that finds it locked retries (`_retry`).
        """
        path = Path(self.uri.removeprefix("sqlite:///"))
        with open(path.with_name(path.name + ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            client = client_class(tracking_uri=self.uri)
            client.search_experiments(max_results=1)  # creates or migrates the tables
            with sqlite3.connect(path, timeout=30) as db:
                if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                    db.execute("PRAGMA journal_mode=WAL")
        return client

    def _check_sqlite_folder(self) -> None:
        if not self.uri.startswith("sqlite:///"):
            return
        path = Path(self.uri.removeprefix("sqlite:///"))
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            raise UserError(
                f"tracking store '{self.uri}' cannot be created: {err.strerror}"
            ) from None
        if not os.access(path.parent, os.W_OK) or (path.exists() and not os.access(path, os.W_OK)):
            raise UserError(f"tracking store '{self.uri}' is not writable")

    # -- checks ---------------------------------------------------------------
    def check(self) -> None:
        """Fail fast, with one line, on a store that cannot be reached or written."""
        if self.uri.startswith(("http://", "https://")):
            try:
                urllib.request.urlopen(f"{self.uri.rstrip('/')}/health", timeout=5).read()
            except (urllib.error.URLError, OSError, ValueError) as err:
                reason = getattr(err, "reason", err)
                raise UserError(
                    f"tracking server '{self.uri}' is unreachable ({reason}); "
                    "start it, or omit --tracking-uri to use the local SQLite store"
                ) from None
        try:
            self.client.search_experiments(max_results=1)
        except Exception as err:
            raise UserError(
                f"tracking store '{self.uri}' cannot be used: {first_line(err)}"
            ) from None

    # -- experiments and runs -------------------------------------------------------
    def experiment_id(self, name: str, create: bool = True) -> str | None:
        """The experiment called `name` (created with artifacts beside a SQLite store)."""
        experiment = _retry(lambda: self.client.get_experiment_by_name(name))
        if experiment is not None:
            if experiment.lifecycle_stage == "deleted":
                _retry(lambda: self.client.restore_experiment(experiment.experiment_id))
            return experiment.experiment_id
        if not create:
            return None
        location = None
        if self.uri.startswith("sqlite:///"):
            root = Path(self.uri.removeprefix("sqlite:///")).parent / "mlartifacts"
            location = (root / name).resolve().as_uri()
        try:
            return _retry(lambda: self.client.create_experiment(name, artifact_location=location))
        except StoreUnavailable:
            raise
        except Exception:  # another process created it first
            experiment = _retry(lambda: self.client.get_experiment_by_name(name))
            if experiment is None:
                raise
            return experiment.experiment_id

    def active_experiments(self) -> dict[str, str]:
        """Each active experiment's name -> its id."""
        experiments = _retry(lambda: self.client.search_experiments())
        return {e.name: e.experiment_id for e in experiments}

    def latest_experiment(self) -> str | None:
        """The name of the experiment of the store's latest run, or None for an empty store."""
        experiments = _retry(lambda: self.client.search_experiments())
        if not experiments:
            return None
        latest = _retry(
            lambda: self.client.search_runs(
                [e.experiment_id for e in experiments],
                order_by=["attributes.start_time DESC"],
                max_results=1,
            )
        )
        if not latest:
            return None
        names = {e.experiment_id: e.name for e in experiments}
        return names.get(latest[0].info.experiment_id)

    def runs(self, experiment_id: str, filter_string: str = "") -> list[StoredRun]:
        """All active runs of an experiment that match `filter_string`, every page."""
        from mlflow.entities import ViewType

        runs, token = [], None
        while True:
            page = _retry(
                lambda token=token: self.client.search_runs(
                    [experiment_id],
                    filter_string=filter_string,
                    run_view_type=ViewType.ACTIVE_ONLY,
                    max_results=1000,
                    page_token=token,
                )
            )
            runs.extend(stored(run) for run in page)
            token = page.token
            if not token:
                return runs

    def cell_run(self, experiment_id: str, key: str) -> StoredRun | None:
        """The parent run standing for the cell with `key` (results.standing_run), or None."""
        runs = self.runs(experiment_id, f"tags.`{CELL_KEY}` = '{key}'")
        return standing_run([r for r in runs if r.tags.get(KIND) == CELL])

    def child_runs(self, experiment_id: str, parent_id: str) -> list[StoredRun]:
        """A cell's trial and retrain runs."""
        return self.runs(experiment_id, f"tags.`{PARENT}` = '{parent_id}'")

    def trial_runs(self, experiment_id: str, parent_id: str) -> list[StoredRun]:
        children = self.child_runs(experiment_id, parent_id)
        return [run for run in children if run.tags.get(KIND) == TRIAL]

    def start_run(self, experiment_id: str, name: str, tags: dict[str, str]) -> str:
        run = _retry(lambda: self.client.create_run(experiment_id, run_name=name, tags=tags))
        return run.info.run_id

    def get_run(self, run_id: str) -> StoredRun:
        """The run with `run_id`."""
        return stored(_retry(lambda: self.client.get_run(run_id)))

    def reopen(self, run_id: str) -> None:
        _retry(lambda: self.client.update_run(run_id, status="RUNNING"))

    def delete(self, run_id: str) -> None:
        _retry(lambda: self.client.delete_run(run_id))

    def finish(self, run_id: str, status: str = "FINISHED") -> None:
        _retry(lambda: self.client.set_terminated(run_id, status=status))

    # -- logging, in batches ----------------------------------------------------------
    def log(
        self,
        run_id: str,
        params: dict | None = None,
        metrics: dict[str, float] | None = None,
        tags: dict[str, str] | None = None,
        step: int = 0,
    ) -> None:
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        batch_metrics = [Metric(k, float(v), now, step) for k, v in (metrics or {}).items()]
        batch_params = [Param(k, str(v)) for k, v in (params or {}).items()]
        batch_tags = [RunTag(k, str(v)) for k, v in (tags or {}).items()]
        _retry(
            lambda: self.client.log_batch(
                run_id, metrics=batch_metrics, params=batch_params, tags=batch_tags
            )
        )

    def log_series(self, run_id: str, series: dict[str, dict[int, float]]) -> None:
        """Metric histories: for each key, one value per step (a distance, a length); the
        values that are not finite are left out."""
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        points = [
            Metric(key, float(value), now, int(step))
            for key, values in series.items()
            for step, value in sorted(values.items())
            if math.isfinite(value)
        ]
        for start in range(0, len(points), BATCH):
            chunk = points[start : start + BATCH]
            _retry(lambda chunk=chunk: self.client.log_batch(run_id, metrics=chunk))

    def metric_history(self, run_id: str, key: str) -> list[tuple[int, float]]:
        """A metric's values by step, in step order (the last value logged at a step)."""
        history = _retry(lambda: self.client.get_metric_history(run_id, key))
        return sorted({m.step: m.value for m in history}.items())

    # -- artifacts --------------------------------------------------------------------------
    def log_artifact(self, run_id: str, path: Path) -> None:
        _retry(lambda: self.client.log_artifact(run_id, str(path)))

    def artifacts(self, run_id: str) -> set[str]:
        """The paths of a run's artifacts (its top folder)."""
        return {a.path for a in _retry(lambda: self.client.list_artifacts(run_id))}

    def download_artifact(self, run_id: str, path: str, folder: Path) -> Path:
        """A run's artifact `path`, downloaded into `folder`: where it now lies."""
        return Path(_retry(lambda: self.client.download_artifacts(run_id, path, str(folder))))


def open_store(uri: str | None) -> Tracker:
    """A checked Tracker on a store that exists (a SQLite file that does not is an error,
    never created): for the commands that only read."""
    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise UserError(
            f"tracking store '{uri}' does not exist: run `harness run` first, "
            "or give --tracking-uri"
        )
    tracker = Tracker(uri)
    tracker.check()
    return tracker


# -- reading a local SQLite store without MLflow -------------------------------------------
class SqliteSnapshot:
    """A read-only view of a local SQLite MLflow store, read with sqlite3 alone.

    For `harness status` and `harness report`: importing MLflow's client and opening its
    SQLAlchemy store take about 3 s on two cores, reading the runs a few milliseconds. It
    reads MLflow's own tables (experiments, runs, tags, params, latest_metrics) the way its
    store does (NaN metrics are kept as 0 with is_nan set) and offers what those commands
    read of a Tracker: `experiment_id`, `active_experiments`, `latest_experiment` and
    `runs` (active runs as `StoredRun`s; a filter on one tag).
    tests/test_tracking.py holds its runs equal to a Tracker's (MlflowClient's) on a real store.
    """

    TAG_FILTER = re.compile(r"tags\.`([^`]+)` = '([^']*)'")

    def __init__(self, uri: str):
        self.uri = uri
        path = Path(uri.removeprefix("sqlite:///"))
        self.db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)

    def experiment_id(self, name: str, create: bool = False) -> str | None:
        row = self.db.execute(
            "SELECT experiment_id FROM experiments WHERE name = ?", (name,)
        ).fetchone()
        return None if row is None else str(row[0])

    def active_experiments(self) -> dict[str, str]:
        rows = self.db.execute(
            "SELECT name, experiment_id FROM experiments WHERE lifecycle_stage = 'active'"
        )
        return {name: str(experiment_id) for name, experiment_id in rows}

    def latest_experiment(self) -> str | None:
        row = self.db.execute(
            "SELECT e.name FROM runs r JOIN experiments e ON e.experiment_id = r.experiment_id "
            "WHERE r.lifecycle_stage = 'active' ORDER BY r.start_time DESC LIMIT 1"
        ).fetchone()
        return None if row is None else row[0]

    def runs(self, experiment_id: str, filter_string: str = "") -> list[StoredRun]:
        wanted = self.TAG_FILTER.fullmatch(filter_string) if filter_string else None
        if filter_string and wanted is None:
            raise ValueError(f"SqliteSnapshot reads one tag filter, not {filter_string!r}")
        rows = {
            row[0]: (row[0], str(row[1]), *row[2:])
            for row in self.db.execute(
                "SELECT run_uuid, experiment_id, status, start_time, end_time, name FROM runs "
                "WHERE experiment_id = ? AND lifecycle_stage = 'active'",
                (experiment_id,),
            )
        }
        values: dict[str, dict[str, dict]] = {
            run_id: {"tags": {}, "params": {}, "metrics": {}} for run_id in rows
        }
        ids = f"SELECT run_uuid FROM runs WHERE experiment_id = {int(experiment_id)}"
        for table in ("tags", "params"):
            for run_id, key, value in self.db.execute(
                f"SELECT run_uuid, key, value FROM {table} WHERE run_uuid IN ({ids})"
            ):
                if run_id in values:
                    values[run_id][table][key] = value
        for run_id, key, value, is_nan in self.db.execute(
            f"SELECT run_uuid, key, value, is_nan FROM latest_metrics WHERE run_uuid IN ({ids})"
        ):
            if run_id in values:
                values[run_id]["metrics"][key] = float("nan") if is_nan else float(value)
        runs = [StoredRun(*row, **values[run_id]) for run_id, row in rows.items()]
        if wanted is not None:
            runs = [r for r in runs if r.tags.get(wanted[1]) == wanted[2]]
        return sorted(runs, key=lambda r: (-r.start_time, r.run_id))


def open_for_reading(uri: str | None) -> Tracker | SqliteSnapshot:
    """What the commands that only read runs (no artifacts) read: a local SQLite store through sqlite3
    (SqliteSnapshot) where its tables are MLflow's, else a checked Tracker (open_store)."""
    uri = resolve_uri(uri)
    if uri.startswith("sqlite:///") and Path(uri.removeprefix("sqlite:///")).is_file():
        try:
            snapshot = SqliteSnapshot(uri)
            snapshot.db.execute("SELECT 1 FROM latest_metrics, tags, params LIMIT 1")
            return snapshot
        except sqlite3.Error:  # not (yet) MLflow's schema: MLflow says what is wrong
            pass
    return open_store(uri)
