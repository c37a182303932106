"""`--workers N`: how many, the environment workers share, and real local pools running a
suite's cells and a frontier side by side with the sequential MLflow tree; JAX's
compilation cache where programs are compiled again (runs, verify, probes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from harness import backend, interrupts, kt_compat
from harness.events import Events
from harness.pool import (
    STRANDED_S,
    Demand,
    EvaluateJob,
    Pool,
    Progress,
    Reply,
    RetrainJob,
    SearchJob,
    Settings,
    Ticket,
    auto_workers,
    from_wire,
    parse_workers,
    to_wire,
    worker_environment,
)
from tests.helpers import (
    OWN_COMPILE_CACHE,
    REPO,
    all_runs,
    harness,
    store_uri,
    tiny_cell,
    write_suite,
)

GIB = 2**30


def fake_nvidia_smi(folder, free_mib: int) -> str:
    """A PATH whose nvidia-smi reports a GPU with `free_mib` MiB free (first in the PATH)."""
    bin_dir = folder / "fake-bin"
    bin_dir.mkdir(exist_ok=True)
    fake = bin_dir / "nvidia-smi"
    fake.write_text(f"#!/bin/sh\necho {free_mib}\necho 1000\n")
    fake.chmod(0o755)
    return f"{bin_dir}{os.pathsep}{os.environ['PATH']}"


def test_auto_is_one_on_a_cpu_and_by_free_memory_on_a_gpu():
    assert auto_workers(None, 4 * GIB, 16) == 1  # no GPU
    assert auto_workers(140 * GIB, 4 * GIB, 16) == 16  # 28 fit: as many as cores
    assert auto_workers(20 * GIB, 4 * GIB, 16) == 4  # 80% of 20 GiB at 4 GiB each
    assert auto_workers(2 * GIB, 4 * GIB, 16) == 1  # never none
    assert parse_workers("3") == 3
    with pytest.raises(Exception, match="--workers 'zero' is not a positive whole number"):
        parse_workers("zero")


def test_free_memory_is_read_from_nvidia_smi_output():
    assert backend.free_bytes_of("143000\n") == 143000 * 2**20
    assert backend.free_bytes_of(" 81000\n80000\n") == 81000 * 2**20  # the first GPU
    for text in ("", "[N/A]\n", "No devices were found\n"):
        assert backend.free_bytes_of(text) is None, text


def test_auto_asks_nvidia_smi_and_sets_aside_the_trial_estimate(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", fake_nvidia_smi(tmp_path, 20 * 1024))  # 20 GiB free
    assert backend.gpu_free_bytes() == 20 * GIB
    monkeypatch.setenv("HARNESS_TRIAL_GIB", "16")
    assert parse_workers("auto") == 1  # 80% of 20 GiB holds one trial of 16 GiB
    monkeypatch.setenv("HARNESS_TRIAL_GIB", "8")
    assert parse_workers("auto") == min(2, os.cpu_count())
    monkeypatch.delenv("HARNESS_TRIAL_GIB")
    assert parse_workers("auto") == min(4, os.cpu_count())  # the fixed 4 GiB
    monkeypatch.setenv("HARNESS_TRIAL_GIB", "lots")
    with pytest.raises(Exception, match="HARNESS_TRIAL_GIB='lots' is not a positive number"):
        parse_workers("auto")


def test_workers_share_the_device_and_the_users_settings_win():
    env = worker_environment({"PATH": "/bin"}, 4)
    assert env["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
    assert env["HARNESS_TORCH_MEMORY_FRACTION"] == "0.2500"
    mine = worker_environment({"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.3"}, 4)
    assert "XLA_PYTHON_CLIENT_PREALLOCATE" not in mine
    assert (
        worker_environment({"XLA_PYTHON_CLIENT_PREALLOCATE": "true"}, 2)[
            "XLA_PYTHON_CLIENT_PREALLOCATE"
        ]
        == "true"
    )
    assert (
        worker_environment({"HARNESS_TORCH_MEMORY_FRACTION": "0.9"}, 2)[
            "HARNESS_TORCH_MEMORY_FRACTION"
        ]
        == "0.9"
    )


# `harness run ARGS` with Keras' loading replaced by a look at the environment the
# coordinator's frameworks would start with, and whether JAX had started before.
COORDINATOR = """
import os, sys
from jax._src import xla_bridge
from harness import backend, cli

