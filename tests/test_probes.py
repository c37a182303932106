"""Probes: the gradient probe on a known linear recurrence on every backend, the rotation oracle
exact at long lengths, the cost fits on synthetic timings, small real probes for every family,
and the `harness probe` commands with their report sections on a real store."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness import backend

backend.configure()

from harness.probes import cost, gradients, loglog_fit, rotation  # noqa: E402
from search_spaces import REGISTRY  # noqa: E402
from tasks import get_task  # noqa: E402
from tests.conftest import TINY_DATA  # noqa: E402
from tests.test_report import client, harness, md_rows  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
FAMILIES = list(REGISTRY)
EXPERIMENT = "probes-test"

# -- gradient flow ---------------------------------------------------------------------------

KNOWN_CASE = """
import json, sys
import numpy as np
from harness import backend
backend.configure()
from harness.probes import gradients
rho, length = float(sys.argv[1]), int(sys.argv[2])
model = gradients.linear_recurrence(rho)
x = np.random.default_rng(0).normal(size=(8, length, 1)).astype("float32")
y = np.zeros(8, "float32")
norms = backend.input_gradient_norms(model, x, y, gradients.mse_loss)
print(json.dumps({"backend": backend.name(), "norms": norms[::-1].tolist()}))
"""


@pytest.mark.parametrize("name", backend.BACKENDS)
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


def test_rotation_oracle_is_exact_at_10_1000_and_10000():
    scores = rotation.evaluate([10, 1000, 10_000], examples=32)
    for length in (10, 1000, 10_000):
        assert scores[length] == {"accuracy": 1.0, "sequence_accuracy": 1.0}, length


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
    never = {L: 1e-6 * L for L in LENGTHS}
    assert math.isnan(cost.crossover(never, lstm)[0])


@pytest.mark.slow
def test_cost_probe_runs_for_every_family():
    for family in FAMILIES:
        found = cost.run_family("first_token", family, [8, 16], 2, 1, 8.0, lambda f, line: None)
        assert sorted(found.seconds) == [8, 16] and found.oom is None, family
        assert all(s > 0 for s in found.seconds.values())
        assert all(m >= 0 for m in found.memory_mb.values())
        assert math.isfinite(found.time_exponent)


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


def test_step_memory_sees_an_allocation():
    with backend.step_memory() as memory:
        block = np.ones(40 * 2**20 // 8)
        block[::512] += 1.0
    del block
    assert memory.mb >= 35 and memory.method


# -- the commands and the report on a real store -------------------------------------------------


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """Every probe command on a fresh store (every family: the slow tests above)."""
    folder = tmp_path_factory.mktemp("probes")
    commands = [
        (
            "run",
            "--task",
            "counting",
            "--length",
            "10",
            "--family",
            "gru",
            "--max-trials",
            "1",
            "--epochs",
            "1",
            *TINY_DATA,
        ),
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
            "--steps",
            "1",
        ),
    ]
    for command in commands:
        result = harness(*command, "--experiment", EXPERIMENT, cwd=folder)
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
    costs = probes["cost"]
    for family in ("lstm", "transformer"):
        history = mlflow.get_metric_history(costs.info.run_id, f"step_seconds/{family}")
        assert sorted(m.step for m in history) == [8, 16], family
        assert math.isfinite(costs.data.metrics[f"time_exponent/{family}"])
    rotation_run = probes["rotation"].info.run_id
    for key in ("test_accuracy/oracle", "test_accuracy/gru/L10"):
        history = mlflow.get_metric_history(rotation_run, key)
        assert sorted(m.step for m in history) == [10, 20], key
    oracle_scores = mlflow.get_metric_history(rotation_run, "test_accuracy/oracle")
    assert {m.value for m in oracle_scores} == {1.0}
    oracle = [r for r in runs_of(store, "cell") if r.data.params["family"] == "rotation_oracle"]
    assert sorted(int(r.data.params["length"]) for r in oracle) == [10, 20]
    for run in oracle:
        assert run.data.params["family"] == "rotation_oracle"
        assert run.data.metrics["test_score"] == 1.0 and run.data.metrics["solved"] == 1


def test_rerunning_the_rotation_probe_replaces_its_cells(store, tmp_path):
    import shutil

    shutil.copy(store / "mlflow.db", tmp_path / "mlflow.db")
    result = harness(
        "probe", "rotation", "--lengths", "10", "--examples", "8", "--experiment", EXPERIMENT,
        cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    cells = runs_of(tmp_path, "cell")
    lengths = sorted(
        int(r.data.params["length"]) for r in cells if r.data.params["family"] != "gru"
    )
    assert lengths == [10, 20]


@pytest.fixture(scope="module")
def report(store) -> Path:
    """The report, after adding first_token cells of a forward and a bidirectional family."""
    mlflow = client(store)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    solved = {("gru", 50): 1, ("gru", 100): 0, ("bigru", 50): 1, ("bigru", 100): 1}
    for (family, length), ok in sorted(solved.items()):
        run_id = mlflow.create_run(
            experiment, tags={"harness.kind": "cell", "harness.status": "finished"}
        ).info.run_id
        params = {"task": "first_token", "length": str(length), "family": family}
        for key, value in {**params, "metric": "accuracy", "direction": "max"}.items():
            mlflow.log_param(run_id, key, value)
        score = 0.99 if ok else 0.3
        for key, value in {
            "test_score": score, "solved": ok, "baseline": 0.125, "solved_bar": 0.95,
        }.items():  # fmt: skip
            mlflow.log_metric(run_id, key, value)
        mlflow.set_terminated(run_id, "FINISHED")
    result = harness("report", "--experiment", EXPERIMENT, "--out", "reports", cwd=store)
    assert result.returncode == 0, result.stdout + result.stderr
    return store / "reports"


def history_of(folder: Path, probe: str, key: str) -> list:
    run = next(r for r in runs_of(folder, "probe") if r.data.tags["harness.probe"] == probe)
    return client(folder).get_metric_history(run.info.run_id, key)


def section_text(text: str, title: str) -> str:
    start = text.index(f"## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def test_report_has_a_section_per_probe(store, report):
    text = (report / "leaderboard.md").read_text()
    names = sorted(p.name for p in (report / "figures").glob("probe_*.png"))
    assert names == [
        "probe_cost_scaling.png",
        "probe_gradient_flow.png",
        "probe_hindsight.png",
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

    rows = md_rows(section_text(text, "Counting by rotation"), "model")
    assert rows[0] == ["model", "L=10", "L=20"]
    assert rows[1] == ["rotation_oracle (weights set)", "1", "1"]
    learned = {m.step: m.value for m in history_of(store, "rotation", "test_accuracy/gru/L10")}
    gru_cell = next(
        r
        for r in runs_of(store, "cell")
        if r.data.params["family"] == "gru" and r.data.params["task"] == "counting"
    )
    assert rows[2] == [
        "gru (trained at L=10)",
        f"{gru_cell.data.metrics['test_score']:.4g}",
        f"{learned[20]:.4g}",
    ]
    counting = md_rows(section_text(text, "counting"), "family")
    assert counting[2] == ["rotation_oracle", "1 ✓", "1 ✓", "L=20"]

    rows = md_rows(section_text(text, "Hindsight: first_token"), "family")
    assert rows[1:] == [
        ["bigru", "bidirectional", "0.99 ✓", "0.99 ✓", "L=100", "solved through L=100"],
        ["gru", "forward", "0.99 ✓", "0.3", "L=50", "L=100"],
    ]

    costs = probes["cost"].data.metrics
    part = section_text(text, "Cost scaling")
    rows = md_rows(part, "family")
    assert [r[0] for r in rows[1:]] == ["lstm", "transformer"]
    for row in rows[1:]:
        assert row[1] == f"{costs[f'time_exponent/{row[0]}']:.3g}"
    assert re.search(r"Crossover: (transformer slower than lstm from L≈\d+|.*none)", part)

    page = (report / "index.html").read_text()
    for title in (
        "Gradient flow",
        "Counting by rotation",
        "Hindsight: first_token",
        "Cost scaling",
    ):
        assert f"<h2>{title}</h2>" in page
    assert page.count("<img ") == len(list((report / "figures").glob("*.png")))


def test_report_with_probes_is_deterministic(store, report):
    result = harness("report", "--experiment", EXPERIMENT, "--out", "again", cwd=store)
    assert result.returncode == 0, result.stderr
    for path in sorted(p for p in report.rglob("*") if p.is_file()):
        assert path.read_bytes() == (store / "again" / path.relative_to(report)).read_bytes(), path


@pytest.mark.parametrize(
    "args, words",
    [
        (("gradients", "--families", "nope"), "unknown family 'nope'"),
        (("gradients", "--lengths", "1"), "length 1 is out of range"),
        (("rotation", "--lengths", "ten"), "length 'ten'"),
        (("cost", "--lengths", "64"), "at least two --lengths"),
        (("cost", "--task", "nope"), "unknown task 'nope'"),
    ],
)
def test_bad_probe_input_is_one_line_and_exit_2(tmp_path, args, words):
    result = harness("probe", *args, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and words in lines[0], lines
    assert not (tmp_path / "mlflow.db").exists()
