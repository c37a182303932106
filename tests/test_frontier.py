"""The frontier: the search logic against pure functions solves(L), suite blocks and bad input,
and (slow) a real tiny frontier through the CLI, rerun, killed and resumed."""

from __future__ import annotations

import json
import math
import signal

import pytest

from harness.budget import Budget
from harness.frontier import search
from harness.suites import FrontierSpec, load_suite
from search_spaces.base import DEFAULT_GRID
from tasks import get_task
from tests.helpers import (
    all_runs,
    harness,
    start_harness,
    store_uri,
    wait_for_output,
)


def probe(solves, minimum=25, maximum=3200, resolution=0.25, task="adding", confirm=True):
    """Run the search against `solves(length, attempt)`: (bracket, [(length, role, attempt)])."""
    steps = search(minimum, maximum, resolution, get_task(task).accepted_length, confirm)
    asked = []
    ask = next(steps)
    try:
        while True:
            asked.append((ask.length, ask.role, ask.attempt))
            ask = steps.send(solves(ask.length, ask.attempt))
    except StopIteration as stop:
        return stop.value, asked


def bisection_bound(solved: int, failed: int, resolution: float) -> int:
    """The module's bound on bisections between two lengths: the exact geometric halving's
    count, plus one for middles rounded up to accepted lengths."""
    if failed / solved <= 1 + resolution:
        return 0
    return math.ceil(math.log2(math.log(failed / solved) / math.log(1 + resolution))) + 1


@pytest.mark.parametrize("resolution", [0.25, 0.1, 1.0])
@pytest.mark.parametrize("threshold", [25, 30, 70, 300, 1000, 3000])
def test_the_bracket_holds_the_threshold_within_the_resolution(threshold, resolution):
    bracket, asked = probe(lambda L, a: L <= threshold, resolution=resolution)
    assert bracket.solved <= threshold < bracket.failed
    assert bracket.failed / bracket.solved <= 1 + resolution
    assert not bracket.non_monotone and bracket.text() == f"[{bracket.solved}, {bracket.failed})"
    assert len({(L, a) for L, _, a in asked}) == len(asked)  # no cell asked twice
    doubling = sum(role == "double" for _, role, _ in asked)
    assert doubling == math.floor(math.log2(threshold / 25)) + 2  # up to the first failure
    bound = doubling + bisection_bound(1, 2, resolution) + 2
    assert len(asked) <= bound  # + the confirming cell and the check above
    confirm = asked.index((bracket.failed, "confirm", 1))  # confirmed with another search seed
    above = min(2 * bracket.failed, 3200)
    checked = above > bracket.failed and above not in {L for L, _, _ in asked[:confirm]}
    assert asked[confirm + 1 :] == ([(above, "check", 0)] if checked else [])


def test_bisections_stay_within_the_bound_rounding_included():
    """Every threshold from the minimum to 400, the bound of the module's docstring; rounding
    costs one bisection at most, and does cost it (resolution 0.1 at threshold 25)."""
    excess = set()
    for resolution in (0.01, 0.05, 0.1, 0.25, 0.5, 1.0):
        for minimum in (2, 3, 5, 10, 25, 100):
            for threshold in range(minimum, 401):
                solves = lambda L, a, t=threshold: L <= t  # noqa: E731
                _, asked = probe(solves, minimum, 3200, resolution)
                doubled = [L for L, role, _ in asked if role == "double"]
                bisections = sum(role == "bisect" for _, role, _ in asked)
                bound = bisection_bound(doubled[-2], doubled[-1], resolution)
                assert bisections <= bound, (resolution, minimum, threshold, asked)
                excess.add(bound - bisections)
    assert 0 in excess
    _, asked = probe(lambda L, a: L <= 25, 25, 3200, 0.1)
    assert sum(role == "bisect" for _, role, _ in asked) == bisection_bound(25, 50, 0.1) == 4


def test_a_failure_at_the_capped_maximum_is_not_checked_again():
    """min 25, max 400: the doubled failure is capped at 400, which already failed."""
    bracket, asked = probe(lambda L, a: L <= 300, maximum=400)
    assert bracket.text() == "[283, 337)"
    assert asked[4:] == [(400, "double", 0), (283, "bisect", 0), (337, "bisect", 0),
                         (337, "confirm", 1)]  # fmt: skip


def test_the_edges_solved_at_the_maximum_and_failed_at_the_minimum():
    everything, asked = probe(lambda L, a: True)
    assert everything.text() == "≥ 3200" and [L for L, _, _ in asked][-1] == 3200
    assert everything.solved == 3200 and everything.failed is None
    nothing, asked = probe(lambda L, a: False)
    assert nothing.text() == "< 25" and nothing.solved is None and nothing.failed == 25
    assert asked == [(25, "double", 0), (25, "confirm", 1), (50, "check", 0)]
    small, _ = probe(lambda L, a: L <= 60, minimum=25, maximum=50)
    assert small.text() == "≥ 50"