def look():
    found = {name: os.environ.get(name, "unset") for name in (
        "XLA_PYTHON_CLIENT_PREALLOCATE", "HARNESS_TORCH_MEMORY_FRACTION")}
    print(found, "jax started" if xla_bridge.backends_are_initialized() else "jax not started")
    os._exit(0)

backend.load_frameworks = look
cli.app(sys.argv[1:])
"""


@pytest.mark.parametrize(
    ("workers", "env", "expected"),
    [
        ("2", {}, ("false", "0.5000")),
        ("1", {}, ("unset", "unset")),
        ("2", {"XLA_PYTHON_CLIENT_MEM_FRACTION": "0.3"}, ("unset", "0.5000")),
    ],
)
def test_the_coordinator_shares_the_device_before_its_frameworks_start(
    workdir, workers, env, expected
):
    full_env = {**os.environ, "KERAS_BACKEND": "jax", "PYTHONPATH": str(REPO), **env}
    for name in ("XLA_PYTHON_CLIENT_PREALLOCATE", "HARNESS_TORCH_MEMORY_FRACTION"):
        full_env.pop(name, None)
    result = subprocess.run(
        [sys.executable, "-c", COORDINATOR, "run", *tiny_cell(), "--workers", workers],
        cwd=workdir, env=full_env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    preallocate, fraction = expected
    assert result.stdout.strip().splitlines()[-1] == (
        f"{{'XLA_PYTHON_CLIENT_PREALLOCATE': '{preallocate}', "
        f"'HARNESS_TORCH_MEMORY_FRACTION': '{fraction}'}} jax not started"
    )


def test_workers_with_a_chief_are_refused_with_one_line(workdir):
    for role in (["--chief", "127.0.0.1:8470"], ["--chief", "127.0.0.1:8470", "--worker", "w1"]):
        result = harness("run", *tiny_cell(), *role, "--workers", "2", cwd=workdir)
        assert result.returncode == 2
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and "give --workers 1" in lines[0], role


def test_auto_is_one_with_a_chief_and_workers_combine_with_shards(workdir):
    """On a GPU `auto` means several workers, yet `--chief` alone takes it as 1. Each command
    stops at its unwritable working directory, the first thing after --workers is settled."""
    (workdir / "file").write_text("")
    path = {"PATH": fake_nvidia_smi(workdir, 143_000)}  # an H200's free memory: auto > 1
    blocked = ["--workdir", str(workdir / "file" / "data")]
    for flags in (
        ["--chief", "127.0.0.1:8470"],
        ["--chief", "127.0.0.1:8470", "--worker", "w1"],
        ["--shard", "1/2", "--workers", "2"],
    ):
        result = harness("run", *tiny_cell(), *flags, *blocked, cwd=workdir, env=path)
        assert result.returncode == 2, flags
        assert "working directory" in result.stderr and "--workers" not in result.stderr, flags


def check_tree(folder, experiment: str, cells: int, trials: int) -> None:
    """One FINISHED parent per cell, each trial once, FINISHED, tagged with its worker."""
    runs = all_runs(store_uri(folder), experiment)
    parents = runs[runs["tags.harness.kind"] == "cell"]
    children = runs[runs["tags.harness.kind"] == "trial"]
    assert len(parents) == cells and set(parents["status"]) == {"FINISHED"}
    assert len(children) == cells * trials and set(children["status"]) == {"FINISHED"}
    assert not children.duplicated(["tags.mlflow.parentRunId", "tags.harness.trial_id"]).any()
    assert set(children["tags.harness.worker"]) == {"local1", "local2"}


JOINING = SearchJob(None, "1", "2", "127.0.0.1:1")  # a search's job (of no cell)


def no_cell(folder: str) -> RetrainJob:
    """A retrain of no cell: it fails where it runs."""
    return RetrainJob(None, {}, 0, folder, "0", "0")


def test_each_message_crosses_to_a_worker_as_a_plain_dict_and_back_whole():
    from harness.budget import Budget
    from harness.suites import Cell

    cell = Cell("adding", 8, "gru", Budget())
    messages = [
        Settings("/work", "sqlite:///mlflow.db"),
        SearchJob(cell, "1", "run", "127.0.0.1:8470"),
        EvaluateJob(cell, "/work/folder"),
        RetrainJob(cell, {"units": 4}, 2, "/work/folder", "1", "run"),
        Progress("epoch", {"epoch": 1, "label": "adding"}),
        Reply(RuntimeError("ValueError: no")),
    ]
    kinds = ["settings", "search", "evaluate", "retrain", "event", "done"]
    for message, kind in zip(messages, kinds, strict=True):
        wire = to_wire(message)
        assert type(wire) is dict and wire["kind"] == kind
        back = from_wire(wire)
        assert type(back) is type(message)
        if isinstance(message, Reply):
            assert str(back.result) == str(message.result)
        else:
            assert back == message
    assert to_wire(messages[1])["cell"] is cell  # one level deep: the cell travels whole
    ticket = Ticket(1, messages[1], Demand("adding", messages[1], None, planned=2))
    assert "demand" not in to_wire(ticket.job)  # the coordinator's own objects stay behind


def test_after_a_stop_a_job_whose_worker_died_ends_interrupted_and_none_starts(
    workdir, monkeypatch
):
    """A worker ends on a stop (Ctrl-C, --stop-after): the job it ran is interrupted, not
    failed, whether its last message or its death reaches the coordinator first."""
    for name in kt_compat.VARIABLES:
        monkeypatch.setenv(name, "")  # the pool makes this process a chief: undone after
    pool = Pool(1, workdir, store_uri(workdir), Events())
    pool.start()
    worker = pool.workers[0]
    worker.process.send_signal(signal.SIGSTOP)  # it holds the job until it is killed
    interrupts.install()
    ended = {}

    def ask(name: str) -> None:
        try:
            pool.run(no_cell(str(workdir)))
        except BaseException as error:  # noqa: BLE001 - what it raised is the point
            ended[name] = error

    try:
        running = threading.Thread(target=ask, args=("running",))
        running.start()
        while worker.busy is None:
            threading.Event().wait(0.05)
        interrupts.request()
        waiting = threading.Thread(target=ask, args=("waiting",))
        waiting.start()
        worker.process.kill()
        running.join(timeout=30)
        waiting.join(timeout=30)
    finally:
        interrupts.install()  # nothing asked, for the tests after this one
        signal.signal(signal.SIGINT, signal.default_int_handler)
        pool.close()
    assert {name: type(error) for name, error in ended.items()} == {
        "running": KeyboardInterrupt,
        "waiting": KeyboardInterrupt,
    }
    assert pool.workers == []  # none replaced after the stop


def test_a_search_whose_trials_have_all_ended_takes_no_worker(tmp_path):
    """The race of a search's end: its last worker is back, the oracle has stopped it, and
    the cell has not yet left the pool; a worker sent there would wait on a stopped server."""
    import keras_tuner

    space = keras_tuner.HyperParameters()
    space.Choice("units", [1, 2, 3, 4])
    oracle = keras_tuner.oracles.RandomSearchOracle(
        objective="val_loss", max_trials=2, hyperparameters=space, seed=0
    )
    oracle._set_project_dir(str(tmp_path), "cell")
    demand = Demand("cell", JOINING, oracle, planned=2)
    assert demand.wants(0.0)  # no trial yet
    for _ in range(2):
        trial = oracle.create_trial("local1")
        assert demand.wants(0.0)  # running, on no worker of the pool: it may be lost
        oracle.update_trial(trial.trial_id, {"val_loss": 0.1})
        trial.status = "COMPLETED"
        oracle.end_trial(trial)
    assert not demand.wants(0.0)


@pytest.mark.slow  # a real worker process stranded for STRANDED_S; the fast tier replaces one below
def test_a_worker_left_on_a_search_that_ended_is_replaced(workdir, monkeypatch):
    """A worker still on a search STRANDED_S after the search ended is ended and replaced,
    and the search's count of workers is put right."""
    for name in kt_compat.VARIABLES:
        monkeypatch.setenv(name, "")  # the pool makes this process a chief: undone after
    pool = Pool(1, workdir, store_uri(workdir), Events())
    pool.start()
    first = pool.workers[0].process
    demand = Demand("cell", JOINING, None, planned=2, assigned=1)
    try:
        with pool.lock:  # the worker joined the search as it ended, 31 s ago
            pool.workers[0].busy = Ticket(0, JOINING, demand)
            demand.done, demand.ended_at = True, time.monotonic() - STRANDED_S - 1
        first.wait(timeout=30)
        for _ in range(600):
            if pool.workers and pool.workers[0].process is not first:
                break
            time.sleep(0.05)
    finally:
        pool.close()
    assert pool.workers[0].process is not first and demand.assigned == 0


