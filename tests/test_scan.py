"""The parallel-scan families (mingru, minlstm, lru, mingru_signed, rotscan): the scan against a
float64 numpy loop on every backend, gradients, save/load, the parameter formula and budgets, a
real search, and rotscan with hand-set weights counting mod 8."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import backend

backend.configure()

import keras  # noqa: E402
from keras import ops  # noqa: E402

from harness.probes import rotation  # noqa: E402
from search_spaces import REGISTRY, get_space  # noqa: E402
from search_spaces.base import BUDGET_TOLERANCE  # noqa: E402
from search_spaces.scan_layers import (  # noqa: E402
    LRU,
    MinGRU,
    MinLSTM,
    RotScan,
    SignedMinGRU,
    doubling_scan,
)
from tasks import get_task  # noqa: E402
from tests.helpers import harness  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
SCAN_FAMILIES = ["mingru", "minlstm", "lru", "mingru_signed", "rotscan"]
WIDTH = 8  # the recurrence layers' input and state width in the scan-versus-loop checks


def make_layer(family: str):
    """The bare recurrence of `family` (the same construction as the subprocess script's)."""
    return {
        "mingru": lambda: MinGRU(WIDTH),
        "minlstm": lambda: MinLSTM(WIDTH),
        "lru": lambda: LRU(WIDTH, r_min=0.9, r_max=0.999),
        "mingru_signed": lambda: SignedMinGRU(WIDTH),
        "rotscan": lambda: RotScan(WIDTH),
    }[family]()


# -- the scan against an independent float64 numpy loop ------------------------------------------


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def loop(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """h_t = a_t h_{t-1} + b_t from h_0 = 0, every step: (batch, T, N)."""
    h, out = np.zeros_like(b[:, 0]), []
    for t in range(b.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return np.stack(out, axis=1)


def reference(family: str, weights: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The recurrence step by step in float64 numpy, from the papers' equations and the
    layer's weights alone (complex128 for the LRU and RotScan)."""
    x = x.astype(np.float64)
    w = {name: value.astype(np.float64) for name, value in weights.items()}
    if family in ("lru", "rotscan"):
        pushed = x @ (w["B_re"] + 1j * w["B_im"])
        if family == "lru":
            lam = np.exp(-np.exp(w["nu_log"]) + 1j * np.exp(w["theta_log"]))
            a, pushed = np.broadcast_to(lam, pushed.shape), pushed * np.exp(w["gamma_log"])
        else:
            modulus = sigmoid(x @ w["modulus_W"] + w["modulus_c"]) if "modulus_W" in w else 1.0
            a = modulus * np.exp(1j * (x @ w["theta_W"] + w["theta_c"]))
        h = loop(a, pushed)
        return (h @ (w["C_re"] + 1j * w["C_im"])).real + w["D"] * x
    g = lambda v: np.where(v >= 0, v + 0.5, sigmoid(v))  # noqa: E731
    k = x @ w["kernel"] + w["bias"]
    if family in ("mingru", "mingru_signed"):
        k_z, k_h = np.split(k, 2, axis=-1)
        z = sigmoid(k_z)
        a, b = (1 - z if family == "mingru" else 1 - 2 * z), z * g(k_h)
    else:
        k_f, k_i, k_h = np.split(k, 3, axis=-1)
        f, i = sigmoid(k_f), sigmoid(k_i)
        a, b = f / (f + i), i / (f + i) * g(k_h)
    return loop(a, b)


def assert_matches(found: np.ndarray, expected: np.ndarray, where: str) -> None:
    """Within relative 1e-4 per element, with a floor of 1e-5 of the output's largest magnitude
    for the values near zero. A fixed 1e-5 fails on PyTorch: the LRU's y = Re(C h) + D x crosses
    zero, and there float32 leaves an error in proportion to the terms that cancel, which grows
    with the length (at L = 1,000 it needs 6e-6 on JAX and 2.2e-5 on PyTorch, where |y| <= 8,
    i.e. 3e-6 of the scale). minGRU's and minLSTM's states are positive: the floor hardly acts."""
    assert found.shape == expected.shape, where
    floor = 1e-5 * np.abs(expected).max()
    np.testing.assert_allclose(found, expected, rtol=1e-4, atol=floor, err_msg=where)


SCAN_CASE = """
import json, sys
from pathlib import Path
import numpy as np
from harness import backend
backend.configure()
import keras
from tests.test_scan import SCAN_FAMILIES, make_layer
out = Path(sys.argv[1])
for family in SCAN_FAMILIES:
    for length in (1, 7, 1000):
        keras.utils.set_random_seed(length)
        layer = make_layer(family)
        x = np.random.default_rng(length).normal(size=(2, length, 8)).astype("float32")
        outputs = {"y": keras.ops.convert_to_numpy(layer(keras.ops.convert_to_tensor(x)))}
        if backend.name() == "tensorflow":  # a graph traced for any length: the doubling scan
            import tensorflow as tf
            spec = tf.TensorSpec((None, None, 8), "float32")
            outputs["y_graph"] = tf.function(layer, input_signature=[spec])(x).numpy()
        weights = {"w_" + v.name: keras.ops.convert_to_numpy(v.value) for v in layer.weights}
        np.savez(out / f"{family}_{length}.npz", x=x, **outputs, **weights)
print(json.dumps({"backend": backend.name(), "dtype": str(outputs["y"].dtype)}))
"""


@pytest.mark.slow  # about 60 s for the three backends on a loaded 2-core CPU
@pytest.mark.parametrize("name", ["jax", "tensorflow", "torch"])
def test_scan_equals_a_float64_numpy_loop_on_every_backend(name, tmp_path):
    """The float32 scan of each recurrence at L = 1, 7 and 1,000, one process per backend
    (on TensorFlow also in a graph traced for any length, where the doubling scan runs)."""
    env = {**os.environ, "KERAS_BACKEND": name}
    result = subprocess.run(
        [sys.executable, "-c", SCAN_CASE, str(tmp_path)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found == {"backend": name, "dtype": "float32"}
    for family in SCAN_FAMILIES:
        for length in (1, 7, 1000):
            data = np.load(tmp_path / f"{family}_{length}.npz")
            weights = {k[2:]: data[k] for k in data.files if k.startswith("w_")}
            expected = reference(family, weights, data["x"])
            assert_matches(data["y"], expected, f"{name} {family} L={length}")
            if name == "tensorflow":
                graph = data["y_graph"]
                assert_matches(graph, expected, f"unknown-length graph {family} L={length}")


@pytest.mark.parametrize("family", SCAN_FAMILIES)
def test_scan_and_step_by_step_equal_the_numpy_loop_here(family):
    """In this process (JAX by default): the scan and the layer's own loop, at short lengths."""
    for length in (1, 7, 64):
        keras.utils.set_random_seed(length)
        layer = make_layer(family)
        x = np.random.default_rng(length).normal(size=(2, length, WIDTH)).astype("float32")
        model = keras.Sequential([keras.Input((None, WIDTH)), layer])  # builds the layer
        scanned = model.predict(x, verbose=0)  # compiled once, not op by op
        weights = {v.name: ops.convert_to_numpy(v.value) for v in layer.weights}
        expected = reference(family, weights, x)
        assert_matches(scanned, expected, f"scan L={length}")
        looped = ops.convert_to_numpy(layer.step_by_step(ops.convert_to_tensor(x)))
        assert_matches(looped, expected, f"step_by_step L={length}")


def test_doubling_scan_equals_the_associative_scan():
    """The while-loop scan (TensorFlow graphs of unknown length) on a non-commutative operator."""

    def recurrence(earlier, later):  # (a, b) pairs packed on the last axis
        a1, b1 = ops.unstack(earlier, 2, axis=-1)
        a2, b2 = ops.unstack(later, 2, axis=-1)
        return ops.stack([a1 * a2, a2 * b1 + b2], axis=-1)

    for length in (1, 2, 3, 7, 64):
        x = np.random.default_rng(length).uniform(0.5, 1.0, size=(2, length, 3, 2))
        x = ops.convert_to_tensor(x.astype("float32"))
        expected = ops.convert_to_numpy(ops.associative_scan(recurrence, x, axis=1))
        found = ops.convert_to_numpy(doubling_scan(recurrence, x))
        np.testing.assert_allclose(found, expected, rtol=1e-5, err_msg=f"L={length}")


def test_lru_initialises_on_the_ring_with_gamma_normalisation():
    keras.utils.set_random_seed(0)
    layer = LRU(256, r_min=0.5, r_max=0.9, max_phase=0.25)
    layer.build((None, None, 4))
    modulus = np.exp(-np.exp(ops.convert_to_numpy(layer.nu_log)))
    theta = np.exp(ops.convert_to_numpy(layer.theta_log))
    gamma = np.exp(ops.convert_to_numpy(layer.gamma_log))
    assert (modulus >= 0.5 - 1e-6).all() and (modulus <= 0.9 + 1e-6).all()
    assert (theta > 0).all() and (theta <= 2 * math.pi * 0.25 + 1e-5).all()
    np.testing.assert_allclose(gamma, np.sqrt(1 - modulus**2), rtol=1e-5)
    with pytest.raises(ValueError, match="r_min < r_max < 1"):
        LRU(4, r_min=0.5, r_max=1.0)


def test_rotscan_with_hand_set_weights_counts_mod_8_at_length_10000():
    """The seed's rotation counter as a RotScan layer (harness/probes/rotation.py): theta(1) =
    2 pi / 8, theta(0) = 0, r = 1, B(0) = 0, B(1) = omega - 1 (omega = e^{i pi / 4}) on one-hot
    tokens. From h_0 = 0, h = omega^c - 1 after c ones, so the angle of h + 1 is the count
    mod 8: read out from the layer's `call` (the parallel scan) on `counting` at
    L = 10,000, every step right."""
    tokens, counts = get_task("counting").generate(4, 10_000, 0, "test")
    counter = rotation.build_rotscan_counter(8)
    scan = counter.get_layer("rotate")
    assert isinstance(scan, RotScan) and scan.unit_modulus and scan.state_size == 1
    assert not counter.trainable_weights and counter.count_params() == 4 + 13 + 24
    probs = counter.predict(tokens, batch_size=4, verbose=0)
    assert (probs.argmax(-1) == counts).mean() == 1.0


# -- the families' models -------------------------------------------------------------------------


def mse(y_true, y_pred):
    return ops.mean((y_pred - y_true) ** 2)


@pytest.mark.parametrize("family", SCAN_FAMILIES)
def test_gradients_are_finite_and_reach_the_first_step(family):
    """d loss(last output) / d x at L = 64 (adding: the sequence output is the last step)."""
    task = get_task("adding")
    keras.utils.set_random_seed(0)
    model = get_space(family, task).default_model()
    x, y = task.generate(4, 64, 0, "train")
    grads = backend.input_gradients(model, x, y, mse)
    assert grads.shape == x.shape and np.isfinite(grads).all()
    assert (np.abs(grads[:, 0]).sum(axis=-1) > 0).all(), "no gradient reaches step 0"


@pytest.mark.parametrize(
    ("family", "task_name"),  # sequence and per-step outputs
    [(family, "adding") for family in SCAN_FAMILIES]
    # the per-step head is the families' shared one: one family in the fast tier
    + [
        (family, "assoc_recall")
        if family == SCAN_FAMILIES[0]
        else pytest.param(family, "assoc_recall", marks=pytest.mark.slow)
        for family in SCAN_FAMILIES
    ],
)
def test_saved_models_load_and_predict_the_same_at_longer_lengths(family, task_name, tmp_path):
    task = get_task(task_name)
    keras.utils.set_random_seed(0)
    model = get_space(family, task).default_model()
    short, _ = task.generate(4, 8, 0, "train")
    longer, _ = task.generate(4, 24, 1, "test")  # no fixed length: any model runs at any length
    before = [ops.convert_to_numpy(model(inputs, training=False)) for inputs in (short, longer)]
    model.save(tmp_path / "model.keras")
    loaded = keras.saving.load_model(tmp_path / "model.keras", compile=False)
    after = [ops.convert_to_numpy(loaded(inputs, training=False)) for inputs in (short, longer)]
    assert before[1].shape[:2] == ((4, 24) if task_name == "assoc_recall" else (4,))
    for old, new in zip(before, after, strict=True):
        assert np.isfinite(old).all()
        np.testing.assert_array_equal(new, old)


@pytest.mark.parametrize("family", SCAN_FAMILIES)
def test_parameter_formula_equals_the_keras_count(family):
    """Real input with regression, tokens with a sequence class, tokens per step; depth 1 and
    2 (a block's parameters do not depend on the task: each depth is built once)."""
    for task_name, depth in (("adding", 2), ("first_token", 1), ("assoc_recall", 1)):
        space = get_space(family, get_task(task_name))
        values = {**space.defaults(), "depth": depth, "units": 7}
        where = f"{task_name} depth {depth}"
        assert space.model(values).count_params() == space.parameters(values), where
        assert space.backbone_parameters(values, 7)[1] == 7
        keras.backend.clear_session()


def test_rotscan_with_a_unit_modulus_has_no_modulus_weights():
    space = get_space("rotscan", get_task("counting"))
    values = {**space.defaults(), "unit_modulus": True, "units": 7}
    model = space.model(values)
    assert model.count_params() == space.parameters(values)
    assert not [v.path for v in model.trainable_weights if "modulus" in v.path]
    assert space.parameters(values) < space.parameters({**values, "unit_modulus": False})


@pytest.mark.parametrize("family", SCAN_FAMILIES)
def test_budgets_set_one_width_within_tolerance(family):
    """The default model (depth 1) of the smallest budget is built; the other widths and depths
    a budget keeps are counted by the formula, which test_parameter_formula_equals_the_keras_count
    holds to Keras' count."""
    task = get_task("adding")
    for budget in (5_000, 20_000, 100_000):
        space = get_space(family, task, budget)
        assert "units" not in {h.name for h in space.hyperparameters()}
        depths = next(h for h in space.hyperparameters() if h.name == "depth").options()
        assert 1 in depths
        for depth in depths:
            values = space.complete({**space.defaults(), "depth": depth})
            count = space.parameters(values)
            if depth == 1 and budget == 5_000:
                assert space.model(values).count_params() == count
                keras.backend.clear_session()
            assert abs(count - budget) <= BUDGET_TOLERANCE * budget, (budget, depth, count)


def test_families_are_listed_without_keras(tmp_path):
    result = harness("spaces", "--json", cwd=tmp_path, check=True)
    rows = {row["family"]: row for row in json.loads(result.stdout)}
    assert set(SCAN_FAMILIES) <= set(rows) and set(SCAN_FAMILIES) <= set(REGISTRY)
    names = {f: [h["name"] for h in rows[f]["hyperparameters"]] for f in SCAN_FAMILIES}
    for family in SCAN_FAMILIES:
        assert names[family][:3] == ["units", "depth", "dropout"]
        assert {"learning_rate", "clip_gradients"} <= set(names[family])
    assert {"r_min", "r_max"} <= set(names["lru"])
    assert "unit_modulus" in names["rotscan"]
    probe = "import sys, search_spaces; print('keras' in sys.modules)"
    imported = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True
    )
    assert imported.stdout.strip() == "False"
