"""A cell's stored models, read back: which artifact holds which seed's model, loading it from
the store, and scoring it on a task's data.

The runner saves the models under these names (harness/evaluation.py); `harness verify`
and the probes read them here, without the runner's training code or Keras Tuner.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from harness import backend
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


EVALUATION_MEMORY_GB = 8.0
"""The most memory one batch of a test at a longer length may take (on JAX, as the compiler
plans it): the batch shrinks to fit, and a length that does not fit one sequence at a time
is out of memory for that model. A fixed figure, recorded on the cell, so that every machine
that verifies a store makes the same choice."""


class OutOfMemory(Exception):
    """A test that does not fit in memory even one sequence at a time."""


def fitting_batch(model, x, batch_size: int, memory_gb: float) -> int:
    """The largest batch size up to `batch_size` whose forward pass on sequences of x's length
    the compiler plans within `memory_gb` (0: not even one); `batch_size` off JAX."""
    per_sequence = backend.forward_bytes(
        model, x[:1]
    )  # the weights counted in each: an upper bound
    if per_sequence is None:
        return batch_size
    return min(batch_size, int(memory_gb * 2**30 // per_sequence))


def test_scores(
    task: Task, model, x, y, batch_size: int, memory_gb: float | None = None
) -> dict[str, float]:
    """The task's primary and extra scores of a Keras `model` on (x, y); with `memory_gb`, in
    batches that fit it (OutOfMemory where none does, or where the device runs out)."""
    return task.scores(y, predictions(model, x, batch_size, memory_gb))


def scored(
    task: Task, model, x, y, batch_size: int, memory_gb: float | None = None
) -> tuple[dict[str, float], tuple]:
    """The task's scores of `model` on (x, y) and the primary score's 95% interval
    (harness/intervals.py's `score_interval`), in batches as `test_scores`."""
    from harness.intervals import score_interval

    predicted = predictions(model, x, batch_size, memory_gb)
    scores = task.scores(y, predicted)
    return scores, score_interval(task, y, predicted, scores[task.metric.name])


def predictions(model, x, batch_size: int, memory_gb: float | None = None) -> np.ndarray:
    """The `model`'s outputs on x (values or class probabilities), in batches as test_scores."""
    if memory_gb is not None:
        batch_size = fitting_batch(model, x, batch_size, memory_gb)
        if batch_size < 1:
            raise OutOfMemory(f"one sequence of length {x.shape[1]} needs over {memory_gb:g} GB")
    try:
        return np.asarray(model.predict(x, batch_size=batch_size, verbose=0))
    except Exception as error:
        if backend.is_out_of_memory(error):
            raise OutOfMemory(first_line(error)) from None
        raise
