"""Which process opened a run, and whether it still lives: a run left RUNNING by a process
that died (SIGKILL, out of memory) is ended KILLED when its cell or frontier resumes.

Each run the harness opens is tagged with its host, process id and the process's start
time. On this host, a process is dead when its id is gone, or belongs to a process that
started at another time (ids are reused). A run of another host is never judged: its
process may be alive there (a worker of a distributed search).
"""

from __future__ import annotations

import os
import socket

import psutil

from harness.results import (
    CELL,
    HOST,
    KIND,
    PID,
    PROCESS_START,
    REASON,
    RETRAIN,
    STATUS,
    TRIAL,
    CellState,
    Outcome,
)

SAME_START_S = 1.0  # start times read twice may differ by the boot time's rounding


def _started(pid: int) -> float | None:
    """When process `pid` started (seconds since the epoch), None if there is none."""
    try:
        return psutil.Process(pid).create_time()
    except psutil.NoSuchProcess:  # a zombie too: it has ended
        return None


def process_tags() -> dict[str, str]:
    """The tags naming this process, for every run it opens."""
    pid = os.getpid()
    return {HOST: socket.gethostname(), PID: str(pid), PROCESS_START: f"{_started(pid):.2f}"}


def dead_here(tags: dict[str, str]) -> bool:
    """Whether the process that opened a run with `tags` has ended on this host (False for
    another host's run, or a run without the tags)."""
    if tags.get(HOST) != socket.gethostname():
        return False
    try:
        pid, started = int(tags[PID]), float(tags[PROCESS_START])
    except (KeyError, ValueError):
        return False
    now = _started(pid)
    return now is None or abs(now - started) > SAME_START_S


def end_dead_runs(tracker, runs: list) -> list[str]:
    """End KILLED each RUNNING run of `runs` whose process died on this host: its ids."""
    ended = []
    for run in runs:
        if run.status == "RUNNING" and dead_here(run.tags):
            tags = {REASON: "its process ended while it ran"}
            status = {
                TRIAL: Outcome.KILLED.value,
                RETRAIN: Outcome.KILLED.value,
                CELL: CellState.PARTIAL.value,
            }
            if run.tags.get(KIND) in status:
                tags[STATUS] = status[run.tags[KIND]]
            tracker.log(run.run_id, tags=tags)
            tracker.finish(run.run_id, Outcome.KILLED.run_status)
            ended.append(run.run_id)
    return ended
