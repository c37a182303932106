"""`harness report` on a real store made by a real tiny run: structure, numbers, budgets kept
apart, the run standing for a cell, determinism, HTML escaping, errors, the README markers,
and (slow) the page in headless Chromium."""

from __future__ import annotations

import base64
import itertools
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from harness import frontier
from harness.budget import Budget
from harness.frontier import Bracket, FrontierResult, Step
from harness.frontier_report import frontier_section
from harness.report.render import figure_file
from harness.suites import FrontierSpec
from harness.tracking import Tracker
from tasks import get_task
from tests.helpers import (
    REPO,
    add_run,
    client,
    copy_store,
    harness,
    harness_loading,
    md_rows,
    section_text,
    store_uri,
)

EXPERIMENT = "report-test"
LENGTHS = (10, 20)
FAMILY = "simple_rnn"
PAYLOAD = "<script>alert(1)</script>|x"
KINDS = ("score_vs_length", "length_generalisation", "anytime", "hyperparameters")


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store made by `harness run`: adding at two lengths, longer test length, two extra
    seeds."""
    folder = tmp_path_factory.mktemp("store")
    lengths = [arg for L in LENGTHS for arg in ("--length", str(L))]
    result = harness(
        "run", "--task", "adding", *lengths, "--family", FAMILY, "--max-trials", "2",
        "--epochs", "2", "--n-train", "128", "--n-val", "64", "--n-test", "64",
        "--eval-length", "40", "--extra-seed", "1", "--extra-seed", "2",
        "--experiment", EXPERIMENT, cwd=folder,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (folder / "run.log").write_text(result.stdout)
    return folder


def test_the_run_that_made_the_store_printed_every_epoch_and_the_time_left(store):
    """Its trials' and its retrain's epochs (k of N, validation score, seconds), and after
    each cell the run's units and the time left (the run's display, harness/progress.py)."""
    out = (store / "run.log").read_text()
    for length in LENGTHS:
        for run in ("trial 0", "trial 1", "retrain seed 1"):
            for epoch in (1, 2):
                line = rf"adding L={length} {FAMILY}: {run} epoch {epoch} of 2, validation "
                assert re.search(line + r"[\d.]+, [\d.]+ s per epoch", out), out
    assert re.search(r": 1 done, 0 running, 1 left, at most about \d+ s to go", out), out
    assert out.splitlines()[-1] != "" and "2 done, 0 running, 0 left" in out, out


@pytest.fixture(scope="module")
def report(store) -> Path:
    result = harness("report", "--experiment", EXPERIMENT, "--out", "reports", cwd=store)
    assert result.returncode == 0, result.stdout + result.stderr
    assert re.search(rf"read \d+ runs of experiment '{EXPERIMENT}'", result.stdout)
    return store / "reports"


def parents(folder: Path, experiment: str = EXPERIMENT) -> list:
    mlflow = client(folder)
    found = mlflow.get_experiment_by_name(experiment)
    runs = mlflow.search_runs([found.experiment_id], "tags.`harness.kind` = 'cell'")
    return sorted(runs, key=lambda r: (int(r.data.params["length"]), r.info.start_time))


def key_of(run) -> str:
    return run.data.tags["harness.budget_key"]


# -- structure and numbers --------------------------------------------------------------------


def test_report_has_the_tables_and_figures(store, report):
    text = (report / "leaderboard.md").read_text()
    key = key_of(parents(store)[0])
    assert text.startswith(f"# Leaderboard: {EXPERIMENT}\n")
    assert "## How to read it" in text and f"## Budget {key}" in text
    budget = section_text(text, f"Budget {key}")
    assert "random search, 2 trials x up to 2 epochs (4 updates), batch 64" in budget
    assert "3 seeds (two more on a split vote)" in budget
    assert "### adding" in budget and "Metric: mse (lower is better)." in budget
    scores = md_rows(budget, "family")
    assert scores[0] == ["family", *(f"L={L}" for L in LENGTHS), "longest solved"]
    assert [row[0] for row in scores[1:]] == [FAMILY, "trivial baseline", "solved bar"]
    assert (
        "| family | length | parameters | seconds per epoch | compile seconds | epochs to solve "
        "| trials done (diverged, failed) |" in text
    )
    assert "| family | length | run | state | trials done | seeds | machine |" in text
    names = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert names == sorted(f"{kind}_adding_{key}.png" for kind in KINDS)
    assert f"](figures/score_vs_length_adding_{key}.png)" in text

    page = (report / "index.html").read_text()
    assert page.count("<table>") == 4
    assert page.count("<img ") == len(names)
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*data-file="([^"]+)"', page)
    assert sorted(name for _, name in embedded) == names
    for data, name in embedded:
        assert base64.b64decode(data) == (report / "figures" / name).read_bytes()


def seed_names(run, length: int | None = None) -> list[str]:
    """The test-score metrics of a cell run's seeds: the search's, its extra seeds', and those
    a split vote added (harness.added_seeds)."""
    added = [s for s in run.data.tags.get("harness.added_seeds", "").split(",") if s]
    names = ["test_score", *(f"test_score_seed_{s}" for s in ("1", "2", *added))]
    return [name if length is None else f"{name}_len_{length}" for name in names]


def test_numbers_equal_the_seeds_in_the_store(store, report):
    """Each score is the mean over the stored seed scores with (k/n), the seeds that meet
    the bar alone; ✓ when more than half of them do; ≈ as the run recorded it."""
    runs = parents(store)
    text = (report / "leaderboard.md").read_text()
    scores = {row[0]: row[1:] for row in md_rows(text, "family")[1:]}
    solved = []
    for i, run in enumerate(runs):
        m = run.data.metrics
        seeds = [m[name] for name in seed_names(run)]
        mean, std = statistics.fmean(seeds), statistics.stdev(seeds)
        passing = sum(s <= m["solved_bar"] for s in seeds)
        tick = " ✓" if 2 * passing > len(seeds) else ""
        near = " ≈" if m["near_bar"] else ""
        assert scores[FAMILY][i] == f"{mean:.4g} ± {std:.2g} ({passing}/{len(seeds)}){tick}{near}"
        assert m["seed_mean"] == pytest.approx(mean) and m["solved"] == bool(tick)
        assert scores["trivial baseline"][i] == f"{m['baseline']:.4g}"
        assert scores["solved bar"][i] == f"≤ {m['solved_bar']:.4g}"
        if tick:
            solved.append(int(run.data.params["length"]))
    assert scores[FAMILY][-1] == (f"L={max(solved)}" if solved else "—")

    costs = md_rows(text[text.index("Cost of each cell's best model:") :], "family")[1:]
    for row, run in zip(costs, runs, strict=True):
        m = run.data.metrics
        assert row[:5] == [
            FAMILY,
            run.data.params["length"],
            f"{m['parameters']:,.0f}",
            f"{m['seconds_per_epoch']:.3g}",
            f"{m['compile_seconds']:.3g}",
        ]
        assert row[6] == f"{m['trials_completed']:.4g} ({m['trials_diverged']:.4g}, 0)"
    longer = md_rows(text[text.index("Tested at longer lengths") :], "family (trained at)")
    assert longer[0] == ["family (trained at)", *(f"L={L}" for L in LENGTHS), "L=40"]
    for row, run in zip(longer[1:], runs, strict=True):  # every seed's model tested at L=40
        m = run.data.metrics
        seeds = [m[name] for name in seed_names(run, 40)]
        mean, std = statistics.fmean(seeds), statistics.stdev(seeds)
        assert row[-1].startswith(f"{mean:.4g} ± {std:.2g}")
    runs_rows = md_rows(text[text.index("The run behind each score") :], "family")[1:]
    assert [row[2] for row in runs_rows] == [run.info.run_id[:8] for run in runs]
    tags = runs[0].data.tags
    assert (
        f"- {tags['harness.device']}; Keras {tags['harness.keras']} on "
        f"{tags['harness.backend']} ({tags['harness.framework']}): 2 cells" in text
    )
    page = (report / "index.html").read_text()
    for run in runs:  # each score names its run in the HTML
        assert f'title="run {run.info.run_id[:8]}: 2 trials done' in page


def test_same_store_gives_identical_files(store, report):
    result = harness("report", "--experiment", EXPERIMENT, "--out", "again", cwd=store)
    assert result.returncode == 0, result.stderr
    again = store / "again"
    first = sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file())
    assert first == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for path in first:
        assert (report / path).read_bytes() == (again / path).read_bytes(), path


def test_a_local_store_is_read_without_mlflow_as_mlflow_reads_it(store, report, tmp_path):
    """`harness report` reads a local SQLite store with sqlite3 alone and loads no framework
    (so it draws in forked processes); read through MLflow's client, the same files."""
    from harness import figures
    from harness import report as reporting

    result, loaded = harness_loading(
        "report", "--experiment", EXPERIMENT, "--out", str(tmp_path / "cli"), cwd=store,
        modules=("mlflow", *figures.FRAMEWORKS),
    )  # fmt: skip
    assert result.returncode == 0 and not loaded, result.stderr
    figures_drawn, processes = map(
        int, re.search(r"drawing (\d+) figures in (\d+)", result.stdout).groups()
    )
    assert processes == min(os.cpu_count() or 1, figures_drawn)
    reporting.build(Tracker(store_uri(store)), EXPERIMENT, tmp_path / "mlflow")
    files = sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file())
    for folder in ("cli", "mlflow"):
        again = tmp_path / folder
        assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
        for path in files:
            assert (report / path).read_bytes() == (again / path).read_bytes(), (folder, path)


