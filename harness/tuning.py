"""Keras Tuner, hooked: each trial is an MLflow child run, diverged trials never crash the oracle.

Keras Tuner has no MLflow integration, so `TrackedTuner.run_trial` wraps the
tuner's own: it opens the trial's child run, adds a `TrialWatch` callback (epoch
metrics by step, divergence, early stop once the task is clearly solved), and closes
the run with the trial's outcome (harness/results.py). In a distributed search a
worker tags its trial runs with its id (`harness.worker`). `SpaceHyperModel` adapts
a family's space (search_spaces/base.py) to Keras Tuner's HyperModel.
"""

from __future__ import annotations

import time

import keras_tuner as kt

from harness import faults, kt_compat, liveness
from harness.callbacks import TrialRecord, TrialWatch
from harness.results import (
    DERIVED,
    EPOCHS,
    EPOCHS_TO_SOLVE,
    KIND,
    OBJECTIVE,
    PARAMETERS,
    PARENT,
    REASON,
    STATUS,
    TRIAL,
    TRIAL_ID,
    TRIAL_SECONDS,
    WORKER,
    Outcome,
)
from harness.tracking import StoreUnavailable, Tracker
from search_spaces.base import FamilySpace
from tasks.base import Task

TUNER_CLASSES = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
    "grid": kt.GridSearch,
}


class SpaceHyperModel(kt.HyperModel):
    """A family's space as a Keras Tuner HyperModel (declares once, builds per trial).

    With `declare_only` it builds no model: a chief that only serves the oracle
    declares the space and never trains.
    """

    def __init__(self, space: FamilySpace, declare_only: bool = False):
        super().__init__(name=space.family)
        self.space, self.declare_only = space, declare_only

    def declare_hyperparameters(self, hp):
        self.space.declare(hp)

    def build(self, hp):
        return None if self.declare_only else self.space.build(hp)


class StoreLost(StoreUnavailable, kt.errors.FatalError):
    """The store went away during a trial: ends the search (Keras Tuner re-raises it)."""


