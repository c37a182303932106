"""Running cells and frontiers: `run` (a suite, a part of one, or cells named by flags)
and `frontier`, each into a store, resumable."""

from __future__ import annotations

import signal
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import backend
from harness.api.common import DEFAULT_WORKDIR, writable
from harness.budget import Budget
from harness.errors import Interrupted, UserError
from harness.events import Events


@dataclass
class Ran:
    """What `run` and `frontier` did: each cell's and each frontier's outcome, and where the
    store holds them."""

    experiment: str
    store: str
    workers: int  # processes that trained side by side on this machine
    cells: list  # harness.runner.CellOutcome
    frontiers: list  # harness.runner.FrontierOutcome


def run(
    *,
    suite: str | None = None,
    part: str | None = None,
    tasks: Sequence[str] = (),
    lengths: Sequence[int] = (),
    families: Sequence[str] = (),
    budget: Mapping[str, object] | None = None,
    seed: int | None = None,
    extra_seeds: Sequence[int] = (),
    eval_lengths: Sequence[int] = (),
    experiment: str | None = None,
    store: str | None = None,
    workdir: str | Path = DEFAULT_WORKDIR,
    workers: int | str = 1,
    shard: str | None = None,
    chief: str | None = None,
    worker: str | None = None,
    worker_timeout: float | None = None,
    stop_after: float | None = None,
    events: Events | None = None,
) -> Ran:
    """Run a suite (all of it, one `part`, or the cells matching `tasks`, `lengths`,
    `families`), or the cells those three name under `budget` (Budget's fields) and `seed`.

    A cell finished before in `store` is skipped, an unfinished one resumed. `workers`: a
    number, or "auto" (by free GPU memory). `shard` "I/N" runs the I-th of N shares of the
    cells; `chief`/`worker` share each cell's search between processes
    (harness/distributed.py). `stop_after` minutes: the run stops as Ctrl-C stops it.
    """
    from harness.cells import parse_shard, select_cells, shard_cells
    from harness.distributed import parse_cluster

    cluster = parse_cluster(chief, worker, worker_timeout)
    chosen, cells, frontiers = select_cells(
        suite, tasks, lengths, families, dict(budget or {}), seed, extra_seeds, eval_lengths, part
    )
    if shard is not None:
        mine = parse_shard(shard)
        cells, frontiers = shard_cells(cells, *mine), shard_cells(frontiers, *mine)
    if cluster is not None and frontiers:
        raise UserError(
            "frontiers choose their cells as they go, so --chief/--worker cannot share them: "
            "run them on one machine (--workers), or leave them out with --length"
        )
    if stop_after is not None and not stop_after > 0:
        raise UserError(f"--stop-after {stop_after:g}: give a number of minutes above 0")
    name = experiment or chosen.name
    return _execute(
        replace(chosen, name=name), cells, frontiers, store, Path(workdir),
        _workers(workers, cluster), cluster, stop_after, events or Events(),
    )  # fmt: skip


def frontier(
    *,
    tasks: Sequence[str],
    families: Sequence[str],
    budget: Mapping[str, object] | None = None,
    min_length: int = 25,
    max_length: int = 3200,
    resolution: float = 0.25,
    seeds: int = 1,
    seed: int = 0,
    experiment: str = "frontier",
    store: str | None = None,
    workdir: str | Path = DEFAULT_WORKDIR,
    workers: int | str = 1,
    events: Events | None = None,
) -> Ran:
    """The longest length each family solves on each task: lengths doubled from
    `min_length` while solved, then bisected until longest solved x (1 + resolution) >=
    shortest failed; `seeds` per cell (the search's best model and seeds - 1 retrains)."""
    from harness.suites import Suite, frontier_specs, parse_budget

    specs = frontier_specs(
        list(dict.fromkeys(tasks)),
        list(dict.fromkeys(families)),
        parse_budget(dict(budget or {}), Budget(), "command-line flags", "budget"),
        seed,
        seeds,
        min_length,
        max_length,
        resolution,
    )
    chosen = Suite(experiment, "", (), "flags")
    return _execute(
        chosen, [], specs, store, Path(workdir), _workers(workers, None), None, None,
        events or Events(),
    )  # fmt: skip


def _workers(value: int | str, cluster) -> int:
    """`workers` as a number (auto: 1 on a CPU or with a cluster, else by free GPU memory)."""
    from harness.pool import parse_workers

    if cluster is not None and value == "auto":
        return 1
    count = parse_workers(str(value))
    if cluster is not None and count > 1:
        raise UserError(
            f"--workers {value} runs its own chief and workers on this machine: with --chief or "
            "--worker, give --workers 1 (and start more workers with --worker)"
        )
    return count


def _execute(suite, cells, frontiers, store, workdir, workers, cluster, stop_after, events):
    """Run `cells` and `frontiers` of `suite` into `store`; SIGINT is taken at safe points
    meanwhile and its handler restored after."""
    writable(workdir, "working directory")
    if workers > 1:
        from harness.pool import share_environment

        share_environment(workers)  # before this process starts JAX or torch
    backend.load_frameworks()
    backend.share_device()
    backend.use_compile_cache(workdir / "jax-cache")
    from harness import interrupts
    from harness.cluster import ClusterChief, ClusterWorker
    from harness.pool import LocalPool, Pool
    from harness.runner import Runner
    from harness.steps import InProcess
    from harness.tracking import Tracker

    tracker = Tracker(store)
    tracker.check()
    in_main_thread = threading.current_thread() is threading.main_thread()
    handler = signal.getsignal(signal.SIGINT) if in_main_thread else None
    if in_main_thread:
        interrupts.install()
    pool = Pool(workers, workdir, tracker.uri, events) if workers > 1 else None
    timer = None
    try:
        if pool is not None:
            pool.start()
        timer = _stop_timer(stop_after, pool)
        if cluster is not None and not cluster.is_chief:
            runner = ClusterWorker(tracker, workdir, events, cluster)
        else:
            spread = LocalPool(pool) if pool else ClusterChief(cluster) if cluster else InProcess()
            runner = Runner(tracker, workdir, events, spread)
        outcomes, frontier_outcomes = runner.run(suite, cells, frontiers)
    except KeyboardInterrupt:
        by_timer = timer is not None and timer.finished.is_set()
        raise Interrupted(stop_after if by_timer else None) from None
    finally:
        if timer is not None:
            timer.cancel()
        if pool is not None:
            pool.close()
        if in_main_thread:
            signal.signal(signal.SIGINT, handler)
        events.close()
    return Ran(suite.name, tracker.uri, workers, outcomes, frontier_outcomes)


def _stop_timer(minutes: float | None, pool) -> threading.Timer | None:
    """A timer that, after `minutes`, asks this process and the pool's workers to stop."""
    from harness import interrupts

    if minutes is None:
        return None

    def stop() -> None:
        interrupts.request()
        if pool is not None:
            pool.interrupt()

    timer = threading.Timer(minutes * 60, stop)
    timer.daemon = True
    timer.start()
    return timer
