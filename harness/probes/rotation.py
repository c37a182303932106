"""The seed's constructive counter: count events mod N by rotating a 2-D state, scored on `counting`.

The construction. The state is a unit vector h = (cos a, sin a) whose angle a holds
the count: a = 2*pi*count/N. A 1 rotates it by 2*pi/N, a 0 leaves it:

    h_t = h_{t-1} + x_t * (h_{t-1} R - h_{t-1}),   R = [[cos p, sin p], [-sin p, cos p]], p = 2*pi/N

For x_t = 1 this is h_{t-1} R (a rotation by p), for x_t = 0 it is h_{t-1}; for a fixed
input the recurrence is linear (no activation), and R is the recurrent matrix.
A plain `keras.layers.SimpleRNN` cannot express it: it computes
h_t = act(x_t W_in + h_{t-1} W_rec), where the input is *added*, so a fixed rotation
W_rec would turn the state on every step, 0 or 1. The input has to select the
rotation, so the cell multiplies (gates) the rotation by the input: a linear RNN
with an input-dependent transition matrix (R on a 1, the identity on a 0), written
as a small `keras.layers.RNN` cell with `keras.ops` (`GatedRotationCell`).

The model: tokens -> Embedding(2, 1) with weights [0], [1] (the gate x_t) ->
RNN(GatedRotationCell) from h_0 = (1, 0) -> Dense(N, softmax, no bias) whose
column c is s * (cos(2*pi*c/N), sin(2*pi*c/N)). The logit of class c is
s * |h| * cos(a - 2*pi*c/N), largest for the class whose angle is nearest to a:
the Dense readout is atan2 followed by rounding, and it stays exact while the
accumulated float32 rounding of the angle is below pi/N (about 1e-7 per step,
so for lengths far beyond 10^6 steps). Every weight is set, none is learned.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from harness.results import PARAMETERS
from harness.tracking import Tracker

FAMILY = "rotation_oracle"
TASK = "counting"
MODULUS = 8
LENGTHS = (10, 50, 100, 1000, 10_000)
EXAMPLES = 128
SEED = 2024
SHARPNESS = 50.0
MAX_ELEMENTS = 50_000_000  # examples x length of one evaluation


@keras.saving.register_keras_serializable(package="harness")
class GatedRotationCell(layers.Layer):
    """h_t = h_{t-1} + x_t (h_{t-1} R - h_{t-1}): rotate the 2-D state by R on a 1, keep it on a 0."""

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.state_size = 2
        self.output_size = 2

    def build(self, input_shape):
        self.rotation = self.add_weight(
            shape=(2, 2), initializer="identity", trainable=False, name="rotation"
        )

    def call(self, inputs, states):
        h = states[0] if isinstance(states, list | tuple) else states
        rotated = ops.matmul(h, self.rotation)
        new = h + inputs[:, :1] * (rotated - h)
        return new, [new]

    def get_initial_state(self, batch_size=None):
        ones = ops.ones((batch_size, 1), dtype=self.compute_dtype)
        return [ops.concatenate([ones, ops.zeros_like(ones)], axis=-1)]


def rotation_matrix(modulus: int) -> np.ndarray:
    """R such that (cos a, sin a) R = (cos(a + 2 pi/N), sin(a + 2 pi/N)) for row vectors."""
    p = 2 * math.pi / modulus
    return np.array([[math.cos(p), math.sin(p)], [-math.sin(p), math.cos(p)]], dtype="float32")


def readout_matrix(modulus: int, sharpness: float = SHARPNESS) -> np.ndarray:
    """Column c is sharpness * (cos(2 pi c/N), sin(2 pi c/N)): the nearest angle wins."""
    angles = 2 * math.pi * np.arange(modulus) / modulus
    return (sharpness * np.stack([np.cos(angles), np.sin(angles)])).astype("float32")


def build_oracle(modulus: int) -> keras.Model:
    """The counting-mod-N model with every weight set (nothing trained)."""
    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    gate = layers.Embedding(2, 1, trainable=False, name="gate")
    rnn = layers.RNN(GatedRotationCell(name="rotation_cell"), return_sequences=True, name="rotate")
    readout = layers.Dense(
        modulus, activation="softmax", use_bias=False, trainable=False, name="angle_readout"
    )
    model = keras.Model(tokens, readout(rnn(gate(tokens))), name=FAMILY)
    gate.set_weights([np.array([[0.0], [1.0]], dtype="float32")])
    rnn.cell.set_weights([rotation_matrix(modulus)])
    readout.set_weights([readout_matrix(modulus)])
    return model


def evaluate(lengths, examples: int = EXAMPLES, seed: int = SEED) -> dict[int, dict[str, float]]:
    """The oracle's counting scores (accuracy, sequence_accuracy) at each length."""
    from tasks import get_task

    task = get_task(TASK)
    model = build_oracle(task.output.classes)
    scores = {}
    for length in lengths:
        x, y = task.generate(examples, length, seed + length, "test")
        probs = np.asarray(model.predict(x, batch_size=examples, verbose=0))
        scores[length] = task.scores(y, probs)
    return scores


