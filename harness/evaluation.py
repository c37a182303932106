"""Honest scores for a search's winner: held-out test split, longer lengths, extra seeds.

Every seed's model is the one of its best validation epoch: Keras Tuner keeps the
search's at its best epoch (its SaveBestEpoch checkpoint), and a retrain restores
its own the same way (`BestEpoch`). Every scored model is kept, so `harness verify`
can recompute every stored score from the artifacts alone.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import keras
import numpy as np

from harness import backend
from harness.errors import UserError
from harness.results import BASELINE, SOLVED_BAR, at_length, score_name, task_score_name
from harness.tracking import _first_line, _retry
from harness.tuning import TrialWatch
from tasks.base import Task


def predict(model: keras.Model, x: np.ndarray, batch_size: int) -> np.ndarray:
    return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))


def test_scores(task: Task, model: keras.Model, x, y, batch_size: int) -> dict[str, float]:
    """The task's primary and extra scores of `model` on (x, y)."""
    return task.scores(y, predict(model, x, batch_size))


def model_file(seed: int | None = None) -> str:
    """The artifact holding the search's best model, or the retrain with `seed`."""
    return "best_model.keras" if seed is None else f"seed_{seed}_model.keras"


class ModelUnavailable(UserError):
    """A stored model that cannot be listed, downloaded or loaded: the message says which."""


def stored_model(tracker, run_id: str, name: str, folder: Path) -> keras.Model | None:
    """The model artifact `name` of a cell run, downloaded into `folder` and loaded (not
    compiled); None when the run holds no such artifact (a seed that diverged)."""
    import search_spaces.layers  # noqa: F401  (registers the custom objects the models need)

    def step(what: str, call):
        try:
            return _retry(call)
        except Exception as error:  # MLflow's and Keras' errors, a store that stayed away
            raise ModelUnavailable(
                f"artifact {name} of run {run_id} cannot be {what}: {_first_line(error)}"
            ) from None

    names = step("listed", lambda: {a.path for a in tracker.client.list_artifacts(run_id)})
    if name not in names:
        return None
    path = step("downloaded", lambda: tracker.client.download_artifacts(run_id, name, str(folder)))
    with warnings.catch_warnings():  # no optimizer state is needed to predict
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return step("loaded", lambda: keras.saving.load_model(path, compile=False))


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


def retrain(space, values: dict, task: Task, length: int, seed: int, train, val, epochs, batch):
    """Train `values` again from `seed`: (the model at its best epoch, or None if it diverged)."""
    keras.utils.set_random_seed(seed)
    keras.backend.clear_session()
    model = space.model(values)
    watch = TrialWatch(None, None, task, length)
    model.fit(
        *train,
        validation_data=val,
        epochs=epochs,
        batch_size=batch,
        verbose=0,
        callbacks=[watch, BestEpoch(task)],
    )
    return None if watch.record.diverged else model


@dataclass
class Evaluation:
    """A cell's best model and the retrains of its hyperparameters, scored."""

    values: dict  # the best hyperparameters (a derived width included)
    metrics: dict[str, float]
    seed_scores: dict[int, float]  # nan for a retrain that diverged
    diverged_seeds: list[int]
    files: list[Path]  # every scored model, saved
    fused_kernel: str
    best_trial: str = ""
    best_val_score: float = math.nan


def score_best(resolved, model: keras.Model, values: dict, folder: Path) -> Evaluation:
    """Score the search's best `model`: the test split, the longer lengths; saved in `folder`."""
    cell, task = resolved.cell, resolved.task
    batch, primary = cell.budget.batch_size, task.metric.name
    x, y = resolved.split("test")
    scores = test_scores(task, model, x, y, batch)
    metrics = {task_score_name(name): value for name, value in scores.items()}
    metrics[score_name()] = scores[primary]
    metrics["parameters"] = model.count_params()
    for length in cell.eval_lengths:
        metrics[score_name(length=length)] = longer_score(resolved, model, length)
        metrics[at_length(BASELINE, length)] = task.baseline(length)
        metrics[at_length(SOLVED_BAR, length)] = task.solved_bar(length)
    model.save(folder / model_file())
    fused = backend.observe_fused_rnn(model, x[:batch], y[:batch])
    return Evaluation(
        values, metrics, {cell.seed: scores[primary]}, [], [folder / model_file()], fused
    )


def longer_score(resolved, model: keras.Model, length: int) -> float:
    """The model's primary test score at a longer length (the same seed's test split)."""
    task, batch = resolved.task, resolved.cell.budget.batch_size
    return test_scores(task, model, *resolved.split("test", length), batch)[task.metric.name]


def retrain_seed(resolved, values: dict, seed: int, folder: Path):
    """Retrain `values` with `seed`: (its test score, its saved model, {longer length: score}),
    (nan, None, {}) if it diverged."""
    cell, task = resolved.cell, resolved.task
    model = retrain(
        resolved.space,
        values,
        task,
        cell.length,
        seed,
        resolved.split("train"),
        resolved.split("val"),
        cell.budget.epochs,
        cell.budget.batch_size,
    )
    if model is None:
        return math.nan, None, {}
    x, y = resolved.split("test")
    score = test_scores(task, model, x, y, cell.budget.batch_size)[task.metric.name]
    longer = {length: longer_score(resolved, model, length) for length in cell.eval_lengths}
    model.save(folder / model_file(seed))
    return score, folder / model_file(seed), longer


def add_seed(found: Evaluation, seed: int, score: float, file: Path | None, longer) -> None:
    """Fold one retrain into a cell's evaluation (a diverged one scores nan, saves nothing)."""
    found.seed_scores[seed] = score
    if file is None:
        found.diverged_seeds.append(seed)
        return
    found.metrics[score_name(seed)] = score
    for length, value in longer.items():
        found.metrics[score_name(seed, length)] = value
    found.files.append(file)


def evaluate(resolved, model: keras.Model, values: dict, folder: Path) -> Evaluation:
    """Score the search's best `model` and retrain `values` with each extra seed, in turn."""
    found = score_best(resolved, model, values, folder)
    for seed in resolved.cell.extra_seeds:
        add_seed(found, seed, *retrain_seed(resolved, values, seed, folder))
    return found