def test_figures_drawn_in_forked_processes_are_the_bytes_drawn_in_one(store, report):
    from harness.report import leaderboard
    from harness.report.read import read_store
    from harness.report.render import named_figures
    from harness.tracking import SqliteSnapshot

    doc = leaderboard(read_store(SqliteSnapshot(store_uri(store)), EXPERIMENT))
    named = list(named_figures(doc.sections))
    assert {kind for _, kind, _ in named} >= set(KINDS)
    for name, _, drawing in named:
        assert drawing.png() == (report / "figures" / name).read_bytes(), name


# -- figures plot what tables print ------------------------------------------------------------


def printed(cell: str) -> tuple[float, float]:
    """The mean and std a table cell prints ("0.1234 ± 0.012 (2/3) ✓"; one seed: std 0)."""
    mean, _, rest = cell.partition(" ± ")
    return float(mean.split()[0]), float(rest.split()[0]) if rest else 0.0


def plotted(ax) -> list[tuple[str, list[tuple[float, float, float]]]]:
    """Each error-bar series of a panel: (its label, [(x, y, half the bar's height)])."""
    from matplotlib.container import ErrorbarContainer

    found = []
    for container in ax.containers:
        if isinstance(container, ErrorbarContainer):
            line, _, (bars,) = container.lines
            heights = [(top[1] - bottom[1]) / 2 for bottom, top in bars.get_segments()]
            points = zip(line.get_xdata(), line.get_ydata(), heights, strict=True)
            found.append((container.get_label(), [tuple(map(float, p)) for p in points]))
    return found


def same(points, expected) -> bool:
    """Plotted (x, y, bar) equal a table's (length, mean, std) to the digits it prints."""
    return len(points) == len(expected) and all(
        x == length and y == pytest.approx(mean, rel=1e-3) and bar == pytest.approx(std, rel=0.05)
        for (x, y, bar), (length, mean, std) in zip(points, expected, strict=True)
    )


