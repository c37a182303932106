"""`--workers N`: N local worker processes sharing one machine (and its GPU), one command.

The main process (the coordinator) runs each cell's steps as the sequential runner
does (resume, search, evaluate, record), several cells and frontiers side by side,
and `LocalPool`, the runner's strategy, hands the work that trains to its workers
(harness/pool_worker.py, one process each):

- a cell's search: the coordinator serves the cell's Keras Tuner oracle on 127.0.0.1
  (harness/distributed.py, with its watchdog) and sends workers to it; each worker
  runs trials (a Keras Tuner worker, its child runs tagged with its id) until the
  oracle has nothing for it now, then comes back for other work. Up to N trials of
  one cell run at once, or trials of several cells;
- evaluating the best model, and each extra seed's retrain: one job each, side by side.

A free worker takes a waiting evaluation or retrain first, else joins the searching
cell with the fewest workers that can use one more. The MLflow tree is the
sequential one: a parent run per cell, a child per trial. How work is spread is not
part of any cell's key. Workers share the device: JAX workers get
XLA_PYTHON_CLIENT_PREALLOCATE=false (by default each JAX process takes 75% of the GPU
memory) and torch workers a per-process memory fraction of 1/N, unless the user set
their own; so does the coordinator (it asks the device's name for its runs' tags).
A worker that dies (or whose connection breaks) is replaced; its trial goes back to the
queue, its evaluation or retrain runs once more on another worker. Once a stop is asked
for (Ctrl-C, `--stop-after`), no job starts, and each job waiting or on a worker that
died (a worker ends on its stop) ends interrupted: the runner stops as it would alone.
"""

from __future__ import annotations

import math
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, fields
from multiprocessing.connection import Listener
from pathlib import Path
from typing import TYPE_CHECKING

from harness import backend, interrupts, kt_compat
from harness.errors import UserError

if TYPE_CHECKING:
    from harness.suites import Cell

HOST = "127.0.0.1"
WORKER_TIMEOUT_S = 20.0  # a local worker silent this long is dropped (its trial re-queued)
TRIAL_GIB = 4.0
"""The GPU memory `--workers auto` sets aside per trial: a fixed estimate, not measured;
$HARNESS_TRIAL_GIB overrides it."""
TRIAL_GIB_VARIABLE = "HARNESS_TRIAL_GIB"
COOLDOWN_S = 2.0
STRANDED_S = 30.0  # a worker still on a search this long after it ended is replaced
MAX_TRIES = 2  # an evaluation or retrain whose worker died runs once more, then fails
KEY = "HARNESS_POOL_KEY"


# -- how many, and the environment they share -------------------------------------------------


def auto_workers(free_bytes: int | None, trial_bytes: float, cpus: int) -> int:
    """Workers for `--workers auto`: 1 without a GPU; on a GPU as many trials as fit in 80%
    of its free memory at `trial_bytes` each, at most one per CPU core."""
    if free_bytes is None:
        return 1
    return max(1, min(cpus, math.floor(0.8 * free_bytes / max(trial_bytes, 1))))


def trial_bytes() -> float:
    """The GPU memory set aside per trial: $HARNESS_TRIAL_GIB, else TRIAL_GIB."""
    text = os.environ.get(TRIAL_GIB_VARIABLE, str(TRIAL_GIB))
    try:
        gib = float(text)
    except ValueError:
        gib = math.nan
    if not gib > 0:
        raise UserError(f"{TRIAL_GIB_VARIABLE}='{text}' is not a positive number of GiB")
    return gib * 2**30


def parse_workers(text: str) -> int:
    """`--workers N` or `auto`."""
    if text == "auto":
        return auto_workers(backend.gpu_free_bytes(), trial_bytes(), os.cpu_count() or 1)
    if not text.isdigit() or int(text) < 1:
        raise UserError(f"--workers '{text}' is not a positive whole number or auto")
    return int(text)


def worker_environment(env: dict[str, str], workers: int) -> dict[str, str]:
    """The environment of a worker process: device memory shared, the user's settings kept."""
    env = dict(env)
    if "XLA_PYTHON_CLIENT_PREALLOCATE" not in env and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in env:
        env["XLA_PYTHON_CLIENT_PREALLOCATE"] = "false"
    env.setdefault(backend.TORCH_FRACTION, f"{1 / workers:.4f}")
    return env


