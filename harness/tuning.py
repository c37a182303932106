"""Keras Tuner, hooked: each trial is an MLflow child run, diverged trials never crash the oracle.

Keras Tuner has no MLflow integration, so `TrackedTuner.run_trial` wraps the
tuner's own: it opens the trial's child run, adds a `TrialWatch` callback (epoch
metrics by step, divergence, early stop once the task is solved), and closes the
run FINISHED, FAILED (tagged diverged or error, with the reason) or KILLED.
In a distributed search a worker tags its trial runs with its id (`harness.worker`).
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field

import keras
import keras_tuner as kt
from keras_tuner.src.engine import tuner_utils

from harness import faults, interrupts
from harness.distributed import WORKER
from harness.tracking import KIND, PARENT, TRIAL_ID, StoreUnavailable, Tracker
from tasks.base import Task

TUNER_CLASSES = {
    "random": kt.RandomSearch,
    "bayesian": kt.BayesianOptimization,
    "hyperband": kt.Hyperband,
}


@dataclass
class TrialRecord:
    """What one trial's callback saw, across its executions."""

    epochs: int = 0
    epoch_seconds: list[float] = field(default_factory=list)
    epochs_to_solve: int | None = None
    diverged: str | None = None


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

    def __deepcopy__(self, memo):  # Keras Tuner deep-copies callbacks per execution
        return self

    def on_train_begin(self, logs=None):
        interrupts.check()

    def on_epoch_begin(self, epoch, logs=None):
        self._epoch_start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        self.record.epoch_seconds.append(time.perf_counter() - self._epoch_start)
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
        if self.task.is_solved(score, self.length):
            if self.record.epochs_to_solve is None:
                self.record.epochs_to_solve = epoch + 1
            self.model.stop_training = True


class EpochTunerCallback(tuner_utils.TunerCallback):
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
        self.tracker, self.experiment_id, self.parent_run_id = tracker, experiment_id, parent_run_id
        self.on_trial = on_trial or (lambda event, **info: None)
        self.records: dict[str, TrialRecord] = {}
        self.best_objective: float | None = None
        self.running_trial: str | None = None  # read by a worker's heartbeat
        super().__init__(*args, **kwargs)

    def _open_trial_run(self, trial) -> str | None:
        """A fresh child run for the trial; an unfinished one left by a killed run is replaced."""
        if not self.tracker:
            return None
        for old in self.tracker.trial_runs(self.experiment_id, self.parent_run_id):
            if old.data.tags.get(TRIAL_ID) == trial.trial_id:
                self.tracker.delete(old.info.run_id)
        tags = {PARENT: self.parent_run_id, KIND: "trial", TRIAL_ID: trial.trial_id}
        if os.environ.get("KERASTUNER_ORACLE_IP"):
            tags[WORKER] = self.tuner_id
        run_id = self.tracker.start_run(self.experiment_id, f"trial {trial.trial_id}", tags)
        self.tracker.log(run_id, params=trial.hyperparameters.values)
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
        self.on_trial("start", trial_id=trial.trial_id)
        started = time.perf_counter()
        try:
            faults.point("trial_start")
            results = super().run_trial(trial, *args, **kwargs)
        except StoreUnavailable:  # the run stays unfinished; a rerun replaces it
            raise
        except KeyboardInterrupt:
            self._close(run_id, "KILLED", {"harness.status": "killed"})
            raise
        except Exception as err:
            reason = f"{type(err).__name__}: {err}".strip()[:500]
            self._close(run_id, "FAILED", {"harness.status": "error", "harness.reason": reason})
            self.on_trial("end", trial_id=trial.trial_id, status="error", reason=reason)
            raise
        record = watch.record
        self.records[trial.trial_id] = record
        summary = {"trial_seconds": time.perf_counter() - started, "epochs": record.epochs}
        if record.epoch_seconds:
            summary["seconds_per_epoch"] = sum(record.epoch_seconds) / len(record.epoch_seconds)
        if record.epochs_to_solve is not None:
            summary["epochs_to_solve"] = record.epochs_to_solve
        if record.diverged:
            self._close(
                run_id,
                "FAILED",
                {"harness.status": "diverged", "harness.reason": record.diverged},
                summary,
            )
            self.on_trial("end", trial_id=trial.trial_id, status="diverged", reason=record.diverged)
            return {self.oracle.objective.name: self.task.metric.worst}
        objective = self._objective_value(results)
        summary["objective"] = objective
        if self.best_objective is None or self.task.metric.better(objective, self.best_objective):
            self.best_objective = objective
        self._close(run_id, "FINISHED", {"harness.status": "finished"}, summary)
        faults.point("trial")
        self.on_trial(
            "end",
            trial_id=trial.trial_id,
            status="finished",
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
        metrics = tuner_utils.convert_to_metrics_dict(results, self.oracle.objective)
        return float(metrics[self.oracle.objective.name])

    def _close(self, run_id, status, tags, metrics=None) -> None:
        if self.tracker and run_id:
            self.tracker.log(run_id, metrics=metrics, tags=tags)
            self.tracker.finish(run_id, status)


def make_tuner(
    kind: str,
    hypermodel,
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
