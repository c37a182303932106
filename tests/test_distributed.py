"""Distributed search (a chief, workers, the watchdog) and suites split into shards."""

from __future__ import annotations

import time

import keras_tuner as kt
import pytest
from keras_tuner.engine.trial import TrialStatus
from keras_tuner.src import protos

from harness import distributed, kt_compat
from tests.helpers import (
    all_runs,
    finish,
    free_port,
    harness,
    one_error_line,
    start_harness,
    tiny_cell,
    write_suite,
)

CELL = tiny_cell(epochs=1)


@pytest.mark.parametrize(
    "flags, expected",
    [
        (["--shard", "3/2"], "--shard '3/2'"),
        (["--shard", "0/2"], "1 <= I <= N"),
        (["--shard", "two"], "I/N"),
        (["--chief", "localhost"], "HOST:PORT"),
        (["--chief", "127.0.0.1:99999"], "HOST:PORT"),
        (["--worker", "w1"], "needs --chief"),
        (["--worker", "my-chief", "--chief", "127.0.0.1:8470"], "not containing 'chief'"),
        (["--chief", "127.0.0.1:8470", "--worker-timeout", "1"], "too short"),
        (["--worker-timeout", "30"], "setting of the chief"),
    ],
)
def test_bad_distributed_flags_end_with_one_line_and_exit_2(workdir, flags, expected):
    line = one_error_line(harness("run", *CELL, *flags, cwd=workdir))
    assert expected in line


def test_shards_cover_every_cell_exactly_once_whatever_the_order():
    from harness.cells import select_cells, shard_cells

    _, cells, _ = select_cells(
        None, ["adding"], [8, 16, 32], ["gru", "lstm", "simple_rnn"], {}, None, None, None
    )
    for count in (1, 2, 3, 4, 11):
        shards = [shard_cells(cells, i, count) for i in range(1, count + 1)]
        keys = [cell.key for shard in shards for cell in shard]
        assert sorted(keys) == sorted(cell.key for cell in cells)
        assert max(map(len, shards)) - min(map(len, shards)) <= 1  # balanced
        assert shards == [shard_cells(cells[::-1], i, count)[::-1] for i in range(1, count + 1)]


def oracle_and_servicer(folder, max_trials: int, **options):
    """A real chief oracle behind the harness's servicer, called as gRPC would call it."""
    hp = kt.HyperParameters()
    hp.Int("units", 1, 100)
    oracle = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("loss", "min"), max_trials=max_trials, hyperparameters=hp, seed=0
    )
    oracle._set_project_dir(str(folder), "project")
    return oracle, distributed._servicer_class()(oracle, **options)


def ask(servicer, tuner_id: str):
    request = protos.get_service().CreateTrialRequest(tuner_id=tuner_id)
    trial = servicer.CreateTrial(request, None).trial
    return trial.trial_id, TrialStatus.from_proto(trial.status)


def complete(servicer, trial_id: str) -> None:
    trial = servicer.oracle.get_trial(trial_id)
    trial.metrics.register("loss", "min")
    trial.metrics.update("loss", 1.0)
    trial.status = TrialStatus.COMPLETED
    servicer.EndTrial(protos.get_service().EndTrialRequest(trial=trial.to_proto()), None)


def drop_silent(servicer, losses: dict) -> list[str]:
    """What the chief's loop does for a worker silent longer than the timeout."""
    dropped = []
    for tuner_id, trial_id in distributed._silent(servicer.oracle, servicer.heard, 10.0):
        losses[trial_id] = losses.get(trial_id, 0) + 1
        distributed._drop(servicer.oracle, tuner_id, trial_id, "silent", losses[trial_id])
        dropped.append(tuner_id)
    return dropped


def test_a_silent_workers_trial_is_rerun_then_failed_and_the_search_ends(tmp_path):
    oracle, servicer = oracle_and_servicer(tmp_path, max_trials=2)
    assert ask(servicer, "w0") == ("0", TrialStatus.RUNNING)
    assert ask(servicer, "w1") == ("1", TrialStatus.RUNNING)
    complete(servicer, "1")
    # w1 waits (IDLE) while w0 still holds trial 0, instead of leaving
    assert ask(servicer, "w1")[1] == TrialStatus.IDLE and not servicer.ended
    assert "w1" in kt_compat.workers(oracle)  # so the chief waits to tell w1 to stop
    # a restarted w0 takes its own trial back
    assert ask(servicer, "w0") == ("0", TrialStatus.RUNNING)
    losses: dict = {}
    assert drop_silent(servicer, losses) == []  # heard just now
    servicer.heard["w0"] = time.monotonic() - 60
    assert drop_silent(servicer, losses) == ["w0"]
    assert ask(servicer, "w1") == ("0", TrialStatus.RUNNING)  # re-run by w1
    servicer.heard["w1"] = time.monotonic() - 60
    assert drop_silent(servicer, losses) == ["w1"]  # lost twice: ended FAILED
    assert oracle.get_trial("0").status == TrialStatus.FAILED
    assert not kt_compat.running_trials(oracle)
    assert ask(servicer, "w2")[1] == TrialStatus.STOPPED and servicer.ended
    assert not kt_compat.workers(oracle)


