"""`harness verify` recomputes every stored score from the stored models, in a fresh process
with an empty working directory, and names every number that does not agree."""

from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest

from harness import api
from tests.helpers import (
    REPO,
    TINY_BUDGET,
    all_runs,
    client,
    copy_store,
    harness,
    store_uri,
    write_suite,
)

EXPERIMENT = "verify"


def make_store(folder: Path, uri: str | None = None):
    """A tiny cell (adding L=8, tested at L=16 too, seeds 0, 1 and 2; one trial of one
    epoch: verify reads the models, however many trials chose them) in the store of `folder`
    (or `uri`), through harness.api."""
    api.run(
        tasks=["adding"], lengths=[8], families=["gru"], eval_lengths=[16], extra_seeds=[1, 2],
        budget={**TINY_BUDGET, "max_trials": 1, "epochs": 1},
        experiment=EXPERIMENT, store=uri or store_uri(folder), workdir=folder / "data",
    )  # fmt: skip
    return folder


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    return make_store(tmp_path_factory.mktemp("verify"))


def verify(uri: str):
    """`harness verify` from a fresh, empty working directory (no tuner folders, no cache)."""
    with tempfile.TemporaryDirectory() as empty:
        result = harness(
            "verify", "--experiment", EXPERIMENT, "--tracking-uri", uri, cwd=Path(empty)
        )
        assert not any(Path(empty).iterdir()), "verify wrote into its working directory"
    return result


def parent(folder: Path):
    mlflow = client(folder)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    (run,) = mlflow.search_runs([experiment], "tags.`harness.kind` = 'cell'")
    return run


def test_an_archived_store_verifies_clean_where_it_is_unpacked(store, tmp_path):
    """scripts/store_archive.py: the store and its models in one file, unpacked elsewhere
    with every run's artifacts pointing there."""
    script = [sys.executable, str(REPO / "scripts" / "store_archive.py")]
    archive = tmp_path / "store.tar.gz"
    packed = subprocess.run(
        [*script, "pack", str(archive), "--store", str(store), "--experiment", EXPERIMENT],
        capture_output=True, text=True,
    )  # fmt: skip
    assert packed.returncode == 0 and archive.is_file(), packed.stderr
    into = tmp_path / "published"
    unpacked = subprocess.run(
        [*script, "unpack", str(archive), "--store", str(into)], capture_output=True, text=True
    )
    assert unpacked.returncode == 0, unpacked.stderr
    assert "4 runs' artifacts repointed" in unpacked.stdout  # the cell's, its trial's, 2 retrains'"
    runs = client(into).search_runs([client(into).get_experiment_by_name(EXPERIMENT).experiment_id])
    assert all(run.info.artifact_uri.startswith(into.resolve().as_uri()) for run in runs)
    result = verify(store_uri(into))
    assert result.returncode == 0, result.stdout + result.stderr
    again = subprocess.run(
        [*script, "unpack", str(archive), "--store", str(into)], capture_output=True, text=True
    )
    assert again.returncode == 2 and again.stderr.count("\n") == 1 and "exists" in again.stderr


@pytest.mark.slow
def test_verify_checks_one_part_of_a_suite(tmp_path):
    """`verify --suite S --part P`: the cells of P's blocks and of P's frontiers alone."""
    path = write_suite(tmp_path / "s.toml", "s", [], max_trials=1, epochs=1)
    path.write_text(
        path.read_text()
        + '[[cells]]\ntasks = ["adding"]\nlengths = [8]\nfamilies = ["gru"]\npart = "a"\n'
        + '[[frontier]]\ntasks = ["adding"]\nfamilies = ["gru"]\nmin_length = 4\n'
        + 'max_length = 6\npart = "b"\n'
    )
    api.run(suite=str(path), store=store_uri(tmp_path), workdir=tmp_path / "data")
    for part, cells in (("a", 1), ("b", 2)):  # b: the frontier's L=4 and L=6 (or its check)
        result = harness("verify", "--suite", str(path), "--part", part, cwd=tmp_path)
        assert result.returncode == 0, result.stdout + result.stderr
        checked = {
            line.split(" (run")[0] for line in result.stderr.splitlines() if "verifying" in line
        }
        assert ("verifying adding L=8 gru" in checked) == (part == "a"), checked
        assert len(checked) >= cells, checked


