"""`harness report` on a real store made by a real tiny run: structure, numbers, determinism,
HTML escaping, errors, the README markers, and (slow) the page in headless Chromium."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
EXPERIMENT = "report-test"
LENGTHS = (10, 20)
FAMILY = "simple_rnn"
PAYLOAD = "<script>alert(1)</script>|x"


def harness(*args: str, cwd: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    """The real `harness` command in a subprocess, on the local store of `cwd`."""
    env = {**os.environ, "KERAS_BACKEND": "jax"}
    env.pop("MLFLOW_TRACKING_URI", None)
    command = [sys.executable, "-c", "from harness.cli import app; app()", *args]
    return subprocess.run(
        command, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )


def uri(folder: Path) -> str:
    return f"sqlite:///{folder / 'mlflow.db'}"


def client(folder: Path):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri(folder))


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """A store made by `harness run`: adding at two lengths, longer test length, an extra seed."""
    folder = tmp_path_factory.mktemp("store")
    lengths = [arg for L in LENGTHS for arg in ("--length", str(L))]
    result = harness(
        "run",
        "--task",
        "adding",
        *lengths,
        "--family",
        FAMILY,
        "--max-trials",
        "2",
        "--epochs",
        "1",
        "--n-train",
        "128",
        "--n-val",
        "64",
        "--n-test",
        "64",
        "--eval-length",
        "40",
        "--extra-seed",
        "1",
        "--experiment",
        EXPERIMENT,
        cwd=folder,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return folder


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
    return sorted(runs, key=lambda r: int(r.data.params["length"]))


def md_rows(text: str, first_header: str) -> list[list[str]]:
    """The rows (header first) of the markdown table whose first column is `first_header`."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(f"| {first_header} |"))
    rows = []
    for line in lines[start:]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]])
    return [rows[0], *rows[2:]]


# -- structure and numbers --------------------------------------------------------------------


def test_report_has_the_tables_and_figures(report):
    text = (report / "leaderboard.md").read_text()
    assert text.startswith(f"# Leaderboard: {EXPERIMENT}\n")
    assert "## adding" in text and "Metric: mse (lower is better)." in text
    scores = md_rows(text, "family")
    assert scores[0] == ["family", *(f"L={L}" for L in LENGTHS), "longest solved"]
    assert [row[0] for row in scores[1:]] == [FAMILY, "trivial baseline", "solved bar"]
    assert (
        "| family | length | parameters | seconds per epoch | epochs to solve | diverged trials |"
        in text
    )
    names = sorted(p.name for p in (report / "figures").glob("*.png"))
    assert names == sorted(
        f"{kind}_adding.png"
        for kind in (
            "score_vs_length",
            "length_generalisation",
            "anytime",
            "hyperparameters",
            "cost_vs_length",
        )
    )
    assert "](figures/score_vs_length_adding.png)" in text

    page = (report / "index.html").read_text()
    assert page.count("<table>") == 2
    assert page.count("<img ") == len(names)
    assert "http://" not in page and "https://" not in page  # nothing to fetch
    embedded = re.findall(r'<img src="data:image/png;base64,([^"]+)"[^>]*data-file="([^"]+)"', page)
    assert sorted(name for _, name in embedded) == names
    for data, name in embedded:
        assert base64.b64decode(data) == (report / "figures" / name).read_bytes()


def test_numbers_equal_the_store(store, report):
    runs = parents(store)
    text = (report / "leaderboard.md").read_text()
    scores = {row[0]: row[1:] for row in md_rows(text, "family")[1:]}
    for i, run in enumerate(runs):
        m = run.data.metrics
        assert m["seed_count"] == 2
        expected = f"{m['seed_mean']:.4g} ± {m['seed_std']:.2g}" + (" ✓" if m["solved"] else "")
        assert scores[FAMILY][i] == expected
        assert scores["trivial baseline"][i] == f"{m['baseline']:.4g}"
        assert scores["solved bar"][i] == f"≤ {m['solved_bar']:.4g}"
    solved = [int(r.data.params["length"]) for r in runs if r.data.metrics["solved"]]
    assert scores[FAMILY][-1] == (f"L={max(solved)}" if solved else "—")

    lines = text.splitlines()
    cost_start = lines.index("Cost of each cell's best model:") + 2
    costs = md_rows("\n".join(lines[cost_start:]), "family")[1:]
    for row, run in zip(costs, runs, strict=True):
        m = run.data.metrics
        assert row[:4] == [
            FAMILY,
            run.data.params["length"],
            f"{m['parameters']:,.0f}",
            f"{m['seconds_per_epoch']:.3g}",
        ]
        assert row[5] == f"{m['trials_diverged']:.4g} of {m['trials_completed']:.4g}"
    tags = runs[0].data.tags
    assert (
        f"- {tags['harness.device']}; Keras {tags['harness.keras']} on "
        f"{tags['harness.backend']} ({tags['harness.framework']}): 2 cells" in text
    )


def test_same_store_gives_identical_files(store, report):
    result = harness("report", "--experiment", EXPERIMENT, "--out", "again", cwd=store)
    assert result.returncode == 0, result.stderr
    again = store / "again"
    first = sorted(p.relative_to(report) for p in report.rglob("*") if p.is_file())
    assert first == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for path in first:
        assert (report / path).read_bytes() == (again / path).read_bytes(), path


# -- escaping ----------------------------------------------------------------------------------


