"""Gradient flow predicted, then measured (issue 35): the first input's share of
d loss / d x_t predicted from a model's state Jacobians along the forward trajectory
(no backpropagation through time) agrees with the share backpropagation measures, on a
hand-set SimpleRNN where both are rho^(L-1), and on the LSTM and GRU at initialisation;
the scan families' prediction is their transitions' product; the record round-trips
through a real MLflow store into the report's table."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import backend

backend.configure()

import keras  # noqa: E402

from harness.probes import gradients  # noqa: E402
from harness.probes import report as probes_report  # noqa: E402
from harness.tracking import Tracker  # noqa: E402
from search_spaces import get_space  # noqa: E402
from tasks import get_task  # noqa: E402
from tests.helpers import md_rows, section_text, store_uri  # noqa: E402

MSE = keras.losses.MeanSquaredError()


def hand_set_rnn(units: int, rho: float, seed: int = 0):
    """x_t -> SimpleRNN (W_xh = I, W_hh = rho * Q with Q orthogonal, no bias) -> Dense(1)."""
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(units, units)))
    inputs = keras.Input((None, units))
    rnn = keras.layers.SimpleRNN(units, use_bias=False, name="rnn")
    model = keras.Model(inputs, keras.layers.Reshape(())(keras.layers.Dense(1)(rnn(inputs))))
    rnn.set_weights([np.eye(units, dtype="float32"), (rho * q).astype("float32")])
    return model


def test_hand_set_simple_rnn_predicts_rho_to_the_length_minus_one():
    """Small inputs keep tanh linear (h ~ 1e-3): J_t = diag(1 - h_t^2) W_hh^T ~ rho Q^T, so
    ||J_T ... J_2||_2 = rho^(L-1); with W_xh = I and Q orthogonal the loss's gradient keeps its
    norm through Q^(L-1), so first input / last = rho^(L-1) too, predicted and measured."""
    units, rho, length = 8, 0.8, 20
    model = hand_set_rnn(units, rho)
    x = (1e-3 * np.random.default_rng(1).normal(size=(16, length, units))).astype("float32")
    y = np.ones(16, "float32")
    predicted = gradients.predict(model, x, y, MSE)
    measured = backend.input_gradient_norms(model, x, y, MSE)
    measured_ratio = measured[0] / measured[-1]
    assert predicted.method == gradients.CHAIN
    assert predicted.chain == pytest.approx(rho ** (length - 1), rel=1e-4)
    assert predicted.ratio == pytest.approx(rho ** (length - 1), rel=1e-4)
    assert predicted.ratio == pytest.approx(measured_ratio, rel=1e-4)


@pytest.mark.parametrize(
    ("family", "task_name", "length", "depth"),
    [
        ("lstm", "adding", 12, 1),
        ("gru", "adding", 12, 1),
        ("gru", "counting", 16, 1),  # tokens through an Embedding, a per-step head
        ("lstm", "adding", 10, 2),  # two stacked layers: one chain on their joint state
    ],
)
def test_lstm_and_gru_at_initialisation_predict_the_measured_ratio(
    family, task_name, length, depth
):
    """The loss enters at the last state only: d loss/dx_1 = B_1^T P^T g and
    d loss/dx_T = B_T^T g, so the prediction is that quantity, exact up to float32
    rounding: agreement |log10(predicted / measured)| below 1e-4 (0.02 %)."""
    task = get_task(task_name)
    space = get_space(family, task)
    keras.utils.set_random_seed(0)
    model = space.model({**space.defaults(), "depth": depth})
    x, y = task.generate(16, length, gradients.DATA_SEED, "test")
    curve = gradients.measured_curve(model, task, x, y, family, length, "init", "seed 0")
    assert curve.prediction.method == gradients.CHAIN
    assert 0 < curve.first_input_ratio < 1
    assert abs(curve.agreement) < 1e-4, (curve.prediction.ratio, curve.first_input_ratio)
    assert 0 < curve.prediction.chain < 1


def test_the_lru_prediction_is_its_largest_eigenvalue_to_the_length_minus_one():
    """LRU's transition is the same diagonal lambda at every step: |lambda|_max^(L-1)."""
    task, length = get_task("adding"), 12
    model = gradients.default_model("lru", task)
    x, y = task.generate(8, length, gradients.DATA_SEED, "test")
    curve = gradients.measured_curve(model, task, x, y, "lru", length, "init", "seed 0")
    layer = next(each for each in model.layers if type(each).__name__ == "LRU")
    re, im = (keras.ops.convert_to_numpy(part).astype("float64") for part in layer.diagonal())
    largest = np.sqrt(re**2 + im**2).max()
    assert curve.prediction.method == gradients.SCAN
    assert curve.prediction.ratio == pytest.approx(largest ** (length - 1), rel=1e-5)
    assert math.isfinite(curve.agreement)


