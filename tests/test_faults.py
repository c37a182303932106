"""Faults with real processes: a killed worker, a restarted tracking server, a trial that
raises, four processes on one SQLite file, a PostgreSQL-backed tracking server, and the runs
a killed process leaves RUNNING."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import psutil
import pytest
from mlflow.tracking import MlflowClient

from harness import liveness, results
from harness.budget import Budget
from harness.results import CELL_KEY, HOST, KIND, PARENT, PID, PROCESS_START, TRIAL
from harness.runner import Runner
from harness.steps import resolve
from harness.suites import Cell
from harness.tracking import Tracker
from tests.helpers import (
    MlflowServer,
    all_runs,
    finish,
    free_port,
    harness,
    start_harness,
    store_uri,
    tiny_cell,
)

CELL = tiny_cell(epochs=1)


def split_runs(uri: str, experiment: str):
    runs = all_runs(uri, experiment)
    assert "RUNNING" not in set(runs["status"]), runs[["status", "tags.harness.kind"]]
    return runs[runs["tags.harness.kind"] == "cell"], runs[runs["tags.harness.kind"] == "trial"]


def check_each_trial_once(uri: str, experiment: str, trials: int):
    """One FINISHED parent; every trial exactly once and FINISHED; nothing RUNNING."""
    parents, children = split_runs(uri, experiment)
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert sorted(children["tags.harness.trial_id"]) == [str(i) for i in range(trials)]
    assert set(children["status"]) == {"FINISHED"}
    return parents.iloc[0], children


@pytest.mark.slow
def test_a_worker_killed_mid_search_loses_no_trial(workdir, mlflow_server):
    address = f"127.0.0.1:{free_port()}"
    common = ["run", *CELL, "--max-trials", "4", "--epochs", "2", "--tracking-uri", mlflow_server]
    chief = start_harness(
        *common, "--chief", address, "--worker-timeout", "8", cwd=workdir, log="chief.log"
    )
    healthy = start_harness(
        *common, "--chief", address, "--worker", "tuner0", cwd=workdir, log="w0.log"
    )
    doomed = start_harness(
        *common,
        "--chief",
        address,
        "--worker",
        "tuner1",
        cwd=workdir,
        log="w1.log",
        env={"HARNESS_FAULT": "epoch:1"},  # SIGKILL after its first epoch, mid-trial
    )
    doomed.wait(timeout=600)
    killed_at = time.time()
    assert doomed.returncode == -signal.SIGKILL, (workdir / "w1.log").read_text()[-2000:]
    finish(healthy, workdir, "w0.log")
    chief_log = finish(chief, workdir, "chief.log")
    lost = re.search(r"trial (\d+) re-queued worker tuner1 silent", chief_log)
    assert lost, chief_log[-3000:]
    parent, children = check_each_trial_once(mlflow_server, "adhoc", 4)
    assert parent["metrics.trials_completed"] == 4
    rerun = children[children["tags.harness.trial_id"] == lost.group(1)].iloc[0]
    assert rerun["tags.harness.worker"] == "tuner0"
    recovery = rerun["start_time"].timestamp() - killed_at
    print(f"SIGKILL recovery: trial {lost.group(1)} restarted {recovery:.1f} s after the kill")
    assert 0 < recovery < 60


def wait_for_trial_metrics(uri: str, experiment: str, timeout: float = 300) -> None:
    """Until a trial run of `experiment` has logged an epoch."""
    client, deadline = MlflowClient(uri), time.time() + timeout
    while time.time() < deadline:
        found = client.get_experiment_by_name(experiment)
        runs = client.search_runs([found.experiment_id]) if found else []
        if any(r.data.tags.get("harness.kind") == "trial" and r.data.metrics for r in runs):
            return
        time.sleep(0.5)
    raise AssertionError(f"no trial logged an epoch within {timeout} s")


def check_metrics_arrived(uri: str, children) -> None:
    client = MlflowClient(uri)
    for _, child in children.iterrows():
        history = client.get_metric_history(child["run_id"], "val_loss")
        assert sorted(m.step for m in history) == list(range(int(child["metrics.epochs"])))


@pytest.mark.slow
def test_a_restarted_tracking_server_loses_no_metric(workdir, restartable_server):
    server = restartable_server
    args = ["run", *CELL, "--max-trials", "2", "--epochs", "3", "--experiment", "restart"]
    run = start_harness(*args, "--tracking-uri", server.uri, cwd=workdir, log="run.log")
    wait_for_trial_metrics(server.uri, "restart")
    server.stop()
    time.sleep(5)
    server.start()  # same port, same store: the harness's retries reach it again
    finish(run, workdir, "run.log")
    _, children = check_each_trial_once(server.uri, "restart", 2)
    check_metrics_arrived(server.uri, children)


@pytest.mark.slow
def test_a_lasting_outage_fails_with_one_line_and_the_rerun_resumes(workdir, restartable_server):
    server = restartable_server
    args = ["run", *CELL, "--max-trials", "2", "--epochs", "3", "--experiment", "outage"]
    args += ["--tracking-uri", server.uri]
    no_http_retries = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0"}  # only the harness's own
    run = start_harness(*args, cwd=workdir, log="run.log", env=no_http_retries)
    wait_for_trial_metrics(server.uri, "outage")
    server.stop()
    run.wait(timeout=300)
    output = (workdir / "run.log").read_text()
    assert run.returncode == 1, output[-3000:]
    assert "unavailable after retries" in output and "rerun the same command" in output
    assert "Traceback" not in output
    server.start()
    harness(*args, cwd=workdir, check=True)
    _, children = check_each_trial_once(server.uri, "outage", 2)
    check_metrics_arrived(server.uri, children)


@pytest.mark.slow
def test_a_trial_that_raises_is_recorded_failed_and_the_search_goes_on(workdir):
    args = ["run", *CELL, "--max-trials", "3", "--experiment", "raises"]
    harness(*args, cwd=workdir, check=True, env={"HARNESS_FAULT": "trial_start:2:raise"})
    parents, children = split_runs(store_uri(workdir), "raises")
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED" and parent["metrics.trials_failed"] == 1
    assert parent["metrics.trials_completed"] == 3  # a failed trial is done (harness/results.py)
    assert parent["metrics.trials_finished"] == 2 and parent["tags.harness.status"] == "done"
    failed = children[children["status"] == "FAILED"]
    assert list(failed["tags.harness.trial_id"]) == ["1"]
    assert failed.iloc[0]["tags.harness.status"] == "failed"
    assert failed.iloc[0]["tags.harness.reason"].startswith("MemoryError: injected fault")
    assert sorted(children[children["status"] == "FINISHED"]["tags.harness.trial_id"]) == [
        "0",
        "2",
    ]


@pytest.mark.slow
def test_four_processes_log_to_one_sqlite_store_without_losing_a_run(workdir):
    families = ["gru", "lstm", "simple_rnn", "transformer"]
    processes = [
        start_harness(
            "run",
            *tiny_cell(family, epochs=1),
            "--max-trials",
            "2",
            "--experiment",
            "shared",
            cwd=workdir,
            log=f"{family}.log",
        )
        for family in families
    ]
    for family, process in zip(families, processes, strict=True):
        output = finish(process, workdir, f"{family}.log")
        assert "database is locked" not in output
    parents, children = split_runs(store_uri(workdir), "shared")
    assert sorted(parents["tags.harness.cell_key"].str.split("-").str[2]) == sorted(families)
    assert set(parents["status"]) == {"FINISHED"}
    assert len(children) == 8 and set(children["status"]) == {"FINISHED"}
    for run_id in parents["run_id"]:
        mine = children[children["tags.mlflow.parentRunId"] == run_id]
        assert sorted(mine["tags.harness.trial_id"]) == ["0", "1"]


@pytest.mark.slow
def test_a_search_on_a_postgresql_backed_tracking_server(workdir, postgres_uri):
    server = MlflowServer(postgres_uri, workdir / "artifacts")
    server.start()
    try:
        args = ["run", *CELL, "--max-trials", "2", "--experiment", "pg"]
        harness(*args, "--tracking-uri", server.uri, cwd=workdir, check=True)
        parent, children = check_each_trial_once(server.uri, "pg", 2)
        assert parent["metrics.trials_completed"] == 2
        artifacts = {a.path for a in MlflowClient(server.uri).list_artifacts(parent["run_id"])}
        assert "best_model.keras" in artifacts
    finally:
        server.stop()


def ended_process_tags() -> dict[str, str]:
    """The tags a run of a process that has since ended on this host carries."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    started = psutil.Process(process.pid).create_time()
    process.kill()
    process.wait()
    return {**liveness.process_tags(), PID: str(process.pid), PROCESS_START: f"{started:.2f}"}


