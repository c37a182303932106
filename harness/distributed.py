"""Distributed search: Keras Tuner's chief oracle served over gRPC, workers, and a watchdog.

Keras Tuner's own mode: each process names its role ("chief", or a worker id such as
"tuner0") and the chief's address in Keras Tuner's environment variables
(harness/kt_compat.py's `set_role`); workers ask the chief's oracle for trials and report
results to it.

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

import re
import threading
import time
from collections.abc import Callable
from concurrent import futures
from dataclasses import dataclass

from harness import interrupts, kt_compat
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


def configure(cluster: Cluster) -> None:
    """Set Keras Tuner's distribution variables; read when a tuner is built."""
    kt_compat.set_role(cluster.role, cluster.host, cluster.port)


def unconfigure() -> None:
    """Back to a tuner of its own (not distributed): the variables removed."""
    kt_compat.clear_role()


def free_port(host: str) -> int:
    """A port free on `host` now (for a local chief)."""
    import socket

    with socket.socket() as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


# -- the chief -------------------------------------------------------------------------


def _answer(offered: str, running: bool, leave_when_idle: bool) -> str:
    """What a worker asking for a trial is told (harness/kt_compat.py's RUN, WAIT, LEAVE,
    END), from what the oracle offers it and whether any trial still runs."""
    if offered == kt_compat.RUN:
        return offered
    if leave_when_idle:
        # a local pool's worker leaves when there is nothing to run now; the pool sends one
        # back if a trial comes back or a round of trials opens
        return kt_compat.LEAVE if offered == kt_compat.WAIT or running else kt_compat.END
    if offered == kt_compat.END and running:
        return kt_compat.WAIT  # stay: another worker's trial may come back
    return offered


def _servicer_class():
    """Keras Tuner's chief servicer (harness/kt_compat.py) noting who spoke when; imported
    late, as Keras Tuner is (the CLI reads this module before the frameworks load)."""

    class WatchedServicer(kt_compat.chief_servicer_class()):
        def __init__(self, oracle, leave_when_idle: bool = False, on_end=None):
            super().__init__(oracle)
            self.heard: dict[str, float] = {}  # tuner id -> last request
            self.leave_when_idle, self.on_end = leave_when_idle, on_end

        def heard_from(self, tuner_id: str) -> None:
            self.heard[tuner_id] = time.monotonic()

        def answer(self, offered: str, running: bool) -> str:
            return _answer(offered, running, self.leave_when_idle)

        def trial_ended(self) -> None:
            if self.on_end is not None:
                self.on_end()

    return WatchedServicer


def _silent(oracle, heard: dict[str, float], timeout: float) -> list[tuple[str, str | None]]:
    """(tuner id, its ongoing trial id or None) for each worker silent longer than `timeout`."""
    now = time.monotonic()
    ongoing = kt_compat.running_trials(oracle)
    return [
        (tuner_id, ongoing.get(tuner_id))
        for tuner_id in kt_compat.workers(oracle) | set(ongoing)
        if now - heard.get(tuner_id, now) > timeout
    ]


def _drop(oracle, tuner_id: str, trial_id: str | None, reason: str, losses: int) -> None:
    """Forget a silent worker; re-queue its trial, or end it FAILED after MAX_LOSSES."""
    kt_compat.forget_worker(oracle, tuner_id)
    if trial_id is None or kt_compat.running_trials(oracle).get(tuner_id) != trial_id:
        return
    if losses < MAX_LOSSES:
        kt_compat.requeue(oracle, tuner_id, trial_id)
        return
    kt_compat.fail_trial(oracle, trial_id, reason)


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
    finished = kt_compat.synchronized(
        lambda o: not kt_compat.running_trials(o) and not kt_compat.workers(o)
    )
    running = kt_compat.synchronized(lambda o: bool(kt_compat.running_trials(o)))
    try:
        while not (servicer.ended and finished(oracle)):
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
            if run.status == "FINISHED" or run.tags.get(PHASE) == "evaluation":
                return None
            if run.tags.get(PHASE) == "search" and run.status == "RUNNING":
                return run
        time.sleep(1.0)
    raise UserError(
        f"the chief did not open cell {label} within {CHIEF_WAIT_S:g} s: "
        "start `harness run ... --chief HOST:PORT` with the same cells"
    )
