"""Distributed search: Keras Tuner's chief oracle served over gRPC, workers, and a watchdog.

Keras Tuner's own mode: each process sets KERASTUNER_TUNER_ID ("chief", or a
worker id such as "tuner0"), KERASTUNER_ORACLE_IP and KERASTUNER_ORACLE_PORT;
workers ask the chief's oracle for trials and report results to it.

Its chief waits forever for a trial whose worker died (keras-tuner #915, #344),
so the harness serves the oracle itself and adds a watchdog:

- a worker sends a heartbeat (a GetTrial of its running trial) every
  HEARTBEAT_S seconds from a thread, so a long epoch still counts as alive;
- the chief notes when it last heard from each worker (any request naming its
  id or its trial); a worker silent for `worker_timeout` seconds is dropped;
- a dropped worker's trial goes back to the queue and is re-run by the next
  worker that asks; a worker restarted with the same id before the timeout
  takes its trial back itself; a trial dropped twice is ended FAILED, so a
  trial that kills every worker cannot stall the search;
- a worker asking for a trial while others still run theirs waits (IDLE)
  instead of leaving, so a re-queued trial always finds a worker. With no
  worker left the chief waits for one to (re)join, with any id.

In MLflow the chief (the runner) creates each cell's parent run before serving, and
harness/cluster.py's `serve_cell` tags it `harness.phase` = "search" while it serves,
then "evaluation"; workers wait for that tag (`wait_for_cell`) and log their trials as
its children, tagged `harness.worker`.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

from harness import interrupts
from harness.errors import UserError
from harness.results import PHASE

CHIEF = "chief"
HEARTBEAT_S = 2.0
DEFAULT_WORKER_TIMEOUT_S = 60.0
MIN_WORKER_TIMEOUT_S = 3 * HEARTBEAT_S
CHIEF_WAIT_S = 3600.0  # how long a worker waits for the chief to open a cell
MAX_LOSSES = 2  # a trial whose worker is lost this often is ended FAILED
WORKER_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")


@dataclass(frozen=True)
class Cluster:
    """This process's place in a distributed search: the chief or a worker."""

    role: str  # CHIEF or a worker id
    host: str
    port: int
    worker_timeout: float = DEFAULT_WORKER_TIMEOUT_S

    @property
    def is_chief(self) -> bool:
        return self.role == CHIEF

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"


def parse_cluster(chief: str | None, worker: str | None, worker_timeout: float | None):
    """The Cluster for --chief/--worker/--worker-timeout, None when not distributed."""
    if chief is None:
        if worker is not None:
            raise UserError(f"--worker {worker} needs --chief HOST:PORT (the chief's address)")
        if worker_timeout is not None:
            raise UserError("--worker-timeout is a setting of the chief: give --chief HOST:PORT")
        return None
    host, _, port = chief.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or " " in host:
        raise UserError(f"--chief '{chief}' is not HOST:PORT (e.g. 127.0.0.1:8470)")
    if worker is not None:
        if not WORKER_ID.fullmatch(worker) or CHIEF in worker:
            raise UserError(
                f"--worker '{worker}' is not a worker id: accepted 1-64 letters, digits, "
                "'.', '_' or '-', not containing 'chief'"
            )
        if worker_timeout is not None:
            raise UserError("--worker-timeout is a setting of the chief, not of a worker")
        return Cluster(worker, host, int(port))
    timeout = DEFAULT_WORKER_TIMEOUT_S if worker_timeout is None else worker_timeout
    if timeout < MIN_WORKER_TIMEOUT_S:
        raise UserError(
            f"--worker-timeout {worker_timeout} is too short: accepted >= {MIN_WORKER_TIMEOUT_S:g} "
            f"seconds (workers send a heartbeat every {HEARTBEAT_S:g} s)"
        )
    return Cluster(CHIEF, host, int(port), timeout)


VARIABLES = ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT")


