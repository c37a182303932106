"""What the library's calls share: the working directory's default, a folder checked
writable, a store opened for reading and the experiment a reading call reads."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from harness.errors import UserError

Progress = Callable[[str], None]
DEFAULT_WORKDIR = Path("data")


def quiet(line: str) -> None:
    """A progress callable that says nothing."""


def writable(path: Path, what: str) -> Path:
    """`path`, created if missing; a UserError if it cannot be created or written."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{what} '{path}' cannot be created: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{what} '{path}' is not writable")
    return path


def experiment_name(store_reader, suite: str | None, experiment: str | None) -> str:
    """`experiment`, else the suite's name, else the experiment of the store's latest run."""
    if experiment:
        return experiment
    if suite:
        from harness.suites import suite_experiment

        return suite_experiment(suite)
    latest = store_reader.latest_experiment()
    if latest is None:
        raise UserError(
            f"tracking store '{store_reader.uri}' holds no runs: run `harness run` first"
        )
    return latest


def open_reader(store: str | None, runs_only: bool):
    """The store, which must exist: with `runs_only`, a local SQLite store read without
    MLflow (harness/tracking.py's `open_for_reading`)."""
    from harness.tracking import open_for_reading, open_store

    return (open_for_reading if runs_only else open_store)(store)
