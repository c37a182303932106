"""The `harness` command line: the only place that prints and exits.

Errors a user can cause (UserError) end with one line on stderr and exit code 2.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from harness import backend
from harness.errors import USER_ERRORS, UserError
from harness.probes import cost, gradients

backend.configure()

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark sequence models: Keras Tuner searches per (task, length, family), tracked in MLflow.",
)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

MAX_ELEMENTS = 500_000_000
DEFAULT_WORKDIR = Path("data")
COMPILE_CACHE = DEFAULT_WORKDIR / "jax-cache"  # for the commands without --workdir

WorkersOption = Annotated[
    str,
    typer.Option(
        help="Trials, evaluations and retrains at once on this machine: N, or auto (1 on a "
        "CPU; on a GPU by its free memory)."
    ),
]
ReadSuite = Annotated[
    str | None, typer.Option(help="Bundled suite name or path to a suite TOML: its experiment.")
]
ReadExperiment = Annotated[
    str | None,
    typer.Option(help="MLflow experiment (default: the suite's, else the latest run's)."),
]
TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    ),
]


def user_errors(command):
    """Turn a UserError into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            err.print(f"error: {error}", highlight=False, markup=False)
            raise typer.Exit(2) from None

    return wrapper


def _writable_dir(path: Path, what: str) -> Path:
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{what} '{path}' cannot be created: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{what} '{path}' is not writable")
    return path


@app.command()
@user_errors
def tasks(as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False):
    """List the benchmark tasks: input, output, metric, baseline and solved bar."""
    from dataclasses import asdict

    from tasks import REGISTRY

    infos = [task.info() for task in REGISTRY.values()]
    if as_json:
        out.print_json(json.dumps([asdict(info) for info in infos]))
        return
    table = Table(
        "task", "what it tests", "input", "output", "metric", "baseline", "solved", "lengths"
    )
    for info in infos:
        arrow = "<=" if info.direction == "min" else ">="
        table.add_row(
            info.name,
            info.description,
            info.input,
            info.output,
            f"{info.metric} ({info.direction})",
            f"{info.baseline:.4g} @ L={info.default_lengths[0]}",
            f"{arrow} {info.solved:.4g}",
            ", ".join(map(str, info.default_lengths)),
        )
    out.print(table)


@app.command()
@user_errors
def generate(
    task: Annotated[str, typer.Argument(help="Task name (see `harness tasks`).")],
    out_path: Annotated[Path, typer.Option("--out", help="Output .npz file (arrays x and y).")],
    length: Annotated[
        int | None, typer.Option(help="Sequence length (the task's default if omitted).")
    ] = None,
    n: Annotated[int, typer.Option(help="Number of examples.")] = 1000,
    seed: Annotated[int, typer.Option(help="Generator seed.")] = 0,
    split: Annotated[str, typer.Option(help="train, val or test.")] = "train",
):
    """Export a task's dataset as an .npz file readable with numpy alone."""
    import numpy as np

    from tasks import get_task
    from tasks.base import SPLITS

    spec = get_task(task)
    length = spec.default_lengths[0] if length is None else length
    spec.check_length(length)
    if n < 1 or n * spec.sequence_steps(length) > MAX_ELEMENTS:
        raise UserError(
            f"n={n} is out of range at length {length}: accepted 1 <= n and "
            f"n x steps <= {MAX_ELEMENTS:,}"
        )
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}': accepted {', '.join(SPLITS)}")
    if out_path.suffix != ".npz":
        raise UserError(f"output path '{out_path}' must end in .npz")
    _writable_dir(out_path.parent, "output folder")
    x, y = spec.generate(n, length, seed, split)
    partial = out_path.with_name(out_path.name + ".partial.npz")
    try:
        np.savez(partial, x=x, y=y)
        partial.replace(out_path)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"output file '{out_path}' cannot be written: {error.strerror}") from None
    out.print(f"wrote {out_path}: x {x.shape} {x.dtype}, y {y.shape} {y.dtype}", highlight=False)