def test_a_resume_ends_the_runs_of_dead_processes_here_and_no_other(workdir):
    tracker = Tracker(store_uri(workdir))
    experiment_id = tracker.experiment_id("phantoms")
    cell = Cell("adding", 8, "gru", Budget())
    dead, alive = ended_process_tags(), liveness.process_tags()
    parent = tracker.start_run(
        experiment_id, cell.label, {KIND: results.CELL, CELL_KEY: cell.key, **dead}
    )
    trials = {
        "dead": dead,
        "alive": alive,  # this test's own process
        "elsewhere": {**dead, HOST: "another-host"},
        "pid reused": {**alive, PROCESS_START: f"{float(alive[PROCESS_START]) - 3600:.2f}"},
    }
    ids = {
        name: tracker.start_run(experiment_id, name, {KIND: TRIAL, PARENT: parent, **tags})
        for name, tags in trials.items()
    }
    runner = Runner(tracker, workdir / "data")
    _, run_id, _ = runner.resume(experiment_id, resolve(cell, workdir / "data"))
    status = {name: tracker.get_run(run).status for name, run in ids.items()}
    assert status == {
        "dead": "KILLED",
        "alive": "RUNNING",
        "elsewhere": "RUNNING",
        "pid reused": "KILLED",
    }
    assert tracker.get_run(ids["dead"]).tags["harness.status"] == "killed"
    reopened = tracker.get_run(run_id)
    assert run_id == parent and reopened.status == "RUNNING"
    assert reopened.tags[PID] == str(os.getpid())  # now this process's run


@pytest.mark.slow
def test_a_run_killed_mid_trial_leaves_no_running_run_after_its_resume(workdir):
    args = ["run", *tiny_cell(max_trials=2), "--experiment", "phantom"]
    process = start_harness(*args, cwd=workdir, log="killed.log", env={"HARNESS_FAULT": "epoch:1"})
    process.wait(timeout=600)
    assert process.returncode == -signal.SIGKILL, (workdir / "killed.log").read_text()[-2000:]
    runs = all_runs(store_uri(workdir), "phantom")
    running = runs[runs["status"] == "RUNNING"]
    assert set(running["tags.harness.kind"]) == {"cell", "trial"}
    assert set(running["tags.harness.pid"]) == {str(process.pid)}
    status = harness("status", "--experiment", "phantom", cwd=workdir, check=True).stdout
    assert "trial 0: its process has died (a resume reruns it)" in status, status
    harness(*args, cwd=workdir, check=True)
    runs = all_runs(store_uri(workdir), "phantom")
    assert "RUNNING" not in set(runs["status"]), runs[["status", "tags.harness.kind"]]
    parent, _ = check_each_trial_once(store_uri(workdir), "phantom", 2)  # none lost, none twice
    assert parent["metrics.trials_completed"] == 2
