"""`harness run` and `harness frontier`: cells and frontiers searched, with a live display."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from harness import backend
from harness.cli.options import TrackingUri, Workdir, WorkersOption, budget_options, parse_names
from harness.cli.root import DEFAULT_WORKDIR, app, err, out, user_errors, writable_dir
from harness.errors import UserError

STOPPED = 3
"""Exit status of a run stopped by --stop-after: not finished, nothing wrong."""


@app.command()
@user_errors
@budget_options
def run(
    suite: Annotated[
        str | None, typer.Option(help="Bundled suite name or path to a suite TOML.")
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option(help="Task (repeatable); filters a suite's cells.")
    ] = None,
    length: Annotated[list[int] | None, typer.Option(help="Length (repeatable).")] = None,
    family: Annotated[list[str] | None, typer.Option(help="Model family (repeatable).")] = None,
    budget: dict | None = None,
    seed: Annotated[int | None, typer.Option(help="Search seed.")] = None,
    extra_seed: Annotated[
        list[int] | None, typer.Option(help="Retrain the best with this seed (repeatable).")
    ] = None,
    eval_length: Annotated[
        list[int] | None, typer.Option(help="Also test at this longer length (repeatable).")
    ] = None,
    experiment: Annotated[
        str | None, typer.Option(help="MLflow experiment (default: the suite's name).")
    ] = None,
    tracking_uri: TrackingUri = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    shard: Annotated[
        str | None, typer.Option(help="Run only shard I of N of the cells (I/N, e.g. 2/3).")
    ] = None,
    chief: Annotated[
        str | None,
        typer.Option(
            help="Distributed search: serve the oracle on HOST:PORT (with --worker: join it)."
        ),
    ] = None,
    worker: Annotated[
        str | None, typer.Option(help="Join the chief at --chief as this worker id.")
    ] = None,
    worker_timeout: Annotated[
        float | None,
        typer.Option(help="Chief: drop a worker silent this many seconds (default 60)."),
    ] = None,
    workers: WorkersOption = "auto",
    part: Annotated[
        str | None, typer.Option(help="Run only the blocks of the suite marked part = NAME.")
    ] = None,
    stop_after: Annotated[
        float | None,
        typer.Option(help="Stop after this many minutes as Ctrl-C stops (exit 3); rerun to go on."),
    ] = None,
):
    """Run a suite, or single cells given by flags: one Keras Tuner search per cell.

    With --chief/--worker, several processes share each cell's search (see
    harness/distributed.py); with --shard, several machines share a suite's cells.
    """
    from harness.cells import parse_shard, select_cells, shard_cells
    from harness.distributed import parse_cluster

    cluster = parse_cluster(chief, worker, worker_timeout)
    plan, cells, frontiers = select_cells(
        suite, task, length, family, budget, seed, extra_seed, eval_length, part
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
    count = _workers(workers, cluster)
    _execute(
        experiment or plan.name, plan, cells, frontiers, tracking_uri, workdir, cluster, count,
        stop_after,
    )  # fmt: skip


@app.command()
@user_errors
@budget_options
def frontier(
    task: Annotated[list[str], typer.Option(help="Task (repeatable).")],
    families: Annotated[list[str], typer.Option(help="Families (repeatable or comma-separated).")],
    budget: dict | None = None,
    min_length: Annotated[int, typer.Option(help="The first length probed.")] = 25,
    max_length: Annotated[int, typer.Option(help="The longest length probed.")] = 3200,
    resolution: Annotated[
        float, typer.Option(help="Stop when longest solved x (1 + resolution) >= shortest failed.")
    ] = 0.25,
    seeds: Annotated[
        int, typer.Option(help="Seeds per cell: the search's best model and seeds - 1 retrains.")
    ] = 1,
    seed: Annotated[int, typer.Option(help="Search seed.")] = 0,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "frontier",
    tracking_uri: TrackingUri = None,
    workdir: Workdir = DEFAULT_WORKDIR,
    workers: WorkersOption = "auto",
):
    """The longest length each family solves: double while solved, then bisect to the resolution.

    Every probed length is an ordinary cell (resumed, reused by other frontiers); the
    result per family is a bracket, recorded as a frontier run naming its cells.
    """
    from harness.budget import Budget
    from harness.suites import Suite, frontier_specs, parse_budget

    specs = frontier_specs(
        parse_names(task, ()),
        parse_names(families, ()),
        parse_budget(budget, Budget(), "command-line flags", "budget"),
        seed,
        seeds,
        min_length,
        max_length,
        resolution,
    )
    suite = Suite(experiment, "", (), "flags")
    _execute(experiment, suite, [], specs, tracking_uri, workdir, workers=_workers(workers, None))


def _workers(text: str, cluster) -> int:
    """--workers as a number (auto: 1 on a CPU or with --chief/--worker, else by free GPU
    memory)."""
    from harness.pool import parse_workers

    if cluster is not None and text == "auto":
        return 1
    count = parse_workers(text)
    if cluster is not None and count > 1:
        raise UserError(
            f"--workers {text} runs its own chief and workers on this machine: with --chief or "
            "--worker, give --workers 1 (and start more workers with --worker)"
        )
    return count


def _execute(
    name,
    plan,
    cells,
    frontiers,
    tracking_uri,
    workdir: Path,
    cluster=None,
    workers: int = 1,
    stop_after: float | None = None,
) -> None:
    """Run cells and frontiers with a live display; a summary table of each. With
    `stop_after` (minutes), the run stops then as a first Ctrl-C stops it, and exits 3."""
    from dataclasses import replace

    writable_dir(workdir, "working directory")
    if workers > 1:
        from harness.pool import share_environment

        share_environment(workers)  # before this process starts JAX or torch
    backend.load_frameworks()
    backend.share_device()
    backend.use_compile_cache(workdir / "jax-cache")
    from harness import interrupts
    from harness.cluster import ClusterChief, ClusterWorker
    from harness.pool import LocalPool
    from harness.progress import ConsoleProgress
    from harness.runner import Runner
    from harness.steps import InProcess
    from harness.tracking import StoreUnavailable, Tracker

    tracker = Tracker(tracking_uri)
    tracker.check()
    progress = ConsoleProgress(out)
    interrupts.install()
    pool = None
    if workers > 1:
        from harness.pool import Pool

        pool = Pool(workers, workdir, tracker.uri, progress)
        pool.start()
        out.print(f"{workers} workers on this machine", highlight=False)
    timer = _stop_timer(stop_after, pool)
    try:
        if cluster is not None and not cluster.is_chief:
            runner = ClusterWorker(tracker, workdir, progress, cluster)
        else:
            spread = LocalPool(pool) if pool else ClusterChief(cluster) if cluster else InProcess()
            runner = Runner(tracker, workdir, progress, spread)
        outcomes, found = runner.run(replace(plan, name=name), cells, frontiers)
    except KeyboardInterrupt:
        progress.close()
        if timer is not None and timer.finished.is_set():
            err.print(
                f"stopped after {stop_after:g} min (--stop-after): the trials running are "
                "marked KILLED; rerun the same command to go on",
                highlight=False,
            )
            raise typer.Exit(STOPPED) from None
        err.print(
            "interrupted: the current trial is marked KILLED; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    except StoreUnavailable as error:
        progress.close()
        err.print(
            f"error: tracking store '{tracker.uri}' unavailable after retries ({error}); "
            "rerun the same command once it is back to resume",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1) from None
    finally:
        if timer is not None:
            timer.cancel()
        if pool is not None:
            pool.close()
    progress.close()
    if outcomes:
        out.print(_cells_table(name, outcomes))
    if found:
        out.print(_frontiers_table(name, found))
    out.print(f"results in MLflow: {tracker.uri} (experiment '{name}')", highlight=False)


def _stop_timer(minutes: float | None, pool):
    """A timer that, after `minutes`, asks this process and the pool's workers to stop."""
    import threading

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


def _cells_table(name: str, outcomes) -> Table:
    table = Table("cell", "state", "test score", "seeds solved", "trials", title=name)
    for outcome in outcomes:
        result = outcome.result
        verdict = result.verdict if result is not None and result.seed_scores else None
        table.add_row(
            outcome.cell.label,
            outcome.state,
            verdict.text() if verdict else "-",
            verdict.seeds_text() if verdict else "-",
            str(outcome.trials),
        )
    return table


def _frontiers_table(name: str, found) -> Table:
    table = Table("frontier", "bracket", "cells probed", "run", title=f"{name}: frontiers")
    for outcome in found:
        result = outcome.result
        table.add_row(
            f"{outcome.spec.task} {outcome.spec.family}",
            result.bracket.text() if result else "-",
            str(len(result.bracket.steps)) if result else "-",
            result.run_id[:8] if result else "-",
        )
    return table