def share_environment(workers: int) -> None:
    """The coordinator's own environment as its workers': called before any framework starts
    in it (its device queries would otherwise start JAX taking 75% of the GPU's memory)."""
    os.environ.update(worker_environment(os.environ, workers))


# -- what travels between the coordinator and its workers ------------------------------------


@dataclass(frozen=True)
class Settings:
    """What a worker is told once, as it connects: where to work and which store to write."""

    workdir: str
    uri: str


@dataclass(frozen=True)
class SearchJob:
    """Join a cell's search: run trials from the oracle served at `address` until it has none
    for this worker now."""

    cell: Cell
    experiment_id: str
    run_id: str
    address: str  # host:port


@dataclass(frozen=True)
class EvaluateJob:
    """Score the best model of a cell's search, its tuner reloaded from its folder."""

    cell: Cell
    folder: str


@dataclass(frozen=True)
class RetrainJob:
    """Retrain a cell's best hyperparameters from one more seed and score the model."""

    cell: Cell
    values: dict
    seed: int
    folder: str
    experiment_id: str
    run_id: str


Job = SearchJob | EvaluateJob | RetrainJob


@dataclass(frozen=True)
class Progress:
    """A worker's trial event, for the coordinator's display."""

    event: str
    info: dict


@dataclass(frozen=True)
class Reply:
    """A job's end: its result (a search's count of trials run, an evaluation), or the
    exception that ended it (raised where the job was asked for)."""

    result: object


Message = Settings | SearchJob | EvaluateJob | RetrainJob | Progress | Reply
KINDS: dict[str, type] = {
    "settings": Settings,
    "search": SearchJob,
    "evaluate": EvaluateJob,
    "retrain": RetrainJob,
    "event": Progress,
    "done": Reply,
}
"""Each message's kind as it travels."""


def to_wire(message: Message) -> dict:
    """A message as it crosses the process boundary: its kind and its fields, one level deep
    (a cell stays a Cell)."""
    kind = next(name for name, kind_type in KINDS.items() if type(message) is kind_type)
    return {"kind": kind, **{f.name: getattr(message, f.name) for f in fields(message)}}


def from_wire(wire: dict) -> Message:
    """A message back from what crossed the boundary."""
    values = dict(wire)
    return KINDS[values.pop("kind")](**values)


# -- the coordinator's side ---------------------------------------------------------------------


@dataclass
class Ticket:
    """A job as the coordinator tracks it: its id, the search it joins, how often it ran."""

    id: int
    job: Job
    demand: Demand | None = None  # the search a SearchJob joins (never sent)
    tries: int = 1

    @property
    def is_search(self) -> bool:
        return isinstance(self.job, SearchJob)


@dataclass
class Demand:
    """A cell whose search is being served: how many workers it has and can use."""

    label: str
    job: SearchJob  # what a worker needs to join it
    oracle: object
    planned: int
    assigned: int = 0
    done: bool = False
    resting_until: float = 0.0  # after a worker found nothing to run now
    ended_at: float = 0.0  # when its search ended (done)

    def wants(self, now: float) -> bool:
        if self.done or now < self.resting_until:
            return False
        if self.assigned == 0:  # a trial re-queued from a lost worker, or the last one to end
            return kt_compat.has_work(self.oracle, self.planned)
        return self.assigned < self.planned - kt_compat.trial_count(self.oracle)


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    connection: object = None
    busy: Ticket | None = None  # the job it runs