def assert_references_visible(fig) -> None:
    """The trivial baseline and solved bar the legend names are drawn inside the panel."""
    from harness import figures

    figures.png(fig)  # laid out and drawn as written
    ax = fig.axes[0]
    named = [t.get_text() for t in ax.get_legend().get_texts()]
    lines = {line.get_label(): line for line in ax.get_lines()}
    box = ax.bbox.padded(1)
    for name in ("trivial baseline", "solved bar"):
        assert name in named and name in lines, name
        points = lines[name].get_transform().transform(lines[name].get_xydata())
        inside = {tuple(p.round()) for p in points if box.contains(*p)}
        assert len(inside) >= 2, f"{name} is not drawn inside the panel"


def leaderboard_of(folder: Path):
    from harness.report import leaderboard
    from harness.report.read import read_store
    from harness.tracking import SqliteSnapshot

    return leaderboard(read_store(SqliteSnapshot(store_uri(folder)), EXPERIMENT))


def test_every_figure_plots_the_numbers_its_table_prints(store):
    """Scores versus length and length generalisation plot each cell's seed mean with the seeds'
    std as error bars: the numbers the score and generalisation tables print. (The anytime and
    hyperparameter figures plot trials, which no table prints.)"""
    budget = next(s for s in leaderboard_of(store).sections if s.title.startswith("Budget"))
    (task,) = budget.parts
    tables = dict(task.tables)
    drawn = {kind: d.function(*d.args) for _, kind, d in task.figures}

    scores = tables[""]
    lengths = [int(h.removeprefix("L=")) for h in scores.headers[1:-1]]
    expected = {
        row[0]: [(L, *printed(c)) for L, c in zip(lengths, row[1:-1], strict=True) if c]
        for row in scores.rows[:-2]  # less the baseline and solved bar rows
    }
    found = dict(plotted(drawn["score_vs_length"].axes[0]))
    assert found.keys() == expected.keys()
    for family, points in found.items():
        assert same(points, expected[family]), (family, points, expected[family])

    longer = tables["Tested at longer lengths than trained (mean over seeds):"]
    tested = [int(h.removeprefix("L=")) for h in longer.headers[1:]]
    expected = [
        [(L, *printed(c)) for L, c in zip(tested, row[1:], strict=True) if c] for row in longer.rows
    ]
    found = [points for _, points in plotted(drawn["length_generalisation"].axes[0])]
    assert len(found) == len(expected) == len(LENGTHS)
    for points, want in zip(found, expected, strict=True):
        assert same(points, want), (points, want)
    for kind in ("score_vs_length", "length_generalisation"):
        assert_references_visible(drawn[kind])


def test_baseline_and_solved_bar_are_visible_at_a_single_length(store):
    """One training length: the reference lines still span the panel (a line through one point
    draws nothing)."""
    from harness import figures
    from harness.report.read import frame, read_store
    from harness.tracking import SqliteSnapshot

    cells = read_store(SqliteSnapshot(store_uri(store)), EXPERIMENT).cells
    rows = frame([c for c in cells if c.length == LENGTHS[0]])
    assert_references_visible(figures.score_vs_length(rows, "adding"))
    assert_references_visible(figures.length_generalisation(rows, "adding"))


def test_a_task_asks_for_the_hindsight_section_by_its_attribute(copy, monkeypatch):
    """`Task.hindsight` alone decides: adding asks for it here, first_token no longer does."""
    from tasks.adding import Adding
    from tasks.first_token import FirstToken

    monkeypatch.setattr(Adding, "hindsight", "Why backwards helps.")
    monkeypatch.setattr(FirstToken, "hindsight", "")
    for family, score, seeds in (("gru", 0.2, 0.3), ("bigru", 0.004, 0.006)):
        metrics = {"test_score": score, "test_score_seed_1": seeds, "trials_completed": 3}
        add_cell(copy, family, 50, metrics, extra_seeds=[1])
        add_cell(copy, family, 50, metrics, extra_seeds=[1], task="first_token")
    budget = next(
        s
        for s in leaderboard_of(copy).sections
        if s.title == f"Budget {Budget(**BUDGET).key(0, [1])}"
    )
    (hindsight,) = [part for part in budget.parts if part.title.startswith("Hindsight")]
    assert hindsight.title == "Hindsight: adding"
    assert hindsight.paragraphs[0].startswith("Why backwards helps. 'Stops solving at'")
    (caption, table), ((name, _, drawing),) = hindsight.tables[0], hindsight.figures
    assert caption == "Test mse by length, forward versus bidirectional:"
    assert name == figure_file("hindsight", "adding", Budget(**BUDGET).key(0, [1]))
    fig = drawing.function(*drawing.args)
    found = dict(plotted(fig.axes[0]))
    for row in table.rows:
        label = f"{row[0]} ({row[1]})"
        assert same(found[label], [(50, *printed(row[2]))]), label
    assert_references_visible(fig)


# -- cells written here, to set up what a real run seldom makes ---------------------------------


BUDGET = {
    "tuner": "random", "max_trials": 3, "epochs": 8, "executions_per_trial": 1,
    "batch_size": 64, "n_train": 512, "n_val": 64, "n_test": 64,
}  # fmt: skip


def add_cell(folder: Path, family: str, length: int, metrics: dict, **options) -> str:
    """A finished (or `status`) cell run in the report's experiment (of adding, or `task`),
    judged by the mean over its seeds unless `rule` names the verdict rule it was stored with."""
    mlflow = client(folder)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    task = get_task(options.get("task", "adding"))
    budget = {**BUDGET, **options.get("budget", {})}
    seed, extra = options.get("seed", 0), options.get("extra_seeds", [])
    tags = {
        "harness.kind": "cell",
        "harness.status": options.get("state", "done"),
        "harness.budget_key": Budget(**budget).key(seed, extra),
        "harness.fused_rnn_kernel_observed": "no",
        "harness.device": options.get("device", "test machine"),
    }
    if "rule" in options:
        tags["harness.verdict_rule"] = options["rule"]
    run_id = mlflow.create_run(experiment, tags=tags).info.run_id
    params = {
        "task": task.name, "length": str(length), "family": family, "metric": task.metric.name,
        "direction": task.metric.direction, "seed": str(seed), "extra_seeds": str(extra),
        **{f"budget.{k}": json.dumps(v) if isinstance(v, list) else v for k, v in budget.items()},
    }  # fmt: skip
    for key, value in params.items():
        mlflow.log_param(run_id, key, value)
    bars = {"baseline": task.baseline(length), "solved_bar": task.solved_bar(length)}
    for key, value in {**bars, **metrics}.items():
        mlflow.log_metric(run_id, key, value)
    if options.get("finished", True):
        mlflow.set_terminated(run_id, "FINISHED")
    return run_id