def test_store_values_are_escaped(store, tmp_path):
    shutil.copy(store / "mlflow.db", tmp_path / "mlflow.db")
    mlflow = client(tmp_path)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    run = mlflow.create_run(
        experiment,
        run_name="evil",
        tags={
            "harness.kind": "cell",
            "harness.device": "<img src=x onerror=alert(2)>",
            "harness.backend": "jax",
        },
    )
    run_id = run.info.run_id
    for key, value in {
        "task": "adding",
        "length": "10",
        "family": PAYLOAD,
        "metric": "mse",
        "direction": "min",
    }.items():
        mlflow.log_param(run_id, key, value)
    for key, value in {
        "test_score": 0.5,
        "solved": 0,
        "baseline": 0.1667,
        "solved_bar": 0.01,
        "seed_count": 1,
        "seconds_per_epoch": 0.1,
    }.items():
        mlflow.log_metric(run_id, key, value)
    mlflow.set_terminated(run_id, "FINISHED")

    result = harness("report", "--experiment", EXPERIMENT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    page = (tmp_path / "reports" / "index.html").read_text()
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;|x" in page
    assert "&lt;img src=x onerror=alert(2)&gt;" in page
    assert page.count("<script") == 1  # the page's own image check, allowed by its CSP hash
    text = (tmp_path / "reports" / "leaderboard.md").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;\\|x" in text and "<script>" not in text


def test_diverged_and_unfinished_cells_are_reported(store, tmp_path):
    from harness import report

    shutil.copy(store / "mlflow.db", tmp_path / "mlflow.db")
    mlflow = client(tmp_path)
    experiment = mlflow.get_experiment_by_name(EXPERIMENT).experiment_id
    params = {"task": "adding", "length": "10", "metric": "mse", "direction": "min"}
    for family, status in (("lstm", "FINISHED"), ("gru", "RUNNING")):
        run_id = mlflow.create_run(experiment, tags={"harness.kind": "cell"}).info.run_id
        for key, value in {**params, "family": family}.items():
            mlflow.log_param(run_id, key, value)
        mlflow.set_tag(run_id, "harness.status", "all trials diverged or failed")
        for key, value in {"solved": 0, "baseline": 0.1667, "solved_bar": 0.01}.items():
            mlflow.log_metric(run_id, key, value)
        if status == "FINISHED":
            mlflow.set_terminated(run_id, status)

    written = report.build(report.open_store(uri(tmp_path)), EXPERIMENT, tmp_path / "out")
    rows = {row[0]: row[1:] for row in md_rows(written.leaderboard.read_text(), "family")[1:]}
    assert rows["lstm"] == ["diverged", "", "—"] and "gru" not in rows
    assert "Unfinished cell runs (running or interrupted), left out: 1." in (
        written.leaderboard.read_text()
    )


# -- errors --------------------------------------------------------------------------------------


def test_missing_experiment_is_one_line_and_exit_2(store, tmp_path):
    result = harness("report", "--experiment", "nope", "--out", str(tmp_path), cwd=store)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'nope' does not exist" in lines[0] and EXPERIMENT in lines[0]
    assert not (tmp_path / "leaderboard.md").exists()


def test_empty_experiment_is_one_line_and_exit_2(store, tmp_path):
    shutil.copy(store / "mlflow.db", tmp_path / "mlflow.db")
    client(tmp_path).create_experiment("empty")
    result = harness("report", "--experiment", "empty", cwd=tmp_path)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "'empty'" in lines[0] and "no finished cells" in lines[0]


def test_missing_store_is_not_created(tmp_path):
    result = harness("report", cwd=tmp_path)
    assert result.returncode == 2 and "does not exist" in result.stderr
    assert not (tmp_path / "mlflow.db").exists()


# -- README ----------------------------------------------------------------------------------


def test_report_refreshes_the_readme_between_its_markers(store, report, tmp_path):
    shutil.copy(store / "mlflow.db", tmp_path / "mlflow.db")
    readme = tmp_path / "README.md"
    readme.write_text("# Title\n\n<!-- leaderboard:start -->\nold\n<!-- leaderboard:end -->\nend\n")
    result = harness("report", "--experiment", EXPERIMENT, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    text = readme.read_text()
    assert text.startswith("# Title\n\n<!-- leaderboard:start -->\n") and text.endswith(
        "<!-- leaderboard:end -->\nend\n"
    )
    assert "old" not in text and "### adding" in text
    assert f"| family | L={LENGTHS[0]} | L={LENGTHS[1]} | longest solved |" in text
    assert "](reports/figures/score_vs_length_adding.png)" in text

    script = [sys.executable, str(REPO / "scripts" / "update_readme.py")]
    again = subprocess.run(script, cwd=tmp_path, capture_output=True, text=True)
    assert again.returncode == 0 and "unchanged" in again.stdout and readme.read_text() == text

    readme.write_text("# no markers\n")
    missing = subprocess.run(script, cwd=tmp_path, capture_output=True, text=True)
    assert missing.returncode == 2 and "markers" in missing.stderr
    assert len(missing.stderr.strip().splitlines()) == 1
    assert readme.read_text() == "# no markers\n"


# -- the page in a browser ----------------------------------------------------------------------


@pytest.mark.slow
def test_page_renders_and_every_figure_loads_in_chromium(report, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install chromium (.ci/run does)")
    command = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
        (report / "index.html").as_uri(),
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    dom = result.stdout
    assert dom.count("<table>") == 2 and "<h2>adding</h2>" in dom
    images = len(list((report / "figures").glob("*.png")))
    body = re.search(r"<body[^>]*>", dom).group(0)
    assert f'data-images="{images}"' in body
    assert f'data-images-loaded="{images}"' in body, body
