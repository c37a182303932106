"""Training callbacks: `TrialWatch` (every trial and retrain) and `BestEpoch` (a retrain's
best epoch). Keras alone, so that code reading stored models need not import Keras Tuner."""

from __future__ import annotations

import math
import statistics
import time
from dataclasses import dataclass, field

import keras

from harness import faults, interrupts
from harness.results import COMPILE_SECONDS, EPOCH, EPOCH_SECONDS, SECONDS_PER_EPOCH
from tasks.base import Task

SOLVED_EPOCHS = 3
"""Early stop: validation must meet the solved bar at this many consecutive epochs (the
epoch it first does and two more), so a test score is not left on the bar by noise."""


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
            SECONDS_PER_EPOCH: statistics.fmean(later),
            COMPILE_SECONDS: sum(max(0.0, epochs[0] - typical) for epochs in self.executions),
        }


class TrialWatch(keras.callbacks.Callback):
    """Logs each epoch to the trial's run, stops on NaN/inf loss or once the task is solved.

    Divergence is checked at the end of each epoch, not each batch, so watching
    never forces a device sync inside the training loop. `on_epoch`, if given, is told
    each epoch's number, the epochs planned, the validation score, its seconds and its
    work in batch-steps (harness/plan.py).
    """

    def __init__(self, tracker, run_id: str | None, task: Task, length: int, on_epoch=None):
        super().__init__()
        self.tracker, self.run_id, self.task, self.length = tracker, run_id, task, length
        self.on_epoch = on_epoch
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
        seconds = time.perf_counter() - self._epoch_start
        self.record.executions[-1].append(seconds)
        self.record.epochs = max(self.record.epochs, epoch + 1)
        if self.on_epoch is not None:
            self.on_epoch(
                epoch=epoch + 1,
                epochs=self.params.get("epochs"),
                score=float(logs.get(self.monitor, math.nan)),
                seconds=seconds,
                work=(self.params.get("steps") or 0) * self.task.sequence_steps(self.length),
            )
        if self.tracker and self.run_id:
            finite = {k: v for k, v in logs.items() if math.isfinite(float(v))}
            finite.update({EPOCH: epoch + 1, EPOCH_SECONDS: seconds})
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


class BestEpoch(keras.callbacks.Callback):
    """Keeps the weights of the best validation epoch and restores them when training ends.

    The same rule as Keras Tuner's checkpoint of a trial: the epoch whose validation
    score (the task's metric) is strictly better than every earlier one.
    """

    def __init__(self, task: Task):
        super().__init__()
        self.task, self.monitor = task, f"val_{task.metric.name}"
        self.best, self.weights = math.nan, None

    def on_epoch_end(self, epoch, logs=None):
        score = float((logs or {}).get(self.monitor, math.nan))
        if math.isfinite(score) and (
            self.weights is None or self.task.metric.better(score, self.best)
        ):
            self.best, self.weights = score, self.model.get_weights()

    def on_train_end(self, logs=None):
        if self.weights is not None:
            self.model.set_weights(self.weights)
