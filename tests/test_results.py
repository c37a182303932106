"""The rules the numbers obey, each defined once (harness/results.py): one accuracy for
training and scoring, a trial's outcome, a cell's state, the trials a search plans, the
verdict over seeds, the budget and the cell key."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import backend

backend.configure()

from harness.results import (  # noqa: E402
    CellState,
    Outcome,
    budget_key,
    judge,
    planned_trials,
    trial_counts,
)
from harness.suites import Budget, Cell  # noqa: E402
from tasks.base import IGNORE, masked_accuracy  # noqa: E402
from tests.conftest import all_runs, harness, store_uri, tiny_cell  # noqa: E402

# -- one accuracy ------------------------------------------------------------------------------


def ragged_targets():
    """Rows that score different numbers of steps: 1 of 1 right, then 1 of 3 right."""
    y = np.array([[2, IGNORE, IGNORE], [0, 1, 2]], dtype="int32")
    guess = np.array([[2, 0, 0], [0, 2, 0]])
    probs = np.eye(3, dtype="float32")[guess]
    return y, probs


def test_training_and_scoring_share_one_accuracy():
    """Pooled over scored steps: 2 hits of 4 steps is 0.5 (a mean per row would say 0.667)."""
    import keras

    from search_spaces.io import loss_and_metrics
    from tasks import get_task

    y, probs = ragged_targets()
    assert masked_accuracy(y, probs) == 0.5
    _, (metric,) = loss_and_metrics(get_task("assoc_recall"))
    metric.update_state(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(probs))
    assert float(metric.result()) == pytest.approx(0.5)
    half = keras.ops.convert_to_tensor(y[:1]), keras.ops.convert_to_tensor(probs[:1])
    metric.reset_state()
    metric.update_state(*half)
    metric.update_state(keras.ops.convert_to_tensor(y[1:]), keras.ops.convert_to_tensor(probs[1:]))
    assert float(metric.result()) == pytest.approx(0.5)  # the same over batches


def test_the_cross_entropy_metric_skips_unscored_steps_like_the_score():
    import keras

    from search_spaces.layers import PooledMetric
    from tasks.base import cross_entropy

    y, probs = ragged_targets()
    probs = 0.8 * probs + 0.2 / 3
    metric = PooledMetric("cross_entropy", IGNORE)
    metric.update_state(keras.ops.convert_to_tensor(y), keras.ops.convert_to_tensor(probs))
    assert float(metric.result()) == pytest.approx(cross_entropy(y, probs), rel=1e-6)


# -- trials and cells ----------------------------------------------------------------------------


def test_a_trial_outcome_and_what_counts_as_done():
    assert [o.run_status for o in Outcome] == ["FINISHED", "FAILED", "FAILED", "KILLED"]
    assert [o.done for o in Outcome] == [True, True, True, False]
    assert Outcome.of({"harness.status": "error"}, "FAILED") is Outcome.FAILED  # older stores
    assert Outcome.of({"harness.status": "lost"}, "KILLED") is Outcome.KILLED
    assert Outcome.of({}, "RUNNING") is None
    counts = trial_counts(
        [Outcome.FINISHED, Outcome.DIVERGED, Outcome.FAILED, Outcome.KILLED, None]
    )
    assert counts == {
        "trials_completed": 3,
        "trials_finished": 1,
        "trials_diverged": 1,
        "trials_failed": 1,
    }


def test_a_cells_state():
    assert CellState.of(None, []) is CellState.NOT_STARTED
    assert CellState.of("RUNNING", [Outcome.FINISHED]) is CellState.PARTIAL
    assert CellState.of("FINISHED", [Outcome.FAILED, Outcome.FINISHED]) is CellState.DONE
    assert CellState.of("FINISHED", [Outcome.FAILED, Outcome.DIVERGED]) is CellState.DIVERGED
    assert CellState.of("FINISHED", [Outcome.FAILED, Outcome.FAILED]) is CellState.FAILED


def test_a_cell_whose_every_trial_raised_is_failed_everywhere(workdir):
    cell = ["run", *tiny_cell(max_trials=2, epochs=1), "--experiment", "raise"]
    result = harness(*cell, cwd=workdir, env={"HARNESS_FAULT": "trial_start:*:raise"})
    assert result.returncode == 0, result.stdout + result.stderr
    assert "failed" in result.stdout and "diverged" not in result.stdout
    runs = all_runs(store_uri(workdir), "raise")
    parent = runs[runs["tags.harness.kind"] == "cell"].iloc[0]
    assert parent["status"] == "FINISHED" and parent["tags.harness.status"] == "failed"
    assert parent["metrics.trials_completed"] == 2 and parent["metrics.trials_failed"] == 2
    status = harness("status", "--experiment", "raise", cwd=workdir, check=True).stdout
    assert "failed" in status and "2 of 2" in status


@pytest.mark.parametrize("epochs", [1, 2, 3, 9, 10])
def test_hyperband_plans_what_keras_tuner_runs(epochs, tmp_path):
    """The planned count equals the trials a real Keras Tuner Hyperband search runs."""
    import keras_tuner as kt

    class Scored(kt.Hyperband):
        def run_trial(self, trial, *args, **kwargs):
            return {"score": float(trial.hyperparameters.get("a"))}

    def space(hp):
        hp.Float("a", 0.0, 1.0)

    tuner = Scored(
        hypermodel=space, objective=kt.Objective("score", "max"), max_epochs=epochs, factor=3,
        hyperband_iterations=1, seed=0, directory=str(tmp_path), project_name="plan",
    )  # fmt: skip
    tuner.search(verbose=0)
    assert planned_trials("hyperband", 99, epochs) == len(tuner.oracle.trials)
    assert planned_trials("random", 7, epochs) == 7


# -- the verdict ----------------------------------------------------------------------------------


def test_the_verdict_is_the_mean_over_every_seed():
    solved = judge([0.001, 0.002, 0.003], bar=0.01, baseline=1 / 6, direction="min")
    assert solved.solved and solved.seeds_solved == 3 and solved.mean == pytest.approx(0.002)
    lucky = judge([0.001, 0.3], bar=0.01, baseline=1 / 6, direction="min")
    assert not lucky.solved and lucky.seeds_solved == 1 and lucky.text().endswith("0.21")
    diverged = judge([0.001, math.nan], bar=0.01, baseline=1 / 6, direction="min")
    assert diverged.seeds == 2 and diverged.seeds_diverged == 1 and not diverged.solved
    assert diverged.mean == pytest.approx((0.001 + 1 / 6) / 2)
    accuracy = judge([0.96, 0.97], bar=0.95, baseline=0.125, direction="max")
    assert accuracy.solved and accuracy.text() == "0.965 ± 0.0071 ✓"


# -- budgets and keys ------------------------------------------------------------------------------


def test_a_budget_left_unset_keeps_the_cell_keys_of_older_stores():
    """Keys written by the harness before parameter budgets existed (git 7c5259e)."""
    assert Cell("adding", 100, "lstm", Budget()).key == "adding-L100-lstm-f17db60453"
    assert (
        Cell("adding", 100, "lstm", Budget(params=20_000)).key
        != Cell("adding", 100, "lstm", Budget()).key
    )


def test_the_budget_is_what_changes_results_never_how_work_is_spread():
    one = Cell("adding", 100, "lstm", Budget(), extra_seeds=(1,))
    assert one.budget_key == Cell("adding", 200, "gru", Budget(), extra_seeds=(1,)).budget_key
    assert one.budget_key != Cell("adding", 100, "lstm", Budget(), extra_seeds=(2,)).budget_key
    assert (
        one.budget_key != Cell("adding", 100, "lstm", Budget(epochs=9), extra_seeds=(1,)).budget_key
    )
    assert one.budget_key == budget_key(Budget().__dict__ | {"params": None}, 0, [1])
