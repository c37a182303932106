"""The steps of one cell that train, wherever they run: resolve the cell, build its tracked
tuner, search, score the search's best model. The runner (harness/runner.py) runs them in
its process; a local pool's workers (harness/pool_worker.py) and a cluster's workers
(harness/cluster.py's `ClusterWorker`) in theirs. `Spread` is what the runner asks of the
strategy that spreads a cell's trials; `InProcess` is the simplest one.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from harness import data, evaluation, kt_compat
from harness.suites import Cell


@dataclass
class Resolved:
    """A cell resolved once: its task, its family's space, its folders and data."""

    cell: Cell
    task: object
    space: object
    tuner_dir: Path
    cache: Path

    @property
    def label(self) -> str:
        return self.cell.label

    @property
    def planned(self) -> int:
        """The trials its search runs."""
        return self.cell.budget.trials

    def split(self, name: str, length: int | None = None):
        n = {"train": self.cell.budget.n_train, "val": self.cell.budget.n_val}.get(
            name, self.cell.budget.n_test
        )
        length = self.cell.length if length is None else length
        return data.split(self.task, length, n, self.cell.seed, name, self.cache)


def resolve(cell: Cell, workdir: Path) -> Resolved:
    from search_spaces import get_space
    from tasks import get_task

    task = get_task(cell.task)
    space = get_space(cell.family, task, **cell.budget.space_settings())
    return Resolved(cell, task, space, workdir / "tuners" / cell.key, workdir / "cache")


def build_tuner(
    tracker,
    experiment_id,
    run_id,
    resolved: Resolved,
    on_trial=None,
    declare_only: bool = False,
):
    """The cell's tracked tuner (its hypermodel only declares the space for a chief)."""
    import keras

    from harness.tuning import SpaceHyperModel, make_tuner

    cell, budget = resolved.cell, resolved.cell.budget
    keras.utils.set_random_seed(cell.seed)
    return make_tuner(
        budget.tuner,
        SpaceHyperModel(resolved.space, declare_only),
        resolved.task,
        cell.length,
        budget.max_trials,
        budget.epochs,
        budget.executions_per_trial,
        cell.oracle_seed,
        str(resolved.tuner_dir.parent),
        cell.key,
        tracker=tracker,
        experiment_id=experiment_id,
        parent_run_id=run_id,
        on_trial=on_trial,
    )


def search(tuner, resolved: Resolved) -> None:
    """Run the tuner's search here (its trials, or a worker's share of them)."""
    try:
        tuner.search(
            *resolved.split("train"),
            validation_data=resolved.split("val"),
            epochs=resolved.cell.budget.epochs,
            batch_size=resolved.cell.budget.batch_size,
            verbose=0,
        )
    except RuntimeError as error:  # Keras Tuner's end of a search whose trials all failed
        if not kt_compat.is_too_many_failures(error):
            raise


def best(resolved: Resolved, tuner, folder: Path, retrain: bool) -> evaluation.Evaluation:
    """The search's best model scored (and, with `retrain`, its extra seeds retrained)."""
    best_trial = tuner.oracle.get_best_trials(1)[0]
    tuner.hypermodel.declare_only = False  # a chief's hypermodel builds from here on
    with warnings.catch_warnings():  # the checkpoint holds weights only, not optimizer state
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        model = tuner.get_best_models(1)[0]
    values = resolved.space.complete(dict(best_trial.hyperparameters.values))
    if retrain:
        runs = (tuner.tracker, tuner.experiment_id, tuner.parent_run_id) if tuner.tracker else None
        evaluated = evaluation.evaluate(resolved, model, values, folder, tuner.on_trial, runs)
    else:
        evaluated = evaluation.score_best(resolved, model, values, folder)
    evaluated.best_trial, evaluated.best_val_score = best_trial.trial_id, float(best_trial.score)
    return evaluated


@dataclass
class CellSearch:
    """A cell's search as a strategy serves it: its store, its runs and whom to tell."""

    tracker: object
    experiment_id: str
    run_id: str
    resolved: Resolved
    events: object  # harness/events.py's Events


class Spread(Protocol):
    """How a cell's trials are spread: what the runner (harness/runner.py) asks of a strategy.

    `InProcess` (here), harness/pool.py's `LocalPool` and harness/cluster.py's
    `ClusterChief` are the three.
    """

    units: int
    """How many cells and frontiers run at once."""
    serves: bool
    """Whether the cell's tuner here only declares the space and serves its oracle to workers."""

    def start(self) -> None:
        """Called once, before the first cell."""

    def search(self, tuner, job: CellSearch) -> None:
        """Run (or serve) the cell's trials."""

    def evaluate(self, resolved: Resolved, tuner, folder: Path) -> evaluation.Evaluation:
        """The search's best model scored, and the retrains of its seeds."""


class InProcess:
    """How trials are spread, the simplest way: here, one at a time (a `Spread`)."""

    units = 1
    serves = False

    def start(self) -> None:
        pass

    def search(self, tuner, job: CellSearch) -> None:
        search(tuner, job.resolved)

    def evaluate(self, resolved: Resolved, tuner, folder: Path) -> evaluation.Evaluation:
        return best(resolved, tuner, folder, retrain=True)