class Pool:
    """N worker processes and the jobs they run (see the module's text)."""

    def __init__(self, size: int, workdir: Path, tracking_uri: str, progress):
        self.size, self.workdir, self.uri, self.progress = size, workdir, tracking_uri, progress
        self.lock = threading.Condition()
        self.jobs: list[Ticket] = []
        self.demands: list[Demand] = []
        self.workers: list[Worker] = []
        self.results: dict[int, object] = {}
        self.counter = 0
        self.closed = False
        self.key = secrets.token_bytes(16)
        self.listener = Listener((HOST, 0), authkey=self.key)

    # -- life cycle ---------------------------------------------------------------------------
    def start(self) -> None:
        """Start the workers (the chief's variables first: cells' oracles are served here)."""
        kt_compat.set_role("chief", HOST, 0)
        for index in range(1, self.size + 1):
            self._spawn(index)
        threading.Thread(target=self._schedule, name="pool", daemon=True).start()

    def _spawn(self, index: int) -> None:
        env = worker_environment(os.environ, self.size)
        env[KEY] = self.key.hex()
        kt_compat.clear_role(env)
        host, port = self.listener.address
        process = subprocess.Popen(  # its output travels through the connection; errors stay
            [sys.executable, "-m", "harness.pool_worker", f"{host}:{port}", f"local{index}"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        worker = Worker(index, process)
        worker.connection = self.listener.accept()
        worker.connection.send(to_wire(Settings(str(self.workdir), self.uri)))
        self.workers.append(worker)
        threading.Thread(target=self._listen, args=(worker,), daemon=True).start()

    def close(self) -> None:
        with self.lock:
            self.closed = True
            self.lock.notify_all()
        for worker in self.workers:
            try:
                worker.connection.send(None)
            except OSError:
                pass
        for worker in self.workers:
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.process.kill()
        self.listener.close()

    def interrupt(self) -> None:
        """Ctrl-C to every worker: each ends its trial KILLED at its next epoch boundary."""
        for worker in self.workers:
            if worker.process.poll() is None:
                worker.process.send_signal(signal.SIGINT)

    # -- what the runner asks -------------------------------------------------------------------
    def run(self, job: EvaluateJob | RetrainJob):
        """Run one job (an evaluation, a retrain) on the next free worker; its result."""
        with self.lock:
            self.counter += 1
            ticket = Ticket(self.counter, job)
            self.jobs.append(ticket)
            self.lock.notify_all()
            while ticket.id not in self.results:
                self.lock.wait()
            result = self.results.pop(ticket.id)
        if isinstance(result, BaseException):
            raise result
        return result

    def search(self, demand: Demand) -> None:
        """Offer workers to a cell's search until `finished()` says it has ended."""
        with self.lock:
            self.demands.append(demand)
            self.lock.notify_all()

    def searched(self, demand: Demand) -> None:
        with self.lock:
            demand.done, demand.ended_at = True, time.monotonic()
            self.demands.remove(demand)
            self.lock.notify_all()

    def trial_ended(self, demand: Demand) -> None:
        with self.lock:
            demand.resting_until = 0.0
            self.lock.notify_all()

    # -- scheduling --------------------------------------------------------------------------
    def _schedule(self) -> None:
        with self.lock:
            while not self.closed:
                if interrupts.requested():
                    self._stop_jobs()
                    self.lock.wait(timeout=0.5)
                    continue
                self._end_stranded(time.monotonic())
                self._replace_dead()
                for worker in self.workers:
                    if worker.busy is None:
                        job = self._next_job(time.monotonic())
                        if job is None:
                            break
                        self._send(worker, job)
                self.lock.wait(timeout=0.5)

    def _send(self, worker: Worker, ticket: Ticket) -> None:
        """Give `ticket`'s job to `worker`; a worker whose connection has broken is ended, and
        `_replace_dead` replaces it and hands its job on."""
        worker.busy = ticket
        try:
            worker.connection.send(to_wire(ticket.job))
        except OSError:
            _end(worker)

    def _next_job(self, now: float) -> Ticket | None:
        if self.jobs:
            return self.jobs.pop(0)
        wanting = [d for d in self.demands if d.wants(now)]
        if not wanting:
            return None
        demand = min(wanting, key=lambda d: d.assigned)
        demand.assigned += 1
        self.counter += 1
        return Ticket(self.counter, demand.job, demand)

    def _end_stranded(self, now: float) -> None:
        """End each worker still on a search STRANDED_S after it ended: it joined as the
        search ended, and its calls to the stopped oracle server would wait an hour."""
        for worker in self.workers:
            ticket = worker.busy
            if ticket is None or ticket.demand is None or not ticket.demand.done:
                continue
            if now - ticket.demand.ended_at > STRANDED_S:
                _end(worker)

    def _replace_dead(self) -> None:
        for worker in list(self.workers):
            if worker.process.poll() is None or self.closed:
                continue
            self.workers.remove(worker)
            ticket = worker.busy
            if ticket is not None and not ticket.is_search and ticket.tries < MAX_TRIES:
                worker.busy = None  # an evaluation or retrain runs again on another worker
                self.jobs.insert(0, Ticket(ticket.id, ticket.job, tries=ticket.tries + 1))
            self._finish(worker, RuntimeError(f"worker local{worker.index} died"))
            self._spawn(worker.index)

    def _stop_jobs(self) -> None:
        """End interrupted each waiting job, and each job of a worker that has ended."""
        stopped = KeyboardInterrupt("interrupted")
        for worker in list(self.workers):
            if worker.process.poll() is not None:
                self.workers.remove(worker)
                self._finish(worker, stopped)
        for ticket in self.jobs:
            self.results[ticket.id] = stopped
        self.jobs.clear()
        self.lock.notify_all()

    def _finish(self, worker: Worker, result) -> None:
        """The worker's job ended with `result` (called under the lock)."""
        ticket, worker.busy = worker.busy, None
        if ticket is None:
            return
        if ticket.is_search:
            demand = ticket.demand
            demand.assigned -= 1
            if not isinstance(result, int) or result == 0:  # nothing to run now: rest
                demand.resting_until = time.monotonic() + (
                    COOLDOWN_S if demand.assigned == 0 else math.inf
                )
        else:
            self.results[ticket.id] = result
        self.lock.notify_all()

    def _listen(self, worker: Worker) -> None:
        """Messages from one worker: progress events, and each job's end."""
        while True:
            try:
                message = from_wire(worker.connection.recv())
            except (EOFError, OSError):
                return
            if isinstance(message, Progress):
                self.progress.trial(message.event, **message.info)
                continue
            with self.lock:
                self._finish(worker, message.result)


class LocalPool:
    """Trials spread over a pool's workers (a harness/steps.py `Spread`): each cell's oracle
    served here, evaluations and retrains as jobs."""

    serves = True

    def __init__(self, pool: Pool):
        self.pool, self.units = pool, pool.size

    def start(self) -> None:
        pass

    def search(self, tuner, job) -> None:
        """Serve the cell's oracle on 127.0.0.1 to the pool's workers until its trials end."""
        from harness.cluster import serve_cell
        from harness.distributed import CHIEF, Cluster, free_port

        port = free_port(HOST)
        joining = SearchJob(job.resolved.cell, job.experiment_id, job.run_id, f"{HOST}:{port}")
        demand = Demand(job.resolved.label, joining, tuner.oracle, job.resolved.planned)
        self.pool.search(demand)
        try:
            serve_cell(
                tuner,
                job,
                Cluster(CHIEF, HOST, port, WORKER_TIMEOUT_S),
                local=True,
                on_end=lambda: self.pool.trial_ended(demand),
            )
        finally:
            self.pool.searched(demand)

    def evaluate(self, resolved, tuner, folder: Path):
        """The best model scored by one job, each extra seed's retrain by another, side by side
        (and then the split vote's two, `evaluation.settle`)."""
        from concurrent.futures import ThreadPoolExecutor

        from harness import evaluation

        cell = resolved.cell
        evaluated = self.pool.run(EvaluateJob(cell, str(folder)))

        def retrain_all(seeds) -> dict:
            with ThreadPoolExecutor(max(1, len(seeds))) as side_by_side:
                retrains = {
                    seed: side_by_side.submit(
                        self.pool.run,
                        RetrainJob(
                            cell,
                            evaluated.values,
                            seed,
                            str(folder),
                            tuner.experiment_id,
                            tuner.parent_run_id,
                        ),
                    )
                    for seed in seeds
                }
                return {seed: retrain.result() for seed, retrain in retrains.items()}

        return evaluation.settle(resolved, evaluated, retrain_all)


def _end(worker: Worker) -> None:
    """End a worker's process; the scheduler's `_replace_dead` replaces it."""
    worker.process.kill()
    worker.process.wait()