@pytest.mark.parametrize("family", ["bigru", pytest.param("transformer", marks=pytest.mark.slow)])
def test_no_single_chain_is_not_predicted(family):
    task = get_task("adding")
    x, y = task.generate(4, 8, gradients.DATA_SEED, "test")
    model = gradients.default_model(family, task)
    curve = gradients.measured_curve(model, task, x, y, family, 8, "init", "seed 0")
    assert curve.prediction.method.startswith(gradients.NOT_PREDICTED + ": ")
    assert math.isnan(curve.prediction.ratio) and math.isnan(curve.agreement)


@pytest.mark.slow  # the fast tier's probe report is test_probes.py's, from the probe commands
def test_the_report_shows_predicted_against_measured(tmp_path):
    """Recorded in a real SQLite MLflow store, read back into the probes' report."""
    task, length = get_task("adding"), 12
    x, y = task.generate(8, length, gradients.DATA_SEED, "test")
    curves = []
    for family in ("simple_rnn", "gru", "lru", "bigru"):
        model = gradients.default_model(family, task)
        for stage in gradients.STAGES:  # the same model twice: the table's two stages
            curves.append(gradients.measured_curve(model, task, x, y, family, length, stage, "s"))
    tracker = Tracker(store_uri(tmp_path))
    gradients.record(tracker, "prediction", task, curves, 8)
    probes_report.build(tracker, "prediction", tmp_path / "report")
    part = section_text((tmp_path / "report" / "probes.md").read_text(), "Gradient flow")
    rows = md_rows(part, "family")  # the first table: decay per step, as before
    assert [r[0] for r in rows[1:]] == ["bigru", "gru", "lru", "simple_rnn"]
    start = part.index("predicted from the model's Jacobians")
    rows = md_rows(part[start:], "family")
    assert rows[0] == [
        "family", "length", "stage", "method", "predicted", "measured", "agreement", "‖ΠJ‖₂"
    ]  # fmt: skip
    by_key = {(c.family, c.stage): c for c in curves}
    assert [(r[0], r[2]) for r in rows[1:]] == sorted(
        by_key, key=lambda k: (k[0], gradients.STAGES.index(k[1]))
    )
    for row in rows[1:]:
        curve = by_key[(row[0], row[2])]
        assert row[1] == str(length)
        assert row[5] == f"{curve.first_input_ratio:.3g}"
        if row[0] == "bigru":
            assert row[4] == "—" and row[6] == "—" and row[3] == "bidirectional, two chains"
        else:
            assert row[4] == f"{curve.prediction.ratio:.3g}"
            assert row[6] == f"{curve.agreement:+.2f}"
    assert "holds when its agreement lies within ±1 (within a factor of 10 either way)" in part
    gru = by_key[("gru", "init")]
    assert f"gru L12 init: {gru.prediction.ratio:.3g} vs {gru.first_input_ratio:.3g}" in part
    rnn = by_key[("simple_rnn", "init")]
    if gru.first_input_ratio < rnn.first_input_ratio:
        assert (
            "At initialisation the GRU's signal decays faster than the SimpleRNN's "
            f"(first input / last, GRU vs SimpleRNN, L=12: {gru.first_input_ratio:.3g} vs "
            f"{rnn.first_input_ratio:.3g})"
        ) in part
    assert "Not predicted: bigru (bidirectional, two chains)." in part


@pytest.mark.parametrize("family", ["lstm", pytest.param("mingru_signed", marks=pytest.mark.slow)])
def test_a_stored_model_is_predicted_as_the_model_it_was(tmp_path, family):
    """The trained stage reads a cell's `best_model.keras`: loaded back, it predicts alike."""
    task, length = get_task("adding"), 10
    x, y = task.generate(8, length, gradients.DATA_SEED, "test")
    model = gradients.default_model(family, task)
    model.save(tmp_path / "best_model.keras")
    loaded = keras.saving.load_model(tmp_path / "best_model.keras")
    before, after = (
        gradients.measured_curve(m, task, x, y, family, length, "trained", "s")
        for m in (model, loaded)
    )
    assert after.prediction.method == before.prediction.method
    assert after.prediction.ratio == pytest.approx(before.prediction.ratio, rel=1e-5)
    assert after.first_input_ratio == pytest.approx(before.first_input_ratio, rel=1e-5)