class TrackedTuner(kt_compat.EpochCallbacks):
    """Mixin for a Keras Tuner class: one MLflow child run per trial."""

    def __init__(
        self,
        *args,
        task: Task,
        length: int,
        tracker: Tracker | None = None,
        experiment_id: str | None = None,
        parent_run_id: str | None = None,
        on_trial=None,
        **kwargs,
    ):
        self.task, self.length = task, length
        self.space: FamilySpace | None = None  # set from the hypermodel below
        self.tracker, self.experiment_id, self.parent_run_id = tracker, experiment_id, parent_run_id
        self.on_trial = on_trial or (lambda event, **info: None)
        self.records: dict[str, TrialRecord] = {}
        self.best_objective: float | None = None
        self.running_trial: str | None = None  # read by a worker's heartbeat
        super().__init__(*args, **kwargs)
        self.space = getattr(self.hypermodel, "space", None)

    def _open_trial_run(self, trial) -> str | None:
        """A fresh child run for the trial; an unfinished one left by a killed run is replaced."""
        if not self.tracker:
            return None
        for old in self.tracker.trial_runs(self.experiment_id, self.parent_run_id):
            if old.tags.get(TRIAL_ID) == trial.trial_id:
                self.tracker.delete(old.run_id)
        tags = {PARENT: self.parent_run_id, KIND: TRIAL, TRIAL_ID: trial.trial_id}
        tags.update(liveness.process_tags())
        if kt_compat.is_distributed():
            tags[WORKER] = self.tuner_id
        values = dict(trial.hyperparameters.values)
        if self.space is not None and self.space.derived():
            values = self.space.complete(values)
            tags[DERIVED] = ",".join(self.space.derived())
        run_id = self.tracker.start_run(self.experiment_id, f"trial {trial.trial_id}", tags)
        self.tracker.log(run_id, params=values)
        return run_id

    def run_trial(self, trial, *args, **kwargs):
        self.running_trial = trial.trial_id
        try:
            return self._tracked_trial(trial, *args, **kwargs)
        except StoreUnavailable as err:
            raise StoreLost(str(err)) from err
        finally:
            self.running_trial = None

    def _tracked_trial(self, trial, *args, **kwargs):
        run_id = self._open_trial_run(trial)
        worker = self.tuner_id if kt_compat.is_distributed() else None

        def on_epoch(**epoch):
            self.on_trial("epoch", run=f"trial {trial.trial_id}", worker=worker, **epoch)

        watch = TrialWatch(self.tracker, run_id, self.task, self.length, on_epoch)
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), watch]
        self.on_trial("start", trial_id=trial.trial_id, worker=worker)
        started = time.perf_counter()
        try:
            faults.point("trial_start")
            results = super().run_trial(trial, *args, **kwargs)
        except StoreUnavailable:  # the run stays unfinished; a rerun replaces it
            raise
        except KeyboardInterrupt:
            self._close(run_id, Outcome.KILLED)
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {err}".strip()[:500]
            self._close(run_id, Outcome.FAILED, reason)
            self.on_trial("end", trial_id=trial.trial_id, status=Outcome.FAILED, reason=reason)
            raise
        record = watch.record
        self.records[trial.trial_id] = record
        summary = {
            TRIAL_SECONDS: time.perf_counter() - started,
            EPOCHS: record.epochs,
            **record.timing(),
        }
        if record.parameters is not None:
            summary[PARAMETERS] = record.parameters
        if record.epochs_to_solve is not None:
            summary[EPOCHS_TO_SOLVE] = record.epochs_to_solve
        if record.diverged:
            self._close(run_id, Outcome.DIVERGED, record.diverged, summary)
            self.on_trial(
                "end", trial_id=trial.trial_id, status=Outcome.DIVERGED, reason=record.diverged
            )
            return {self.oracle.objective.name: self.task.metric.worst}
        objective = self._objective_value(results)
        summary[OBJECTIVE] = objective
        if self.best_objective is None or self.task.metric.better(objective, self.best_objective):
            self.best_objective = objective
        self._close(run_id, Outcome.FINISHED, None, summary)
        faults.point("trial")
        self.on_trial(
            "end",
            trial_id=trial.trial_id,
            status=Outcome.FINISHED,
            objective=objective,
            best=self.best_objective,
        )
        return results

    def _objective_value(self, results) -> float:
        return kt_compat.objective_value(results, self.oracle.objective)

    def _close(self, run_id, outcome: Outcome, reason: str | None = None, metrics=None) -> None:
        if self.tracker and run_id:
            tags = {STATUS: outcome.value, **({REASON: reason} if reason else {})}
            self.tracker.log(run_id, metrics=metrics, tags=tags)
            self.tracker.finish(run_id, outcome.run_status)


def make_tuner(
    kind: str,
    hypermodel: SpaceHyperModel,
    task: Task,
    length: int,
    max_trials: int,
    epochs: int,
    executions_per_trial: int,
    seed: int,
    directory: str,
    project_name: str,
    **options,
) -> kt.Tuner:
    """A tracked tuner of `kind` whose objective is the task's validation metric; `seed` is
    its oracle's (the cell's `oracle_seed`).

    `options` go to TrackedTuner (tracker, experiment_id, parent_run_id, on_trial)
    or on to Keras Tuner (e.g. hyperparameters, tune_new_entries).
    """
    objective = kt.Objective(f"val_{task.metric.name}", direction=task.metric.direction)
    base = TUNER_CLASSES[kind]
    tuner_class = type(f"Tracked{base.__name__}", (TrackedTuner, base), {})
    budget = (
        {"max_epochs": epochs, "hyperband_iterations": 1}
        if kind == "hyperband"
        else {"max_trials": max_trials}
    )
    return tuner_class(
        hypermodel,
        objective=objective,
        executions_per_trial=executions_per_trial,
        seed=seed,
        directory=directory,
        project_name=project_name,
        overwrite=False,
        max_consecutive_failed_trials=max_trials,
        task=task,
        length=length,
        **budget,
        **options,
    )