def add_frontier(
    folder: Path, task: str, family: str, solves, budget: dict, cells: int | None = None
) -> list[Step]:
    """A finished frontier run as the runner writes it: the real search (lengths 10 to 80,
    resolution 0.5) against solves(L), each probed cell a cell run of its own seeds; with
    `cells`, a frontier interrupted after probing that many (its run KILLED). Its steps."""
    spec = FrontierSpec(task, family, Budget(**{**BUDGET, **budget}), 0, 1, 10, 80, 0.5)
    tracker = Tracker(store_uri(folder))
    run_id = tracker.start_run(tracker.experiment_id(EXPERIMENT), spec.label, spec.tags())
    tracker.log(run_id, params=spec.params())
    good, bad = (0.001, 0.2) if get_task(task).metric.direction == "min" else (1.0, 0.1)
    probes = frontier.search(10, 80, 0.5, get_task(task).accepted_length)
    steps, ask = [], next(probes)
    try:
        while cells is None or len(steps) < cells:
            cell = spec.cell(ask)
            score = good if solves(ask.length) else bad
            metrics = {"test_score": score, "trials_completed": 3}
            cell_run = add_cell(
                folder, family, ask.length, metrics, task=task, seed=cell.seed, budget=budget
            )
            steps.append(Step(ask.length, ask.attempt, ask.role, solves(ask.length), cell_run))
            ask = probes.send(steps[-1].solved)
    except StopIteration as stop:
        bracket = stop.value
    frontier.record_step(tracker, run_id, steps)
    if cells is not None:
        tracker.finish(run_id, "KILLED")
        return steps
    tracker.log(run_id, metrics=frontier.bracket_metrics(bracket))
    tracker.finish(run_id, "FINISHED")
    return steps


@pytest.fixture
def copy(store, tmp_path) -> Path:
    copy_store(store, tmp_path)
    return tmp_path


def scores_of(text: str, budget: dict, extra: list[int]) -> dict[str, list[str]]:
    """The adding score table of one budget: family -> its cells."""
    part = section_text(text, f"Budget {Budget(**budget).key(0, extra)}")
    return {row[0]: row[1:] for row in md_rows(section_text(part, "adding", 3), "family")[1:]}


def build(folder: Path) -> str:
    """The leaderboard `harness report` writes (the frontier's section passed in), in process."""
    from harness import frontier_report, report
    from harness.tracking import open_store

    store = open_store(f"sqlite:///{folder / 'mlflow.db'}")
    written = report.build(store, EXPERIMENT, folder, features=[frontier_report.section])
    return written.leaderboard.read_text()


def test_a_cell_stored_before_majority_verdicts_is_judged_by_its_mean(copy):
    """No harness.verdict_rule tag: the search seed alone solves, the retrain does not, the
    mean misses the bar: no ✓, and the report says how such a cell is judged."""
    metrics = {"test_score": 0.005, "test_score_seed_1": 0.3, "trials_completed": 3}
    add_cell(copy, "gru", 50, metrics, extra_seeds=[1])
    text = build(copy)
    assert scores_of(text, BUDGET, [1])["gru"] == ["0.1525 ± 0.21 (1/2)", "—"]
    assert "1 cell was stored before verdicts by a majority of seeds" in text
    assert "1 of 2 seeds, judged by the mean (stored before majority verdicts)" in text
    add_cell(copy, "lstm", 50, {**metrics, "test_score_seed_1": 0.007}, extra_seeds=[1])
    assert scores_of(build(copy), BUDGET, [1])["lstm"] == ["0.006 ± 0.0014 (2/2) ✓", "L=50"]


def test_a_majority_of_seeds_solves_a_cell_and_near_the_bar_is_marked(copy):
    """Two of three seeds meet the bar (the mean does not): ✓ with (2/3); ≈ when a solving
    seed's interval holds the bar (one flip would fail the cell), none when it does not."""
    metrics = {
        "test_score": 0.005, "test_score_seed_1": 0.007, "test_score_seed_2": 0.9,
        "test_score_low": 0.004, "test_score_high": 0.006, "test_score_seed_2_low": 0.8,
        "test_score_seed_2_high": 1.0, "trials_completed": 3,
    }  # fmt: skip
    near = {"test_score_seed_1_low": 0.004, "test_score_seed_1_high": 0.011}  # bar 0.01
    clear = {"test_score_seed_1_low": 0.006, "test_score_seed_1_high": 0.008}
    add_cell(copy, "gru", 50, {**metrics, **near}, extra_seeds=[1, 2], rule="majority")
    add_cell(copy, "lstm", 50, {**metrics, **clear}, extra_seeds=[1, 2], rule="majority")
    text = build(copy)
    rows = scores_of(text, BUDGET, [1, 2])
    assert rows["gru"] == ["0.304 ± 0.52 (2/3) ✓ ≈", "L=50"]
    assert rows["lstm"] == ["0.304 ± 0.52 (2/3) ✓", "L=50"]
    seeds = {row[0]: row[5] for row in md_rows(text[text.index("The run behind") :], "family")}
    assert seeds["gru"] == "2 of 3 seeds, near the bar" and seeds["lstm"] == "2 of 3 seeds"