def check(lengths, examples: int) -> None:
    from harness.errors import UserError
    from tasks import get_task

    task = get_task(TASK)
    if not lengths:
        raise UserError("give at least one --lengths value")
    for length in lengths:
        task.check_length(length)
    if examples < 1 or examples * max(lengths) > MAX_ELEMENTS:
        raise UserError(
            f"--examples {examples} is out of range at length {max(lengths)}: accepted 1 <= "
            f"examples and examples x length <= {MAX_ELEMENTS:,}"
        )


def learned(
    tracker: Tracker,
    experiment: str,
    lengths,
    examples: int = EXAMPLES,
    seed: int = SEED,
    budgets: set[str] | None = None,
) -> dict[tuple[str, int], dict[int, float]]:
    """The store's learned counting models (best model of each cell the report shows under
    `budgets`: harness.probes.finished_cells) on the oracle's test data.

    Keyed by (family, training length): per-step accuracy at every length of `lengths`.
    """
    from harness.probes import finished_cells, load_model
    from tasks import get_task

    task = get_task(TASK)
    found = {}
    for cell in finished_cells(tracker, experiment, TASK, budgets):
        model = load_model(tracker, cell.run_id)
        if model is None:
            continue
        scores = {}
        for test_length in lengths:
            x, y = task.generate(examples, test_length, seed + test_length, "test")
            probs = np.asarray(model.predict(x, batch_size=examples, verbose=0))
            scores[test_length] = task.scores(y, probs)[task.metric.name]
        found[(cell.family, cell.length)] = scores
    return found


def record(
    tracker: Tracker,
    experiment: str,
    scores: dict[int, dict[str, float]],
    found: dict[tuple[str, int], dict[int, float]],
    examples: int,
) -> str:
    """The probe run: the oracle's and each learned model's accuracy by test length (step).

    The oracle is a construction (weights set, not learned): it is recorded here, beside
    the learned models, and never as a cell of the leaderboard.
    """
    from harness.probes import start_probe

    params = {
        "task": TASK,
        "lengths": ",".join(str(L) for L in sorted(scores)),
        "examples": examples,
        "construction": "gated 2-D rotation by 2*pi/N, angle read out by a fixed Dense",
        PARAMETERS: build_oracle(MODULUS).count_params(),
        "learned": ",".join(f"{family}/L{length}" for family, length in sorted(found)) or "none",
    }
    run_id = start_probe(tracker, experiment, "rotation", params)
    series = {
        "test_accuracy/oracle": {L: s["accuracy"] for L, s in scores.items()},
        "sequence_accuracy/oracle": {L: s["sequence_accuracy"] for L, s in scores.items()},
    }
    for (family, length), by_length in sorted(found.items()):
        series[f"test_accuracy/{family}/L{length}"] = by_length
    tracker.log_series(run_id, series)
    tracker.finish(run_id)
    return run_id
