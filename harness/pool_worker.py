"""A local pool's worker process (harness/pool.py): it connects back to the coordinator,
then runs the jobs it is sent (a cell's trials, an evaluation, a retrain) until told to stop."""

from __future__ import annotations

import os
import sys
from multiprocessing.connection import Client
from pathlib import Path

from harness import backend, kt_compat
from harness.events import Events
from harness.pool import (
    KEY,
    EvaluateJob,
    Job,
    Progress,
    Reply,
    SearchJob,
    Settings,
    from_wire,
    to_wire,
)


class WorkerEvents(Events):
    """A worker's trial events, sent on to the coordinator's display."""

    def __init__(self, connection):
        self.connection, self.label, self.key = connection, "", ""

    def trial(self, event: str, **info) -> None:
        info = {**info, "label": self.label, "key": self.key}
        self.connection.send(to_wire(Progress(event, info)))


def run_job(tracker, workdir: Path, events: WorkerEvents, job: Job, worker_id: str) -> object:
    """A worker's job: join a cell's search, evaluate its best model, or retrain a seed."""
    from harness import distributed, evaluation, steps

    resolved = steps.resolve(job.cell, workdir)
    events.label, events.key = resolved.label, resolved.cell.key
    if isinstance(job, SearchJob):
        host, _, port = job.address.rpartition(":")
        distributed.configure(distributed.Cluster(worker_id, host, int(port)))
        tuner = steps.build_tuner(tracker, job.experiment_id, job.run_id, resolved, events.trial)
        with distributed.Heartbeat(tuner):
            steps.search(tuner, resolved)
        return len(tuner.records)
    distributed.unconfigure()
    folder = Path(job.folder)
    if isinstance(job, EvaluateJob):  # the chief's tuner, reloaded from its folder (no server)
        kt_compat.set_tuner_id(distributed.CHIEF)
        tuner = steps.build_tuner(tracker, None, None, resolved, events.trial)
        return steps.best(resolved, tuner, folder, retrain=False)
    runs = (tracker, job.experiment_id, job.run_id)
    return evaluation.retrain_seed(resolved, job.values, job.seed, folder, events.trial, runs)


def worker_main(address: str, worker_id: str) -> None:
    from harness import interrupts

    backend.configure()
    host, _, port = address.rpartition(":")
    connection = Client((host, int(port)), authkey=bytes.fromhex(os.environ.pop(KEY)))
    settings = from_wire(connection.recv())
    assert isinstance(settings, Settings)
    workdir = Path(settings.workdir)
    backend.load_frameworks()
    backend.use_compile_cache(workdir / "jax-cache")
    backend.share_device()
    interrupts.install()
    from harness.tracking import Tracker

    tracker, events = Tracker(settings.uri), WorkerEvents(connection)
    while True:
        wire = connection.recv()
        if wire is None:
            return
        try:
            result = run_job(tracker, workdir, events, from_wire(wire), worker_id)
        except KeyboardInterrupt:
            connection.send(to_wire(Reply(KeyboardInterrupt("interrupted"))))
            return
        except Exception as error:  # the coordinator raises it where the job was asked for
            result = RuntimeError(f"{type(error).__name__}: {error}")
        connection.send(to_wire(Reply(result)))


if __name__ == "__main__":
    worker_main(sys.argv[1], sys.argv[2])
