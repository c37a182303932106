"""Every family and output kind searched for real through `harness run`, on each backend:
tiny Keras Tuner searches, each cell checked in the MLflow store."""

from __future__ import annotations

import math

import pytest

from search_spaces import REGISTRY
from tests.helpers import all_runs, harness, store_uri, write_suite

FAMILIES = list(REGISTRY)
# One task per output kind: regression, sequence classification, per-step with ignored targets.
KIND_TASKS = ["adding", "first_token", "assoc_recall"]


def check_searched(folder, experiment, cells: set[tuple[str, str]], trials: int) -> None:
    """Every cell has one FINISHED parent with finite scores and `trials` finished children."""
    runs = all_runs(store_uri(folder), experiment)
    parents = runs[runs["tags.harness.kind"] == "cell"]
    assert {(p["params.task"], p["params.family"]) for _, p in parents.iterrows()} == cells
    assert len(parents) == len(cells) and set(parents["status"]) == {"FINISHED"}
    for _, parent in parents.iterrows():
        assert math.isfinite(parent["metrics.test_score"])
        assert parent["metrics.trials_completed"] == trials
        children = runs[runs["tags.mlflow.parentRunId"] == parent["run_id"]]
        assert len(children) == trials and set(children["status"]) == {"FINISHED"}


def run_matrix(folder, backend: str, blocks: list[dict], trials: int) -> None:
    suite = write_suite(folder / "matrix.toml", "matrix", blocks, max_trials=trials)
    result = harness("run", "--suite", str(suite), cwd=folder, backend=backend)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.slow
def test_every_family_on_every_output_kind_on_jax(workdir):
    """Every pair of family and output kind searched for real on the default backend."""
    block = {"tasks": KIND_TASKS, "lengths": [8], "families": FAMILIES, "eval_lengths": [16]}
    run_matrix(workdir, "jax", [block], trials=1)
    cells = {(t, f) for t in KIND_TASKS for f in FAMILIES}
    check_searched(workdir, "matrix", cells, trials=1)


@pytest.mark.slow
def test_every_family_and_every_output_kind_on_tensorflow(workdir):
    """On TensorFlow, the slower backend, each family on one output kind (the kinds in turn),
    one trial: every family and every kind searched for real, not every pair."""
    kinds = len(KIND_TASKS)
    blocks = [
        {"tasks": [task], "lengths": [8], "families": FAMILIES[i::kinds], "eval_lengths": [16]}
        for i, task in enumerate(KIND_TASKS)
    ]
    cells = {(block["tasks"][0], family) for block in blocks for family in block["families"]}
    run_matrix(workdir, "tensorflow", blocks, trials=1)
    check_searched(workdir, "matrix", cells, trials=1)
