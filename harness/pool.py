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
from dataclasses import dataclass
from multiprocessing.connection import Listener
from pathlib import Path

from harness import backend, interrupts
from harness.errors import UserError

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


# -- the coordinator's side ---------------------------------------------------------------------


@dataclass
class Demand:
    """A cell whose search is being served: how many workers it has and can use."""

    label: str
    job: dict  # what a worker needs to join it
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
            from harness import kt_compat  # loaded with Keras: the oracle exists, so it is

            return kt_compat.has_work(self.oracle, self.planned)
        return self.assigned < self.planned - len(self.oracle.trials)


@dataclass
class Worker:
    index: int
    process: subprocess.Popen
    connection: object = None
    busy: dict | None = None  # the job it runs


class Pool:
    """N worker processes and the jobs they run (see the module's text)."""

    def __init__(self, size: int, workdir: Path, tracking_uri: str, progress):
        self.size, self.workdir, self.uri, self.progress = size, workdir, tracking_uri, progress
        self.lock = threading.Condition()
        self.jobs: list[dict] = []
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
        os.environ["KERASTUNER_TUNER_ID"] = "chief"
        os.environ["KERASTUNER_ORACLE_IP"] = HOST
        os.environ["KERASTUNER_ORACLE_PORT"] = "0"
        for index in range(1, self.size + 1):
            self._spawn(index)
        threading.Thread(target=self._schedule, name="pool", daemon=True).start()

    def _spawn(self, index: int) -> None:
        env = worker_environment(os.environ, self.size)
        env[KEY] = self.key.hex()
        for name in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
            env.pop(name, None)
        host, port = self.listener.address
        process = subprocess.Popen(  # its output travels through the connection; errors stay
            [sys.executable, "-m", "harness.pool_worker", f"{host}:{port}", f"local{index}"],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        worker = Worker(index, process)
        worker.connection = self.listener.accept()
        worker.connection.send({"workdir": str(self.workdir), "uri": self.uri})
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
    def run(self, kind: str, **payload):
        """Run one job (an evaluation, a retrain) on the next free worker; its result."""
        with self.lock:
            self.counter += 1
            job = {"id": self.counter, "kind": kind, **payload}
            self.jobs.append(job)
            self.lock.notify_all()
            while job["id"] not in self.results:
                self.lock.wait()
            found = self.results.pop(job["id"])
        if isinstance(found, BaseException):
            raise found
        return found

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

    def _send(self, worker: Worker, job: dict) -> None:
        """Give `job` to `worker`; a worker whose connection has broken is ended, and
        `_replace_dead` replaces it and hands its job on."""
        worker.busy = job
        try:
            worker.connection.send(send_job(job))
        except OSError:
            _end(worker)

    def _next_job(self, now: float) -> dict | None:
        if self.jobs:
            return self.jobs.pop(0)
        wanting = [d for d in self.demands if d.wants(now)]
        if not wanting:
            return None
        demand = min(wanting, key=lambda d: d.assigned)
        demand.assigned += 1
        self.counter += 1
        return {"id": self.counter, "kind": "search", "demand": demand, **demand.job}

    def _end_stranded(self, now: float) -> None:
        """End each worker still on a search STRANDED_S after it ended: it joined as the
        search ended, and its calls to the stopped oracle server would wait an hour."""
        for worker in self.workers:
            job = worker.busy
            if job is None or job["kind"] != "search" or not job["demand"].done:
                continue
            if now - job["demand"].ended_at > STRANDED_S:
                _end(worker)

    def _replace_dead(self) -> None:
        for worker in list(self.workers):
            if worker.process.poll() is None or self.closed:
                continue
            self.workers.remove(worker)
            job = worker.busy
            if job is not None and job["kind"] != "search" and job.get("tries", 1) < MAX_TRIES:
                worker.busy = None  # an evaluation or retrain runs again on another worker
                self.jobs.insert(0, {**job, "tries": job.get("tries", 1) + 1})
            self._finish(worker, RuntimeError(f"worker local{worker.index} died"))
            self._spawn(worker.index)

    def _stop_jobs(self) -> None:
        """End interrupted each waiting job, and each job of a worker that has ended."""
        stopped = KeyboardInterrupt("interrupted")
        for worker in list(self.workers):
            if worker.process.poll() is not None:
                self.workers.remove(worker)
                self._finish(worker, stopped)
        for job in self.jobs:
            self.results[job["id"]] = stopped
        self.jobs.clear()
        self.lock.notify_all()

    def _finish(self, worker: Worker, result) -> None:
        """The worker's job ended with `result` (called under the lock)."""
        job, worker.busy = worker.busy, None
        if job is None:
            return
        if job["kind"] == "search":
            demand = job["demand"]
            demand.assigned -= 1
            if not isinstance(result, int) or result == 0:  # nothing to run now: rest
                demand.resting_until = time.monotonic() + (
                    COOLDOWN_S if demand.assigned == 0 else math.inf
                )
        else:
            self.results[job["id"]] = result
        self.lock.notify_all()

    def _listen(self, worker: Worker) -> None:
        """Messages from one worker: progress events, and each job's end."""
        while True:
            try:
                message = worker.connection.recv()
            except (EOFError, OSError):
                return
            if message[0] == "event":
                _, event, info = message
                self.progress.trial(event, **info)
                continue
            _, result = message
            with self.lock:
                self._finish(worker, result)


class LocalPool:
    """Trials spread over a pool's workers (harness/steps.py's InProcess says what a
    strategy does): each cell's oracle served here, evaluations and retrains as jobs."""

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
        payload = {"cell": job.resolved.cell, "experiment_id": job.experiment_id,
                   "run_id": job.run_id, "address": f"{HOST}:{port}"}  # fmt: skip
        demand = Demand(job.resolved.label, payload, tuner.oracle, job.resolved.planned)
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
        found = self.pool.run("evaluate", cell=cell, folder=str(folder))

        def retrain_all(seeds) -> dict:
            with ThreadPoolExecutor(max(1, len(seeds))) as side_by_side:
                retrains = {
                    seed: side_by_side.submit(
                        self.pool.run,
                        "retrain",
                        cell=cell,
                        values=found.values,
                        seed=seed,
                        folder=str(folder),
                        experiment_id=tuner.experiment_id,
                        run_id=tuner.parent_run_id,
                    )
                    for seed in seeds
                }
                return {seed: retrain.result() for seed, retrain in retrains.items()}

        return evaluation.settle(resolved, found, retrain_all)


def _end(worker: Worker) -> None:
    """End a worker's process; the scheduler's `_replace_dead` replaces it."""
    worker.process.kill()
    worker.process.wait()


def send_job(job: dict) -> dict:
    """A job as it travels to a worker (the coordinator's own objects left behind)."""
    return {k: v for k, v in job.items() if k != "demand"}
