"""A trial's seconds per epoch leave out each execution's first epoch (its compilation)."""

from __future__ import annotations

import numpy as np
import pytest

from harness import backend

backend.configure()

import keras  # noqa: E402

from harness.tuning import TrialRecord, TrialWatch  # noqa: E402
from tasks import get_task  # noqa: E402


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