def trial_runs(uri: str, experiment: str):
    runs = all_runs(uri, experiment)
    return runs[runs["tags.harness.kind"] == "cell"], runs[runs["tags.harness.kind"] == "trial"]


@pytest.mark.slow
def test_a_chief_and_two_workers_run_each_trial_once_with_one_parent(workdir, mlflow_server):
    address = f"127.0.0.1:{free_port()}"
    common = ["run", *CELL, "--max-trials", "4", "--tracking-uri", mlflow_server]
    chief = start_harness(*common, "--chief", address, cwd=workdir, log="chief.log")
    workers = [
        start_harness(
            *common, "--chief", address, "--worker", f"tuner{i}", cwd=workdir, log=f"w{i}.log"
        )
        for i in range(2)
    ]
    for i, process in enumerate(workers):
        assert "searched" in finish(process, workdir, f"w{i}.log")
    assert "done" in finish(chief, workdir, "chief.log")
    parents, children = trial_runs(mlflow_server, "adhoc")
    assert len(parents) == 1 and parents.iloc[0]["status"] == "FINISHED"
    assert parents.iloc[0]["tags.harness.phase"] == "evaluation"
    assert parents.iloc[0]["metrics.trials_completed"] == 4
    assert sorted(children["tags.harness.trial_id"]) == ["0", "1", "2", "3"]
    assert set(children["status"]) == {"FINISHED"}
    assert set(children["tags.mlflow.parentRunId"]) == {parents.iloc[0]["run_id"]}
    assert set(children["tags.harness.worker"]) <= {"tuner0", "tuner1"}


@pytest.mark.slow
def test_three_shards_run_every_cell_of_a_suite_exactly_once(workdir, mlflow_server):
    suite = write_suite(
        workdir / "shards.toml",
        "shards",
        [{"tasks": ["adding"], "lengths": [8], "families": ["gru", "lstm", "simple_rnn"]}],
        max_trials=1,
    )
    common = ["run", "--suite", str(suite), "--tracking-uri", mlflow_server]
    shards = [
        start_harness(*common, "--shard", f"{i}/3", cwd=workdir, log=f"shard{i}.log")
        for i in (1, 2, 3)
    ]
    for i, process in zip((1, 2, 3), shards, strict=True):
        assert "suite shards: 1 to run" in finish(process, workdir, f"shard{i}.log")
    parents, children = trial_runs(mlflow_server, "shards")
    assert sorted(parents["tags.harness.cell_key"].str.split("-").str[2]) == [
        "gru",
        "lstm",
        "simple_rnn",
    ]
    assert set(parents["status"]) == {"FINISHED"} and len(children) == 3
    status = harness("status", "--suite", str(suite), "--tracking-uri", mlflow_server, cwd=workdir)
    assert "3 done; 3 of 3 trials" in status.stdout, status.stdout + status.stderr


def test_a_local_pools_worker_leaves_when_nothing_is_left_to_run_now(tmp_path):
    """--workers: a worker is told to stop (not to wait) while another runs the last trial;
    the search ends when the last one reports; each end is announced to the pool."""
    ended = []
    oracle, servicer = oracle_and_servicer(
        tmp_path, 2, leave_when_idle=True, on_end=lambda: ended.append(1)
    )
    first, status = ask(servicer, "local1")
    second, _ = ask(servicer, "local2")
    assert status == TrialStatus.RUNNING and first != second
    complete(servicer, first)
    assert ask(servicer, "local1")[1] == TrialStatus.STOPPED  # local2's trial still runs
    assert not servicer.ended and "local1" not in kt_compat.workers(oracle)
    complete(servicer, second)
    assert ask(servicer, "local2")[1] == TrialStatus.STOPPED
    assert servicer.ended and not kt_compat.workers(oracle) and len(ended) == 2


@pytest.mark.parametrize(
    ("offered", "running", "leave_when_idle", "told"),
    [
        (kt_compat.RUN, True, False, kt_compat.RUN),
        (kt_compat.RUN, False, True, kt_compat.RUN),
        (kt_compat.WAIT, True, False, kt_compat.WAIT),  # Hyperband's round still running
        (kt_compat.END, True, False, kt_compat.WAIT),  # another worker's trial may come back
        (kt_compat.END, False, False, kt_compat.END),
        (kt_compat.WAIT, True, True, kt_compat.LEAVE),  # a pool's worker: back for other work
        (kt_compat.END, True, True, kt_compat.LEAVE),
        (kt_compat.END, False, True, kt_compat.END),
    ],
)
def test_what_a_worker_asking_for_a_trial_is_told(offered, running, leave_when_idle, told):
    assert distributed._answer(offered, running, leave_when_idle) == told
