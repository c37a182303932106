"""The trial callback's early stop: a real Keras fit stops once validation has met the solved bar
at SOLVED_EPOCHS consecutive epochs, and not before."""

from __future__ import annotations

import keras
import pytest

from harness.tuning import SOLVED_EPOCHS, TrialWatch
from tasks import get_task

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
    assert watch.record.epochs == epochs and len(watch.record.epoch_seconds) == epochs
    assert watch.record.epochs_to_solve == first_solved
    assert watch.record.parameters == watch.model.count_params() > 0  # recorded at its start
