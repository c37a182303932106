"""The CLI: tasks, generate, the budget flags run and frontier share, and bad input ending with
exit code 2 and one line."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tests.helpers import (
    all_runs,
    free_port,
    harness,
    one_error_line,
    store_uri,
    write_suite,
)

RUN_GRU = ["run", "--task", "adding", "--length", "10", "--family", "gru"]


def test_tasks_json_lists_every_task_with_vocabularies(workdir):
    result = harness("tasks", "--json", cwd=workdir, check=True)
    tasks = {t["name"]: t for t in json.loads(result.stdout)}
    assert set(tasks) == {
        "adding",
        "counting",
        "copy",
        "first_token",
        "listops",
        "assoc_recall",
        "digits",
        "pdigits",
        "parity",
        "mqar_p4",
        "mqar_p8",
        "mqar_p16",
        "mqar_p32",
    }
    assert tasks["adding"]["input"].startswith("real") and tasks["adding"]["vocab"] == []
    assert "[MIN" in tasks["listops"]["vocab"] and "]" in tasks["listops"]["vocab"]
    assert abs(tasks["adding"]["baseline"] - 1 / 6) < 1e-9


def test_tasks_table_names_every_task(workdir):
    out = harness("tasks", cwd=workdir, check=True).stdout
    names = ("adding", "counting", "copy", "first_token", "listops", "assoc_recall", "digits")
    for name in (*names, "pdigits"):
        assert name in out


def test_generate_writes_arrays_readable_with_numpy(workdir):
    target = workdir / "sub" / "copy.npz"
    harness(
        "generate",
        "copy",
        "--length",
        "30",
        "--n",
        "7",
        "--seed",
        "3",
        "--out",
        str(target),
        cwd=workdir,
        check=True,
    )
    with np.load(target) as data:
        assert data["x"].shape == (7, 50) and data["x"].dtype == np.int32
        assert data["y"].shape == (7, 50)


def test_generate_digits_holds_each_pixel_length_over_64_steps(workdir):
    target = workdir / "d.npz"
    harness(
        "generate",
        "digits",
        "--length",
        "128",
        "--n",
        "5",
        "--out",
        str(target),
        cwd=workdir,
        check=True,
    )
    with np.load(target) as data:
        assert data["x"].shape == (5, 128, 1) and data["x"].dtype == np.float32
        assert (data["x"][:, ::2] == data["x"][:, 1::2]).all()
        assert data["y"].shape == (5,) and data["y"].dtype == np.int32


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["generate", "nosuch", "--out", "a.npz"], "unknown task 'nosuch': accepted adding"),
        (["generate", "adding", "--length", "0", "--out", "a.npz"], "length 0 is out of range"),
        (["generate", "adding", "--length", "10000000", "--out", "a.npz"], "out of range"),
        (["generate", "adding", "--n", "0", "--out", "a.npz"], "n=0 is out of range"),
        (["generate", "adding", "--n", "100000000", "--out", "a.npz"], "n=100000000"),
        (["generate", "adding", "--out", "a.txt"], "must end in .npz"),
        (
            ["generate", "digits", "--length", "100", "--out", "a.npz"],
            "length 100 is out of range for task 'digits': accepted 64..99968 in steps of 64",
        ),
        (["run", "--task", "nosuch", "--length", "10", "--family", "gru"], "unknown task 'nosuch'"),
        (
            ["run", "--task", "adding", "--length", "10", "--family", "rnn9"],
            "unknown family 'rnn9'",
        ),
        (
            ["run", "--task", "adding", "--length", "1", "--family", "gru"],
            "length 1 is out of range",
        ),
        (
            ["run", "--task", "adding", "--length", "10", "--family", "gru", "--max-trials", "0"],
            "'budget.max_trials' must be a positive integer, got 0",
        ),
        (
            ["run", "--task", "adding", "--length", "10", "--family", "gru", "--tuner", "gird"],
            "unknown tuner 'gird'",
        ),
        (
            [
                "run",
                "--task",
                "adding",
                "--length",
                "10",
                "--family",
                "gru",
                "--tuner",
                "grid",
                "--max-trials",
                "4",
            ],
            'give no max_trials with tuner = "grid"',
        ),
        (
            [
                "run",
                "--task",
                "adding",
                "--length",
                "10",
                "--family",
                "gru",
                "--tuner",
                "grid",
                "--grid",
                "learning_rate=0.5",
            ],
            "learning_rate = 0.5 is outside its range",
        ),
        (
            ["run", "--task", "adding", "--length", "10", "--family", "gru", "--extra-seed", "1"],
            "2 seeds per cell; accepted an odd number",
        ),
        (
            ["generate", "adding", "--length", "10", "--n", "5", "--out", "/proc/x.npz"],
            "output file '/proc/x.npz' cannot be written",
        ),
        (["generate", "adding", "--split", "dev", "--out", "a.npz"], "unknown split 'dev'"),
        (
            ["run", "--task", "adding", "--length", "10", "--family", "lstm", "--params", "5"],
            "family 'lstm' cannot meet a budget of 5 parameters on task 'adding': "
            "the smallest it can meet is",
        ),
        (
            ["frontier", "--task", "adding", "--families", "gru", "--executions", "0"],
            "'budget.executions_per_trial' must be a positive integer, got 0",
        ),
        (
            ["run", "--task", "adding", "--length", "10", "--family", "gru", "--fixed", "depth"],
            "--fixed 'depth' is not NAME=VALUE[,NAME=VALUE]",
        ),
        (
            ["run", "--task", "adding", "--length", "10", "--family", "gru", "--fixed", "depth=3"],
            "family 'gru': depth = 3 is outside its range 1 .. 2",
        ),
        (["run", "--task", "adding"], "missing --length, --family"),
        (["run", "--suite", "nosuch"], "unknown suite 'nosuch'"),
        (["status", "--suite", "nosuch"], "unknown suite 'nosuch'"),
        (["status"], "does not exist: run `harness run` first"),
        (["report", "--out", "r"], "does not exist: run `harness run` first"),
        (["verify"], "does not exist: run `harness run` first"),
    ],
)
def test_bad_input_ends_with_one_line_and_exit_2(workdir, args, expected):
    assert expected in one_error_line(harness(*args, cwd=workdir))
    assert not (workdir / "mlflow.db").exists()


def test_malformed_suite_file_names_file_and_key(workdir):
    path = write_suite(
        workdir / "broken.toml",
        "broken",
        [{"tasks": ["adding"], "lengths": [10], "families": ["gru"]}],
        epochs=-1,
    )
    line = one_error_line(harness("run", "--suite", str(path), cwd=workdir))
    assert "broken.toml" in line and "budget.epochs" in line


def test_unreachable_tracking_server_fails_before_training(workdir):
    uri = f"http://127.0.0.1:{free_port()}"
    line = one_error_line(
        harness(
            *RUN_GRU,
            "--tracking-uri",
            uri,
            cwd=workdir,
        )
    )
    assert uri in line and "unreachable" in line
    assert not (workdir / "data" / "tuners").exists()


def test_unsupported_tracking_uri_lists_accepted_schemes(workdir):
    line = one_error_line(harness("status", "--tracking-uri", "ftp://x", cwd=workdir))
    assert "ftp://x" in line and "sqlite:///" in line


def test_unwritable_store_and_workdir(workdir):
    locked = workdir / "locked"
    locked.mkdir()
    (locked / "file").write_text("a file, not a folder")
    uri = f"sqlite:///{locked / 'file' / 'mlflow.db'}"
    line = one_error_line(harness(*RUN_GRU, "--tracking-uri", uri, cwd=workdir))
    assert "cannot be created" in line
    line = one_error_line(
        harness(
            *RUN_GRU,
            "--workdir",
            str(locked / "file" / "w"),
            cwd=workdir,
        )
    )
    assert "working directory" in line


def test_every_budget_field_has_one_flag_that_run_and_frontier_both_take():
    from dataclasses import fields

    import typer

    from harness.budget import Budget
    from harness.cli import app
    from harness.cli.options import BUDGET_FLAGS

    assert set(BUDGET_FLAGS) == {f.name for f in fields(Budget)}
    group = typer.main.get_command(app)
    for name in ("run", "frontier"):
        command = group.commands[name]
        found = {p.name: (p.opts, p.help) for p in command.params}
        for field, (flag, _, text) in BUDGET_FLAGS.items():
            assert found[field] == ([flag], text), (name, field)


@pytest.mark.slow
def test_frontier_executions_land_in_its_cells_budget(workdir):
    harness(
        "frontier", "--task", "first_token", "--families", "gru", "--min-length", "4",
        "--max-length", "4", "--max-trials", "1", "--epochs", "1", "--executions", "2",
        "--n-train", "64", "--n-val", "32", "--n-test", "32", "--batch-size", "32",
        cwd=workdir, check=True,
    )  # fmt: skip
    runs = all_runs(store_uri(workdir), "frontier")
    frontier = runs[runs["tags.harness.kind"] == "frontier"]
    cells = runs[runs["tags.harness.kind"] == "cell"]
    assert list(frontier["params.budget.executions_per_trial"]) == ["2"]
    assert len(cells) >= 1 and set(cells["params.budget.executions_per_trial"]) == {"2"}
