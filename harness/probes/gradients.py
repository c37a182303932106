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

Fitting rho to a curve and reading its end off the same curve is circular, so the
probe also *predicts* the first input's share from the model alone (`predict`),
without backpropagating the loss through time, and compares it with the measured one:

- simple_rnn, lstm, gru (any depth; the stacked layers' states concatenated, LSTM's
  (h, c) included, form one recurrence s_t = F(s_{t-1}, x_t)): the forward recurrence
  runs on the batch, and along each trajectory the exact Jacobians J_t = ds_t/ds_{t-1}
  and B_t = ds_t/dx_t of the Keras cell's own step (jax.jacfwd; for a SimpleRNN
  J_t = diag(1 - h_t^2) W_hh^T, for LSTM and GRU the full step, gates included) are
  multiplied as a matrix chain P = J_T ... J_2. The loss enters at the last state only
  (g = d loss / d s_T: the head's gradient, one layer deep), so
  d loss/dx_1 = B_1^T P^T g and d loss/dx_T = B_T^T g: the predicted ratio is the batch
  mean of ||B_1^T P^T g|| over that of ||B_T^T g||, the very quantity measured, so it
  agrees to rounding where the theory is right. Recorded beside it: ||P||_2, the
  chain's operator norm (rho^(L-1) for W_hh = rho * orthogonal near h = 0), loss-free.
- mingru, minlstm, mingru_signed, lru, rotscan (h_t = a_t * h_{t-1} + b_t, a_t from
  x_t alone, read from the layer's `coefficients`): the chain is diag(a_2 ... a_T),
  exactly; the prediction is its operator norm, max over channels of |prod a_t| (the
  larger block's for depth 2: paths that change block are left out), batch mean. The
  encoder, norm and read-out Jacobians at steps 1 and T are not in it: an estimate.
- bilstm, bigru, transformer: no single chain from the first input to the last state
  (a backward pass, attention): not predicted.

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
AGREES = 1.0
"""A prediction holds when |log10(predicted / measured)| <= AGREES: within a factor of 10."""
CHAIN = "exact Jacobian chain"
SCAN = "product of the scan's transitions a_t"
NOT_PREDICTED = "not predicted"


@dataclass
class Prediction:
    """The first input's share predicted from the model's Jacobians (module docstring).

    `ratio`: predicted first input / last; `chain`: the operator norm of the state
    Jacobians' product from step 2 to T (batch mean); `method`: CHAIN, SCAN or
    NOT_PREDICTED with the reason."""

    ratio: float = float("nan")
    chain: float = float("nan")
    method: str = NOT_PREDICTED


@dataclass
class Curve:
    """Gradient norms by distance from the last step (index 0 = the last step)."""

    family: str
    length: int
    stage: str
    norms: np.ndarray
    source: str = ""
    prediction: Prediction = field(default_factory=Prediction)
    decay: float = field(init=False)
    first_input_ratio: float = field(init=False)

    def __post_init__(self):
        self.decay = decay_per_step(self.norms)
        last, first = self.norms[0], self.norms[-1]
        self.first_input_ratio = float(first / last) if last > 0 else float("nan")

    @property
    def agreement(self) -> float:
        """log10(predicted / measured first-input ratio); nan where either is missing."""
        return log10_ratio(self.prediction.ratio, self.first_input_ratio)


def log10_ratio(predicted: float, measured: float) -> float:
    if not (np.isfinite(predicted) and np.isfinite(measured)):
        return float("nan")
    if predicted <= 0 or measured <= 0:
        return float("nan") if predicted != measured else 0.0
    return float(np.log10(predicted / measured))


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
    rest, encoded, loss_fn = encoded_part(model, task, x, y)
    norms = backend.input_gradient_norms(rest, encoded, y, loss_fn)
    return norms[::-1].copy()


def encoded_part(model, task, x, y):
    """(rest, encoded, loss): the model from the encoded steps on, its input, the loss."""
    import keras

    encoder, rest = split_at_encoder(model)
    encoded = keras.ops.convert_to_numpy(encoder(x, training=False))
    return rest, encoded, last_step_loss(task)


def predict(rest, encoded, y, loss_fn) -> Prediction:
    """The first input's share of d loss / d x_t predicted from `rest`'s Jacobians
    (module docstring); `rest` maps the encoded steps to the output."""
    import keras

    layers = rest.layers
    if any(isinstance(layer, keras.layers.Bidirectional) for layer in layers):
        return Prediction(method=f"{NOT_PREDICTED}: bidirectional, two chains")
    recurrent = [layer for layer in layers if isinstance(layer, keras.layers.RNN)]
    if recurrent:
        return predict_chain(rest, recurrent, encoded, y, loss_fn)
    from search_spaces.scan_layers import ComplexRecurrence, ProjectedRecurrence

    scans = [y for y in layers if isinstance(y, (ProjectedRecurrence, ComplexRecurrence))]
    if scans:
        return predict_scan(rest, scans, encoded)
    return Prediction(method=f"{NOT_PREDICTED}: no recurrence, attention reaches every step")


def tensors_in(model, layer) -> tuple:
    """(input, output) of `layer`'s call inside `model`'s own graph (a model built from an
    intermediate tensor, as `split_at_encoder`'s, holds a clone of the original graph)."""
    graph = {id(node) for nodes in model._nodes_by_depth.values() for node in nodes}
    for node in layer._inbound_nodes:
        if id(node) in graph:
            return node.input_tensors[0], node.output_tensors[0]
    raise ValueError(f"layer {layer.name} is not called in model {model.name}")


def state_sizes(cell) -> list[int]:
    size = cell.state_size
    return [int(n) for n in size] if isinstance(size, (list, tuple)) else [int(size)]


def predict_chain(rest, recurrent, encoded, y, loss_fn) -> Prediction:
    """The exact chain of a stack of Keras RNN layers (their cells' own step)."""
    import keras

    cells = [layer.cell for layer in recurrent]
    sizes = [state_sizes(cell) for cell in cells]
    total = sum(sum(s) for s in sizes)

    def step(state, x_t):
        inputs, offset, new = x_t[None], 0, []
        for cell, size in zip(cells, sizes, strict=True):
            parts = []
            for n in size:
                parts.append(state[None, offset : offset + n])
                offset += n
            inputs, states = cell.call(inputs, parts, training=False)
            new += list(states) if isinstance(states, (list, tuple)) else [states]
        return keras.ops.concatenate(new, axis=-1)[0]

    _, output = tensors_in(rest, recurrent[-1])
    features = keras.Model(rest.input, output)(encoded, training=False)
    head = keras.Model(output, rest.outputs[0])
    g = backend.input_gradients(head, keras.ops.convert_to_numpy(features), y, loss_fn)
    if g.ndim == 3:  # a per-step head: the loss reads the last step
        g = g[:, -1]
    entering = np.zeros((len(encoded), total), "float32")
    start = total - sum(sizes[-1])  # the last layer's output is its first state (h)
    entering[:, start : start + g.shape[-1]] = g
    logs = backend.jacobian_chain(step, total, encoded, entering)
    if logs is None:
        return Prediction(method=f"{NOT_PREDICTED}: the Jacobian chain needs the jax backend")
    log_first, log_last, log_chain = logs
    last_mean = np.exp(log_last).mean()
    ratio = float(np.exp(log_first).mean() / last_mean) if last_mean > 0 else float("nan")
    return Prediction(ratio, float(np.exp(log_chain).mean()), CHAIN)


def predict_scan(rest, scans, encoded) -> Prediction:
    """max over channels of |a_2 ... a_T| of each scan layer, the larger layer's, batch mean."""
    import keras

    from search_spaces.scan_layers import ProjectedRecurrence

    ops, logs = keras.ops, []
    for layer in scans:
        inputs = keras.Model(rest.input, tensors_in(rest, layer)[0])(encoded, training=False)
        if isinstance(layer, ProjectedRecurrence):
            a = ops.convert_to_numpy(layer.coefficients(layer.project(inputs))[0])
            log_a = np.log(np.abs(a.astype("float64")))
        else:
            a_re, a_im = (ops.convert_to_numpy(c) for c in layer.coefficients(inputs)[:2])
            a_re, a_im = a_re.astype("float64"), a_im.astype("float64")
            log_a = 0.5 * np.log(a_re**2 + a_im**2)
        logs.append(log_a[:, 1:].sum(axis=1).max(axis=-1))  # (batch,): the largest channel
    chain = float(np.exp(np.max(logs, axis=0)).mean())
    return Prediction(chain, chain, SCAN)


def measured_curve(model, task, x, y, family, length, stage, source) -> Curve:
    """The measured norms of `model` on (x, y), with the prediction beside them."""
    rest, encoded, loss_fn = encoded_part(model, task, x, y)
    norms = backend.input_gradient_norms(rest, encoded, y, loss_fn)[::-1].copy()
    return Curve(family, length, stage, norms, source, predict(rest, encoded, y, loss_fn))


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
            curve = measured_curve(model, task, x, y, family, length, "init", "seed 0")
            on_curve(curve)
            curves.append(curve)
            model, source = (None, "")
            if tracker is not None:
                model, source = cell_model(tracker, experiment, task.name, length, family, budgets)
            if model is None:
                model, source = trained_here(family, task, length, train_examples, train_epochs)
            curve = measured_curve(model, task, x, y, family, length, "trained", source)
            on_curve(curve)
            curves.append(curve)
    return curves


def record(tracker: Tracker, experiment: str, task, curves: list[Curve], batch: int) -> str:
    """The parent run: a norm-by-distance history per curve; per curve, decay per step, the
    measured and predicted first-input ratios, their agreement (log10 of predicted over
    measured) and the chain's operator norm as metrics; the prediction's method as params."""
    params = {
        "task": task.name,
        "families": ",".join(dict.fromkeys(c.family for c in curves)),
        "lengths": ",".join(str(L) for L in sorted({c.length for c in curves})),
        "batch_size": batch,
        "loss": "loss of the last step's output; x_t = the encoder's output at step t",
    }
    params.update({f"source/{c.family}/L{c.length}": c.source for c in curves if c.stage != "init"})
    params.update({f"prediction/{c.family}": c.prediction.method for c in curves})
    params["agrees_within"] = f"|log10(predicted / measured)| <= {AGREES:g}"
    run_id = start_probe(tracker, experiment, "gradients", params)
    series, metrics = {}, {}
    for c in curves:
        name = f"{c.family}/L{c.length}/{c.stage}"
        series[f"grad_norm/{name}"] = dict(enumerate(c.norms.tolist()))
        metrics[f"decay_per_step/{name}"] = c.decay
        metrics[f"first_input_ratio/{name}"] = c.first_input_ratio
        metrics[f"predicted_ratio/{name}"] = c.prediction.ratio
        metrics[f"agreement/{name}"] = c.agreement
        metrics[f"jacobian_chain_norm/{name}"] = c.prediction.chain
    tracker.log_series(run_id, series)
    tracker.log(run_id, metrics={k: v for k, v in metrics.items() if np.isfinite(v)})
    tracker.finish(run_id)
    return run_id
