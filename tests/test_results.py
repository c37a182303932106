"""The rules the numbers obey, each defined once (harness/results.py): one accuracy for
training and scoring, a trial's outcome, a cell's state, the trials a search plans, the
verdict over seeds, the budget and the cell key."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness import backend

backend.configure()

from harness.budget import Budget  # noqa: E402
from harness.results import (  # noqa: E402
    CellState,
    Outcome,
    judge,
    normalise,
    score_name,
    score_of,
    trial_counts,
)
from harness.suites import Cell, FrontierSpec  # noqa: E402
from tasks.base import IGNORE, masked_accuracy  # noqa: E402
from tests.helpers import (  # noqa: E402
    add_run,
    all_runs,
    client,
    harness,
    store_uri,
    tiny_cell,
)

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


def test_what_older_versions_wrote_is_read_in_todays_words_without_rewriting_it():
    tags = {"harness.status": "finished"}
    read, params = normalise("cell", "FINISHED", tags, {"task": "adding"})
    assert read["harness.status"] == "done" and read["harness.schema"] == "0"
    assert params == {"task": "adding", "seed": "0", "extra_seeds": "[]"}
    assert tags == {"harness.status": "finished"}  # what was read is left as it was
    read, _ = normalise("cell", "FINISHED", {"harness.fused_rnn_kernel_observed": "no"})
    assert read["harness.status"] == "done" and read["harness.schema"] == "1"
    assert normalise("cell", "RUNNING", {"harness.status": "partial"})[0]["harness.status"] == (
        "partial"
    )
    assert normalise("cell", "FINISHED", {"harness.schema": "2"})[0]["harness.schema"] == "2"
    assert normalise("frontier", "FINISHED", {})[1] == {"seed": "0", "seeds": "1"}
    for old, today in (("error", "failed"), ("lost", "killed"), ("interrupted", "killed")):
        assert normalise("trial", "FAILED", {"harness.status": old})[0]["harness.status"] == today
    assert normalise("trial", "FINISHED", {"harness.status": "finished"})[0] == {
        "harness.status": "finished"  # a trial's "finished" is today's word
    }


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
    assert parent["tags.harness.schema"] == "2"  # what every cell run written today carries

    def verify_and_report():
        """verify has nothing to check and says so (exit 0); the report calls nothing legacy."""
        verify = harness("verify", "--experiment", "raise", cwd=workdir)
        assert verify.returncode == 0, verify.stdout + verify.stderr
        assert "nothing was checked" in verify.stdout and "all agree" not in verify.stdout
        assert f"not checked: run {parent['run_id'][:8]} (adding L=8 gru), failed" in (
            verify.stdout
        )
        harness("report", "--experiment", "raise", "--out", "board", cwd=workdir, check=True)
        assert "recorded before" not in (workdir / "board" / "leaderboard.md").read_text()

    verify_and_report()
    client(workdir).delete_tag(parent["run_id"], "harness.schema")  # as a store of last week
    verify_and_report()  # a failed cell is never legacy: it has nothing to recompute


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
    assert Budget("hyperband", epochs=epochs).trials == len(tuner.oracle.trials)
    assert Budget("hyperband", max_trials=99, epochs=epochs).trials == len(tuner.oracle.trials)
    assert Budget("random", max_trials=7, epochs=epochs).trials == 7


# -- the verdict ----------------------------------------------------------------------------------


def test_a_cell_is_solved_when_a_majority_of_its_seeds_solve():
    solved = judge([0.001, 0.002, 0.003], bar=0.01, baseline=1 / 6, direction="min")
    assert solved.solved and solved.seeds_solved == 3 and solved.mean == pytest.approx(0.002)
    assert solved.text() == "0.002 ± 0.001 (3/3) ✓"
    # one catastrophic seed no longer fails a cell two seeds solve (the mean 0.1 would)
    majority = judge([0.001, 0.3, 0.002], bar=0.01, baseline=1 / 6, direction="min")
    assert majority.solved and majority.seeds_solved == 2 and majority.split
    assert majority.text().endswith("(2/3) ✓")
    # nor does one lucky seed carry a cell two fail
    lucky = judge([0.001, 0.3, 0.2], bar=0.01, baseline=1 / 6, direction="min")
    assert not lucky.solved and lucky.text().endswith("(1/3)")
    diverged = judge([0.001, math.nan, 0.002], bar=0.01, baseline=1 / 6, direction="min")
    assert diverged.seeds == 3 and diverged.seeds_diverged == 1 and diverged.seeds_solved == 2
    assert diverged.mean == pytest.approx((0.003 + 1 / 6) / 3)
    unanimous = judge([0.2, 0.3, 0.25], bar=0.01, baseline=1 / 6, direction="min")
    assert not unanimous.split and not majority.near_bar


def test_a_verdict_that_one_seed_near_the_bar_can_flip_is_marked():
    bar = 0.9
    # 2 of 3 solve; one of the solving seeds' intervals holds the bar: flipping it flips 2/3
    near = judge([0.91, 0.95, 0.5], bar, 0.1, "max", [(0.88, 0.94), (0.93, 0.97), (0.4, 0.6)])
    assert near.solved and near.near_bar and near.text().endswith("(2/3) ✓ ≈")
    assert "near the bar" in near.seeds_text()
    # 3 of 3 solve: flipping one near-bar seed leaves 2/3, the verdict stands
    firm = judge([0.91, 0.95, 0.96], bar, 0.1, "max", [(0.88, 0.94), (0.93, 0.97), (0.95, 0.97)])
    assert firm.solved and not firm.near_bar
    # 1 of 3: a failing seed whose interval holds the bar could make it 2/3
    failing = judge([0.89, 0.95, 0.5], bar, 0.1, "max", [(0.86, 0.92), None, (0.4, 0.6)])
    assert not failing.solved and failing.near_bar
    # the rule of a cell stored before majority verdicts: the mean over its seeds
    old = judge([0.001, 0.3], bar=0.01, baseline=1 / 6, direction="min", rule="mean")
    assert not old.solved and old.seeds_solved == 1 and "judged by the mean" in old.seeds_text()


# -- which run stands for a cell --------------------------------------------------------------

BUDGET = {"tuner": "random", "max_trials": 1, "epochs": 1, "batch_size": 32, "n_train": 64,
          "n_val": 32, "n_test": 32, "executions_per_trial": 1}  # fmt: skip


def cell_run(folder, budget: dict, start: int, finished: bool = True, key: str = "") -> str:
    """A done cell run of adding L=8 gru under `budget`, started at `start` (ms)."""
    tags = {"harness.kind": "cell", "harness.status": "done", "harness.schema": "2",
            "harness.cell_key": key, "harness.budget_key": Budget(**budget).key(0, [])}  # fmt: skip
    params = {"task": "adding", "length": 8, "family": "gru", "metric": "mse",
              "direction": "min", "seed": 0, "extra_seeds": "[]",
              **{f"budget.{k}": v for k, v in budget.items()}}  # fmt: skip
    metrics = {"test_score": 0.5, "baseline": 0.17, "solved_bar": 0.01}
    return add_run(folder, "stand", tags, params, metrics, start, finished)


def test_the_probes_and_the_report_pick_the_same_run_of_each_budget(workdir):
    """Two budgets of one (task, length, family): each reader takes, within a budget, the
    latest finished run; a probe reads the cell of its suite's budget, never another's."""
    from harness.probes import finished_cells
    from harness.report.read import read_store
    from harness.tracking import Tracker

    small, big = BUDGET, {**BUDGET, "epochs": 2}
    cell_run(workdir, small, 1000)
    big_run = cell_run(workdir, big, 2000)
    newer_small = cell_run(workdir, small, 3000)
    cell_run(workdir, big, 4000, finished=False)  # running: it stands for nothing yet
    tracker = Tracker(store_uri(workdir))
    report = {c.budget_key: c.run_id for c in read_store(tracker, "stand").cells}
    assert report == {Budget(**small).key(0, []): newer_small, Budget(**big).key(0, []): big_run}
    for key, run_id in report.items():
        assert [c.run_id for c in finished_cells(tracker, "stand", "adding", {key})] == [run_id]
    latest = finished_cells(tracker, "stand", "adding", None)  # no suite: the latest budget's
    assert [c.run_id for c in latest] == [newer_small]


def test_running_a_cell_keeps_its_finished_run_over_a_later_unfinished_one(workdir):
    """`harness run` (resume), `status` and a distributed worker know a cell by its key; the
    rule is the readers': the latest finished run, else the latest."""
    from harness.cells import cell_states
    from harness.tracking import Tracker

    cell = Cell("adding", 8, "gru", Budget(**BUDGET))
    finished = cell_run(workdir, BUDGET, 1000, key=cell.key)
    trial = {"harness.kind": "trial", "mlflow.parentRunId": finished, "harness.status": "finished"}
    add_run(workdir, "stand", trial, start_time=1100)
    later = cell_run(workdir, BUDGET, 2000, finished=False, key=cell.key)
    tracker = Tracker(store_uri(workdir))
    experiment_id = tracker.experiment_id("stand")
    assert tracker.cell_run(experiment_id, cell.key).run_id == finished
    (status,) = cell_states(tracker, "stand", [cell])
    assert status.state is CellState.DONE and status.result.run_id == finished
    client(workdir).set_terminated(finished, "KILLED")  # no finished run left: the latest
    assert tracker.cell_run(experiment_id, cell.key).run_id == later


