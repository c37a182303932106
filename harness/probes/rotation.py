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

The same counter as the `rotscan` family's layer (a parallel scan, not a step-by-step
RNN): tokens -> one-hot -> RotScan(1, unit_modulus=True) with theta(1) = 2*pi/N,
theta(0) = 0 and B(1) = beta = omega - 1, B(0) = 0 (omega = e^{2 pi i/N}), so that from
h_0 = 0 the state after c ones is omega^c - 1: the readout above, shifted by 1
(`build_rotscan_counter`). The probe scores both constructions, and reads off the
rotation each learned `rotscan` model applies (`learned_rotations`).
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops

from harness.results import PARAMETERS
from harness.stored import EVALUATION_MEMORY_GB, OutOfMemory, test_scores
from harness.tracking import Tracker

FAMILY = "rotation_oracle"
SCAN_FAMILY = "rotscan"
COUNTER = "rotscan_counter"
CONSTRUCTIONS = {"oracle": "gated RNN cell", COUNTER: "rotscan's layer, parallel scan"}
"""The hand-set counters the probe scores: series name -> what computes the rotation."""
TASK = "counting"
MODULUS = 8
LENGTHS = (10, 50, 100, 1000, 10_000)
EXAMPLES = 32  # x 10,000 steps: 320,000 per-step predictions at the longest length
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


def rotscan_weights(modulus: int) -> dict[str, list]:
    """RotScan(1, unit_modulus=True)'s weights, by variable name, for the counter on one-hot
    tokens: theta(1) = 2 pi/N, theta(0) = 0, B(1) = omega - 1, B(0) = 0, y = (Re h, Im h)."""
    step = 2 * math.pi / modulus
    beta = complex(math.cos(step), math.sin(step)) - 1
    return {
        "theta_W": [[0.0], [step]],
        "theta_c": [0.0],
        "B_re": [[0.0], [beta.real]],
        "B_im": [[0.0], [beta.imag]],
        "C_re": [[1.0, 0.0]],
        "C_im": [[0.0, -1.0]],
        "D": [0.0, 0.0],
    }


def build_rotscan_counter(modulus: int) -> keras.Model:
    """The counting-mod-N model through the `rotscan` family's layer, every weight set: the
    state after c ones is omega^c - 1, so the readout's bias adds the 1 back."""
    from search_spaces.scan_layers import RotScan

    tokens = keras.Input(shape=(None,), dtype="int32", name="tokens")
    one_hot = layers.Embedding(2, 2, trainable=False, name="one_hot")
    scan = RotScan(1, unit_modulus=True, trainable=False, name="rotate")
    readout = layers.Dense(modulus, activation="softmax", trainable=False, name="angle_readout")
    model = keras.Model(tokens, readout(scan(one_hot(tokens))), name=f"{SCAN_FAMILY}_counter")
    one_hot.set_weights([np.eye(2, dtype="float32")])
    weights = rotscan_weights(modulus)
    for variable in scan.weights:
        variable.assign(np.array(weights[variable.name], dtype="float32"))
    angles = readout_matrix(modulus)
    readout.set_weights([angles, angles[0]])
    return model


BUILDERS = {"oracle": build_oracle, COUNTER: build_rotscan_counter}


