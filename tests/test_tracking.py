"""The MLflow run tree of a real tiny run, resume by rerun, status, and a real `mlflow server`."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from harness.errors import UserError
from harness.results import StoredRun
from harness.tracking import SCHEMES, SqliteSnapshot, Tracker
from tests.helpers import (
    all_runs,
    copy_store,
    free_port,
    harness,
    harness_loading,
    store_uri,
    tiny_cell,
)

CELL = tiny_cell(max_trials=2)
# One tiny cell under a parameter budget, tested at L=16 too and retrained with seeds 1 and 2.
TREE = ["run", *CELL, "--params", "2000", "--eval-length", "16", "--extra-seed", "1", "--extra-seed", "2",
        "--experiment", "tree"]  # fmt: skip


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """The folder of a store holding TREE's run (read only: a test that writes copies it)."""
    folder = tmp_path_factory.mktemp("tree")
    harness(*TREE, cwd=folder, check=True)
    return folder


def test_run_tree_and_resume(tree):
    workdir = tree
    runs = all_runs(store_uri(workdir), "tree")
    parents = runs[runs["tags.harness.kind"] == "cell"]
    children = runs[runs["tags.harness.kind"] == "trial"]
    assert len(parents) == 1 and len(children) == 2
    parent = parents.iloc[0]
    assert parent["status"] == "FINISHED"
    assert set(children["tags.mlflow.parentRunId"]) == {parent["run_id"]}
    assert set(children["status"]) == {"FINISHED"}
    assert sorted(children["tags.harness.trial_id"]) == ["0", "1"]
    # params: the cell and budget on the parent, the hyperparameters on each child
    assert parent["params.task"] == "adding" and parent["params.budget.max_trials"] == "2"
    for name in ("units", "depth", "learning_rate", "clip_gradients", "dropout"):
        assert children[f"params.{name}"].notna().all()
    # tags: key, backend, versions, device, fused kernel
    assert parent["tags.harness.cell_key"].startswith("adding-L8-gru-")
    assert parent["tags.harness.backend"] == "jax"
    for tag in (
        "keras", "keras_tuner", "framework", "device", "fused_rnn_kernel_observed", "version",
        "budget_key", "status",
    ):  # fmt: skip
        assert parent[f"tags.harness.{tag}"]
    assert parent["tags.harness.fused_rnn_kernel_observed"] == "no"  # GPU too: JAX GRU, no cuDNN
    # metrics: scores, generalisation, seeds, costs
    for metric in (
        "test_score",
        "test_mse",
        "best_val_score",
        "baseline",
        "solved",
        "parameters",
        "test_score_len_16",
        "test_score_seed_1",
        "test_score_seed_1_len_16",
        "baseline_len_16",
        "solved_bar_len_16",
        "seed_mean",
        "seed_std",
        "seconds_per_epoch",
        "compile_seconds",
        "seeds_solved",
        "search_seconds",
        "trials_completed",
        "trials_diverged",
    ):
        assert (
            f"metrics.{metric}" in parent
            and parent[f"metrics.{metric}"] == parent[f"metrics.{metric}"]
        )
    assert parent["metrics.seed_count"] == 3 and parent["metrics.trials_completed"] == 2
    client = MlflowClient(store_uri(workdir))
    for child_id in children["run_id"]:
        history = client.get_metric_history(child_id, "val_loss")
        assert sorted(m.step for m in history) == [0, 1]
    # the retrains of seeds 1 and 2: child runs of their own, their epochs logged as a trial's
    retrains = runs[runs["tags.harness.kind"] == "retrain"]
    assert len(retrains) == 2 and set(retrains["status"]) == {"FINISHED"}
    retrain = retrains[retrains["tags.harness.retrain_seed"] == "1"].iloc[0]
    assert retrain["tags.mlflow.parentRunId"] == parent["run_id"]
    assert (
        retrain["tags.harness.retrain_seed"] == "1" and retrain["tags.harness.status"] == "finished"
    )
    epochs = client.get_metric_history(retrain["run_id"], "epoch")
    assert [(m.step, m.value) for m in sorted(epochs, key=lambda m: m.step)] == [(0, 1), (1, 2)]
    artifacts = {a.path for a in client.list_artifacts(parent["run_id"])}
    assert {
        "best_hyperparameters.json", "best_model.keras", "seed_1_model.keras", "trials.json"
    } <= artifacts  # fmt: skip
    best = json.loads(
        open(
            client.download_artifacts(parent["run_id"], "best_hyperparameters.json", str(workdir))
        ).read()
    )
    assert "learning_rate" in best

    # A rerun skips the finished cell: still one parent and two children.
    rerun = harness(*TREE, cwd=workdir, check=True)
    assert "skipped" in rerun.stdout
    runs = all_runs(store_uri(workdir), "tree")
    assert len(runs) == 5  # the cell, its two trials and its two retrains