def configure(cluster: Cluster) -> None:
    """Set Keras Tuner's distribution variables; read when a tuner is built."""
    values = (cluster.role, cluster.host, str(cluster.port))
    os.environ.update(dict(zip(VARIABLES, values, strict=True)))


def unconfigure() -> None:
    """Back to a tuner of its own (not distributed): the variables removed."""
    for name in VARIABLES:
        os.environ.pop(name, None)


def free_port(host: str) -> int:
    """A port free on `host` now (for a local chief)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- the chief -------------------------------------------------------------------------


def _servicer_class():
    """Keras Tuner's chief servicer (harness/kt_compat.py) noting who spoke when; imported
    late, as Keras Tuner is (the CLI reads this module before the frameworks load)."""
    from harness import kt_compat
    from harness.kt_compat import TrialStatus

    class WatchedServicer(kt_compat.oracle_servicer()):
        def __init__(self, oracle, leave_when_idle: bool = False, on_end=None):
            super().__init__(oracle)
            self.heard: dict[str, float] = {}  # tuner id -> last request
            self.leave_when_idle, self.on_end = leave_when_idle, on_end

        def hear_trial(self, trial_id: str) -> None:
            for tuner_id, trial in dict(self.oracle.ongoing_trials).items():
                if trial.trial_id == trial_id:
                    self.heard[tuner_id] = time.monotonic()

        def CreateTrial(self, request, context):
            self.heard[request.tuner_id] = time.monotonic()
            trial = self.oracle.create_trial(request.tuner_id)
            if self.leave_when_idle and trial.status != TrialStatus.RUNNING:
                # a local pool's worker leaves when there is nothing to run now; the pool
                # sends one back if a trial comes back or a round of trials opens
                if trial.status == TrialStatus.IDLE or self.oracle.ongoing_trials:
                    self.oracle.tuner_ids.discard(request.tuner_id)
                else:
                    self.stop_triggered = True
                trial.status = TrialStatus.STOPPED
                return kt_compat.create_trial_response(trial)
            if trial.status == TrialStatus.STOPPED and self.oracle.ongoing_trials:
                trial.status = TrialStatus.IDLE  # stay: another worker's trial may come back
                self.oracle.tuner_ids.add(request.tuner_id)  # and the chief waits for you
            if trial.status == TrialStatus.IDLE:
                time.sleep(1.0)  # a worker told IDLE asks again at once: pace it
            elif trial.status == TrialStatus.STOPPED:
                self.stop_triggered = True
            return kt_compat.create_trial_response(trial)

        def UpdateTrial(self, request, context):
            self.hear_trial(request.trial_id)
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):
            self.hear_trial(request.trial.trial_id)
            response = super().EndTrial(request, context)
            if self.on_end is not None:
                self.on_end()
            return response

        def GetTrial(self, request, context):
            self.hear_trial(request.trial_id)
            return super().GetTrial(request, context)

    return WatchedServicer


def _silent(oracle, heard: dict[str, float], timeout: float) -> list[tuple[str, str | None]]:
    """(tuner id, its ongoing trial id or None) for each worker silent longer than `timeout`."""
    now = time.monotonic()
    ongoing = {tuner_id: trial.trial_id for tuner_id, trial in oracle.ongoing_trials.items()}
    return [
        (tuner_id, ongoing.get(tuner_id))
        for tuner_id in set(oracle.tuner_ids) | set(ongoing)
        if now - heard.get(tuner_id, now) > timeout
    ]


def _drop(oracle, tuner_id: str, trial_id: str | None, reason: str, losses: int) -> None:
    """Forget a silent worker; re-queue its trial, or end it FAILED after MAX_LOSSES."""
    from harness import kt_compat
    from harness.kt_compat import TrialStatus

    oracle.tuner_ids.discard(tuner_id)
    trial = oracle.ongoing_trials.get(tuner_id)
    if trial is None or trial.trial_id != trial_id:
        return
    if losses < MAX_LOSSES:
        kt_compat.requeue(oracle, tuner_id, trial_id)
        return
    trial.status, trial.message = TrialStatus.FAILED, reason
    oracle.end_trial(trial)


@dataclass
class Lost:
    """A trial taken from a silent worker: re-queued, or ended FAILED."""

    trial_id: str
    worker: str
    reason: str
    failed: bool


def serve(
    oracle,
    cluster: Cluster,
    on_lost: Callable[[Lost], None],
    leave_when_idle: bool = False,
    on_end: Callable[[], None] | None = None,
) -> None:
    """Serve `oracle` to the workers until every trial has ended; drop silent workers.

    With `leave_when_idle` (a local pool) a worker with nothing to run now is told to
    stop rather than to wait; `on_end` is called after each trial ends.
    """
    import grpc

    from harness import kt_compat

    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=16), options=[("grpc.so_reuseport", 0)]
    )
    servicer = _servicer_class()(oracle, leave_when_idle, on_end)
    kt_compat.add_servicer(servicer, server)
    try:
        bound = server.add_insecure_port(cluster.address)
    except RuntimeError:
        bound = 0
    if not bound:
        raise UserError(f"--chief {cluster.address}: cannot listen there (in use, or not local)")
    server.start()
    silent, drop = kt_compat.synchronized(_silent), kt_compat.synchronized(_drop)
    losses: dict[str, int] = {}
    finished = kt_compat.synchronized(lambda o: not o.ongoing_trials and not o.tuner_ids)
    running = kt_compat.synchronized(lambda o: bool(o.ongoing_trials))
    try:
        while not (servicer.stop_triggered and finished(oracle)):
            if interrupts.requested() and not running(oracle):
                break  # a stop with no trial running (perhaps before any worker joined)
            time.sleep(0.5)
            for tuner_id, trial_id in silent(oracle, servicer.heard, cluster.worker_timeout):
                reason = f"worker {tuner_id} silent for over {cluster.worker_timeout:g} s"
                if trial_id is not None:
                    losses[trial_id] = losses.get(trial_id, 0) + 1
                    failed = losses[trial_id] >= MAX_LOSSES
                    on_lost(Lost(trial_id, tuner_id, reason, failed))
                drop(oracle, tuner_id, trial_id, reason, losses.get(trial_id, 0))
                servicer.heard.pop(tuner_id, None)
    finally:
        server.stop(grace=2).wait()


# -- a worker ---------------------------------------------------------------------------


class Heartbeat:
    """While open, tells the chief every HEARTBEAT_S seconds that the tuner's trial is alive."""

    def __init__(self, tuner):
        self.tuner = tuner
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=HEARTBEAT_S * 2)

    def _beat(self) -> None:
        while not self._stop.wait(HEARTBEAT_S):
            trial_id = getattr(self.tuner, "running_trial", None)
            if trial_id is None:
                continue
            try:
                self.tuner.oracle.get_trial(trial_id)
            except Exception:  # the chief restarting: the next beat tries again
                continue


def wait_for_cell(tracker, experiment_name: str, key: str, label: str):
    """The cell's parent run once the chief serves it, or None when the chief is past it."""
    deadline = time.monotonic() + CHIEF_WAIT_S
    while time.monotonic() < deadline:
        experiment_id = tracker.experiment_id(experiment_name, create=False)
        run = tracker.cell_run(experiment_id, key) if experiment_id else None
        if run is not None:
            if run.info.status == "FINISHED" or run.data.tags.get(PHASE) == "evaluation":
                return None
            if run.data.tags.get(PHASE) == "search" and run.info.status == "RUNNING":
                return run
        time.sleep(1.0)
    raise UserError(
        f"the chief did not open cell {label} within {CHIEF_WAIT_S:g} s: "
        "start `harness run ... --chief HOST:PORT` with the same cells"
    )