def test_a_worker_whose_connection_broke_is_replaced_and_its_job_runs_on_the_new_one(
    workdir, monkeypatch
):
    """A job sent to a worker whose connection has broken (it died as the job left) is not
    lost: the worker is replaced and the job runs there, and the pool keeps scheduling."""
    for name in kt_compat.VARIABLES:
        monkeypatch.setenv(name, "")  # the pool makes this process a chief: undone after
    pool = Pool(1, workdir, store_uri(workdir), Events())
    pool.start()
    first = pool.workers[0].process
    with pool.lock:
        pool.workers[0].connection.close()
    failed = []

    def ask() -> None:
        try:
            pool.run(no_cell(str(workdir)))
        except RuntimeError as error:  # a job of no cell fails where it runs
            failed.append(str(error))

    try:
        for _ in range(2):  # the first job, and the pool going on after it
            asking = threading.Thread(target=ask, daemon=True)
            asking.start()
            asking.join(timeout=120)
    finally:
        pool.close()
    assert len(failed) == 2, "the pool stopped handing out jobs"
    assert "died" not in failed[0] and failed[0] == failed[1]
    assert first.poll() is not None and pool.workers[0].process.pid != first.pid


@pytest.mark.slow
def test_two_workers_run_a_suite_with_the_sequential_tree_and_verify_clean(workdir):
    suite = write_suite(
        workdir / "pool.toml",
        "pool",
        [{"tasks": ["adding"], "lengths": [8, 12], "families": ["gru", "lstm"]}],
        max_trials=3,
        epochs=2,
    )
    text = suite.read_text().replace("[[cells]]", "[seeds]\nextra = [1, 2]\n[[cells]]", 1)
    suite.write_text(text)
    result = harness("run", "--suite", str(suite), "--workers", "2", cwd=workdir)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 workers on this machine" in result.stdout and "on local2" in result.stdout
    check_tree(workdir, "pool", cells=4, trials=3)
    verify = harness("verify", "--suite", str(suite), cwd=workdir)
    assert verify.returncode == 0, verify.stdout + verify.stderr