def test_a_real_store_verifies_clean(store):
    result = verify(store_uri(store))
    assert result.returncode == 0, result.stdout + result.stderr
    run = parent(store)
    for metric in (
        "test_score", "test_mse", "test_score_len_16", "test_score_seed_1",
        "test_score_seed_1_len_16", "seed_mean", "solved_bar", "baseline_len_16",
        "test_score_low", "test_score_seed_2_high", "test_examples", "near_bar",
    ):  # fmt: skip
        assert metric in result.stdout
    assert run.info.run_id[:8] in result.stdout
    # 3 seeds x (score and its 2 bounds, at L=8 and 16); test_mse, test_examples; the verdict's
    # mean, seeds solved, solved and near-bar mark; the bar and baseline, at L=8 and 16
    assert "verified 28 numbers of 1 cells in experiment 'verify': all agree" in result.stdout


def test_the_stored_test_score_is_the_best_models_score_on_the_test_split(store):
    """Recomputed here independently: the model artifact on freshly generated test data."""
    import keras

    import search_spaces.layers  # noqa: F401
    from tasks import get_task

    run = parent(store)
    params, metrics = run.data.params, run.data.metrics
    path = client(store).download_artifacts(run.info.run_id, "best_model.keras", str(store))
    model = keras.saving.load_model(path, compile=False)
    x, y = get_task("adding").generate(int(params["budget.n_test"]), 8, 0, "test")
    predicted = np.asarray(model.predict(x, batch_size=32, verbose=0), dtype="float64")
    assert metrics["test_score"] == pytest.approx(float(np.mean((predicted - y) ** 2)), rel=1e-5)
    cached = np.load(
        store / "data" / "cache" / f"{get_task('adding').data_name}_L8_n32_s0_test.npz"
    )
    assert np.array_equal(cached["x"], x) and np.array_equal(cached["y"], y)


def test_an_edited_metric_a_changed_or_corrupt_model_and_a_lost_artifact_fail_by_name(tmp_path):
    # a store of its own: MLflow knows a run's artifacts by its id, so a copy of the shared
    # store (the same ids) would damage the shared store's models
    folder = make_store(tmp_path)
    run = parent(folder)
    run_id, mlflow = run.info.run_id, client(folder)

    mlflow.log_metric(run_id, "test_score_len_16", run.data.metrics["test_score_len_16"] + 0.5)
    result = verify(store_uri(folder))
    assert result.returncode == 1, result.stdout + result.stderr
    assert f"mismatch: run {run_id} (adding L=8 gru) test_score_len_16" in result.stderr
    assert result.stderr.count("mismatch:") == 1
    mlflow.log_metric(run_id, "test_score_len_16", run.data.metrics["test_score_len_16"])
    assert verify(store_uri(folder)).returncode == 0

    import keras

    import search_spaces.layers  # noqa: F401

    saved = Path(mlflow.download_artifacts(run_id, "seed_1_model.keras", str(tmp_path / "a")))
    model = keras.saving.load_model(saved, compile=False)
    model.set_weights([w * 1.5 for w in model.get_weights()])
    model.save(tmp_path / "seed_1_model.keras")
    mlflow.log_artifact(run_id, str(tmp_path / "seed_1_model.keras"))
    result = verify(store_uri(folder))
    assert result.returncode == 1
    assert f"mismatch: run {run_id} (adding L=8 gru) test_score_seed_1" in result.stderr

    artifacts = Path(mlflow.get_run(run_id).info.artifact_uri.removeprefix("file://"))
    (artifacts / "seed_1_model.keras").write_bytes(b"not a keras file")
    result = verify(store_uri(folder))
    assert result.returncode == 1 and "Traceback" not in result.stdout + result.stderr
    assert (
        f"mismatch: run {run_id} (adding L=8 gru) test_score_seed_1: stored "
    ) in result.stderr and f"seed_1_model.keras of run {run_id} cannot be loaded" in result.stderr
    assert result.stderr.count("mismatch:") == 1  # the best model still verifies

    (artifacts / "best_model.keras").unlink()
    result = verify(store_uri(folder))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "test_score: stored" in result.stderr and "artifact best_model.keras is missing" in (
        result.stderr
    )


def test_a_legacy_cell_is_reported_not_verified(store, tmp_path):
    """A cell recorded before verify existed has no models to recompute from: it is named."""
    copy_store(store, tmp_path)
    mlflow = client(tmp_path)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    run_id = mlflow.create_run(experiment, tags={"harness.kind": "cell"}).info.run_id
    for key, value in {"task": "adding", "length": "12", "family": "lstm", "metric": "mse",
                       "direction": "min"}.items():  # fmt: skip
        mlflow.log_param(run_id, key, value)
    mlflow.log_metric(run_id, "test_score", 0.1)
    mlflow.set_terminated(run_id, "FINISHED")
    result = verify(store_uri(tmp_path))
    assert result.returncode == 1
    assert f"run {run_id} (adding L=12 lstm) test_score" in result.stderr
    assert "recorded before verify existed" in result.stderr


