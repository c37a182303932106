"""Probes: the gradient probe on a known linear recurrence on every backend, the rotation oracle
exact at long lengths, the cost fits on synthetic timings, small real probes for every family,
and the `harness probe` commands with their report sections on a real store."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from harness import api, backend

backend.configure()

from harness.probes import cost, gradients, loglog_fit, rotation  # noqa: E402
from search_spaces import REGISTRY  # noqa: E402
from tasks import get_task  # noqa: E402
from tests.helpers import (  # noqa: E402
    OWN_COMPILE_CACHE,
    TINY_BUDGET,
    client,
    copy_store,
    harness,
    md_rows,
    section_text,
    start_harness,
    store_uri,
    wait_for_output,
)

REPO = Path(__file__).resolve().parent.parent
FAMILIES = list(REGISTRY)
EXPERIMENT = "probes-test"

# -- gradient flow ---------------------------------------------------------------------------

KNOWN_CASE = """
import json, sys
import numpy as np
from harness import backend
backend.configure()
import keras
rho, length = float(sys.argv[1]), int(sys.argv[2])
inputs = keras.Input(shape=(None, 1), dtype="float32")
rnn = keras.layers.SimpleRNN(1, activation="linear", use_bias=False)
model = keras.Model(inputs, keras.layers.Reshape(())(rnn(inputs)))
rnn.set_weights([np.ones((1, 1), "float32"), np.full((1, 1), rho, "float32")])
x = np.random.default_rng(0).normal(size=(8, length, 1)).astype("float32")
y = np.zeros(8, "float32")
norms = backend.input_gradient_norms(model, x, y, keras.losses.MeanSquaredError())
print(json.dumps({"backend": backend.name(), "norms": norms[::-1].tolist()}))
"""


@pytest.mark.parametrize(
    "name",
    # the default backend in the fast tier; each other one starts its framework (slow tier)
    [n if n == "jax" else pytest.param(n, marks=pytest.mark.slow) for n in backend.BACKENDS],
)
def test_linear_recurrence_keeps_rho_per_step_on_every_backend(name):
    """h_t = rho h_{t-1} + x_t: d h_T / d x_t = rho^(T-t), so every step's ratio is rho."""
    rho, length = 0.9, 30
    env = {**os.environ, "KERAS_BACKEND": name}
    result = subprocess.run(
        [sys.executable, "-c", KNOWN_CASE, str(rho), str(length)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    found = json.loads(result.stdout.strip().splitlines()[-1])
    assert found["backend"] == name
    norms = np.array(found["norms"])
    assert norms.shape == (length,) and (norms > 0).all()
    np.testing.assert_allclose(norms[1:] / norms[:-1], rho, rtol=1e-4)
    assert gradients.decay_per_step(norms) == pytest.approx(rho, rel=1e-5)
    assert norms[-1] / norms[0] == pytest.approx(rho ** (length - 1), rel=1e-3)


def test_decay_per_step_of_a_geometric_curve():
    distances = np.arange(50)
    assert gradients.decay_per_step(0.3 * 0.99**distances) == pytest.approx(0.99)
    assert gradients.decay_per_step(0.9**distances) ** 49 == pytest.approx(0.9**49)
    with_zeros = np.where(distances < 10, 0.5**distances, 0.0)  # underflowed steps are left out
    assert gradients.decay_per_step(with_zeros) == pytest.approx(0.5)


@pytest.mark.slow
def test_gradient_probe_runs_for_every_family():
    task = get_task("adding")
    curves = gradients.measure(
        None, "", task, FAMILIES, [8], batch=4, train_epochs=1, train_examples=32
    )
    assert [(c.family, c.stage) for c in curves] == [
        (f, s) for f in FAMILIES for s in ("init", "trained")
    ]
    for curve in curves:
        assert curve.norms.shape == (8,)
        assert np.isfinite(curve.norms).all() and (curve.norms > 0).all(), curve.family
        assert math.isfinite(curve.decay) and curve.decay > 0
        assert curve.first_input_ratio == pytest.approx(curve.norms[-1] / curve.norms[0])
    sources = {c.source for c in curves if c.stage == "trained"}
    assert sources == {"default hyperparameters trained here: 1 epochs on 32 examples"}


def test_gradient_probe_on_per_step_and_token_tasks():
    """The last step's loss of a per-step task, through an Embedding encoder."""
    task = get_task("counting")
    x, y = task.generate(4, 10, 0, "train")
    model = gradients.default_model("gru", task)
    norms = gradients.norms_by_distance(model, task, x, y)
    assert norms.shape == (10,) and np.isfinite(norms).all() and norms[0] > 0


# -- counting by rotation ------------------------------------------------------------------------


def test_both_hand_set_counters_are_exact_at_10_1000_and_10000():
    """The RNN-cell oracle and the RotScan layer (a parallel scan) with the same rotation."""
    scores = rotation.evaluate([10, 1000, 10_000], examples=32)
    assert set(scores) == {"oracle", "rotscan_counter"}
    for name, by_length in scores.items():
        for length in (10, 1000, 10_000):
            assert by_length[length] == {"accuracy": 1.0, "sequence_accuracy": 1.0}, name


def test_a_learned_rotation_is_read_off_its_rotscan_layer():
    """The hand-set counter read as a learned model: turn 1 (2 pi/8 on a 1), nothing on a 0,
    r = 1, no phase error, so the count holds for ever; a drift of 1e-4 rad per step holds
    (pi/8) / 1e-4 steps."""
    counter = rotation.build_rotscan_counter(8)
    found = rotation.rotation_of(counter)
    assert found["turn"] == pytest.approx(1.0, abs=1e-6)
    assert found["phase0"] == 0.0 and found["r0"] == found["r1"] == 1.0
    assert found["phase_error"] < 1e-6 and found["holds"] > 1e5
    theta = counter.get_layer("rotate").theta_kernel
    theta.assign(np.array([[1e-4], [3 * 2 * math.pi / 8]], "float32"))  # turn 3: also a generator
    found = rotation.rotation_of(counter)
    assert found["turn"] == pytest.approx(3.0, abs=1e-5)
    assert found["phase0"] == pytest.approx(1e-4, rel=1e-3)
    assert found["holds"] == pytest.approx((math.pi / 8) / 1e-4, rel=1e-2)


def test_rotation_oracle_counts_the_worked_example():
    model = rotation.build_oracle(8)
    x = np.array([[1, 1, 0, 1, 1, 1, 1, 1, 1, 0]], dtype="int32")
    probs = np.asarray(model.predict(x, verbose=0))
    assert probs.argmax(-1).tolist() == [[1, 2, 2, 3, 4, 5, 6, 7, 0, 0]]
    assert model.count_params() == 2 + 4 + 16 and not model.trainable_weights
    R = rotation.rotation_matrix(8)
    np.testing.assert_allclose(np.linalg.matrix_power(R, 8), np.eye(2), atol=1e-6)


# -- cost scaling ----------------------------------------------------------------------------------

LENGTHS = [64, 128, 256, 512, 1024, 2048, 4096, 8192]


@pytest.mark.parametrize("power", [1.0, 2.0, 1.5])
def test_cost_exponent_of_synthetic_timings(power):
    timings = {L: 3e-6 * L**power for L in LENGTHS}
    assert cost.exponent(timings) == pytest.approx(power, abs=1e-9)
    assert loglog_fit(LENGTHS, list(timings.values()))[0] == pytest.approx(power)


def test_cost_exponent_fits_the_longer_half():
    """A fixed overhead flattens short lengths; the fit on the longer half sees the growth."""
    timings = {L: 0.05 + 1e-6 * L**2 for L in LENGTHS}
    assert cost.exponent(timings) == pytest.approx(2.0, abs=0.1)
    assert loglog_fit(LENGTHS, list(timings.values()))[0] < 1.6
    assert math.isnan(cost.exponent({64: 1.0}))


def test_crossover_measured_predicted_and_none():
    lstm = {L: 1e-4 * L for L in LENGTHS}
    attention = {L: 1e-6 * L**2 for L in LENGTHS}  # equal at L = 100
    length, kind = cost.crossover(attention, lstm)
    assert kind == "measured" and length == pytest.approx(100.0)
    short = [16, 32, 64]
    length, kind = cost.crossover(
        {L: attention[L] if L in attention else 1e-6 * L**2 for L in short},
        {L: 1e-4 * L for L in short},
    )
    assert kind == "predicted" and length == pytest.approx(100.0)
    never = {L: 1e-6 * L for L in LENGTHS}  # the same exponent: fitted ones differ by noise
    nearly = {L: 1e-6 * L**1.02 for L in LENGTHS}  # within timing noise of the LSTM's
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow on the way to "none"
        for slow in (never, nearly):
            length, kind = cost.crossover(slow, lstm)
            assert math.isnan(length) and kind == "none"


def test_the_cost_figure_plots_its_table_and_names_the_recorded_crossover():
    """The figure's seconds and MiB per step are the table's, and its title names the families
    the probe recorded as crossing, whichever they are."""
    from harness.probes import ProbeRun
    from harness.probes.report import cost_section

    seconds = {"gru": {64: 0.01, 128: 0.025, 256: 0.07}, "lstm": {64: 0.02, 128: 0.03, 256: 0.05}}
    series = {}
    for family, by_length in seconds.items():
        series[f"step_seconds/{family}"] = sorted(by_length.items())
        series[f"step_memory_mb/{family}"] = [(L, 1.5 * L) for L in sorted(by_length)]
    params = {"task": "adding", "crossover": "gru slower than lstm: measured"}
    probe = ProbeRun("cost", "r" * 32, params, {"crossover_length": 100.0}, series, "test")
    section = cost_section(probe)
    assert "Crossover: gru slower than lstm from L≈100 (measured)." in section.paragraphs
    detail = dict(section.tables)["Per training step:"]
    ((_, _, drawing),) = section.figures
    fig = drawing.function(*drawing.args)
    assert fig.get_suptitle().endswith("dotted: gru slower than lstm from L=100 (measured)")
    families = [h.split(":")[0] for h in detail.headers[1:]]
    for panel, scale in ((0, 1000), (1, 1)):  # seconds (the table prints ms), then MiB
        lines = {line.get_label().split(" ")[0]: line for line in fig.axes[panel].get_lines()}
        for column, family in enumerate(families, start=1):
            printed = [float(r[column].split(" / ")[panel].replace(",", "")) for r in detail.rows]
            assert list(lines[family].get_xdata()) == [int(row[0]) for row in detail.rows]
            assert list(lines[family].get_ydata() * scale) == pytest.approx(printed, rel=5e-3)


@pytest.mark.slow
def test_cost_probe_runs_for_every_family():
    """One length each (the exponent over two: the recorded probe's test)."""
    for family in FAMILIES:
        found = cost.run_family("first_token", family, [8], 2, 1, 8.0, lambda f, line: None)
        assert list(found.seconds) == [8] and found.oom is None, family
        assert found.seconds[8] > 0
        assert not found.method.startswith("not measured"), found.method
        assert math.isfinite(found.memory_mb[8]) and found.memory_mb[8] >= 0, family


def test_out_of_memory_is_recorded_not_raised():
    lines = []
    found = cost.run_family(
        "adding", "lstm", [8, 16], 2, 1, 1e-4, lambda family, line: lines.append(line)
    )
    assert found.oom == 8 and found.seconds == {}
    assert {"oom": 8} in lines
    assert backend.is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating"))
    assert backend.is_out_of_memory(MemoryError())
    assert not backend.is_out_of_memory(ValueError("shapes do not match"))


def probe_run(folder: Path, experiment: str):
    """The one cost probe run of `experiment` in the store of `folder`."""
    mlflow = client(folder)
    found = mlflow.search_runs([mlflow.get_experiment_by_name(experiment).experiment_id])
    (run,) = [r for r in found if r.data.tags.get("harness.probe") == "cost"]
    return run


@pytest.mark.slow
def test_an_interrupted_cost_probe_records_the_families_it_finished(tmp_path):
    """Ctrl-C (or a time limit's SIGINT) during the second family: the first is recorded."""
    process = start_harness(
        "probe", "cost", "--families", "lstm,gru", "--lengths", "8,1024", "--batch-size", "2",
        "--steps", "1", "--experiment", "cut", cwd=tmp_path, log="cost.log",
    )  # fmt: skip
    wait_for_output(process, tmp_path / "cost.log", "gru L=8:", timeout=600)
    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=120) == 130
    assert (
        "interrupted: recorded the families finished (lstm)" in (tmp_path / "cost.log").read_text()
    )
    run = probe_run(tmp_path, "cut")
    assert run.info.status == "FINISHED" and run.data.params["families"] == "lstm"
    history = client(tmp_path).get_metric_history(run.info.run_id, "step_seconds/lstm")
    assert sorted(m.step for m in history) == [8, 1024]
    assert not [key for key in run.data.metrics if "gru" in key]


class UnreadableStep:
    """A Keras model whose training step leaves a value Keras cannot turn into a float, the
    way a device computation that failed (out of memory on a GPU) leaves its result."""

    @staticmethod
    def build():
        import keras

        class Model(keras.Model):
            def train_step(self, *args):
                found = super().train_step(*args)
                if isinstance(found, tuple):  # JAX: (logs, state)
                    return {**found[0], "loss": keras.ops.ones((2,))}, found[1]
                return {**found, "loss": keras.ops.ones((2,))}

        inputs = keras.Input((3,))
        model = Model(inputs, keras.layers.Dense(1)(inputs))
        model.compile("sgd", "mse")
        return model


def test_a_step_whose_result_cannot_be_read_is_never_timed():
    """Keras swallows the error (its logs keep the unreadable value); train_step raises."""
    model = UnreadableStep.build()
    x, y = np.ones((4, 3), "float32"), np.ones((4, 1), "float32")
    logs = model.train_on_batch(x, y, return_dict=True)
    assert not isinstance(logs["loss"], float)  # what made failed GPU steps look fast
    with pytest.raises(backend.StepFailed, match="the step's loss could not be read"):
        backend.train_step(model, x, y)


def test_a_timed_step_has_finished_its_work_when_it_returns():
    """JAX dispatches asynchronously on the CPU too: train_step returns once the update is done."""
    import jax

    model = gradients.default_model("lstm", get_task("adding"))
    x, y = get_task("adding").generate(16, 256, 0, "train")
    backend.train_step(model, x, y)
    for _ in range(3):
        logs = backend.train_step(model, x, y)
        assert isinstance(logs["loss"], float)
        values = [v.value for v in model.variables]
        assert all(isinstance(v, jax.Array) and v.is_ready() for v in values)


def test_step_memory_sees_an_allocation():
    with backend.step_memory() as memory:
        block = np.ones(40 * 2**20 // 8)
        block[::512] += 1.0
    del block
    assert memory.mb >= 35 and memory.method


def test_step_memory_of_a_training_step_holds_its_gradient():
    """A step of a known model adds at least its weights' gradient (64 MiB, which Adam reads
    twice so it is kept whole) and not several times more; measured, never clamped."""
    import keras

    inputs = keras.Input((4096,))
    model = keras.Model(inputs, keras.layers.Dense(4096)(inputs))
    model.compile("adam", "mse")
    x, y = np.ones((8, 4096), "float32"), np.zeros((8, 4096), "float32")
    backend.train_step(model, x, y)  # compiled before it is measured
    weights_mb = sum(np.asarray(v.value).nbytes for v in model.trainable_variables) / 2**20
    with backend.step_memory() as memory:
        backend.train_step(model, x, y)
    assert memory.method.startswith("CPU: peak resident set size")
    # resident pages the allocator kept from the compiled step count before it: 1% slack
    assert 0.99 * weights_mb <= memory.mb < 4 * weights_mb


# -- the commands and the report on a real store -------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Every probe command on a fresh store (every family: the slow tests above)."""
    folder = tmp_path_factory.mktemp("probes")
    api.run(
        tasks=["counting"], lengths=[10], families=["gru", "rotscan"],
        budget={**TINY_BUDGET, "max_trials": 1, "epochs": 1}, experiment=EXPERIMENT,
        store=store_uri(folder), workdir=folder / "data",
    )  # fmt: skip
    commands = [  # the probe commands, as you type them
        ("probe", "rotation", "--lengths", "10,20", "--examples", "16"),
        (
            "probe",
            "gradients",
            "--families",
            "simple_rnn,bigru",
            "--lengths",
            "8",
            "--batch-size",
            "4",
            "--train-epochs",
            "1",
        ),
        (
            "probe",
            "cost",
            "--families",
            "lstm,transformer",
            "--lengths",
            "8,16",
            "--batch-size",
            "2",
            "--precision",
            "bf16",
        ),
    ]
    for command in commands:
        # the cost probe's workers keep JAX's compilation cache where the harness puts it
        env = OWN_COMPILE_CACHE if command[:2] == ("probe", "cost") else None
        result = harness(*command, "--experiment", EXPERIMENT, cwd=folder, env=env)
        assert result.returncode == 0, result.stdout + result.stderr
    return folder


def runs_of(folder: Path, kind: str) -> list:
    mlflow = client(folder)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    return mlflow.search_runs([experiment], f"tags.`harness.kind` = '{kind}'")


def test_probes_are_recorded_in_mlflow(store):
    probes = {r.data.tags["harness.probe"]: r for r in runs_of(store, "probe")}
    assert set(probes) == {"gradients", "cost", "rotation"}
    assert {r.info.status for r in probes.values()} == {"FINISHED"}
    mlflow = client(store)
    grads = probes["gradients"]
    history = mlflow.get_metric_history(grads.info.run_id, "grad_norm/simple_rnn/L8/init")
    assert sorted(m.step for m in history) == list(range(8))
    assert "decay_per_step/bigru/L8/trained" in grads.data.metrics
    costs = probes["cost"]  # mixed bfloat16 (on this CPU Keras takes its own attention)
    assert costs.data.params["warmup_steps"] == "2" and costs.data.params["precision"] == "bf16"
    assert costs.data.params["timed_steps"] == str(cost.STEPS)  # the default
    assert any((store / "data" / "jax-cache").iterdir())  # the workers' compilation cache
    for family in ("lstm", "transformer"):
        history = mlflow.get_metric_history(costs.info.run_id, f"step_seconds/{family}")
        assert sorted(m.step for m in history) == [8, 16], family
        assert math.isfinite(costs.data.metrics[f"time_exponent/{family}"])
    rotation_run = probes["rotation"].info.run_id
    for key in (
        "test_accuracy/oracle",
        "test_accuracy/rotscan_counter",
        "test_accuracy/gru/L10",
        "test_accuracy/rotscan/L10",
    ):
        history = mlflow.get_metric_history(rotation_run, key)
        assert sorted(m.step for m in history) == [10, 20], key
    for construction in ("oracle", "rotscan_counter"):
        scores = mlflow.get_metric_history(rotation_run, f"test_accuracy/{construction}")
        assert {m.value for m in scores} == {1.0}, construction
    params = probes["rotation"].data.params
    assert params["parameters"] == "22" and params["parameters_rotscan_counter"] == "41"
    rotations = probes["rotation"].data.metrics  # the learned rotscan's search seed
    assert 0 <= rotations["rotscan_turn/L10/seed0"] < 8
    assert 0 < rotations["rotscan_r0/L10/seed0"] <= 1 and rotations["rotscan_holds/L10/seed0"] > 0


def test_suite_cost_prices_a_suite_from_the_cost_probe(store):
    """scripts/suite_cost.py: a row per cell and frontier of the quick suite, LSTM priced from
    this store's cost probe (its step seconds per sequence step), a family neither probed
    nor run here at the default."""
    import contextlib
    import importlib.util
    import io

    spec = importlib.util.spec_from_file_location("suite_cost", REPO / "scripts" / "suite_cost.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)

    def run(*args: str):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            sys.argv = ["suite_cost.py", "quick", *args]
            script.main()
        return subprocess.CompletedProcess(args, 0, out.getvalue(), "")

    argv = sys.argv
    try:
        plain = run()
        priced = run("--costs", f"sqlite:///{store / 'mlflow.db'}", "--experiment", EXPERIMENT,
                      "--workers", "2")  # fmt: skip
    finally:
        sys.argv = argv
    rows = lambda out: {tuple(line.split()[:2]): line for line in out.splitlines()[1:-1]}  # noqa: E731
    assert set(rows(plain.stdout)) == {
        ("adding", "simple_rnn"), ("adding", "lstm"), ("adding", "gru"),
        ("first_token", "gru"), ("first_token", "bigru"),
    }  # fmt: skip
    minutes = lambda out, row: float(rows(out)[row].split()[-1])  # noqa: E731
    gru, lstm = ("adding", "gru"), ("adding", "lstm")
    assert minutes(priced.stdout, gru) == minutes(plain.stdout, gru)  # not probed: the default
    assert minutes(priced.stdout, lstm) != minutes(plain.stdout, lstm)
    assert "the cost probe's step times" in priced.stdout and "with 2 workers" in priced.stdout


def test_suite_cost_levels_the_probes_shape_by_the_measured_cells():
    """A family is priced at each length by the probe's shape (interpolated, flat outside),
    times its cells' measured multiple of it; a family without cells takes every probed
    family's multiple; a bidirectional one twice its forward one; neither: the default.
    A parameter budget takes the family's cells of that budget, else scales the others
    linearly."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("suite_cost", REPO / "scripts" / "suite_cost.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    prices = script.Prices(None, None, default=1e-3)
    prices.shapes = {"gru": [(64, 1.0), (128, 3.0)], "lstm": [(64, 2.0)]}
    prices.cells = {"gru": [(64, 10_000, 0.5)]}  # measured: half the probe's price
    assert prices.price("gru", 96, 10) == 0.5 * 2.0 * 10
    assert prices.price("gru", 1000, 1) == 0.5 * 3.0
    assert prices.price("lstm", 64, 1) == 0.5 * 2.0  # gru's multiple
    assert prices.price("bigru", 64, 1) == 2 * 0.5 * 1.0
    assert prices.price("lru", 64, 4) == 1e-3  # a batch-step
    assert prices.price("gru", 64, 1, 70_000) == 7 * prices.price("gru", 64, 1, 10_000)
    prices.cells["gru"].append((64, 70_000, 2.0))  # measured at 70,000 parameters
    assert prices.price("gru", 64, 1, 70_000) == 2.0
    assert prices.price("gru", 64, 1) == 0.5  # no budget: priced as 10,000


def test_the_construction_is_never_ranked_as_a_family(store):
    """The rotation oracle (weights set) is no cell: the leaderboard holds learned models only."""
    assert {r.data.params["family"] for r in runs_of(store, "cell")} == {"gru", "rotscan"}
    result = harness("report", "--experiment", EXPERIMENT, "--out", "board", cwd=store)
    assert result.returncode == 0, result.stderr
    text = (store / "board" / "leaderboard.md").read_text()
    assert "rotation_oracle" not in text and "### counting" in text


@pytest.fixture(scope="module")
def report(store) -> Path:
    result = harness("probe", "report", "--experiment", EXPERIMENT, "--out", "probes", cwd=store)
    assert result.returncode == 0, result.stdout + result.stderr
    return store / "probes"


def history_of(folder: Path, probe: str, key: str) -> list:
    run = next(r for r in runs_of(folder, "probe") if r.data.tags["harness.probe"] == probe)
    return client(folder).get_metric_history(run.info.run_id, key)


def test_the_probes_report_has_a_section_per_probe(store, report):
    text = (report / "probes.md").read_text()
    names = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert names == [
        "probe_cost_scaling.png",
        "probe_gradient_flow.png",
        "probe_rotation_oracle.png",
    ]
    for name in names:
        assert f"](figures/{name})" in text

    probes = {r.data.tags["harness.probe"]: r for r in runs_of(store, "probe")}
    grads = probes["gradients"].data.metrics
    rows = md_rows(section_text(text, "Gradient flow"), "family")
    assert [r[:2] for r in rows[1:]] == [["bigru", "8"], ["simple_rnn", "8"]]
    for row in rows[1:]:
        name = f"{row[0]}/L{row[1]}"
        assert row[2] == f"{grads[f'decay_per_step/{name}/init']:.4g}"
        assert row[5] == f"{grads[f'first_input_ratio/{name}/trained']:.3g}"

    part = section_text(text, "Counting by rotation")
    assert "Every weight is set by hand, none learned: constructions" in part
    assert "exactly 1 at every length tested (longest: L=20)" in part
    rows = md_rows(part, "model")
    assert rows[0] == ["model", "L=10", "L=20"]
    assert rows[1] == ["oracle: gated RNN cell, weights set", "1", "1"]
    assert rows[2] == ["rotscan_counter: rotscan's layer, parallel scan, weights set", "1", "1"]
    for row, family in zip(rows[3:], ("gru", "rotscan"), strict=True):
        found = history_of(store, "rotation", f"test_accuracy/{family}/L10")
        learned = {m.step: m.value for m in found}
        assert row == [f"{family} (trained at L=10)", f"{learned[10]:.4g}", f"{learned[20]:.4g}"]
    rows = md_rows(part, "trained at")
    turn = probes["rotation"].data.metrics["rotscan_turn/L10/seed0"]
    assert rows[1][:3] == ["L=10", "0", f"{turn:.5f}"]

    costs = probes["cost"].data.metrics
    part = section_text(text, "Cost scaling")
    rows = md_rows(part, "family")
    assert [r[0] for r in rows[1:]] == ["lstm", "transformer"]
    for row in rows[1:]:
        assert row[1] == f"{costs[f'time_exponent/{row[0]}']:.3g}"
    assert re.search(r"Crossover: (transformer slower than lstm from L≈\d+|.*none)", part)
    assert "each waited for on the device" in part

    page = (report / "index.html").read_text()
    for title in ("Gradient flow", "Counting by rotation", "Cost scaling"):
        assert f"<h2>{title}</h2>" in page
    assert page.count("<img ") == len(names)


def test_the_probes_report_is_deterministic(store, report):
    result = harness("probe", "report", "--experiment", EXPERIMENT, "--out", "again", cwd=store)
    assert result.returncode == 0, result.stderr
    for path in sorted(p for p in report.rglob("*") if p.is_file()):
        assert path.read_bytes() == (store / "again" / path.relative_to(report)).read_bytes(), path


def test_the_leaderboard_has_a_hindsight_section(store, tmp_path):
    """first_token cells of a forward and a bidirectional family under one budget."""
    from harness.budget import Budget

    copy_store(store, tmp_path)
    mlflow = client(tmp_path)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    budget = {"tuner": "random", "max_trials": 1, "epochs": 1, "batch_size": 32,
              "n_train": 64, "n_val": 32, "n_test": 32, "executions_per_trial": 1}  # fmt: skip
    solved = {("gru", 50): 1, ("gru", 100): 0, ("bigru", 50): 1, ("bigru", 100): 1}
    for (family, length), ok in sorted(solved.items()):
        tags = {"harness.kind": "cell", "harness.status": "done",
                "harness.budget_key": Budget(**budget).key(0, [])}  # fmt: skip
        run_id = mlflow.create_run(experiment, tags=tags).info.run_id
        params = {"task": "first_token", "length": str(length), "family": family,
                  "metric": "accuracy", "direction": "max", "seed": "0", "extra_seeds": "[]",
                  **{f"budget.{k}": str(v) for k, v in budget.items()}}  # fmt: skip
        for key, value in params.items():
            mlflow.log_param(run_id, key, value)
        score = 0.99 if ok else 0.3
        for key, value in {"test_score": score, "baseline": 0.125, "solved_bar": 0.95}.items():
            mlflow.log_metric(run_id, key, value)
        mlflow.set_terminated(run_id, "FINISHED")
    result = harness("report", "--experiment", EXPERIMENT, "--out", "board", cwd=tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    text = (tmp_path / "board" / "leaderboard.md").read_text()
    rows = md_rows(section_text(text, "Hindsight: first_token", 3), "family")
    assert rows[1:] == [
        ["bigru", "bidirectional", "0.99 (1/1) ✓", "0.99 (1/1) ✓", "L=100", "solved through L=100"],
        ["gru", "forward", "0.99 (1/1) ✓", "0.3 (0/1)", "L=50", "L=100"],
    ]
    key = Budget(**budget).key(0, [])
    assert (tmp_path / "board" / "figures" / f"hindsight_first_token_{key}.png").is_file()


@pytest.mark.parametrize(
    "args, words",
    [
        (("gradients", "--families", "nope"), "unknown family 'nope'"),
        (("gradients", "--lengths", "1"), "length 1 is out of range"),
        (("rotation", "--lengths", "ten"), "length 'ten'"),
        (("cost", "--lengths", "64"), "at least two --lengths"),
        (("cost", "--task", "nope"), "unknown task 'nope'"),
        (("cost", "--precision", "fp8"), "unknown precision 'fp8'"),
        (("report",), "does not exist: run `harness run` first"),
    ],
)
def test_bad_probe_input_is_one_line_and_exit_2(tmp_path, args, words):
    result = harness("probe", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert not (tmp_path / "mlflow.db").exists()
