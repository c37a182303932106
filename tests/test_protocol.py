"""The protocol: searches that search (each cell its own oracle seed), the grid, the seeds'
majority with a split vote's two more, and budgets stated in optimizer updates."""

from __future__ import annotations

from pathlib import Path

import pytest

from harness import api, evaluation, steps
from harness.budget import Budget
from harness.evaluation import Evaluation
from harness.results import VERDICT_RULE
from harness.suites import Cell
from tests.helpers import (
    TINY_DATA,
    all_runs,
    api_cell,
    client,
    harness,
    md_rows,
    section_text,
    store_uri,
)


def first_draws(cell: Cell, folder: Path, count: int = 3) -> list[dict]:
    """The hyperparameters the cell's Keras Tuner oracle draws for its first trials."""
    resolved = steps.resolve(cell, folder)
    tuner = steps.build_tuner(None, None, None, resolved)
    return [
        dict(tuner.oracle.create_trial(f"worker{i}").hyperparameters.values) for i in range(count)
    ]


@pytest.mark.parametrize("tuner", ["random", "bayesian", "hyperband"])
def test_each_cell_draws_its_own_configurations_and_seed_0_is_a_seed(tmp_path, tuner):
    budget = Budget(tuner=tuner, max_trials=3, epochs=3, params=2000)
    short, long = (Cell("adding", length, "gru", budget) for length in (10, 20))
    draws = first_draws(short, tmp_path / "a")
    assert draws != first_draws(long, tmp_path / "b")  # two cells, two sets of draws
    assert draws == first_draws(short, tmp_path / "c")  # seed 0 again: the same draws
    assert draws != first_draws(Cell("adding", 10, "gru", budget, seed=1), tmp_path / "d")
    assert 1 <= short.oracle_seed != long.oracle_seed


def test_a_grid_search_trains_exactly_its_points_verify_recomputes_them_the_report_shows_them(
    workdir,
):
    """(The report's grid table on stored trials of hand-set scores: test_report.py.)"""
    grid = {"learning_rate": [0.001, 0.01], "depth": [1, 2]}
    ran = api_cell(workdir, epochs=1, tuner="grid", grid=grid)
    runs = all_runs(store_uri(workdir), ran.experiment)
    trials = runs[runs["tags.harness.kind"] == "trial"]
    points = {
        (float(t["params.learning_rate"]), int(t["params.depth"])) for _, t in trials.iterrows()
    }
    assert len(trials) == 4 and points == {(0.001, 1), (0.001, 2), (0.01, 1), (0.01, 2)}
    assert set(trials["params.dropout"]) == {"0.0"} and set(trials["params.clip_gradients"]) == {
        "1"
    }  # Keras Tuner logs a boolean as 1
    parent = runs[runs["tags.harness.kind"] == "cell"].iloc[0]
    low, high = parent["metrics.test_score_low"], parent["metrics.test_score_high"]
    assert 0 <= low <= parent["metrics.test_score"] <= high
    uri, cache = store_uri(workdir), workdir / "data" / "jax-cache"
    verified = api.verify(uri, compile_cache=cache)
    assert verified.ok and {"test_score_low", "test_score_high"} <= {
        check.metric for check in verified.checks
    }

    store = client(workdir)
    store.log_metric(parent["run_id"], "test_score_high", high + 1.0)
    wrong = api.verify(uri, compile_cache=cache)
    assert not wrong.ok and [m.metric for m in wrong.mismatches] == ["test_score_high"]
    store.log_metric(parent["run_id"], "test_score_high", high)

    # a cell stored before majority verdicts (no rule recorded) is judged by the mean, as then
    store.delete_tag(parent["run_id"], VERDICT_RULE)
    assert api.verify(uri, compile_cache=cache).ok
    reported = api.report(uri, workdir / "out")
    text = reported.leaderboard.read_text()
    assert "judged by the mean" in text

    # the report's grid table: each point's validation score as its trial run holds it, ★ on
    # the trial the cell names, and the edge of each axis that point lies on (two values each)
    best = parent["tags.harness.best_trial"]
    chosen = next(t for _, t in trials.iterrows() if t["tags.harness.trial_id"] == best)
    by_point = {
        (int(t["params.depth"]), float(t["params.learning_rate"])): t for _, t in trials.iterrows()
    }
    order = [(1, 0.001), (1, 0.01), (2, 0.001), (2, 0.01)]  # the axes by name, then values
    scores = [
        f"{by_point[p]['metrics.objective']:.4g}"
        + " ★" * (by_point[p]["run_id"] == chosen["run_id"])
        for p in order
    ]
    depth, rate = int(chosen["params.depth"]), float(chosen["params.learning_rate"])
    edge = f"{'⇤' if depth == 1 else '⇥'} depth, {'⇤' if rate == 0.001 else '⇥'} learning_rate"
    part = section_text(text, f"Budget {parent['tags.harness.budget_key']}")
    assert md_rows(part[part.index("Grid points:") :], "family") == [
        ["family", "length", *(f"depth={d}, learning_rate={r}" for d, r in order), "edge"],
        ["gru", "8", *scores, edge],
    ]


def test_a_grid_with_a_trial_count_or_repeated_executions_is_refused(workdir):
    cell = ["--task", "adding", "--length", "8", "--family", "gru", *TINY_DATA]
    for extra in (["--max-trials", "2"], ["--executions", "2"]):
        result = harness("run", *cell, "--tuner", "grid", *extra, cwd=workdir)
        assert result.returncode == 2 and "grid search" in result.stderr
    assert not (workdir / "mlflow.db").exists()


def settled(scores: dict[int, float], extra: tuple[int, ...]) -> Evaluation:
    """An evaluation of an adding cell at L=10 whose seeds score `scores` (MSE; bar 0.01),
    its retrains answered from `scores` (the two a split vote adds solve)."""
    cell = Cell("adding", 10, "gru", Budget(), 0, extra)
    resolved = steps.resolve(cell, Path("unused"))
    found = Evaluation({}, {}, {0: scores[0]}, [], [], "n/a")
    asked = []

    def retrain_all(seeds):
        asked.extend(seeds)
        return {s: (scores.get(s, 0.001), Path(f"seed_{s}"), {}, (0.0, 0.02)) for s in seeds}

    found = evaluation.settle(resolved, found, retrain_all)
    assert asked == [*extra, *found.added_seeds]
    return found


def test_a_split_vote_adds_two_seeds_once_and_a_unanimous_one_does_not():
    split = settled({0: 0.001, 1: 0.5, 2: 0.002}, (1, 2))
    assert split.added_seeds == [3, 4] and sorted(split.seed_scores) == [0, 1, 2, 3, 4]
    assert split.metrics["test_score_seed_3_high"] == 0.02
    assert settled({0: 0.001, 1: 0.002, 2: 0.003}, (1, 2)).added_seeds == []
    assert settled({0: 0.5, 1: 0.6, 2: 0.7}, (1, 2)).added_seeds == []
    assert settled({0: 0.5}, ()).added_seeds == []  # one seed casts no split vote


def test_a_budget_line_states_its_optimizer_updates():
    digits = {"tuner": "grid", "max_trials": 3, "epochs": 8, "batch_size": 64, "n_train": 4096,
              "n_val": 269, "n_test": 269, "grid": [["learning_rate", [0.001, 0.003, 0.01]]]}  # fmt: skip
    line = Budget(**digits).label(3)
    assert "8 epochs (512 updates)" in line
    assert "grid search over learning_rate 0.001, 0.003, 0.01 (3 trials" in line
    assert "3 seeds (two more on a split vote)" in line
