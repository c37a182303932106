"""A search survives SIGKILL and SIGINT: the rerun finishes with every trial exactly once."""

from __future__ import annotations

import re
import signal

import pytest

from tests.helpers import (
    all_runs,
    api_cell,
    harness,
    start_harness,
    store_uri,
    tiny_cell,
    wait_for_output,
)

TRIALS = 3
CELL = ["run", *tiny_cell(max_trials=TRIALS), "--experiment", "resume"]


def check_complete(folder, trials: int = TRIALS) -> None:
    """One FINISHED parent, each trial exactly once and FINISHED, nothing RUNNING."""
    runs = all_runs(store_uri(folder), "resume")
    parents = runs[runs["tags.harness.kind"] == "cell"]
    children = runs[runs["tags.harness.kind"] == "trial"]
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert sorted(children["tags.harness.trial_id"]) == [str(i) for i in range(trials)]
    assert set(children["status"]) == {"FINISHED"}
    assert "RUNNING" not in set(runs["status"])
    assert parents.iloc[0]["metrics.trials_completed"] == trials


def test_a_new_store_starts_the_search_afresh_over_old_tuner_state(workdir):
    """One trial: tuner state taken for the new store's would leave it with no trial run."""
    (workdir / "old").mkdir()
    cell = {"max_trials": 1, "epochs": 1, "experiment": "resume"}
    api_cell(workdir / "old", **cell, workdir=workdir / "data")
    rerun = api_cell(workdir, **cell, workdir=workdir / "data")  # the tuner state is stale
    assert [(c.action, c.state, c.trials) for c in rerun.cells] == [("ran", "done", 1)]
    check_complete(workdir, trials=1)


@pytest.mark.slow
# mid-trial after a trial finished, between trials, after the search (a kill in the first
# trial's first epoch: test_faults.py's test_a_run_killed_mid_trial_...)
@pytest.mark.parametrize("fault", ["epoch:3", "trial:1", "evaluation"])
def test_sigkill_then_rerun_loses_nothing_and_duplicates_nothing(workdir, fault):
    killed = harness(*CELL, cwd=workdir, env={"HARNESS_FAULT": fault})
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    runs = all_runs(store_uri(workdir), "resume")
    assert "RUNNING" in set(runs["status"])  # the kill left the cell unfinished
    harness(*CELL, cwd=workdir, check=True)
    check_complete(workdir)


@pytest.mark.slow
def test_sigint_marks_the_trial_killed_and_the_rerun_resumes(workdir):
    """Also: `harness status` on the store being written shows the running trial's epoch."""
    args = ["run", *tiny_cell(epochs=10, max_trials=TRIALS, n_train=4096), "--experiment", "resume"]
    process = start_harness(*args, cwd=workdir, log="run.log")
    wait_for_output(process, workdir / "run.log", "trial 0 epoch 1 of 10", timeout=300)
    status = harness("status", "--experiment", "resume", cwd=workdir, check=True).stdout
    epoch = r"epoch \d+ of 10, validation [\d.]+, [\d.]+ s per epoch"
    assert re.search(rf"running: adding L=8 gru trial \d: ({epoch}|starting)", status), status
    process.send_signal(signal.SIGINT)
    process.wait(timeout=120)
    output = (workdir / "run.log").read_text()
    assert process.returncode == 130, output
    assert "interrupted" in output and "Traceback" not in output
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


@pytest.mark.slow
def test_stop_after_stops_as_ctrl_c_does_and_the_rerun_finishes(workdir):
    """--stop-after: the run stops at the limit (exit 3, one line saying so), the trials
    running, here on the pool's workers, are KILLED, and the rerun finishes the cell. (In one
    process: SIGINT's test above, and test_api.py's stop_after.)"""
    workers = "2"
    args = ["run", *tiny_cell(epochs=10, max_trials=TRIALS, n_train=4096), "--experiment", "resume"]
    stopped = harness(*args, "--workers", workers, "--stop-after", "0.1", cwd=workdir)
    assert stopped.returncode == 3, stopped.stdout + stopped.stderr
    assert "stopped after 0.1 min (--stop-after)" in stopped.stderr
    assert "Traceback" not in stopped.stderr
    runs = all_runs(store_uri(workdir), "resume")
    assert runs[runs["tags.harness.kind"] == "cell"].iloc[0]["status"] == "KILLED"
    harness(*args, "--workers", workers, cwd=workdir, check=True)
    check_complete(workdir)


def test_stop_after_takes_minutes_above_zero(workdir):
    result = harness("run", *tiny_cell(), "--stop-after", "0", cwd=workdir)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [
        "error: --stop-after 0: give a number of minutes above 0"
    ], result.stderr