def test_under_a_parameter_budget_each_trial_records_its_count_and_derived_width(tree):
    """Width is not searched: each trial run logs the width the budget sets (tagged derived)
    and the parameter count of the model it trained, within 10% of the budget."""
    from search_spaces import get_space
    from tasks import get_task

    runs = all_runs(store_uri(tree), "tree")
    parent = runs[runs["tags.harness.kind"] == "cell"].iloc[0]
    assert parent["params.budget.params"] == "2000"
    trials = runs[runs["tags.harness.kind"] == "trial"]
    assert len(trials) == 2 and set(trials["tags.harness.derived"]) == {"units"}
    space = get_space("gru", get_task("adding"), 2000)
    for _, trial in trials.iterrows():
        texts = {h: trial[f"params.{h.name}"] for h in space.hyperparameters()}
        values = {
            h.name: text == "True" if h.kind == "boolean" else type(h.default)(text)
            for h, text in texts.items()
        }
        width = space.complete(values)["units"]
        assert int(trial["params.units"]) == width
        assert trial["metrics.parameters"] == space.parameters({**values, "units": width})
        assert abs(trial["metrics.parameters"] - 2000) <= 200


def test_status_lists_done_partial_and_not_started(workdir):
    suite = workdir / "s.toml"
    suite.write_text(
        'name = "s"\n[budget]\nmax_trials = 1\nepochs = 1\nn_train = 64\nn_val = 32\n'
        'n_test = 32\n[[cells]]\ntasks = ["adding"]\nlengths = [8]\n'
        'families = ["gru", "lstm"]\n'
    )
    harness("run", "--suite", str(suite), "--family", "gru", cwd=workdir, check=True)
    out = harness("status", "--suite", str(suite), cwd=workdir, check=True).stdout
    assert "adding L=8 gru" in out and "done" in out and "not started" in out
    assert "1 done, 1 not started" in out


def test_status_reads_a_local_store_as_mlflow_does_without_importing_it(tree, workdir):
    """`harness status` reads a SQLite store with sqlite3 (SqliteSnapshot): the same
    experiments, and the same runs (each a StoredRun: ids, status, times, name, tags, params
    and metrics, NaN included) as a Tracker reads through MlflowClient, and no MLflow import."""
    copy_store(tree, workdir)
    uri = store_uri(workdir)
    tracker, snapshot = Tracker(uri), SqliteSnapshot(uri)
    experiment = tracker.experiment_id("tree", create=False)
    (cell,) = tracker.runs(experiment, "tags.`harness.kind` = 'cell'")
    tracker.log(cell.run_id, metrics={"a_nan": float("nan")})
    assert snapshot.experiment_id("tree") == experiment
    assert snapshot.latest_experiment() == tracker.latest_experiment() == "tree"
    assert snapshot.active_experiments() == tracker.active_experiments()

    def view(runs: list) -> dict[str, StoredRun]:
        """Each run by id, whole (NaN, which equals nothing, as the text "nan")."""
        assert all(type(r) is StoredRun for r in runs)
        return {
            r.run_id: replace(r, metrics={k: "nan" if v != v else v for k, v in r.metrics.items()})
            for r in runs
        }

    assert view(snapshot.runs(experiment)) == view(tracker.runs(experiment))
    assert len(view(tracker.runs(experiment))) == 5  # a cell, 2 trials, 2 retrains
    trials = "tags.`harness.kind` = 'trial'"
    assert view(snapshot.runs(experiment, trials)) == view(tracker.runs(experiment, trials))
    result, loaded = harness_loading("status", cwd=workdir, modules=("mlflow",))
    assert result.returncode == 0 and "1 done" in result.stdout, result.stderr
    assert not loaded