def evaluate(
    lengths, examples: int = EXAMPLES, seed: int = SEED
) -> dict[str, dict[int, dict[str, float]]]:
    """Each construction's counting scores (accuracy, sequence_accuracy) at each length."""
    from tasks import get_task

    task = get_task(TASK)
    scores = {}
    for name, build in BUILDERS.items():
        model = build(task.output.classes)
        scores[name] = {}
        for length in lengths:
            x, y = task.generate(examples, length, seed + length, "test")
            probs = np.asarray(model.predict(x, batch_size=examples, verbose=0))
            scores[name][length] = task.scores(y, probs)
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
    `budgets`: harness.probes.finished_cells) on the constructions' test data.

    Keyed by (family, training length): per-step accuracy at every length of `lengths`,
    tested in batches that fit harness.stored.EVALUATION_MEMORY_GB (nan where one sequence
    does not: a transformer at 10,000 steps).
    """
    from harness.probes import finished_cells, load_model
    from tasks import get_task

    task = get_task(TASK)
    learned = {}
    for cell in finished_cells(tracker, experiment, TASK, budgets):
        model = load_model(tracker, cell.run_id)
        if model is None:
            continue
        scores = {}
        for test_length in lengths:
            x, y = task.generate(examples, test_length, seed + test_length, "test")
            try:
                scored = test_scores(task, model, x, y, examples, EVALUATION_MEMORY_GB)
                scores[test_length] = scored[task.metric.name]
            except OutOfMemory:
                scores[test_length] = math.nan
        learned[(cell.family, cell.length)] = scores
    return learned


def wrapped(angle):
    """An angle in radians brought into [-pi, pi)."""
    return (np.asarray(angle) + math.pi) % (2 * math.pi) - math.pi


def rotation_of(model, modulus: int = MODULUS) -> dict[str, float]:
    """The rotation a learned `rotscan` model's first RotScan layer applies on a 0 and on a 1,
    in its channel nearest the counter (theta(0) = 0 and theta(1) an odd multiple of 2 pi/N,
    r = 1; an odd multiple generates all N counts): turn = N theta(1) / 2 pi (mod N),
    phase0 = theta(0) wrapped to [-pi, pi), r0 and r1 the moduli, phase_error the larger of
    |phase0| and theta(1)'s distance from that odd multiple. A count read from that channel
    alone drifts by phase_error per step and by pi/N it is read wrong: `holds` is pi/N over
    phase_error, the steps it lasts (capped by 1 / (1 - r) where the state decays)."""
    from search_spaces.scan_layers import RotScan

    layer = next(layer for layer in model.layers if isinstance(layer, RotScan))
    inputs = keras.Model(model.inputs, layer.input)
    x = np.asarray(inputs.predict(np.array([[0, 1]], dtype="int32"), verbose=0), "float64")[0]
    theta = x @ np.asarray(layer.theta_kernel.value, "float64") + np.asarray(
        layer.theta_bias.value, "float64"
    )
    if layer.unit_modulus:
        modulus_of = np.ones_like(theta)
    else:
        logits = x @ np.asarray(layer.modulus_kernel.value, "float64") + np.asarray(
            layer.modulus_bias.value, "float64"
        )
        modulus_of = 1 / (1 + np.exp(-logits))
    step = 2 * math.pi / modulus
    odd = 2 * np.round((theta[1] / step - 1) / 2) + 1  # the odd multiple nearest theta(1)
    error = np.maximum(np.abs(wrapped(theta[0])), np.abs(theta[1] - odd * step))
    best = int(np.argmin(error))
    r0, r1 = float(modulus_of[0, best]), float(modulus_of[1, best])
    decay = min(r0, r1)
    holds = (math.pi / modulus) / max(float(error[best]), 1e-12)
    if decay < 1:
        holds = min(holds, 1 / (1 - decay))
    return {
        "turn": float((theta[1, best] / step) % modulus),
        "phase0": float(wrapped(theta[0, best])),
        "r0": r0,
        "r1": r1,
        "phase_error": float(error[best]),
        "holds": holds,
    }


def learned_rotations(
    tracker: Tracker, experiment: str, budgets: set[str] | None = None
) -> dict[tuple[int, int], dict[str, float]]:
    """`rotation_of` each stored model (the search's and each retrain's) of the store's
    `rotscan` counting cells, keyed by (training length, seed)."""
    import tempfile
    from pathlib import Path

    from harness.probes import finished_cells
    from harness.stored import model_file, stored_model

    rotations = {}
    for cell in finished_cells(tracker, experiment, TASK, budgets):
        if cell.family != SCAN_FAMILY:
            continue
        with tempfile.TemporaryDirectory() as tmp:
            for seed in [cell.seed, *cell.extra_seeds]:
                name = model_file(None if seed == cell.seed else seed)
                model = stored_model(tracker, cell.run_id, name, Path(tmp))
                if model is not None:
                    rotations[(cell.length, seed)] = rotation_of(model)
    return rotations


ROTATION_METRICS = ("turn", "phase0", "r0", "r1", "phase_error", "holds")
"""What `rotation_of` reads off a learned rotscan model, recorded as rotscan_<name>/L<length>/seed<seed>."""


def record(
    tracker: Tracker,
    experiment: str,
    scores: dict[str, dict[int, dict[str, float]]],
    learned: dict[tuple[str, int], dict[int, float]],
    rotations: dict[tuple[int, int], dict[str, float]],
    examples: int,
) -> str:
    """The probe run: each construction's and each learned model's accuracy by test length
    (step), and the rotations the learned rotscan models apply.

    The constructions (weights set, not learned) are recorded here, beside the learned
    models, and never as cells of the leaderboard.
    """
    from harness.probes import start_probe

    lengths = sorted({L for by_length in scores.values() for L in by_length})
    params = {
        "task": TASK,
        "lengths": ",".join(str(L) for L in lengths),
        "examples": examples,
        "construction": "gated 2-D rotation by 2*pi/N, angle read out by a fixed Dense",
        PARAMETERS: build_oracle(MODULUS).count_params(),
        f"{PARAMETERS}_{COUNTER}": build_rotscan_counter(MODULUS).count_params(),
        "learned": ",".join(f"{family}/L{length}" for family, length in sorted(learned)) or "none",
    }
    run_id = start_probe(tracker, experiment, "rotation", params)
    series = {}
    for name, by_length in scores.items():
        series[f"test_accuracy/{name}"] = {L: s["accuracy"] for L, s in by_length.items()}
        series[f"sequence_accuracy/{name}"] = {
            L: s["sequence_accuracy"] for L, s in by_length.items()
        }
    for (family, length), by_length in sorted(learned.items()):
        series[f"test_accuracy/{family}/L{length}"] = by_length
    tracker.log_series(run_id, series)
    tracker.log(
        run_id,
        metrics={
            f"{SCAN_FAMILY}_{what}/L{length}/seed{seed}": rotation[what]
            for (length, seed), rotation in sorted(rotations.items())
            for what in ROTATION_METRICS
        },
    )
    tracker.finish(run_id)
    return run_id