def test_a_diverged_seed_counts_as_failed(copy):
    run_id = add_cell(copy, "gru", 50, {"test_score": 0.001}, extra_seeds=[1, 2])
    client(copy).set_tag(run_id, "harness.diverged_seeds", "2")
    client(copy).log_metric(run_id, "test_score_seed_1", 0.002)
    score = scores_of(build(copy), BUDGET, [1, 2])["gru"][0]
    baseline = get_task("adding").baseline(50)  # the score of the diverged seed
    mean = statistics.fmean([0.001, 0.002, baseline])
    assert score.startswith(f"{mean:.4g} ± ") and "✓" not in score and score.endswith("(2/3)")


def test_budgets_are_never_mixed_and_the_latest_run_stands(copy):
    add_cell(copy, "gru", 50, {"test_score": 0.2})
    newer = add_cell(copy, "gru", 50, {"test_score": 0.004})  # the same budget, rerun later
    other = add_cell(copy, "gru", 50, {"test_score": 0.001}, budget={"epochs": 2})
    text = build(copy)
    first, second = Budget(**BUDGET).key(0, []), Budget(**{**BUDGET, "epochs": 2}).key(0, [])
    assert f"## Budget {first}" in text and f"## Budget {second}" in text
    assert "random search, 3 trials x up to 8 epochs" in section_text(text, f"Budget {first}")
    assert scores_of(text, BUDGET, [])["gru"] == ["0.004 (1/1) ✓", "L=50"]
    assert scores_of(text, {**BUDGET, "epochs": 2}, [])["gru"] == ["0.001 (1/1) ✓", "L=50"]
    assert f"run {newer[:8]} supersedes 1 earlier finished run of the same budget" in text
    assert other[:8] in section_text(text, f"Budget {second}")


def test_diverged_failed_and_unfinished_cells_are_reported(copy):
    add_cell(copy, "lstm", 10, {"solved": 0}, state="diverged")
    add_cell(copy, "bilstm", 10, {"solved": 0}, state="failed")
    add_cell(copy, "gru", 10, {"solved": 0}, state="partial", finished=False)
    text = build(copy)
    rows = scores_of(text, BUDGET, [])
    assert rows["lstm"] == ["diverged", "—"] and rows["bilstm"] == ["failed", "—"]
    assert "gru" not in rows
    assert "Unfinished cell runs (running or interrupted), left out: 1." in text


