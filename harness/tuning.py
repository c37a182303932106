"""Keras Tuner, hooked: each trial is an MLflow child run, diverged trials never crash the oracle.

Keras Tuner has no MLflow integration, so `TrackedTuner.run_trial` wraps the
tuner's own: it opens the trial's child run, adds a `TrialWatch` callback (epoch
metrics by step, divergence, early stop once the task is clearly solved), and closes
the run with the trial's outcome (harness/results.py). In a distributed search a
worker tags its trial runs with its id (`harness.worker`). `SpaceHyperModel` adapts
a family's space (search_spaces/base.py) to Keras Tuner's HyperModel.
"""

from __future__ import annotations

import math
import os
import statistics
import time
from dataclasses import dataclass, field

import keras
import keras_tuner as kt
from keras_tuner.src.engine import tuner_utils

from harness import faults, interrupts
from harness.results import DERIVED, KIND, PARENT, REASON, STATUS, TRIAL, TRIAL_ID, WORKER, Outcome
from harness.tracking import StoreUnavailable, Tracker
from search_spaces.base import FamilySpace
from tasks.base import Task

SOLVED_EPOCHS = 3
"""Early stop: validation must meet the solved bar at this many consecutive epochs (the
epoch it first does and two more), so a test score is not left on the bar by noise."""

TUNER_CLASSES = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
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


@dataclass
class TrialRecord:
    """What one trial's callback saw, across its executions."""

    epochs: int = 0
    executions: list[list[float]] = field(default_factory=list)  # each one's epoch seconds
    epochs_to_solve: int | None = None
    diverged: str | None = None
    parameters: int | None = None

    def timing(self) -> dict[str, float]:
        """Seconds per epoch without compilation: the mean of each execution's epochs after
        its first (a new model, compiled again); compile seconds: the sum over executions of
        the first epoch's excess over the median of those later epochs."""
        later = [seconds for epochs in self.executions for seconds in epochs[1:]]
        if not later:
            return {}
        typical = statistics.median(later)
        return {
            "seconds_per_epoch": statistics.fmean(later),
            "compile_seconds": sum(max(0.0, epochs[0] - typical) for epochs in self.executions),
        }


class StoreLost(StoreUnavailable, kt.errors.FatalError):
    """The store went away during a trial: ends the search (Keras Tuner re-raises it)."""


class TrialWatch(keras.callbacks.Callback):
    """Logs each epoch to the trial's run, stops on NaN/inf loss or once the task is solved.

    Divergence is checked at the end of each epoch, not each batch, so watching
    never forces a device sync inside the training loop.
    """

    def __init__(self, tracker: Tracker | None, run_id: str | None, task: Task, length: int):
        super().__init__()
        self.tracker, self.run_id, self.task, self.length = tracker, run_id, task, length
        self.record = TrialRecord()
        self.monitor = f"val_{task.metric.name}"
        self._epoch_start = 0.0
        self._solved_streak = 0

    def __deepcopy__(self, memo):  # Keras Tuner deep-copies callbacks per execution
        return self

    def on_train_begin(self, logs=None):  # once per execution
        interrupts.check()
        self._solved_streak = 0
        self.record.executions.append([])
        self.record.parameters = self.model.count_params()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.record.executions[-1].append(time.perf_counter() - self._epoch_start)
        self.record.epochs = max(self.record.epochs, epoch + 1)
        if self.tracker and self.run_id:
            finite = {k: v for k, v in logs.items() if math.isfinite(float(v))}
            self.tracker.log(self.run_id, metrics=finite, step=epoch)
            faults.point("epoch")
        interrupts.check()
        loss = float(logs.get("loss", math.nan))
        if not math.isfinite(loss):
            self.record.diverged = f"training loss became {loss} at epoch {epoch + 1}"
            self.model.stop_training = True
            return
        score = float(logs.get(self.monitor, math.nan))
        if not self.task.is_solved(score, self.length):
            self._solved_streak = 0
            return
        self._solved_streak += 1
        if self.record.epochs_to_solve is None:
            self.record.epochs_to_solve = epoch + 1
        if self._solved_streak >= SOLVED_EPOCHS:
            self.model.stop_training = True


class EpochTunerCallback(tuner_utils.TunerCallback):  # private: no public way to drop its hooks
    """Keras Tuner's own callback without its no-op batch hooks.

    A callback with batch hooks makes Keras copy the logs to the host after every
    batch (a device sync on JAX): harness/bare-fit time went from 1.33 to 1.10 with
    this (benchmarks/trial_overhead.py). Keras Tuner's base tuners do nothing per batch.
    """

    on_batch_begin = keras.callbacks.Callback.on_batch_begin
    on_batch_end = keras.callbacks.Callback.on_batch_end


class TrackedTuner:
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
            if old.data.tags.get(TRIAL_ID) == trial.trial_id:
                self.tracker.delete(old.info.run_id)
        tags = {PARENT: self.parent_run_id, KIND: TRIAL, TRIAL_ID: trial.trial_id}
        if os.environ.get("KERASTUNER_ORACLE_IP"):
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
        watch = TrialWatch(self.tracker, run_id, self.task, self.length)
        kwargs["callbacks"] = [*kwargs.get("callbacks", []), watch]
        worker = self.tuner_id if os.environ.get("KERASTUNER_ORACLE_IP") else None
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
            "trial_seconds": time.perf_counter() - started,
            "epochs": record.epochs,
            **record.timing(),
        }
        if record.parameters is not None:
            summary["parameters"] = record.parameters
        if record.epochs_to_solve is not None:
            summary["epochs_to_solve"] = record.epochs_to_solve
        if record.diverged:
            self._close(run_id, Outcome.DIVERGED, record.diverged, summary)
            self.on_trial(
                "end", trial_id=trial.trial_id, status=Outcome.DIVERGED, reason=record.diverged
            )
            return {self.oracle.objective.name: self.task.metric.worst}
        objective = self._objective_value(results)
        summary["objective"] = objective
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

    def _build_and_fit_model(self, trial, *args, **kwargs):
        kwargs["callbacks"] = [
            EpochTunerCallback(c.tuner, c.trial) if type(c) is tuner_utils.TunerCallback else c
            for c in kwargs.get("callbacks", [])
        ]
        return super()._build_and_fit_model(trial, *args, **kwargs)

    def _objective_value(self, results) -> float:
        # Keras Tuner's own reduction of a trial's histories to its objective (no public one)
        metrics = tuner_utils.convert_to_metrics_dict(results, self.oracle.objective)
        return float(metrics[self.oracle.objective.name])

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
    """A tracked tuner of `kind` whose objective is the task's validation metric.

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