def copied(store: Path, folder: Path):
    """A copy of the store's database in `folder` (its artifacts stay where they are), the
    MLflow client on it and the cell's run id."""
    copy_store(store, folder)
    return client(folder), parent(folder).info.run_id


def mismatches(folder: Path) -> list:
    from harness.tracking import Tracker
    from harness.verify import verify as check

    return check(Tracker(store_uri(folder)), EXPERIMENT).mismatches


def test_a_tampered_bar_or_baseline_fails_by_name(store, tmp_path):
    """The verdict is judged against the task's own bar and baseline, never the stored ones:
    each tampered number is named (one verify: each number is checked on its own)."""
    mlflow, run_id = copied(store, tmp_path)
    tampered = ["baseline", "solved_bar", "solved_bar_len_16"]
    stored = mlflow.get_run(run_id).data.metrics
    for metric in tampered:
        mlflow.log_metric(run_id, metric, stored[metric] * 3 + 1)
    found = sorted(mismatches(tmp_path), key=lambda check: check.metric)
    assert [(f.run_id, f.cell, f.metric) for f in found] == [
        (run_id, "adding L=8 gru", metric) for metric in tampered
    ]


def test_a_cell_whose_code_changed_since_its_run_is_named(store, tmp_path):
    import json
    import sqlite3

    mlflow, run_id = copied(store, tmp_path)
    code = json.loads(mlflow.get_run(run_id).data.params["code"])
    with sqlite3.connect(tmp_path / "mlflow.db") as db:  # as a run of older code recorded it
        db.execute(
            "UPDATE params SET value = ? WHERE key = 'code' AND run_uuid = ?",
            (json.dumps({**code, "task": "0123456789ab"}), run_id),
        )
    (found,) = mismatches(tmp_path)
    assert found.run_id == run_id and found.note.startswith(
        "the code of its task changed since the run"
    )


def test_a_length_out_of_memory_is_recorded_verified_and_reported(tmp_path, monkeypatch):
    """A test at a longer length that does not fit the memory an evaluation may take, one
    sequence at a time, ends no cell: its scores are NaN, it is marked out of memory, verify
    (under the memory the run recorded) agrees, the report says so; a store that claims more
    or less memory than it recorded fails by name."""
    from harness import evaluation

    monkeypatch.setattr(evaluation, "EVALUATION_MEMORY_GB", 1e-6)  # one kilobyte
    make_store(tmp_path)
    run = parent(tmp_path)
    metrics = run.data.metrics
    assert run.info.status == "FINISHED" and np.isfinite(metrics["test_score"])
    assert metrics["evaluation_memory_gb"] == 1e-6 and metrics["out_of_memory_len_16"] == 1.0
    assert np.isnan(metrics["test_score_len_16"]) and np.isnan(metrics["test_score_seed_1_len_16"])
    verified = api.verify(
        store_uri(tmp_path), experiment=EXPERIMENT, compile_cache=tmp_path / "data" / "jax-cache"
    )
    assert verified.ok and "out_of_memory_len_16" in {check.metric for check in verified.checks}
    reported = api.report(store_uri(tmp_path), tmp_path / "board", experiment=EXPERIMENT)
    assert "out of memory" in reported.leaderboard.read_text()

    client(tmp_path).log_metric(run.info.run_id, "evaluation_memory_gb", 8.0)  # it would fit
    found = {m.metric for m in mismatches(tmp_path)}
    assert found == {
        "test_score_len_16", "test_score_seed_1_len_16", "test_score_seed_2_len_16",
        "out_of_memory_len_16",
    }  # fmt: skip


