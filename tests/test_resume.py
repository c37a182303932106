"""A search survives SIGKILL and SIGINT: the rerun finishes with every trial exactly once."""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
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


def wait_for_line(process: subprocess.Popen, text: str, timeout: float) -> list[str]:
    """Read the harness's stdout until a line containing `text`; the lines read so far.

    The harness's own progress says when a trial runs, so the test need not poll the
    store while the harness writes to it."""
    lines: queue.Queue[str | None] = queue.Queue()

    def pump() -> None:
        for line in process.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=pump, daemon=True).start()
    seen, deadline = [], time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=1)
        except queue.Empty:
            continue
        if line is None:
            break
        seen.append(line)
        if text in line:
            return seen
    raise AssertionError(f"no {text!r} from the harness; it printed:\n{''.join(seen)}")


@pytest.mark.slow
def test_sigint_marks_the_trial_killed_and_the_rerun_resumes(workdir):
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    args = [a if a != "64" else "4096" for a in CELL]  # trials long enough to interrupt
    with open(workdir / "stderr.txt", "w") as stderr_file:
        process = subprocess.Popen(
            [*HARNESS, *args],
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            text=True,
        )
        wait_for_line(process, "trial 0 running", timeout=300)  # the search is under way
        process.send_signal(signal.SIGINT)
        process.wait(timeout=120)
    stderr = (workdir / "stderr.txt").read_text()
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