# -- names, budgets and keys ------------------------------------------------------------------------


def test_score_names_are_written_and_read_by_one_definition():
    names = {
        score_name(): (None, None),
        score_name(length=200): (None, 200),
        score_name(3): (3, None),
        score_name(3, 200): (3, 200),
    }
    assert list(names) == [
        "test_score", "test_score_len_200", "test_score_seed_3", "test_score_seed_3_len_200"
    ]  # fmt: skip
    assert all(score_of(name) == found for name, found in names.items())
    assert score_of("test_mse") is None and score_of("test_score_seed_x") is None


def test_frontier_keys_are_stable_and_a_setting_added_later_keeps_them():
    """A frontier's key follows the cells' one rule (settings that are set, `suites.digest`):
    pinned here, and a setting added later, left unset, changes no key."""
    from dataclasses import dataclass

    assert FrontierSpec("adding", "lstm", Budget()).key == "adding-lstm-8f0a7ec40b"
    spec = FrontierSpec("adding", "gru", Budget(params=10_000), seeds=3, max_length=320)
    assert spec.key == "adding-gru-cd96112d52"
    assert FrontierSpec("adding", "gru", Budget(), code="abc").key == "adding-gru-f8e8361087"

    @dataclass(frozen=True)
    class Later(Budget):
        new_setting: int | None = None

    @dataclass(frozen=True)
    class LaterSpec(FrontierSpec):
        new_setting: str | None = None

    assert LaterSpec("adding", "lstm", Later()).key == "adding-lstm-8f0a7ec40b"
    assert LaterSpec("adding", "lstm", Later(new_setting=1)).key != "adding-lstm-8f0a7ec40b"


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
    assert one.budget_key == Budget().key(0, [1])
