"""`--workers N`: how many, the environment workers share, and real local pools running a
suite's cells and a frontier side by side with the sequential MLflow tree."""

from __future__ import annotations

import pytest

from harness.pool import auto_workers, parse_workers, worker_environment
from tests.conftest import all_runs, harness, store_uri, tiny_cell, write_suite

GIB = 2**30


def test_auto_is_one_on_a_cpu_and_by_free_memory_on_a_gpu():
    assert auto_workers(None, 4 * GIB, 16) == 1  # no GPU
    assert auto_workers(140 * GIB, 4 * GIB, 16) == 16  # 28 fit: as many as cores
    assert auto_workers(20 * GIB, 4 * GIB, 16) == 4  # 80% of 20 GiB at 4 GiB each
    assert auto_workers(2 * GIB, 4 * GIB, 16) == 1  # never none
    assert parse_workers("3") == 3
    with pytest.raises(Exception, match="--workers 'zero' is not a positive whole number"):
        parse_workers("zero")


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


def test_workers_with_a_chief_are_refused_with_one_line(workdir):
    result = harness(
        "run", *tiny_cell(), "--chief", "127.0.0.1:8470", "--workers", "2", cwd=workdir
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "give --workers 1" in lines[0]


def check_tree(folder, experiment: str, cells: int, trials: int) -> None:
    """One FINISHED parent per cell, each trial once, FINISHED, tagged with its worker."""
    runs = all_runs(store_uri(folder), experiment)
    parents = runs[runs["tags.harness.kind"] == "cell"]
    children = runs[runs["tags.harness.kind"] == "trial"]
    assert len(parents) == cells and set(parents["status"]) == {"FINISHED"}
    assert len(children) == cells * trials and set(children["status"]) == {"FINISHED"}
    assert not children.duplicated(["tags.mlflow.parentRunId", "tags.harness.trial_id"]).any()
    assert set(children["tags.harness.worker"]) == {"local1", "local2"}


@pytest.mark.slow
def test_two_workers_run_a_suite_with_the_sequential_tree_and_verify_clean(workdir):
    suite = write_suite(
        workdir / "pool.toml",
        "pool",
        [{"tasks": ["adding"], "lengths": [8, 12], "families": ["gru", "lstm"]}],
        max_trials=3,
        epochs=2,
    )
    text = suite.read_text().replace("[[cells]]", "[seeds]\nextra = [1]\n[[cells]]", 1)
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
