"""The trial callback: a real Keras fit stops once validation has met the solved bar at
SOLVED_EPOCHS consecutive epochs, and not before; a trial's seconds per epoch leave out
each execution's first epoch (its compilation)."""

from __future__ import annotations

import numpy as np
import pytest

from harness import backend

backend.configure()

import keras  # noqa: E402

from harness.callbacks import SOLVED_EPOCHS, TrialRecord, TrialWatch  # noqa: E402
from tasks import get_task  # noqa: E402

SOLVED, FAILED = 0.005, 0.5  # adding's validation mse either side of its bar (0.01)


class Scripted(keras.callbacks.Callback):
    """Sets each epoch's validation mse to the script's value, before TrialWatch reads it."""

    def __init__(self, script: list[float]):
        super().__init__()
        self.script = script

    def on_epoch_end(self, epoch, logs=None):
        logs["val_mse"] = self.script[epoch]


def fit(script: list[float]) -> TrialWatch:
    """A real fit of a tiny model for len(script) epochs at most, watched as a trial is."""
    task = get_task("adding")
    x, y = task.generate(32, 8, 0, "train")
    model = keras.Sequential(
        [keras.Input(x.shape[1:]), keras.layers.Flatten(), keras.layers.Dense(1)]
    )
    model.compile("adam", "mse")
    watch = TrialWatch(None, None, task, 8)
    model.fit(x, y, epochs=len(script), verbose=0, callbacks=[Scripted(script), watch])
    return watch


@pytest.mark.parametrize(
    ("script", "epochs", "first_solved"),
    [
        ([FAILED, SOLVED, SOLVED, FAILED, *[SOLVED] * 6], 7, 2),  # the streak restarts at epoch 5
        ([FAILED, *[SOLVED] * (SOLVED_EPOCHS - 1)], SOLVED_EPOCHS, 2),  # too short a streak
        ([FAILED] * 4, 4, None),
    ],
)
def test_a_trial_stops_after_the_bar_is_met_at_consecutive_epochs(script, epochs, first_solved):
    watch = fit(script)
    assert SOLVED_EPOCHS == 3
    assert watch.record.epochs == epochs and [len(e) for e in watch.record.executions] == [epochs]
    assert watch.record.epochs_to_solve == first_solved
    assert watch.record.parameters == watch.model.count_params() > 0  # recorded at its start


def test_each_executions_first_epoch_is_compilation():
    record = TrialRecord(executions=[[3.0, 1.0, 1.2], [2.6, 0.8, 1.0]])
    timing = record.timing()
    assert timing["seconds_per_epoch"] == pytest.approx(1.0)  # 1.0, 1.2, 0.8, 1.0
    assert timing["compile_seconds"] == pytest.approx((3.0 - 1.0) + (2.6 - 1.0))  # median 1.0
    assert TrialRecord(executions=[[3.0], [2.5]]).timing() == {}  # no epoch after compiling
    assert TrialRecord(executions=[[0.9, 1.0]]).timing()["compile_seconds"] == 0.0


def test_the_watch_keeps_each_execution_apart():
    """Keras Tuner fits a new model per execution with the same callback."""
    watch = TrialWatch(None, None, get_task("adding"), 8)
    x, y = np.ones((8, 3), "float32"), np.ones((8, 1), "float32")
    for _ in range(2):
        inputs = keras.Input((3,))
        model = keras.Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile("sgd", "mse")
        model.fit(x, y, epochs=3, verbose=0, callbacks=[watch])
    assert [len(epochs) for epochs in watch.record.executions] == [3, 3]
    assert watch.record.epochs == 3
