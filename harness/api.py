"""The harness as a library: each `harness` command is one call here, and a notebook makes
the same calls.

    from harness import api

    ran = api.run(tasks=["adding"], lengths=[20], families=["gru"], store="sqlite:///mlflow.db")
    checked = api.verify("sqlite:///mlflow.db", experiment=ran.experiment)
    table = api.results("sqlite:///mlflow.db", experiment=ran.experiment)

Every argument is a keyword. Bad input raises `harness.errors.UserError` (the CLI prints it
as one line and exits 2); a run stopped by Ctrl-C or `stop_after` raises `Interrupted`, a
store that stays unreachable `StoreUnavailable` (both in harness/errors.py). Nothing here
prints: progress goes to the `events` (harness/events.py) or `progress` callables given.
"""

from __future__ import annotations

import math
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from harness import backend
from harness.budget import Budget
from harness.errors import Interrupted, UserError
from harness.events import Events

backend.configure()  # before anything imports Keras

Progress = Callable[[str], None]
DEFAULT_WORKDIR = Path("data")


def _quiet(line: str) -> None:
    """A progress callable that says nothing."""


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
    _writable(workdir, "working directory")
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


def _writable(path: Path, what: str) -> Path:
    """`path`, created if missing; a UserError if it cannot be created or written."""
    import os

    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(f"{what} '{path}' cannot be created: {error.strerror}") from None
    if not os.access(path, os.W_OK):
        raise UserError(f"{what} '{path}' is not writable")
    return path


# -- reading a store -----------------------------------------------------------------------
def experiment_name(store_reader, suite: str | None, experiment: str | None) -> str:
    """`experiment`, else the suite's name, else the experiment of the store's latest run."""
    if experiment:
        return experiment
    if suite:
        from harness.suites import suite_experiment

        return suite_experiment(suite)
    latest = store_reader.latest_experiment()
    if latest is None:
        raise UserError(
            f"tracking store '{store_reader.uri}' holds no runs: run `harness run` first"
        )
    return latest


def _open(store: str | None, runs_only: bool):
    """The store, which must exist: with `runs_only`, a local SQLite store read without
    MLflow (harness/tracking.py's `open_for_reading`)."""
    from harness.tracking import open_for_reading, open_store

    return (open_for_reading if runs_only else open_store)(store)


@dataclass
class Status:
    """Each cell's state in a store, and a line per frontier."""

    experiment: str
    cells: list  # harness.cells.CellStatus
    frontiers: list[str]


def status(
    store: str | None = None, *, experiment: str | None = None, suite: str | None = None
) -> Status:
    """Each cell of `experiment` (or of `suite`'s): done, partial, diverged, failed or not
    started, with its running trials; read from the store alone."""
    from harness.cells import cell_states, frontier_states
    from harness.suites import load_suite

    chosen = load_suite(suite) if suite else None
    reader = _open(store, runs_only=True)
    name = experiment_name(reader, suite, experiment)
    listed = chosen.cells if chosen and not chosen.frontiers else None  # frontiers pick as they go
    return Status(name, cell_states(reader, name, listed), frontier_states(reader, name))


def part_keys(suite: str | None, part: str | None) -> set[str] | None:
    """The keys of the cells and frontiers of `part` of `suite` (None: no part named)."""
    if part is None:
        return None
    if suite is None:
        raise UserError("--part names a part of a suite: give --suite too")
    from harness.cells import select_cells

    _, cells, frontiers = select_cells(suite, (), (), (), {}, None, (), (), part)
    return {item.key for item in (*cells, *frontiers)}


def verify(
    store: str | None = None,
    *,
    experiment: str | None = None,
    suite: str | None = None,
    part: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
    progress: Progress = _quiet,
):
    """Every number the report would show, recomputed from the stored models: a
    `harness.verify.Verification` (its `checks`, `mismatches`, `unscored`, `experiment`).
    Never trains; uses the JAX compilation cache a run left in `compile_cache`, if any."""
    from harness import verify as checking

    keys = part_keys(suite, part)
    tracker = _open(store, runs_only=False)
    name = experiment_name(tracker, suite, experiment)
    backend.load_frameworks()
    if compile_cache is not None and Path(compile_cache).is_dir():
        backend.use_compile_cache(Path(compile_cache))
    return checking.verify(tracker, name, progress, keys)


@dataclass
class Reported:
    """What `report` wrote."""

    experiment: str
    leaderboard: Path
    html: Path
    figures: list[Path]
    readme_changed: bool | None  # None: no README asked for