@app.command()
@user_errors
def spaces(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")] = False,
):
    """List the model families and the hyperparameters each one searches."""
    from search_spaces import REGISTRY, describe_space

    rows = [describe_space(family) for family in REGISTRY]
    if as_json:
        out.print_json(json.dumps(rows))
        return
    table = Table("family", "description", "hyperparameters")
    for row in rows:
        table.add_row(
            row["family"],
            row["description"],
            "\n".join(f"{hp['name']}: {hp['range']}" for hp in row["hyperparameters"]),
        )
    out.print(table)


@app.command()
@user_errors
def run(
    suite: Annotated[
        str | None, typer.Option(help="Bundled suite name or path to a suite TOML.")
    ] = None,
    task: Annotated[
        list[str] | None, typer.Option(help="Task (repeatable); filters a suite's cells.")
    ] = None,
    length: Annotated[list[int] | None, typer.Option(help="Length (repeatable).")] = None,
    family: Annotated[list[str] | None, typer.Option(help="Model family (repeatable).")] = None,
    tuner: Annotated[str | None, typer.Option(help="random, bayesian or hyperband.")] = None,
    max_trials: Annotated[int | None, typer.Option(help="Trials per cell.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per trial.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    n_train: Annotated[int | None, typer.Option(help="Training examples.")] = None,
    n_val: Annotated[int | None, typer.Option(help="Validation examples.")] = None,
    n_test: Annotated[int | None, typer.Option(help="Test examples.")] = None,
    executions: Annotated[int | None, typer.Option(help="Executions per trial.")] = None,
    params: Annotated[
        int | None,
        typer.Option(
            help="Parameter budget: each family's width gives its model this many trainable "
            "parameters (within 10%); the width is then not searched."
        ),
    ] = None,
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
    workdir: Annotated[Path, typer.Option(help="Data cache and tuner folders.")] = DEFAULT_WORKDIR,
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
):
    """Run a suite, or single cells given by flags: one Keras Tuner search per cell.

    With --chief/--worker, several processes share each cell's search (see
    harness/distributed.py); with --shard, several machines share a suite's cells.
    """
    from harness.cells import parse_shard, select_cells, shard_cells
    from harness.distributed import parse_cluster

    budget = {
        k: v
        for k, v in {
            "tuner": tuner,
            "max_trials": max_trials,
            "epochs": epochs,
            "batch_size": batch_size,
            "n_train": n_train,
            "n_val": n_val,
            "n_test": n_test,
            "executions_per_trial": executions,
            "params": params,
        }.items()
        if v is not None
    }
    cluster = parse_cluster(chief, worker, worker_timeout)
    plan, cells, frontiers = select_cells(
        suite, task, length, family, budget, seed, extra_seed, eval_length
    )
    if shard is not None:
        part = parse_shard(shard)
        cells, frontiers = shard_cells(cells, *part), shard_cells(frontiers, *part)
    if cluster is not None and frontiers:
        raise UserError(
            "frontiers choose their cells as they go, so --chief/--worker cannot share them: "
            "run them on one machine (--workers), or leave them out with --length"
        )
    count = _workers(workers, cluster)
    _execute(experiment or plan.name, plan, cells, frontiers, tracking_uri, workdir, cluster, count)


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
    name, plan, cells, frontiers, tracking_uri, workdir: Path, cluster=None, workers: int = 1
) -> None:
    """Run cells and frontiers with a live display; a summary table of each."""
    from dataclasses import replace

    _writable_dir(workdir, "working directory")
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
    try:
        if cluster is not None and not cluster.is_chief:
            runner = ClusterWorker(tracker, workdir, progress, cluster)
        else:
            spread = LocalPool(pool) if pool else ClusterChief(cluster) if cluster else InProcess()
            runner = Runner(tracker, workdir, progress, spread)
        outcomes, found = runner.run(replace(plan, name=name), cells, frontiers)
    except KeyboardInterrupt:
        progress.close()
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
        if pool is not None:
            pool.close()
    progress.close()
    if outcomes:
        table = Table("cell", "state", "test score", "seeds solved", "trials", title=name)
        for outcome in outcomes:
            cell, result = outcome.cell, outcome.result
            verdict = result.verdict if result is not None and result.seed_scores else None
            table.add_row(
                cell.label,
                outcome.state,
                verdict.text() if verdict else "-",
                verdict.seeds_text() if verdict else "-",
                str(outcome.trials),
            )
        out.print(table)
    if found:
        table = Table("frontier", "bracket", "cells probed", "run", title=f"{name}: frontiers")
        for outcome in found:
            result = outcome.result
            table.add_row(
                f"{outcome.spec.task} {outcome.spec.family}",
                result.bracket.text() if result else "-",
                str(len(result.bracket.steps)) if result else "-",
                result.run_id[:8] if result else "-",
            )
        out.print(table)
    out.print(f"results in MLflow: {tracker.uri} (experiment '{name}')", highlight=False)


@app.command()
@user_errors
def frontier(
    task: Annotated[list[str], typer.Option(help="Task (repeatable).")],
    families: Annotated[list[str], typer.Option(help="Families (repeatable or comma-separated).")],
    params: Annotated[
        int | None,
        typer.Option(help="Parameter budget: every family's width gives this many parameters."),
    ] = None,
    min_length: Annotated[int, typer.Option(help="The first length probed.")] = 25,
    max_length: Annotated[int, typer.Option(help="The longest length probed.")] = 3200,
    resolution: Annotated[
        float, typer.Option(help="Stop when longest solved x (1 + resolution) >= shortest failed.")
    ] = 0.25,
    seeds: Annotated[
        int, typer.Option(help="Seeds per cell: the search's best model and seeds - 1 retrains.")
    ] = 1,
    seed: Annotated[int, typer.Option(help="Search seed.")] = 0,
    tuner: Annotated[str | None, typer.Option(help="random, bayesian or hyperband.")] = None,
    max_trials: Annotated[int | None, typer.Option(help="Trials per cell.")] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs per trial.")] = None,
    batch_size: Annotated[int | None, typer.Option(help="Batch size.")] = None,
    n_train: Annotated[int | None, typer.Option(help="Training examples.")] = None,
    n_val: Annotated[int | None, typer.Option(help="Validation examples.")] = None,
    n_test: Annotated[int | None, typer.Option(help="Test examples.")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment.")] = "frontier",
    tracking_uri: TrackingUri = None,
    workdir: Annotated[Path, typer.Option(help="Data cache and tuner folders.")] = DEFAULT_WORKDIR,
    workers: WorkersOption = "auto",
):
    """The longest length each family solves: double while solved, then bisect to the resolution.

    Every probed length is an ordinary cell (resumed, reused by other frontiers); the
    result per family is a bracket, recorded as a frontier run naming its cells.
    """
    from harness.suites import Budget, Suite, frontier_specs, parse_budget

    overrides = {
        k: v
        for k, v in {
            "tuner": tuner, "max_trials": max_trials, "epochs": epochs, "batch_size": batch_size,
            "n_train": n_train, "n_val": n_val, "n_test": n_test, "params": params,
        }.items()
        if v is not None
    }  # fmt: skip
    budget = parse_budget(overrides, Budget(), "command-line flags", "budget")
    specs = frontier_specs(
        _names(task, ()),
        _names(families, ()),
        budget,
        seed,
        seeds,
        min_length,
        max_length,
        resolution,
    )
    suite = Suite(experiment, "", (), "flags")
    count = _workers(workers, None)
    _execute(experiment, suite, [], specs, tracking_uri, workdir, workers=count)


def _reading(tracking_uri: str | None, suite: str | None, experiment: str | None, runs_only=False):
    """(the store, which must exist; the experiment to read) for the commands that read;
    with `runs_only` (status, report), a local SQLite store read without MLflow (open_for_reading)."""
    from harness.tracking import open_for_reading, open_store

    tracker = (open_for_reading if runs_only else open_store)(tracking_uri)
    return tracker, _experiment(tracker, suite, experiment)


def _experiment(tracker, suite: str | None, experiment: str | None) -> str:
    """--experiment, else the suite's name, else the experiment of the store's latest run."""
    if experiment:
        return experiment
    if suite:
        from harness.suites import suite_experiment

        return suite_experiment(suite)
    latest = tracker.latest_experiment()
    if latest is None:
        raise UserError(f"tracking store '{tracker.uri}' holds no runs: run `harness run` first")
    err.print(
        f"experiment '{latest}' (the store's latest run; --suite or --experiment for another)",
        highlight=False,
        markup=False,
    )
    return latest


@app.command()
@user_errors
def status(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
):
    """Show each cell: done, partial (k of n trials), diverged, failed or not started.

    Read from the tracking store alone, so it shows the progress of every
    machine and shard logging to it.
    """
    from harness.cells import cell_states, frontier_states
    from harness.suites import load_suite

    plan = load_suite(suite) if suite else None
    tracker, name = _reading(tracking_uri, suite, experiment, runs_only=True)
    table = Table("cell", "state", "trials", "test score", title=f"experiment {name}")
    counts: dict[str, int] = {}
    trials_done = trials_planned = 0
    listed = plan.cells if plan and not plan.frontiers else None  # frontiers pick cells as they go
    for found in cell_states(tracker, name, listed):
        counts[found.state] = counts.get(found.state, 0) + 1
        trials_done += found.trials_done
        trials_planned += found.trials_planned
        result = found.result
        score = result.verdict.text() if result is not None and result.seed_scores else "-"
        table.add_row(
            found.label, found.state, f"{found.trials_done} of {found.trials_planned}", score
        )
    out.print(table)
    for line in frontier_states(tracker, name):
        out.print(line, highlight=False)
    cells_line = ", ".join(f"{n} {state}" for state, n in sorted(counts.items()))
    out.print(
        f"{cells_line or 'no cells'}; {trials_done} of {trials_planned} trials", highlight=False
    )


@app.command()
@user_errors
def ui(
    tracking_uri: TrackingUri = None,
    host: Annotated[
        str, typer.Option(help="Interface to listen on (0.0.0.0 only if you mean it).")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port.")] = 5000,
):
    """Start the MLflow UI on the harness's store."""
    from harness.tracking import Tracker

    tracker = Tracker(tracking_uri)
    tracker.check()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "ui",
        "--backend-store-uri",
        tracker.uri,
        "--host",
        host,
        "--port",
        str(port),
        "--workers",
        "1",  # one local user: starts in seconds rather than four processes' worth
    ]
    out.print(f"MLflow UI on http://{host}:{port} for {tracker.uri}", highlight=False)
    os.execv(sys.executable, command)


@app.command()
@user_errors
def report(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("reports"),
    readme: Annotated[
        bool,
        typer.Option(
            "--update-readme",
            help="Also refresh the leaderboard between the markers of ./README.md.",
        ),
    ] = False,
):
    """Write leaderboard.md, index.html and figures from the MLflow store alone."""
    from harness import frontier_report
    from harness import report as reporting

    tracker, name = _reading(tracking_uri, suite, experiment, runs_only=True)
    _writable_dir(out_dir, "output folder")
    written = reporting.build(
        tracker,
        name,
        out_dir,
        lambda line: out.print(line, highlight=False),
        features=[frontier_report.section],
    )
    out.print(
        f"wrote {written.leaderboard}, {written.html} and {len(written.figures)} figures "
        f"in {out_dir / 'figures'}",
        highlight=False,
    )
    if readme:
        changed = reporting.update_readme(Path("README.md"), written.leaderboard)
        out.print(
            f"README.md: leaderboard {'updated' if changed else 'unchanged'}", highlight=False
        )


@app.command()
@user_errors
def verify(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
):
    """Recompute every score the report would show from the stored models; exit 1 on a mismatch.

    Reads the store alone (models downloaded, test data regenerated from the recorded
    seeds and sizes); never trains, and reads nothing of the working directory but the
    JAX compilation cache a run left there (data/jax-cache), if any. A store whose
    cells all diverged or failed has nothing to check: it says so and exits 0.
    """
    from harness import verify as checking

    tracker, name = _reading(tracking_uri, suite, experiment)
    backend.load_frameworks()
    if COMPILE_CACHE.is_dir():  # a run's cache, where there is one: verify creates nothing
        backend.use_compile_cache(COMPILE_CACHE)
    found = checking.verify(tracker, name, lambda line: err.print(line, highlight=False))
    table = Table("run", "cell", "metric", "stored", "recomputed", "ok", title=f"verify {name}")
    for check in found.checks:
        table.add_row(
            check.run_id[:8],
            check.cell,
            check.metric,
            f"{check.stored:.6g}",
            f"{check.recomputed:.6g}" if not check.note else check.note,
            "yes" if check.ok else "NO",
        )
    if found.checks:
        out.print(table)
    for cell in found.unscored:
        out.print(
            f"not checked: run {cell.run_id[:8]} ({checking.cell_label(cell)}), "
            f"{cell.state.value}: no trial finished, so no score was stored",
            highlight=False,
            markup=False,
        )
    for check in found.mismatches:
        err.print(
            f"mismatch: run {check.run_id} ({check.cell}) {check.metric}: stored "
            f"{check.stored:.6g}, " + (check.note or f"recomputed {check.recomputed:.6g}"),
            highlight=False,
            markup=False,
        )
    if found.mismatches:
        raise typer.Exit(1)
    if not found.checks:
        out.print(
            f"nothing was checked: experiment '{name}' holds no cell with a stored score "
            f"({len(found.unscored)} diverged or failed)",
            highlight=False,
        )
        return
    cells = len({c.run_id for c in found.checks})
    unscored = f"; {len(found.unscored)} diverged or failed" if found.unscored else ""
    out.print(
        f"verified {len(found.checks)} numbers of {cells} cells in experiment '{name}': all "
        f"agree (within {checking.ABSOLUTE:g} + {checking.RELATIVE:g} x |stored|){unscored}",
        highlight=False,
    )


@app.command("clean-cache")
@user_errors
def clean_cache(
    workdir: Annotated[Path, typer.Option(help="Data cache and tuner folders.")] = DEFAULT_WORKDIR,
):
    """Delete the cached arrays no task names today (a built-in task's from before its code
    changed); the arrays of today's tasks and of your own tasks are kept."""
    from harness.data import prune_cache

    removed = prune_cache(workdir / "cache")
    out.print(f"removed {len(removed)} cache files that no task names today", highlight=False)


# -- probes: gradient flow, the rotation oracle, cost scaling ------------------------------------

probe_app = typer.Typer(
    no_args_is_help=True,
    help="Measure mechanisms (gradient flow, counting by rotation, cost) and record them in MLflow.",
)
app.add_typer(probe_app, name="probe")

SuiteOption = Annotated[
    str, typer.Option(help="Suite whose experiment the probe reads and writes (name or TOML).")
]
ExperimentOption = Annotated[
    str | None, typer.Option(help="MLflow experiment (default: the suite's name).")
]


def _names(values: list[str] | None, default: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists: --families lstm,gru."""
    found = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(found)) if found else list(default)


def _lengths(values: list[str] | None, default: tuple[int, ...]) -> list[int]:
    lengths = []
    for text in _names(values, tuple(map(str, default))):
        try:
            lengths.append(int(text))
        except ValueError:
            raise UserError(f"length '{text}' is not a whole number") from None
    return sorted(set(lengths))


def _probe_store(tracking_uri: str | None, suite: str, experiment: str | None):
    from harness.suites import suite_experiment
    from harness.tracking import Tracker

    name = experiment or suite_experiment(suite)
    tracker = Tracker(tracking_uri)
    tracker.check()
    return tracker, name


def _probe_budgets(suite: str, experiment: str | None) -> set[str] | None:
    """The budgets whose cells a probe reads: the suite's; any (the latest) with --experiment."""
    from harness.probes import suite_budgets

    return None if experiment else suite_budgets(suite)


FamiliesOption = Annotated[
    list[str] | None, typer.Option(help="Families (repeatable or comma-separated).")
]
LengthsOption = Annotated[
    list[str] | None, typer.Option(help="Lengths (repeatable or comma-separated).")
]


@probe_app.command("gradients")
@user_errors
def probe_gradients(
    task: Annotated[str, typer.Option(help="Task whose loss is differentiated.")] = gradients.TASK,
    families: FamiliesOption = None,
    lengths: LengthsOption = None,
    batch_size: Annotated[
        int, typer.Option(help="Examples the norms are averaged over.")
    ] = gradients.BATCH,
    train_epochs: Annotated[
        int, typer.Option(help="Epochs of the fallback training when the store has no cell.")
    ] = gradients.TRAIN_EPOCHS,
    suite: SuiteOption = "quick",
    experiment: ExperimentOption = None,
    tracking_uri: TrackingUri = None,
):
    """Norm of d(loss at the last step)/d(x_t) by distance, at initialisation and after training."""
    backend.load_frameworks()
    backend.use_compile_cache(COMPILE_CACHE)
    families = _names(families, gradients.FAMILIES)
    lengths = _lengths(lengths, gradients.LENGTHS)
    spec = gradients.check(task, families, lengths, batch_size)
    if train_epochs < 1:
        raise UserError(f"--train-epochs {train_epochs} must be at least 1")
    tracker, name = _probe_store(tracking_uri, suite, experiment)

    def show(curve):
        out.print(
            f"{curve.family} L={curve.length} {curve.stage}: decay per step {curve.decay:.4f}, "
            f"first input / last {curve.first_input_ratio:.3g} ({curve.source})",
            highlight=False,
        )

    curves = gradients.measure(
        tracker, name, spec, families, lengths, batch_size, train_epochs, on_curve=show,
        budgets=_probe_budgets(suite, experiment),
    )  # fmt: skip
    run_id = gradients.record(tracker, name, spec, curves, batch_size)
    out.print(f"probe run {run_id} in experiment '{name}' ({tracker.uri})", highlight=False)


@probe_app.command("rotation")
@user_errors
def probe_rotation(
    lengths: LengthsOption = None,
    examples: Annotated[int, typer.Option(help="Test sequences per length.")] = 128,
    suite: SuiteOption = "quick",
    experiment: ExperimentOption = None,
    tracking_uri: TrackingUri = None,
):
    """Score the hand-built rotation counter on `counting` beside the store's learned models."""
    backend.load_frameworks()
    backend.use_compile_cache(COMPILE_CACHE)
    from harness.probes import rotation

    lengths = _lengths(lengths, rotation.LENGTHS)
    rotation.check(lengths, examples)
    tracker, name = _probe_store(tracking_uri, suite, experiment)
    scores = rotation.evaluate(lengths, examples)
    table = Table("length", "per-step accuracy", "sequence accuracy", title=rotation.FAMILY)
    for length, score in scores.items():
        table.add_row(str(length), f"{score['accuracy']:.4f}", f"{score['sequence_accuracy']:.4f}")
    out.print(table)
    found = rotation.learned(
        tracker, name, lengths, examples, budgets=_probe_budgets(suite, experiment)
    )
    for (family, trained), by_length in sorted(found.items()):
        accuracies = ", ".join(f"L={L} {a:.4f}" for L, a in by_length.items())
        out.print(f"learned {family} (trained at L={trained}): {accuracies}", highlight=False)
    run_id = rotation.record(tracker, name, scores, found, examples)
    out.print(f"probe run {run_id}: the oracle beside {len(found)} learned models", highlight=False)


@probe_app.command("cost")
@user_errors
def probe_cost(
    task: Annotated[str, typer.Option(help="Task the models are built for.")] = cost.TASK,
    families: FamiliesOption = None,
    lengths: LengthsOption = None,
    batch_size: Annotated[int, typer.Option(help="Batch size, fixed across lengths.")] = cost.BATCH,
    steps: Annotated[
        int | None,
        typer.Option(help="Timed training steps per length; their median is the step's time."),
    ] = None,
    memory_cap_gb: Annotated[
        float, typer.Option(help="Stop a family whose worker's resident memory passes this.")
    ] = cost.MEMORY_CAP_GB,
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16 (mixed bfloat16, fused attention allowed).")
    ] = "fp32",
    suite: SuiteOption = "quick",
    experiment: ExperimentOption = None,
    tracking_uri: TrackingUri = None,
):
    """Time and peak memory per training step versus length; exponents and the crossover."""
    families = _names(families, cost.FAMILIES)
    lengths = _lengths(lengths, cost.LENGTHS)
    steps = cost.STEPS if steps is None else steps
    cost.check(task, families, lengths, batch_size, steps, memory_cap_gb, precision)
    tracker, name = _probe_store(tracking_uri, suite, experiment)

    def show(family, line):
        if "length" in line:
            out.print(
                f"{family} L={line['length']}: {line['seconds'] * 1000:.1f} ms/step, "
                f"{line['memory_mb']:.1f} MiB",
                highlight=False,
            )
        elif "oom" in line:
            out.print(f"{family} L={line['oom']}: out of memory", highlight=False)

    run_id = cost.start(tracker, name, task, batch_size, steps, precision)
    costs, interrupted = [], False
    try:
        for family in families:
            costs.append(
                cost.run_family(
                    task, family, lengths, batch_size, steps, memory_cap_gb, show, precision,
                    COMPILE_CACHE,
                )
            )  # fmt: skip
    except KeyboardInterrupt:  # the families finished are recorded
        interrupted = True
    except RuntimeError as error:
        tracker.finish(run_id, "FAILED")
        raise UserError(str(error)) from None
    if not costs:
        tracker.finish(run_id, "KILLED")
        err.print(f"interrupted before any family was measured: probe run {run_id} killed")
        raise typer.Exit(130)
    length, kind = cost.record(tracker, run_id, costs)
    table = Table("family", "time exponent", "memory exponent", "out of memory at")
    for c in costs:
        table.add_row(
            c.family,
            f"{c.time_exponent:.2f}",
            f"{c.memory_exponent:.2f}",
            "-" if c.oom is None else f"L={c.oom}",
        )
    out.print(table)
    out.print(
        f"crossover ({cost.ATTENTION} slower than {cost.RECURRENT}): "
        + (f"L={length:.0f} ({kind})" if length == length else kind),
        highlight=False,
    )
    out.print(f"probe run {run_id} in experiment '{name}' ({tracker.uri})", highlight=False)
    if interrupted:
        err.print(
            f"interrupted: recorded the families finished ({', '.join(c.family for c in costs)})"
        )
        raise typer.Exit(130)


@probe_app.command("report")
@user_errors
def probe_report(
    suite: ReadSuite = None,
    experiment: ReadExperiment = None,
    tracking_uri: TrackingUri = None,
    out_dir: Annotated[Path, typer.Option("--out", help="Output folder.")] = Path("reports/probes"),
):
    """Write the probes' report (probes.md, index.html, figures) from their latest runs."""
    from harness.probes import report as probes_report

    tracker, name = _reading(tracking_uri, suite, experiment)
    _writable_dir(out_dir, "output folder")
    written = probes_report.build(
        tracker, name, out_dir, lambda line: out.print(line, highlight=False)
    )
    out.print(
        f"wrote {written.leaderboard}, {written.html} and {len(written.figures)} figures",
        highlight=False,
    )
