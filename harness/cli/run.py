"""`harness run` and `harness frontier`: cells and frontiers searched, with a live display."""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

import typer
from rich.table import Table

from harness import api
from harness.cli.options import TrackingUri, Workdir, WorkersOption, budget_options, parse_names
from harness.cli.root import DEFAULT_WORKDIR, app, err, out, user_errors
from harness.errors import Interrupted, StoreUnavailable
from harness.events import Events

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
    ran = _running(
        tracking_uri,
        lambda events: api.run(
            suite=suite, part=part, tasks=task or (), lengths=length or (),
            families=family or (), budget=budget, seed=seed, extra_seeds=extra_seed or (),
            eval_lengths=eval_length or (), experiment=experiment, store=tracking_uri,
            workdir=workdir, workers=workers, shard=shard, chief=chief, worker=worker,
            worker_timeout=worker_timeout, stop_after=stop_after, events=events,
        ),
    )  # fmt: skip
    _summary(ran)


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
    ran = _running(
        tracking_uri,
        lambda events: api.frontier(
            tasks=parse_names(task, ()), families=parse_names(families, ()), budget=budget,
            min_length=min_length, max_length=max_length, resolution=resolution, seeds=seeds,
            seed=seed, experiment=experiment, store=tracking_uri, workdir=workdir,
            workers=workers, events=events,
        ),
    )  # fmt: skip
    _summary(ran)


def _running(store: str | None, call: Callable[[Events], api.Ran]) -> api.Ran:
    """`call` with a live display; a run interrupted or a store lost as one line and its exit
    status (3: stopped by --stop-after, 130: by Ctrl-C, 1: the store unavailable)."""
    from harness.progress import ConsoleProgress

    try:
        return call(ConsoleProgress(out))
    except Interrupted as stop:
        if stop.stopped_after is not None:
            err.print(
                f"stopped after {stop.stopped_after:g} min (--stop-after): the trials running are "
                "marked KILLED; rerun the same command to go on",
                highlight=False,
            )
            raise typer.Exit(STOPPED) from None
        err.print(
            "interrupted: the current trial is marked KILLED; rerun the same command to resume"
        )
        raise typer.Exit(130) from None
    except StoreUnavailable as error:
        from harness.tracking import resolve_uri

        err.print(
            f"error: tracking store '{resolve_uri(store)}' unavailable after retries ({error}); "
            "rerun the same command once it is back to resume",
            highlight=False,
            markup=False,
        )
        raise typer.Exit(1) from None


def _summary(ran: api.Ran) -> None:
    """A table of the cells and one of the frontiers run, and where the store holds them."""
    if ran.workers > 1:
        out.print(f"{ran.workers} workers on this machine", highlight=False)
    if ran.cells:
        out.print(_cells_table(ran.experiment, ran.cells))
    if ran.frontiers:
        out.print(_frontiers_table(ran.experiment, ran.frontiers))
    out.print(f"results in MLflow: {ran.store} (experiment '{ran.experiment}')", highlight=False)


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


def _frontiers_table(name: str, outcomes) -> Table:
    table = Table("frontier", "bracket", "cells probed", "run", title=f"{name}: frontiers")
    for outcome in outcomes:
        result = outcome.result
        table.add_row(
            f"{outcome.spec.task} {outcome.spec.family}",
            result.bracket.text() if result else "-",
            str(len(result.bracket.steps)) if result else "-",
            result.run_id[:8] if result else "-",
        )
    return table
