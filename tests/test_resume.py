"""A search survives SIGKILL and SIGINT: the rerun finishes with every trial exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time

import pytest

from tests.conftest import HARNESS, TINY_DATA, all_runs, harness, store_uri

TRIALS = 3
CELL = [
    "run",
    "--task",
    "adding",
    "--length",
    "8",
    "--family",
    "gru",
    "--max-trials",
    str(TRIALS),
    "--epochs",
    "2",
    *TINY_DATA,
    "--experiment",
    "resume",
]


def check_complete(folder) -> None:
    """One FINISHED parent, each trial exactly once and FINISHED, nothing RUNNING."""
    runs = all_runs(store_uri(folder), "resume")
    parents = runs[runs["tags.harness.kind"] == "cell"]
    children = runs[runs["tags.harness.kind"] == "trial"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert sorted(children["tags.harness.trial_id"]) == [str(i) for i in range(TRIALS)]
    assert set(children["status"]) == {"FINISHED"}
    assert "RUNNING" not in set(runs["status"])
    assert parents.iloc[0]["metrics.trials_completed"] == TRIALS


@pytest.mark.slow
@pytest.mark.parametrize("fault", ["epoch:1", "epoch:3", "trial:1", "trial:2", "evaluation"])
def test_sigkill_then_rerun_loses_nothing_and_duplicates_nothing(workdir, fault):
    killed = harness(*CELL, cwd=workdir, env={"HARNESS_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    runs = all_runs(store_uri(workdir), "resume")
    assert "RUNNING" in set(runs["status"])  # the kill left the cell unfinished
    harness(*CELL, cwd=workdir, check=True)
    check_complete(workdir)


def running_runs(db) -> int:
    """RUNNING runs in the store, read with sqlite3 alone: an MLflow client opened here
    while the harness creates the schema would race it on the migrations."""
    if not db.exists():  # connecting would create it
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as connection:  # reads only
            return connection.execute(
                "SELECT count(*) FROM runs WHERE status = 'RUNNING'"
            ).fetchone()[0]
    except sqlite3.Error:
        return 0


@pytest.mark.slow
def test_sigint_marks_the_trial_killed_and_the_rerun_resumes(workdir):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    args = [a if a != "64" else "4096" for a in CELL]  # trials long enough to interrupt
    process = subprocess.Popen(
        [*HARNESS, *args],
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 300
    while time.time() < deadline and running_runs(workdir / "mlflow.db") < 2:
        time.sleep(0.5)  # wait until the cell's run and a trial's run are RUNNING
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr
    runs = all_runs(store_uri(workdir), "resume")
    parent = runs[runs["tags.harness.kind"] == "cell"].iloc[0]
    assert parent["status"] == "KILLED"
    # the trial running when Ctrl-C landed is KILLED (none is, if it landed between trials)
    assert set(runs[runs["tags.harness.kind"] == "trial"]["status"]) <= {"FINISHED", "KILLED"}
    harness(*args, cwd=workdir, check=True)
    runs = all_runs(store_uri(workdir), "resume")
    assert len(runs[runs["tags.harness.kind"] == "cell"]) == 1
    children = runs[runs["tags.harness.kind"] == "trial"]
    assert sorted(children["tags.harness.trial_id"]) == [str(i) for i in range(TRIALS)]
    assert set(children["status"]) == {"FINISHED"} and "RUNNING" not in set(runs["status"])