def test_store_values_are_escaped(copy):
    add_cell(copy, PAYLOAD, 10, {"test_score": 0.5}, device="<img src=x onerror=alert(2)>")
    result = harness("report", "--experiment", EXPERIMENT, cwd=copy)
    assert result.returncode == 0, result.stderr
    page = (copy / "reports" / "index.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert page.count("<script") == 1  # the page's own image check, allowed by its CSP hash
    text = (copy / "reports" / "leaderboard.md").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in text and "<script>" not in text


# -- the frontier -------------------------------------------------------------------------------

ADDING = {"params": 5000}
FIRST_TOKEN = {"params": 5000, "epochs": 6}


def md_tables(text: str) -> list[tuple[str, list[list[str]]]]:
    """Every markdown table of `text` in order: (the paragraph before it, its rows)."""
    found, lines = [], text.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("| ") and not lines[i - 1].startswith("|"):
            found.append((lines[i - 2], md_rows("\n".join(lines[i:]), line.split(" | ")[0][2:])))
    return found


def headings(text: str, level: int = 2) -> list[str]:
    return [line[level + 1 :] for line in text.splitlines() if line.startswith("#" * level + " ")]


def test_the_frontier_matrix_comes_first_one_table_per_parameter_budget(copy):
    """Brackets of one parameter budget in one table (family rows, a column per task and
    training budget, lettered in the caption), confirmations apart, the matrix's figure and
    one per task in markdown and HTML; an entry links to its cell's row of the runs table;
    the confirming cells are no budget of their own."""
    add_frontier(copy, "adding", "gru", lambda L: L <= 40, ADDING)
    add_frontier(copy, "adding", "simple_rnn", lambda L: L <= 10, ADDING)
    add_frontier(copy, "first_token", "gru", lambda L: L <= 20, FIRST_TOKEN)
    add_frontier(copy, "first_token", "bigru", lambda L: True, FIRST_TOKEN)
    text = build(copy)
    adding, first_token = (Budget(**{**BUDGET, **b}).key(0, []) for b in (ADDING, FIRST_TOKEN))
    confirming = [Budget(**{**BUDGET, **b}).key(1, []) for b in (ADDING, FIRST_TOKEN)]
    titles = headings(text)
    assert titles[:2] == ["Frontier", "How to read it"]
    assert {f"Budget {key}" for key in (adding, first_token)} <= set(titles[2:])
    assert all(t.startswith("Budget ") for t in titles[2:]) and len(titles) == 5
    assert not {f"Budget {key}" for key in confirming} & set(titles)
    assert "20 cells under 3 budgets and 3 confirming frontiers' failures." in text

    section = section_text(text, "Frontier")
    tables = md_tables(section)
    assert [caption.split(".")[0].split(":")[0] for caption, _ in tables] == [
        "Frontier matrix, 5,000 parameters", f"Confirmations, budget {confirming[0]}",
        f"Confirmations, budget {confirming[1]}",
    ]  # fmt: skip
    training = "random search, 3 trials x up to {} epochs ({} updates), batch 64, 512 / 64 / " \
        "64 train / validation / test sequences, 1 seed."  # fmt: skip
    assert tables[0] == (
        f"Frontier matrix, 5,000 parameters. (a): {training.format(8, 64)} (b): {training.format(6, 48)}",
        [
            ["family", "adding (a)", "first_token (b)"],
            ["bigru", "", "≥ 80 (1/1)"],
            ["gru", "[40, 57) (1/1, 0/1)", "[20, 29) (1/1, 0/1)"],
            ["simple_rnn", "[10, 15) (1/1, 0/1)", ""],
        ],
    )
    assert "the budget above with 1 seed from search seed 1" in tables[1][0]
    header = ["task", "family", "length", "score", "solved bar", "run"]
    assert [row[:5] for row in tables[1][1]] == [
        header[:5], ["adding", "gru", "L=57", "0.2 (0/1)", "≤ 0.01"],
        ["adding", "simple_rnn", "L=15", "0.2 (0/1)", "≤ 0.01"],
    ]  # fmt: skip
    assert [row[:5] for row in tables[2][1]] == [
        header[:5], ["first_token", "gru", "L=29", "0.1 (0/1)", "≥ 0.95"]
    ]  # fmt: skip

    files = [
        figure_file("frontier_matrix", "all", "5000"),
        f"frontier_adding_{adding}.png",
        f"frontier_first_token_{first_token}.png",
    ]
    assert [f for f in files if f"](figures/{f})" in section] == files
    page = (copy / "index.html").read_text()
    frontier_html = page[page.index("<h2>Frontier</h2>") : page.index("<h2>How to read it</h2>")]
    assert re.findall(r'data-file="(frontier_[^"]+)"', frontier_html) == files
    assert frontier_html.count("<table>") == 3
    for name in files:
        assert (copy / "figures" / name).is_file()
    links = re.findall(r'<a href="#(run-[0-9a-f]+)">\[40, 57\) \(1/1, 0/1\)</a>', frontier_html)
    assert len(links) == 1 and page.count(f'<tr id="{links[0]}">') == 1
    row = page[page.index(f'<tr id="{links[0]}">') :].split("</tr>")[0]
    assert "<td>gru</td><td>40</td>" in row  # the longest solved cell's row


def near_the_bar(folder: Path, step: Step) -> None:
    """Mark a probed cell as stored under majority verdicts, its one seed's 95% interval
    holding the bar (≤ 0.01): its verdict is near the bar."""
    mlflow = client(folder)
    mlflow.set_tag(step.run_id, "harness.verdict_rule", "majority")
    mlflow.log_metric(step.run_id, "test_score_low", 0.0005)
    mlflow.log_metric(step.run_id, "test_score_high", 0.3)


def test_a_bracket_shows_its_deciding_cells_seeds_and_near_the_bar(copy):
    """Beside a bracket, k/n of its longest solved then its shortest failed cell; ≈ where
    either one's verdict is near the bar (gru's failure, simple_rnn's success), none where
    neither is (lstm), nor for a cell away from the bracket (lstm's first length)."""
    gru = add_frontier(copy, "adding", "gru", lambda L: L <= 40, ADDING)
    rnn = add_frontier(copy, "adding", "simple_rnn", lambda L: L <= 10, ADDING)
    lstm = add_frontier(copy, "adding", "lstm", lambda L: L <= 20, ADDING)
    near_the_bar(copy, next(s for s in gru if s.length == 57 and s.attempt == 0))
    near_the_bar(copy, next(s for s in rnn if s.length == 10))
    near_the_bar(copy, next(s for s in lstm if s.length == 10))
    text = build(copy)
    (_, rows), *_ = md_tables(section_text(text, "Frontier"))
    assert rows == [
        ["family", "adding (a)"],
        ["gru", "[40, 57) (1/1, 0/1) ≈"],
        ["lstm", "[20, 29) (1/1, 0/1)"],
        ["simple_rnn", "[10, 15) (1/1, 0/1) ≈"],
    ]
    paragraph = section_text(text, "Frontier").split("\n\n")[1]
    for words in ("(k/n, k/n)", "≈: either of the two verdicts is near the bar", "more than half"):
        assert words in paragraph, words


def test_how_to_read_it_explains_seeds_intervals_and_marks(copy):
    add_cell(copy, "gru", 50, {"test_score": 0.004}, rule="majority")
    how = section_text(build(copy), "How to read it")
    for words in (
        "(k/n): k of its n seeds solve",
        "A seed solves when its own test score meets the task's solved bar",
        "more than half of its seeds do",
        "a split vote (some seeds solve, some do not) adds two more seeds, once",
        "95% interval",
        "Wilson interval where each sequence gives one prediction (digits, first_token, "
        "listops, pdigits)",
        "t-interval over per-sequence scores for per-step metrics and MSE",
        "≈ marks a verdict near the bar",
        "★ on the point the search chose, and ⇤ (⇥)",
        "Cells stored before this rule are judged as they were then, by the mean over their seeds",
    ):
        assert words in how, words


def test_a_matrix_column_holds_one_training_budget_and_fixed_cells_show_scores(copy):
    """The same task under two training budgets is two columns; cells of the parameter
    budget that no frontier probed are columns of their own, with their mean score."""
    add_frontier(copy, "adding", "gru", lambda L: L <= 40, ADDING)
    add_frontier(copy, "adding", "gru", lambda L: L <= 80, {**ADDING, "epochs": 32})
    add_cell(copy, "lstm", 64, {"test_score": 0.004}, budget=ADDING)
    caption, rows = md_tables(section_text(build(copy), "Frontier"))[0]
    assert rows == [
        ["family", "adding (a)", "adding (b)", "adding L=64 (a)"],
        ["gru", "[40, 57) (1/1, 0/1)", "≥ 80 (1/1)", ""],
        ["lstm", "", "", "0.004 (1/1) ✓"],
    ]
    assert "(a): random search, 3 trials x up to 8 epochs" in caption
    assert "(b): random search, 3 trials x up to 32 epochs" in caption


def test_two_parameter_budgets_are_two_matrices_and_an_unfinished_frontier_is_no_bracket(copy):
    """A matrix per parameter budget; a frontier interrupted after two cells shows as
    unfinished (never a bracket), its cells are no fixed-length columns, and it has no
    figure or confirmation table of its own."""
    add_frontier(copy, "adding", "gru", lambda L: L <= 40, ADDING)
    add_frontier(copy, "adding", "lstm", lambda L: True, ADDING, cells=2)
    add_frontier(copy, "adding", "gru", lambda L: L <= 20, {**ADDING, "params": 10000})
    section = section_text(build(copy), "Frontier")
    tables = [(caption.split(".")[0], rows) for caption, rows in md_tables(section)]
    assert [caption for caption, _ in tables if caption.startswith("Frontier matrix")] == [
        "Frontier matrix, 5,000 parameters", "Frontier matrix, 10,000 parameters"
    ]  # fmt: skip
    assert tables[0][1] == [
        ["family", "adding (a)"],
        ["gru", "[40, 57) (1/1, 0/1)"],
        ["lstm", "unfinished (2 lengths probed)"],
    ]
    assert tables[1][1] == [["family", "adding (a)"], ["gru", "[20, 29) (1/1, 0/1)"]]
    assert not [c for c, _ in tables if c.startswith("Confirmations") and "lstm" in c]
    assert section.count("](figures/frontier_adding_") == 2  # the finished budgets' only


def test_fixed_cells_of_a_parameter_budget_without_frontiers_are_a_matrix_of_their_own(copy):
    """Fixed-length cells at a parameter budget no frontier ran (the study's recall block)
    are a matrix of scores after the frontiers' matrix; cells without a parameter budget
    (the store's own) are none."""
    add_frontier(copy, "adding", "gru", lambda L: L <= 40, ADDING)
    add_cell(copy, "lstm", 64, {"test_score": 0.2}, budget={"params": 70000})
    add_cell(copy, "gru", 64, {"test_score": 0.004}, budget={"params": 70000, "epochs": 40})
    tables = [t for t in md_tables(section_text(build(copy), "Frontier")) if "matrix" in t[0]]
    assert [caption.split(".")[0] for caption, _ in tables] == [
        "Frontier matrix, 5,000 parameters", "Frontier matrix, 70,000 parameters"
    ]  # fmt: skip
    assert tables[1][1] == [
        ["family", "adding L=64 (a)", "adding L=64 (b)"],
        ["gru", "", "0.004 (1/1) ✓"],
        ["lstm", "0.2 (0/1)", ""],
    ]


def test_a_frontier_figure_names_its_task_slugged():
    """A plug-in's task is a path: its figure's file name keeps only safe characters."""
    task = "my_tasks/odd.py:Odd"
    bracket = Bracket(10, 80, 20, 40, [Step(20, 0, "double", True), Step(40, 0, "double", False)])
    found = FrontierResult("r" * 32, task, "gru", "k", Budget(**BUDGET), 0, 1, bracket, True)
    section = frontier_section([found], {})
    name = figure_file("frontier", task, "k")
    assert [file for file, kind, _ in section.figures if kind == "frontier"] == [name]
    assert re.fullmatch(r"frontier_my_tasks_odd\.py_Odd-[0-9a-f]{8}_k\.png", name)


# -- which experiment, and errors ---------------------------------------------------------------


def test_without_flags_the_latest_runs_experiment_is_read(store, copy):
    """After a flag-only run (experiment adhoc), report, status and verify find it alone."""
    result = harness("run", "--task", "adding", "--length", "8", "--family", "gru",
                     "--max-trials", "1", "--epochs", "1", "--n-train", "32", "--n-val", "32",
                     "--n-test", "32", "--batch-size", "32", cwd=copy)  # fmt: skip
    assert result.returncode == 0, result.stderr
    for command in (["report", "--out", "r"], ["status"]):
        found = harness(*command, cwd=copy)
        assert found.returncode == 0, found.stderr
        assert "experiment 'adhoc' (the store's latest run" in found.stderr
    assert (copy / "r" / "leaderboard.md").read_text().startswith("# Leaderboard: adhoc\n")
    assert "adding L=8 gru" in harness("status", cwd=copy).stdout


def test_missing_experiment_is_one_line_and_exit_2(store, tmp_path):
    result = harness("report", "--experiment", "nope", "--out", str(tmp_path), cwd=store)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'nope' does not exist" in lines[0] and EXPERIMENT in lines[0]
    assert not (tmp_path / "leaderboard.md").exists()


def test_empty_experiment_is_one_line_and_exit_2(copy):
    client(copy).create_experiment("empty")
    result = harness("report", "--experiment", "empty", cwd=copy)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'empty'" in lines[0] and "no finished cells" in lines[0]


def test_missing_store_is_not_created(tmp_path):
    result = harness("report", cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


# -- README ----------------------------------------------------------------------------------

README = "# Title\n\n<!-- leaderboard:start -->\nold\n<!-- leaderboard:end -->\nend\n"


def test_out_never_touches_the_readme(copy):
    (copy / "README.md").write_text(README)
    result = harness("report", "--experiment", EXPERIMENT, "--out", "scratch", cwd=copy)
    assert result.returncode == 0, result.stderr
    assert (copy / "README.md").read_text() == README and "README" not in result.stdout


def test_update_readme_refreshes_it_between_its_markers(store, copy):
    readme = copy / "README.md"
    readme.write_text(README)
    result = harness("report", "--experiment", EXPERIMENT, "--update-readme", cwd=copy)
    assert result.returncode == 0, result.stderr
    text = readme.read_text()
    assert text.startswith("# Title\n\n<!-- leaderboard:start -->\n") and text.endswith(
        "<!-- leaderboard:end -->\nend\n"
    )
    assert text == (  # no frontier in this store: the link alone
        "# Title\n\n<!-- leaderboard:start -->\nEvery budget's scores, costs, runs and figures "
        f"(MLflow experiment {EXPERIMENT}): [reports/leaderboard.md](reports/leaderboard.md), or "
        "the same as one page, [reports/index.html](reports/index.html).\n"
        "<!-- leaderboard:end -->\nend\n"
    )

    script = [sys.executable, str(REPO / "scripts" / "update_readme.py")]
    again = subprocess.run(script, cwd=copy, capture_output=True, text=True)
    assert again.returncode == 0 and "unchanged" in again.stdout and readme.read_text() == text

    readme.write_text("# no markers\n")
    missing = subprocess.run(script, cwd=copy, capture_output=True, text=True)
    assert missing.returncode == 2 and "markers" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert readme.read_text() == "# no markers\n"


def test_the_readme_block_is_the_frontier_matrices_and_a_link(copy):
    """README shows the frontier's matrices (no figures, no confirmations, no budget's
    tables) and links the rest."""
    from harness.report import update_readme

    add_frontier(copy, "adding", "gru", lambda L: L <= 40, ADDING)
    leaderboard = build(copy)
    readme = copy / "README.md"
    readme.write_text(README)
    assert update_readme(readme, copy / "leaderboard.md")
    block = readme.read_text().split("<!-- leaderboard:start -->\n")[1]
    block = block.split("\n<!-- leaderboard:end -->")[0]
    frontier = section_text(leaderboard, "Frontier")
    matrix = frontier.split("\nConfirmations, budget")[0]
    tables = [line for line in matrix.splitlines() if line.startswith("|")]
    assert block.startswith("### Frontier\n\nThe longest length each family solves")
    assert [line for line in block.splitlines() if line.startswith("|")] == tables
    assert "| gru | [40, 57) (1/1, 0/1) |" in tables and "Confirmations, budget" in frontier
    assert "Confirmations" not in block
    assert "![" not in block and "Budget " + Budget(**BUDGET).key(0, []) not in block
    assert "### Budget" not in block and "## Budget" in leaderboard
    assert block.endswith(
        f"(MLflow experiment {EXPERIMENT}): [leaderboard.md](leaderboard.md), or the same as "
        "one page, [index.html](index.html)."
    )


# -- the page in a browser ----------------------------------------------------------------------


@pytest.mark.slow
def test_page_renders_and_every_figure_loads_in_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does)")
    command = [
        chromium, "--headless", "--no-sandbox", "--disable-gpu",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000", "--dump-dom", (report / "index.html").as_uri(),
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert dom.count("<table>") == 4 and "<h3>adding</h3>" in dom
    images = len(list((report / "figures").glob("*.png")))
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-images="{images}"' in body
    assert f'data-images-loaded="{images}"' in body, body


# -- a grid search's points ---------------------------------------------------------------------

RATES = [0.001, 0.003, 0.01]


def grid_budget(grid: list) -> dict:
    """A grid search's budget over the axes `grid` ([name, values] pairs): a trial a point."""
    points = math.prod(len(values) for _, values in grid)
    return {**BUDGET, "tuner": "grid", "grid": grid, "max_trials": points}


def add_grid_cell(folder: Path, family: str, grid: list, objectives: list, best: int) -> str:
    """A grid search's cell (adding at L=50, `grid_budget(grid)`) and a trial
    run per point (its axes' values combined in order; its params the point's values, its
    validation score `objectives[i]`, None: diverged), the search's choice point `best`."""
    names = [name for name, _ in grid]
    points = itertools.product(*(values for _, values in grid))
    run_id = add_cell(
        folder, family, 50, {"test_score": 0.004}, budget=grid_budget(grid), rule="majority"
    )
    for i, (point, objective) in enumerate(zip(points, objectives, strict=True)):
        tags = {
            "harness.kind": "trial", "mlflow.parentRunId": run_id, "harness.trial_id": f"{i:02d}",
            "harness.status": "finished" if objective is not None else "diverged",
        }  # fmt: skip
        metrics = {} if objective is None else {"objective": objective}
        add_run(folder, EXPERIMENT, tags, dict(zip(names, point, strict=True)), metrics)
    client(folder).set_tag(run_id, "harness.best_trial", f"{best:02d}")
    return run_id


def grid_rows(text: str, grid: list) -> list[list[str]]:
    """The grid points table of the adding cells of `grid_budget(grid)`."""
    part = section_text(text, f"Budget {Budget(**grid_budget(grid)).key(0, [])}")
    return md_rows(part[part.index("Grid points:") :], "family")


def test_a_grid_table_marks_the_chosen_point_and_an_edge_of_its_axis(copy):
    """A row per cell, a column per grid point with its trial's validation score; ★ on the
    point the search chose; ⇥ when that is the largest learning rate, ⇤ the smallest, no
    mark in the middle or where another point ties it; a diverged trial says so."""
    grid = [["learning_rate", RATES]]
    add_grid_cell(copy, "gru", grid, [0.2, 0.1, 0.004], best=2)
    add_grid_cell(copy, "lstm", grid, [None, 0.003, 0.05], best=1)
    add_grid_cell(copy, "simple_rnn", grid, [0.02, 0.1, 0.3], best=0)
    add_grid_cell(copy, "bigru", grid, [0.0, 0.0, 0.1], best=0)  # a tie: no edge to widen
    text = build(copy)
    assert grid_rows(text, grid) == [
        ["family", "length", *(f"learning_rate={r}" for r in RATES), "edge"],
        ["bigru", "50", "0 ★", "0", "0.1", ""],
        ["gru", "50", "0.2", "0.1", "0.004 ★", "⇥ learning_rate"],
        ["lstm", "50", "diverged", "0.003 ★", "0.05", ""],
        ["simple_rnn", "50", "0.02 ★", "0.1", "0.3", "⇤ learning_rate"],
    ]
    label = "grid search over learning_rate 0.001, 0.003, 0.01 (3 trials"
    assert label in section_text(text, f"Budget {Budget(**grid_budget(grid)).key(0, [])}")
    assert text.count("Grid points:") == 1  # the random search's budget has none


def test_a_grid_of_two_axes_marks_each_numeric_axis_at_an_edge(copy):
    """Columns are the points in order (depth, then learning rate); the chosen point lies on
    depth's largest value and learning rate's middle: depth alone is marked."""
    grid = [["depth", [1, 2]], ["learning_rate", RATES]]
    add_grid_cell(copy, "gru", grid, [0.2, 0.1, 0.3, 0.05, 0.004, 0.02], best=4)
    rows = grid_rows(build(copy), grid)
    assert rows[0][2:4] == ["depth=1, learning_rate=0.001", "depth=1, learning_rate=0.003"]
    assert rows[1] == ["gru", "50", "0.2", "0.1", "0.3", "0.05", "0.004 ★", "0.02", "⇥ depth"]