@pytest.mark.slow  # test_verify.py's test_verify_against_a_tracking_server: the same and more
def test_run_against_a_real_tracking_server(workdir, mlflow_server):
    harness("run", *CELL, "--tracking-uri", mlflow_server, cwd=workdir, check=True)
    runs = all_runs(mlflow_server, "adhoc")
    assert len(runs[runs["tags.harness.kind"] == "cell"]) == 1
    assert len(runs[runs["tags.harness.kind"] == "trial"]) == 2
    assert set(runs["status"]) == {"FINISHED"}
    assert not (workdir / "mlflow.db").exists()
    artifacts = MlflowClient(mlflow_server).list_artifacts(
        runs[runs["tags.harness.kind"] == "cell"].iloc[0]["run_id"]
    )
    assert "best_model.keras" in {a.path for a in artifacts}


@pytest.mark.slow  # an `mlflow ui` server's start: about 15 s
def test_ui_serves_the_store_on_loopback(workdir):
    port = free_port()
    ui = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "harness",
            "ui",
            "--port",
            str(port),
            "--tracking-uri",
            store_uri(workdir),
        ],
        cwd=workdir,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline, status = time.time() + 180, None  # slow to start on a loaded 2-core machine
        while time.time() < deadline and status is None:
            try:
                status = urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).status
            except OSError:
                time.sleep(0.5)
        assert status == 200
    finally:
        os.killpg(ui.pid, signal.SIGTERM)
        ui.wait(timeout=30)


def test_an_unsupported_uri_is_refused_naming_every_scheme_accepted():
    with pytest.raises(UserError) as refused:
        Tracker("ftp://example.org/store")
    message = str(refused.value)
    assert message.startswith("tracking URI 'ftp://example.org/store' is not supported: accepted ")
    assert len(SCHEMES) == 7 and all(shown in message for shown in SCHEMES.values())
    assert all(shown.startswith(prefix) for prefix, shown in SCHEMES.items())


def test_the_tracker_reads_and_writes_runs_histories_and_artifacts(tmp_path):
    tracker = Tracker(store_uri(tmp_path))
    run_id = tracker.start_run(tracker.experiment_id("doors"), "a run", {"harness.kind": "probe"})
    series = {f"curve/{i}": {step: step * i for step in range(3)} for i in range(400)}
    series["curve/0"][3] = float("nan")  # not finite: left out
    tracker.log_series(run_id, series)  # 1,200 points: more than one batch
    assert tracker.metric_history(run_id, "curve/2") == [(0, 0.0), (1, 2.0), (2, 4.0)]
    assert tracker.metric_history(run_id, "curve/0") == [(0, 0.0), (1, 0.0), (2, 0.0)]
    (tmp_path / "note.txt").write_text("kept")
    tracker.log_artifact(run_id, tmp_path / "note.txt")
    assert tracker.artifacts(run_id) == {"note.txt"}
    got = tracker.download_artifact(run_id, "note.txt", tmp_path / "back")
    assert got.read_text() == "kept"
    assert tracker.get_run(run_id).tags["harness.kind"] == "probe"