def report(
    store: str | None = None,
    out: str | Path = "reports",
    *,
    experiment: str | None = None,
    suite: str | None = None,
    readme: str | Path | None = None,
    readme_block: str = "leaderboard",
    progress: Progress = _quiet,
):
    """Write leaderboard.md, index.html and figures under `out` from the store alone; with
    `readme`, also refresh its `readme_block`."""
    from harness import frontier_report
    from harness import report as reporting

    reader = _open(store, runs_only=True)
    name = experiment_name(reader, suite, experiment)
    out = _writable(Path(out), "output folder")
    written = reporting.build(reader, name, out, progress, features=[frontier_report.section])
    changed = None
    if readme is not None:
        changed = reporting.update_readme(Path(readme), written.leaderboard, readme_block)
    return Reported(name, written.leaderboard, written.html, written.figures, changed)


RESULT_COLUMNS = (
    "experiment", "budget", "budget_key", "task", "length", "family", "seed", "metric",
    "direction", "test_score", "interval_low", "interval_high", "solved_bar", "baseline",
    "seed_solved", "cell_solved", "near_bar", "verdict", "run_id",
)  # fmt: skip
"""The columns of `results`: one row per cell and seed."""


def results(store: str | None = None, *, experiment: str | None = None, suite: str | None = None):
    """The store's cells as a pandas DataFrame, one row per cell and seed (RESULT_COLUMNS):
    each seed's test score with its 95% interval and whether it meets the bar, and the
    cell's verdict, as the report judges them."""
    import pandas as pd

    from harness.report.read import read_store
    from tasks.base import meets

    reader = _open(store, runs_only=True)
    name = experiment_name(reader, suite, experiment)
    rows = []
    for cell in read_store(reader, name).cells:
        verdict = cell.verdict
        label = cell.budget.label(len(cell.seeds), cell.seed)
        for seed in cell.seeds:
            score = cell.seed_scores.get(seed, math.nan)
            low, high = cell.interval(seed) or (math.nan, math.nan)
            rows.append(
                (name, label, cell.budget_key, cell.task, cell.length, cell.family, seed,
                 cell.metric, cell.direction, score, low, high, cell.solved_bar, cell.baseline,
                 meets(score, cell.solved_bar, cell.direction), verdict.solved,
                 verdict.near_bar, verdict.text(), cell.run_id)
            )  # fmt: skip
    return pd.DataFrame(rows, columns=list(RESULT_COLUMNS))


# -- probes --------------------------------------------------------------------------------
@dataclass
class Probed:
    """A probe's run: its id, in `experiment` of `store`."""

    experiment: str
    store: str
    run_id: str


@dataclass
class GradientsProbed(Probed):
    """What `probe_gradients` measured and recorded."""

    curves: list  # harness.probes.gradients.Curve, in the order measured


@dataclass
class RotationProbed(Probed):
    """What `probe_rotation` measured and recorded."""

    scores: dict  # construction -> length -> its counting scores
    learned: dict  # (family, training length) -> length -> per-step accuracy
    rotations: dict  # (training length, seed) -> what rotation_of reads off a learned rotscan


@dataclass
class CostProbed(Probed):
    """What `probe_cost` measured and recorded. Interrupted (Ctrl-C): the families finished
    are recorded; with none (`costs` empty), the run is ended KILLED and nothing recorded."""

    costs: list  # harness.probes.cost.FamilyCost, one per family measured
    crossover: float  # the length where attention's step becomes slower (nan: none)
    crossover_kind: str
    interrupted: bool


def _probe_store(store: str | None, suite: str, experiment: str | None):
    """(the store, created if missing; the experiment a probe reads and writes: `experiment`,
    else the suite's)."""
    from harness.suites import suite_experiment
    from harness.tracking import Tracker

    name = experiment or suite_experiment(suite)
    tracker = Tracker(store)
    tracker.check()
    return tracker, name


def _probe_budgets(suite: str, experiment: str | None) -> set[str] | None:
    """The budgets whose cells a probe reads: the suite's; any (the latest) with `experiment`."""
    from harness.probes import suite_budgets

    return None if experiment else suite_budgets(suite)


def _compile_cache(folder: str | Path | None) -> None:
    """Keras loaded, with JAX's compilation cache in `folder` (none when None)."""
    backend.load_frameworks()
    if folder is not None:
        backend.use_compile_cache(Path(folder))


