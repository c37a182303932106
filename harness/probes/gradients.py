"""Gradient flow: how much of the loss signal at the last step reaches the input d steps earlier.

For a model and a batch, the probe takes the loss of the last step's output (the
whole output for regression and sequence classes, the last step's for per-step
classes) and measures ||d loss / d x_t|| for every step t, averaged over the batch,
where x_t is the encoded input at step t (the output of the shared Embedding or
Dense encoder, so token and real-valued tasks are measured alike). Indexed by the
distance d = T - 1 - t from the last step, log-norm is fitted against d; the
*decay per step* is exp(slope): a recurrence whose Jacobian shrinks the signal by
rho every step gives rho. `first_input_ratio` is the norm at the first input over
the norm at the last one (rho^(T-1) for a geometric decay; about 1 or more for a
model with a short path back to the first input, such as a bidirectional one).

Each (family, length) is measured at initialisation (the family's default
hyperparameters, seed 0) and after training: the best model of the matching cell
in the store (task, length, family, its `best_model.keras` artifact) when there is
one, else the default model trained here for a few epochs (the source is recorded).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from harness import backend
from harness.errors import UserError
from harness.probes import (
    finished_cells,
    load_model,
    loglinear_fit,
    start_probe,
)
from harness.tracking import Tracker

TASK = "adding"
FAMILIES = (
    "simple_rnn",
    "lstm",
    "gru",
    "bilstm",
    "bigru",
    "transformer",
    "mingru",
    "minlstm",
    "lru",
    "mingru_signed",
    "rotscan",
)
LENGTHS = (50, 100)
BATCH = 128
TRAIN_EXAMPLES = 2048
TRAIN_EPOCHS = 3
SEED = 0
DATA_SEED = 777
STAGES = ("init", "trained")
"""Each curve's stage: the default model at initialisation, and a trained one."""


@dataclass
class Curve:
    """Gradient norms by distance from the last step (index 0 = the last step)."""

    family: str
    length: int
    stage: str
    norms: np.ndarray
    source: str = ""
    decay: float = field(init=False)
    first_input_ratio: float = field(init=False)

    def __post_init__(self):
        self.decay = decay_per_step(self.norms)
        last, first = self.norms[0], self.norms[-1]
        self.first_input_ratio = float(first / last) if last > 0 else float("nan")


def decay_per_step(norms_by_distance) -> float:
    """exp(slope) of log-norm against distance: the factor the signal keeps per step."""
    norms = np.asarray(norms_by_distance, dtype=float)
    slope, _ = loglinear_fit(np.arange(len(norms)), norms)
    return float(np.exp(slope))


def last_step_loss(task):
    """The task's loss on the last step's output only, written with keras.ops."""
    from search_spaces.io import loss_and_metrics, per_step_output

    loss, _ = loss_and_metrics(task)
    if per_step_output(task):
        return lambda y_true, y_pred: loss(y_true[:, -1], y_pred[:, -1])
    return lambda y_true, y_pred: loss(y_true, y_pred)


def split_at_encoder(model):
    """(encoder, rest): inputs -> encoded steps, and encoded steps -> outputs."""
    import keras

    names = {layer.name for layer in model.layers}
    encoder = model.get_layer("embed" if "embed" in names else "project")
    return (
        keras.Model(model.input, encoder.output),
        keras.Model(encoder.output, model.outputs[0]),
    )


def norms_by_distance(model, task, x, y) -> np.ndarray:
    """||d loss(last step) / d x_t|| averaged over the batch, indexed by distance T-1-t."""
    encoder, rest = split_at_encoder(model)
    import keras

    encoded = keras.ops.convert_to_numpy(encoder(x, training=False))
    norms = backend.input_gradient_norms(rest, encoded, y, last_step_loss(task))
    return norms[::-1].copy()


def default_model(family: str, task, seed: int = SEED):
    import keras

    from search_spaces import get_space

    keras.utils.set_random_seed(seed)
    return get_space(family, task).default_model()


def cell_model(tracker: Tracker, experiment: str, task: str, length: int, family: str, budgets):
    """(model, source) from the cell the report shows under `budgets`, or (None, "")."""
    for cell in reversed(finished_cells(tracker, experiment, task, budgets)):
        if cell.family != family or cell.length != length:
            continue
        model = load_model(tracker, cell.run_id)
        if model is not None:
            return model, f"best model of cell run {cell.run_id}"
    return None, ""


def trained_here(family: str, task, length: int, examples: int, epochs: int):
    model = default_model(family, task)
    x, y = task.generate(examples, length, SEED + 1, "train")
    model.fit(x, y, epochs=epochs, batch_size=64, verbose=0)
    return model, f"default hyperparameters trained here: {epochs} epochs on {examples} examples"


def check(task_name: str, families, lengths, batch: int):
    from search_spaces import family_class
    from tasks import get_task

    task = get_task(task_name)
    for family in families:
        family_class(family)
    if not lengths:
        raise UserError("give at least one --lengths value")
    for length in lengths:
        task.check_length(length)
    if not 1 <= batch <= 4096:
        raise UserError(f"--batch-size {batch} is out of range: accepted 1..4096")
    return task


def measure(
    tracker: Tracker | None,
    experiment: str,
    task,
    families,
    lengths,
    batch: int = BATCH,
    train_epochs: int = TRAIN_EPOCHS,
    train_examples: int = TRAIN_EXAMPLES,
    on_curve=lambda curve: None,
    budgets: set[str] | None = None,
) -> list[Curve]:
    """Every (family, length) at initialisation and after training (the stored best model of
    a cell under `budgets` where there is one: harness.probes.finished_cells)."""
    curves = []
    for length in lengths:
        x, y = task.generate(batch, length, DATA_SEED, "test")
        for family in families:
            backend.free_memory()
            model = default_model(family, task)
            curve = Curve(family, length, "init", norms_by_distance(model, task, x, y), "seed 0")
            on_curve(curve)
            curves.append(curve)
            model, source = (None, "")
            if tracker is not None:
                model, source = cell_model(tracker, experiment, task.name, length, family, budgets)
            if model is None:
                model, source = trained_here(family, task, length, train_examples, train_epochs)
            curve = Curve(family, length, "trained", norms_by_distance(model, task, x, y), source)
            on_curve(curve)
            curves.append(curve)
    return curves


def record(tracker: Tracker, experiment: str, task, curves: list[Curve], batch: int) -> str:
    """The parent run: a norm-by-distance history per curve, decay per step as metrics."""
    params = {
        "task": task.name,
        "families": ",".join(dict.fromkeys(c.family for c in curves)),
        "lengths": ",".join(str(L) for L in sorted({c.length for c in curves})),
        "batch_size": batch,
        "loss": "loss of the last step's output; x_t = the encoder's output at step t",
    }
    params.update({f"source/{c.family}/L{c.length}": c.source for c in curves if c.stage != "init"})
    run_id = start_probe(tracker, experiment, "gradients", params)
    series, metrics = {}, {}
    for c in curves:
        name = f"{c.family}/L{c.length}/{c.stage}"
        series[f"grad_norm/{name}"] = dict(enumerate(c.norms.tolist()))
        metrics[f"decay_per_step/{name}"] = c.decay
        metrics[f"first_input_ratio/{name}"] = c.first_input_ratio
    tracker.log_series(run_id, series)
    tracker.log(run_id, metrics={k: v for k, v in metrics.items() if np.isfinite(v)})
    tracker.finish(run_id)
    return run_id