@pytest.mark.slow
def test_two_workers_run_two_frontiers_side_by_side(workdir):
    result = harness(
        "frontier", "--task", "adding", "--families", "gru,lstm", "--min-length", "4",
        "--max-length", "8", "--max-trials", "2", "--epochs", "1", "--n-train", "64",
        "--n-val", "32", "--n-test", "32", "--batch-size", "32", "--workers", "2", cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    runs = all_runs(store_uri(workdir), "frontier")
    frontiers = runs[runs["tags.harness.kind"] == "frontier"]
    assert sorted(frontiers["params.family"]) == ["gru", "lstm"]
    assert set(frontiers["status"]) == {"FINISHED"}
    children = runs[runs["tags.harness.kind"] == "trial"]
    assert set(children["tags.harness.worker"]) == {"local1", "local2"}


def cache_files(folder) -> int:
    return sum(1 for path in folder.rglob("*") if path.is_file()) if folder.exists() else 0


@pytest.mark.slow
def test_runs_and_probes_fill_the_compile_cache_verify_uses_it_unless_the_user_says_otherwise(
    workdir,
):
    default, mine = workdir / "data" / "jax-cache", workdir / "mine"

    def command(*args, env=None):  # a process takes its compilation cache once: one per command
        env = {**OWN_COMPILE_CACHE, **(env or {})}  # not the test session's shared cache
        harness(*args, cwd=workdir, check=True, process=True, env=env)

    cell = tiny_cell(epochs=1, max_trials=1)
    command("run", *cell, env={"HARNESS_COMPILE_CACHE": "0"})
    assert not default.exists()  # the off switch
    command("verify")
    assert not default.exists()  # verify creates no cache: it writes nothing where it runs
    command("run", *cell, "--epochs", "2")
    assert cache_files(default) > 0  # a run fills its working directory's cache
    command("verify")  # and verify uses the cache it finds
    before = cache_files(default)
    rotation = ["probe", "rotation", "--lengths", "10,20", "--examples", "16"]
    command(*rotation, env={"JAX_COMPILATION_CACHE_DIR": str(mine)})
    assert cache_files(mine) > 0 and cache_files(default) == before  # the user's cache wins
    other = ["--workdir", str(workdir / "other"), "--tracking-uri", f"sqlite:///{workdir}/b.db"]
    command("run", *cell, *other)
    assert cache_files(workdir / "other" / "jax-cache") > 0
