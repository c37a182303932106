"""A cell's stored models, read back: which artifact holds which seed's model, loading it from
the store, and scoring it on a task's data.

The runner saves the models under these names (harness/evaluation.py); `harness verify`
and the probes read them here, without the runner's training code or Keras Tuner.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from harness.errors import UserError, first_line
from tasks.base import Task


def model_file(seed: int | None = None) -> str:
    """The artifact holding the search's best model, or the retrain with `seed`."""
    return "best_model.keras" if seed is None else f"seed_{seed}_model.keras"


class ModelUnavailable(UserError):
    """A stored model that cannot be listed, downloaded or loaded: the message says which."""


def stored_model(tracker, run_id: str, name: str, folder: Path):
    """The model artifact `name` of a cell run, downloaded into `folder` and loaded (a Keras
    model, not compiled); None when the run holds no such artifact (a seed that diverged)."""
    import keras

    import search_spaces.layers  # noqa: F401  (registers the custom objects the models need)

    def step(what: str, call):
        try:
            return call()
        except Exception as error:  # MLflow's and Keras' errors, a store that stayed away
            raise ModelUnavailable(
                f"artifact {name} of run {run_id} cannot be {what}: {first_line(error)}"
            ) from None

    if name not in step("listed", lambda: tracker.artifacts(run_id)):
        return None
    path = step("downloaded", lambda: tracker.download_artifact(run_id, name, folder))
    with warnings.catch_warnings():  # no optimizer state is needed to predict
        warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
        return step("loaded", lambda: keras.saving.load_model(path, compile=False))


def test_scores(task: Task, model, x, y, batch_size: int) -> dict[str, float]:
    """The task's primary and extra scores of a Keras `model` on (x, y)."""
    return task.scores(y, np.asarray(model.predict(x, batch_size=batch_size, verbose=0)))
