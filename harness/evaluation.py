"""Honest scores for a search's winner: held-out test split, longer lengths, extra seeds."""

from __future__ import annotations

import statistics

import keras
import numpy as np

from harness.tuning import TrialWatch
from tasks.base import Task


def predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def test_scores(task: Task, model: keras.Model, x, y, batch_size: int, suffix: str = "") -> dict:
    """`test_<metric><suffix>` for the primary and extra metrics of the task."""
    scores = task.scores(y, predict(model, x, batch_size))
    return {f"test_{name}{suffix}": value for name, value in scores.items()}


def retrain(
    hypermodel,
    hp,
    task: Task,
    length: int,
    seed: int,
    train,
    val,
    test,
    epochs: int,
    batch_size: int,
) -> tuple[float, TrialWatch]:
    """Train the best hyperparameters again from `seed`; its test score and what training saw."""
    keras.utils.set_random_seed(seed)
    keras.backend.clear_session()
    model = hypermodel.build(hp)
    watch = TrialWatch(None, None, task, length)
    model.fit(
        *train,
        validation_data=val,
        epochs=epochs,
        batch_size=batch_size,
        verbose=0,
        callbacks=[watch],
    )
    if watch.record.diverged:
        return float("nan"), watch
    return task.scores(test[1], predict(model, test[0], batch_size))[task.metric.name], watch


def spread(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation of the finite values (0 spread for one value)."""
    finite = [v for v in values if np.isfinite(v)]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.stdev(finite) if len(finite) > 1 else 0.0