def test_an_evaluation_batch_shrinks_to_the_memory_it_may_take():
    """On JAX the compiler's plan for one sequence sets the batch size: up to the budget's,
    0 where one sequence does not fit; the scores do not depend on the batch size."""
    import keras

    from harness import backend
    from harness.stored import OutOfMemory, fitting_batch, test_scores
    from search_spaces import get_space
    from tasks import get_task

    task = get_task("adding")
    keras.utils.set_random_seed(0)
    model = get_space("transformer", task).default_model()
    x, y = task.generate(8, 64, 0, "test")
    one = backend.forward_bytes(model, x[:1]) / 2**30
    assert one > 0
    assert fitting_batch(model, x, 32, 3.5 * one) == 3
    assert fitting_batch(model, x, 2, 3.5 * one) == 2
    assert fitting_batch(model, x, 32, 0.5 * one) == 0
    whole = test_scores(task, model, x, y, 8)
    assert test_scores(task, model, x, y, 8, 3.5 * one) == pytest.approx(whole, rel=1e-5)
    with pytest.raises(OutOfMemory, match="one sequence of length 64 needs over"):
        test_scores(task, model, x, y, 8, 0.5 * one)
    longer, _ = task.generate(1, 256, 0, "test")
    assert backend.forward_bytes(model, longer) > 4 * one  # attention's scores: quadratic


def test_verify_and_the_probes_read_models_without_the_runner_or_keras_tuner():
    loaded = subprocess.run(
        [sys.executable, "-c", "import sys, harness.verify, harness.probes, harness.stored; "
         "print(sorted(m for m in sys.modules if m.startswith(('keras_tuner', 'harness.'))))"],
        capture_output=True, text=True, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    assert "keras_tuner" not in loaded and "harness.evaluation" not in loaded
    assert "harness.tuning" not in loaded and "harness.stored" in loaded


@pytest.mark.slow
def test_verify_against_a_tracking_server(tmp_path, mlflow_server):
    """A cell run against a real `mlflow server` (nothing stored locally), verified from the
    artifacts downloaded from it."""
    from mlflow.tracking import MlflowClient

    make_store(tmp_path, mlflow_server)
    runs = all_runs(mlflow_server, EXPERIMENT)
    cells, trials = (runs[runs["tags.harness.kind"] == kind] for kind in ("cell", "trial"))
    assert len(cells) == 1 and len(trials) == 1 and set(runs["status"]) == {"FINISHED"}
    assert not (tmp_path / "mlflow.db").exists()
    artifacts = MlflowClient(mlflow_server).list_artifacts(cells.iloc[0]["run_id"])
    assert "best_model.keras" in {a.path for a in artifacts}
    result = verify(mlflow_server)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "all agree" in result.stdout


def test_a_class_score_agrees_anywhere_its_near_ties_reach_and_nowhere_else():
    """Another machine rounds differently: a prediction whose top two probabilities are within
    verify's relative tolerance may fall either way there, and nothing else may."""
    from harness.verify import RELATIVE, Check, score_ranges
    from tasks import get_task

    near = 1 - RELATIVE / 2
    probs = np.array(
        [
            [[0.5, 0.5 * near, 0.0], [0.4, 0.6, 0.0]],  # a near-tie hit, a clear miss
            [[0.4 * near, 0.2, 0.4], [0.2, 0.2, 0.6]],  # a near-tie miss, a step not scored
            [[0.9, 0.1, 0.0], [0.1, 0.3, 0.6]],  # a clear hit, a clear miss
        ]
    )
    y = np.array([[0, 0], [0, -1], [0, 0]])  # -1: IGNORE
    counting = get_task("counting")
    ranges = score_ranges(counting, y, probs)
    assert ranges["accuracy"] == (2 / 5, 1 / 5, 3 / 5)
    assert ranges["sequence_accuracy"] == (0.0, 0.0, 1 / 3)  # row 1 is right if its tie is

    run = ("r", "cell", "accuracy")
    value, low, high = ranges["accuracy"]
    for stored in (low, high, 0.4):
        assert Check(*run, stored, value, low=low, high=high).ok
    assert not Check(*run, high + 0.01, value, low=low, high=high).ok
    assert not Check(*run, 0.6, 0.4).ok  # no near-ties: the tolerance alone
    assert Check(*run, 0.6, 0.4, low=low, high=high).by_near_ties

    far = probs.copy()
    far[0, 0, 1] = far[1, 0, 0] = 0.3  # neither near any more
    assert score_ranges(counting, y, far)["accuracy"] == (2 / 5, 2 / 5, 2 / 5)
    adding = get_task("adding")
    _, y_values = adding.generate(4, 8, 0, "test")
    values = np.asarray(y_values, dtype=float).reshape(-1, 1) + 0.1
    (low_high,) = {v[1:] for v in score_ranges(adding, y_values, values).values()}
    assert low_high == (adding.scores(y_values, values)["mse"],) * 2  # values: no ties