def test_a_failure_by_bad_luck_does_not_end_the_search():
    """The first seeds fail beyond 300, another search seed solves up to 600."""
    bracket, asked = probe(lambda L, a: L <= 300 or (L <= 600 and a == 1))
    assert bracket.solved <= 600 < bracket.failed and not bracket.non_monotone
    assert any(role == "confirm" and L <= 600 for L, role, _ in asked)


def test_under_a_grid_a_failure_is_not_searched_again_with_another_seed():
    """A grid cell's seeds (and a split vote's two more) confirm its failure: the frontier
    asks no confirming cell, and the bracket still holds the threshold."""
    bracket, asked = probe(lambda L, a: L <= 300, confirm=False)
    assert bracket.solved <= 300 < bracket.failed and not bracket.non_monotone
    assert {role for _, role, _ in asked} <= {"double", "bisect", "check"}
    assert {attempt for _, _, attempt in asked} == {0}
    grid = FrontierSpec("adding", "gru", Budget(tuner="grid", grid=DEFAULT_GRID, max_trials=3))
    assert not grid.confirms and FrontierSpec("adding", "gru", Budget()).confirms


def test_a_non_monotone_function_is_flagged():
    """Failing from 300 but solving again at twice the failure: flagged, searched on."""
    bracket, asked = probe(lambda L, a: L <= 300 or 600 <= L <= 1300)
    assert bracket.non_monotone and bracket.text().endswith("(non-monotone)")
    assert bracket.solved <= 1300 < bracket.failed
    assert "check" in {role for _, role, _ in asked}


def test_only_lengths_the_task_accepts_are_probed():
    """digits takes multiples of 64: the resolution is met as closely as they allow."""
    bracket, asked = probe(lambda L, a: L <= 300, minimum=64, maximum=3200, task="digits")
    assert all(L % 64 == 0 for L, _, _ in asked)
    assert (bracket.solved, bracket.failed) == (256, 320)


def test_a_suite_frontier_block_becomes_one_frontier_per_task_and_family(tmp_path):
    path = tmp_path / "f.toml"
    path.write_text(
        'name = "f"\n[budget]\nmax_trials = 1\n[seeds]\nsearch = 3\n'
        '[[frontier]]\ntasks = ["adding", "first_token"]\nfamilies = ["gru", "lstm"]\n'
        "min_length = 10\nmax_length = 80\nresolution = 0.5\nseeds = 3\n"
        "budget = { params = 5000 }\n"
    )
    suite = load_suite(str(path))
    assert suite.cells == () and len(suite.frontiers) == 4
    spec = suite.frontiers[0]
    assert (spec.task, spec.family, spec.min_length, spec.max_length) == ("adding", "gru", 10, 80)
    assert spec.budget.params == 5000 and spec.seed == 3 and spec.seeds == 3
    from harness.frontier import Ask

    cell = spec.cell(Ask(20, 0, "double"))
    assert (cell.length, cell.seed, cell.extra_seeds) == (20, 3, (4, 5))
    confirm = spec.cell(Ask(20, 1, "confirm"))
    assert (confirm.seed, confirm.extra_seeds) == (6, (7, 8))  # seeds of their own


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["adding", "--families", "nope"], "unknown family 'nope'"),
        (
            ["adding", "--families", "gru", "--min-length", "100", "--max-length", "50"],
            "above max_length 50",
        ),
        (["adding", "--families", "gru", "--resolution", "0"], "resolution 0.0 must be a finite"),
        (["adding", "--families", "gru", "--resolution", "nan"], "resolution nan must be a finite"),
        (["adding", "--families", "gru", "--seed", "-1"], "seed -1 is out of range"),
        (
            ["adding", "--families", "gru", "--seed", "2147483646", "--seeds", "3"],
            "uses seeds 2147483646 to 2147483651",
        ),
        (["adding", "--families", "gru", "--seeds", "0"], "0 seeds per cell; accepted an odd"),
        (["adding", "--families", "gru", "--seeds", "2"], "2 seeds per cell; accepted an odd"),
        (["adding", "--families", "lstm", "--params", "5"], "the smallest it can meet is"),
        (["adding", "--families", "gru", "--min-length", "1"], "length 1 is out of range"),
        (["digits", "--families", "gru"], "in steps of 64"),
    ],
)
def test_bad_frontier_input_is_one_line_and_exit_2(workdir, args, expected):
    result = harness("frontier", "--task", *args, cwd=workdir)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (workdir / "mlflow.db").exists()


def test_a_probe_without_a_readable_result_is_a_failed_step():
    from harness.frontier import Ask, Step

    assert Step.of(Ask(40, 1, "confirm"), None) == Step(40, 1, "confirm", False)