def probe_gradients(
    *,
    task: str | None = None,
    families: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    batch_size: int | None = None,
    train_epochs: int | None = None,
    suite: str = "quick",
    experiment: str | None = None,
    store: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
    progress: Progress = _quiet,
) -> GradientsProbed:
    """Norm of d(loss at the last step)/d(x_t) by distance, at initialisation and after
    training, beside the first input's share predicted from the model's state Jacobians
    (harness/probes/gradients.py), recorded in `experiment` (else the suite's).
    None: the probe's default (gradients.TASK, FAMILIES, LENGTHS, BATCH, TRAIN_EPOCHS)."""
    _compile_cache(compile_cache)
    from harness.probes import gradients

    families = list(gradients.FAMILIES if families is None else families)
    lengths = list(gradients.LENGTHS if lengths is None else lengths)
    batch_size = gradients.BATCH if batch_size is None else batch_size
    train_epochs = gradients.TRAIN_EPOCHS if train_epochs is None else train_epochs
    spec = gradients.check(task or gradients.TASK, families, lengths, batch_size)
    if train_epochs < 1:
        raise UserError(f"--train-epochs {train_epochs} must be at least 1")
    tracker, name = _probe_store(store, suite, experiment)

    def show(curve) -> None:
        predicted = curve.prediction
        said = (
            f"predicted {predicted.ratio:.3g} (log10 agreement {curve.agreement:+.2f}, "
            f"{predicted.method})"
            if predicted.ratio == predicted.ratio  # not NaN: predicted
            else predicted.method
        )
        progress(
            f"{curve.family} L={curve.length} {curve.stage}: decay per step {curve.decay:.4f}, "
            f"first input / last {curve.first_input_ratio:.3g}, {said} ({curve.source})"
        )

    curves = gradients.measure(
        tracker, name, spec, families, lengths, batch_size, train_epochs, on_curve=show,
        budgets=_probe_budgets(suite, experiment),
    )  # fmt: skip
    run_id = gradients.record(tracker, name, spec, curves, batch_size)
    return GradientsProbed(name, tracker.uri, run_id, curves)


def probe_rotation(
    *,
    lengths: Sequence[int] | None = None,
    examples: int | None = None,
    suite: str = "quick",
    experiment: str | None = None,
    store: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
) -> RotationProbed:
    """The hand-built rotation counters scored on `counting` beside the store's learned
    models, and the rotation each learned rotscan model applies
    (harness/probes/rotation.py). None: the probe's default (rotation.LENGTHS, EXAMPLES)."""
    _compile_cache(compile_cache)
    from harness.probes import rotation  # imports Keras

    lengths = list(rotation.LENGTHS if lengths is None else lengths)
    examples = rotation.EXAMPLES if examples is None else examples
    rotation.check(lengths, examples)
    tracker, name = _probe_store(store, suite, experiment)
    scores = rotation.evaluate(lengths, examples)
    budgets = _probe_budgets(suite, experiment)
    learned = rotation.learned(tracker, name, lengths, examples, budgets=budgets)
    rotations = rotation.learned_rotations(tracker, name, budgets)
    run_id = rotation.record(tracker, name, scores, learned, rotations, examples)
    return RotationProbed(name, tracker.uri, run_id, scores, learned, rotations)


def probe_cost(
    *,
    task: str | None = None,
    families: Sequence[str] | None = None,
    lengths: Sequence[int] | None = None,
    batch_size: int | None = None,
    steps: int | None = None,
    memory_cap_gb: float | None = None,
    precision: str = "fp32",
    suite: str = "quick",
    experiment: str | None = None,
    store: str | None = None,
    compile_cache: str | Path | None = DEFAULT_WORKDIR / "jax-cache",
    progress: Progress = _quiet,
) -> CostProbed:
    """Time and peak memory per training step by length, one worker process per family
    (harness/probes/cost.py); exponents and the crossover. None: the probe's default
    (cost.TASK, FAMILIES, LENGTHS, BATCH, STEPS, MEMORY_CAP_GB)."""
    from harness.probes import cost

    task = task or cost.TASK
    families = list(cost.FAMILIES if families is None else families)
    lengths = list(cost.LENGTHS if lengths is None else lengths)
    batch_size = cost.BATCH if batch_size is None else batch_size
    steps = cost.STEPS if steps is None else steps
    memory_cap_gb = cost.MEMORY_CAP_GB if memory_cap_gb is None else memory_cap_gb
    cost.check(task, families, lengths, batch_size, steps, memory_cap_gb, precision)
    tracker, name = _probe_store(store, suite, experiment)

    def show(family: str, line: dict) -> None:
        if "length" in line:
            progress(
                f"{family} L={line['length']}: {line['seconds'] * 1000:.1f} ms/step, "
                f"{line['memory_mb']:.1f} MiB"
            )
        elif "oom" in line:
            progress(f"{family} L={line['oom']}: out of memory")

    run_id = cost.start(tracker, name, task, batch_size, steps, precision)
    costs, interrupted = [], False
    try:
        for family in families:
            costs.append(
                cost.run_family(
                    task, family, lengths, batch_size, steps, memory_cap_gb, show, precision,
                    compile_cache,
                )
            )  # fmt: skip
    except KeyboardInterrupt:  # the families finished are recorded
        interrupted = True
    except RuntimeError as error:
        tracker.finish(run_id, "FAILED")
        raise UserError(str(error)) from None
    if not costs:
        tracker.finish(run_id, "KILLED")
        return CostProbed(name, tracker.uri, run_id, [], math.nan, "none", True)
    length, kind = cost.record(tracker, run_id, costs)
    return CostProbed(name, tracker.uri, run_id, costs, length, kind, interrupted)


def probe_report(
    store: str | None = None,
    out: str | Path = "reports/probes",
    *,
    experiment: str | None = None,
    suite: str | None = None,
    progress: Progress = _quiet,
) -> Reported:
    """Write the probes' report (probes.md, index.html, figures) under `out` from their latest
    runs in `experiment` (else the suite's, else the store's latest run's)."""
    from harness.probes import report as probes_report

    tracker = _open(store, runs_only=False)
    name = experiment_name(tracker, suite, experiment)
    out = _writable(Path(out), "output folder")
    written = probes_report.build(tracker, name, out, progress)
    return Reported(name, written.leaderboard, written.html, written.figures, None)


# -- tasks, families and data --------------------------------------------------------------
GENERATE_MAX_ELEMENTS = 500_000_000
"""The most numbers (examples x steps) `generate` writes."""


def tasks() -> list:
    """Each benchmark task's `tasks.base.TaskInfo`: input, output, metric, baseline, solved
    bar and default lengths."""
    from tasks import REGISTRY

    return [task.info() for task in REGISTRY.values()]


def spaces() -> list[dict]:
    """Each model family's description and hyperparameters: their ranges, defaults (what a
    grid search trains at) and where each default comes from (search_spaces.describe_space)."""
    from search_spaces import REGISTRY, describe_space

    return [describe_space(family) for family in REGISTRY]


@dataclass
class Generated:
    """What `generate` wrote: arrays x and y in an .npz file."""

    path: Path
    x_shape: tuple[int, ...]
    x_dtype: str
    y_shape: tuple[int, ...]
    y_dtype: str


def generate(
    *,
    task: str,
    out: str | Path,
    length: int | None = None,
    n: int = 1000,
    seed: int = 0,
    split: str = "train",
) -> Generated:
    """Write `n` examples of a task's `split` at `length` (its first default if None) to the
    .npz file `out` (arrays x and y, readable with numpy alone)."""
    import numpy as np

    from tasks import get_task
    from tasks.base import SPLITS

    out = Path(out)
    spec = get_task(task)
    length = spec.default_lengths[0] if length is None else length
    spec.check_length(length)
    if n < 1 or n * spec.sequence_steps(length) > GENERATE_MAX_ELEMENTS:
        raise UserError(
            f"n={n} is out of range at length {length}: accepted 1 <= n and "
            f"n x steps <= {GENERATE_MAX_ELEMENTS:,}"
        )
    if split not in SPLITS:
        raise UserError(f"unknown split '{split}': accepted {', '.join(SPLITS)}")
    if out.suffix != ".npz":
        raise UserError(f"output path '{out}' must end in .npz")
    _writable(out.parent, "output folder")
    x, y = spec.generate(n, length, seed, split)
    partial = out.with_name(out.name + ".partial.npz")
    try:
        np.savez(partial, x=x, y=y)
        partial.replace(out)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise UserError(f"output file '{out}' cannot be written: {error.strerror}") from None
    return Generated(out, x.shape, str(x.dtype), y.shape, str(y.dtype))


def clean_cache(*, workdir: str | Path = DEFAULT_WORKDIR) -> list[Path]:
    """Delete the cached arrays no task names today (a built-in task's from before its code
    changed; today's tasks' and your own tasks' arrays are kept): the files deleted."""
    from harness.data import prune_cache

    return prune_cache(Path(workdir) / "cache")


__all__ = [
    "Interrupted", "Ran", "Reported", "RESULT_COLUMNS", "Status", "UserError", "frontier", "part_keys",
    "report", "results", "run", "status", "verify",
    "CostProbed", "Generated", "GradientsProbed", "Probed", "RotationProbed", "clean_cache",
    "generate", "probe_cost", "probe_gradients", "probe_report", "probe_rotation", "spaces",
    "tasks",
]  # fmt: skip