def test_a_frontier_out_of_budget_reach_starts_no_run(workdir):
    """The runner resolves the frontier's task and space before it creates the frontier run."""
    from harness.budget import Budget
    from harness.runner import Runner
    from harness.suites import FrontierSpec
    from harness.tracking import Tracker
    from search_spaces.base import BudgetError

    tracker = Tracker(store_uri(workdir))
    experiment_id = tracker.experiment_id("frontier")
    spec = FrontierSpec("first_token", "gru", Budget(params=20), min_length=10, max_length=20)
    with pytest.raises(BudgetError, match="the smallest it can meet is 33"):
        Runner(tracker, workdir / "data").run_frontier(experiment_id, spec)
    assert all_runs(store_uri(workdir), "frontier").empty


# -- a real tiny frontier -------------------------------------------------------------------------

FRONTIER = [
    "frontier", "--task", "first_token", "--families", "gru,bigru", "--params", "3000",
    "--min-length", "4", "--max-length", "32", "--resolution", "1", "--max-trials", "1",
    "--epochs", "12", "--n-train", "2048", "--n-val", "256", "--n-test", "256",
    "--batch-size", "64", "--experiment", "frontier",
]  # fmt: skip


def frontiers(folder, experiment="frontier") -> dict:
    """The frontier runs of an experiment by family (one each)."""
    runs = all_runs(store_uri(folder), experiment)
    found = runs[runs["tags.harness.kind"] == "frontier"]
    assert found["params.family"].is_unique
    return {row["params.family"]: row for _, row in found.iterrows()}


def brackets(found: dict) -> dict:
    return {
        family: (row.get("metrics.longest_solved"), row.get("metrics.shortest_failed"))
        for family, row in found.items()
    }


def check_cells_run_once(folder) -> None:
    runs = all_runs(store_uri(folder), "frontier")
    cells = runs[runs["tags.harness.kind"] == "cell"]
    finished = cells[cells["status"] == "FINISHED"]
    assert finished["tags.harness.cell_key"].is_unique
    trials = runs[runs["tags.harness.kind"] == "trial"]
    done = trials[trials["status"] == "FINISHED"]
    assert not done.duplicated(["tags.mlflow.parentRunId", "tags.harness.trial_id"]).any()


@pytest.mark.slow
def test_a_real_frontier_rerun_and_resumed_after_sigkill(workdir):
    log = "first.log"
    process = start_harness(*FRONTIER, cwd=workdir, log=log)
    wait_for_output(process, workdir / log, "[frontier] first_token L=8 gru: done", timeout=900)
    process.send_signal(signal.SIGKILL)  # mid-way: gru's frontier partly probed
    process.wait(timeout=60)
    harness(*FRONTIER, cwd=workdir, check=True, timeout=1800)
    found = frontiers(workdir)
    assert set(found) == {"gru", "bigru"}
    assert set(r["status"] for r in found.values()) == {"FINISHED"}
    gru, bigru = found["gru"], found["bigru"]
    assert gru["metrics.longest_solved"] >= 4
    assert bigru["metrics.longest_solved"] > gru["metrics.longest_solved"]
    assert math.isnan(bigru.get("metrics.shortest_failed", math.nan)) or (
        bigru["metrics.shortest_failed"] > gru["metrics.shortest_failed"]
    )
    runs = all_runs(store_uri(workdir), "frontier")
    ids = set(runs["run_id"])
    for row in found.values():  # a frontier run names its cells
        steps = json.loads(row["tags.harness.frontier_cells"])
        assert len(steps) == row["metrics.cells"] and {s["run_id"] for s in steps} <= ids
    check_cells_run_once(workdir)
    status = harness("status", "--experiment", "frontier", cwd=workdir, check=True).stdout
    assert "frontier first_token bigru: " in status and "(done)" in status

    trials = len(runs[runs["tags.harness.kind"] == "trial"])
    again = harness(*FRONTIER, cwd=workdir, check=True)
    assert again.stdout.count("skipped") >= 2
    runs = all_runs(store_uri(workdir), "frontier")
    assert len(runs[runs["tags.harness.kind"] == "trial"]) == trials  # every cell reused
    assert {f: r["run_id"] for f, r in frontiers(workdir).items()} == {
        f: r["run_id"] for f, r in found.items()
    }

    reference = [*FRONTIER[:-1], "reference"]  # the same, uninterrupted, in a store of its own
    harness(*reference, "--tracking-uri", store_uri(workdir / "ref"), cwd=workdir, check=True)
    expected = brackets(frontiers(workdir / "ref", "reference"))
    assert {f: tuple(map(str, b)) for f, b in brackets(found).items()} == {
        f: tuple(map(str, b)) for f, b in expected.items()
    }
