"""harness.api, the library the CLI wraps: a notebook's calls in a fresh interpreter (the
example docs/usage.md shows), its errors, and what it imports."""

from __future__ import annotations

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from harness import api
from harness.errors import HarnessError, Interrupted, StoreUnavailable, UserError
from tests.helpers import import_graph, module_files

REPO = Path(__file__).resolve().parent.parent
NOT_FOR_THE_LIBRARY = ("typer", "rich")


def usage_example() -> str:
    """The Python block of docs/usage.md's section on harness.api."""
    text = (REPO / "docs" / "usage.md").read_text()
    section = text.split("## From Python: `harness.api`", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.S)[1]


CHECKS = """
import json, signal, sys
from harness.errors import Interrupted

handler = signal.getsignal(signal.SIGINT)
try:
    api.run(tasks=["adding"], lengths=[12], families=["gru"], store=store, workdir="data",
            budget={"tuner": "random", "max_trials": 1, "epochs": 1, "n_train": 64,
                    "n_val": 32, "n_test": 32, "batch_size": 32}, stop_after=1e-6)
    stopped = None
except Interrupted as error:
    stopped = error.stopped_after
loaded = sorted(m for m in sys.modules
                if m.split(".")[0] == "typer" or m.startswith(("harness.cli", "harness.progress")))
print("RESULT " + json.dumps({
    "states": [o.state for o in ran.cells], "ok": checked.ok, "checks": len(checked.checks),
    "columns": list(table.columns), "rows": table.to_dict("records"), "stopped": stopped,
    "handler_kept": signal.getsignal(signal.SIGINT) is handler, "loaded": loaded,
}, default=str))
"""


def test_the_usage_example_runs_verifies_and_reads_a_cell_in_a_fresh_interpreter(tmp_path):
    """One trial, verified and read as a DataFrame, with no CLI module loaded (Keras itself
    loads rich: that harness's own modules import none is the static test below); a run
    stopped by its time limit raises Interrupted; SIGINT's handler is the one found."""
    script = tmp_path / "notebook.py"
    script.write_text(usage_example() + CHECKS)
    done = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT "))
    result = json.loads(line.removeprefix("RESULT "))
    assert result["states"] == ["done"]
    assert result["ok"] and result["checks"] > 0
    assert result["columns"] == list(api.RESULT_COLUMNS)
    [row] = result["rows"]
    assert (row["task"], row["length"], row["family"], row["seed"]) == ("adding", 10, "gru", 0)
    assert row["interval_low"] <= row["test_score"] <= row["interval_high"]
    assert row["seed_solved"] == (row["test_score"] <= row["solved_bar"])
    assert len(row["run_id"]) == 32 and row["budget"].startswith("random search, 1 trial")
    assert result["stopped"] == 1e-6
    assert result["handler_kept"]
    assert result["loaded"] == []


def test_bad_input_raises_the_harness_own_error_before_any_work(tmp_path):
    store = f"sqlite:///{tmp_path / 'mlflow.db'}"
    with pytest.raises(UserError, match="unknown task 'nope'"):
        api.run(tasks=["nope"], lengths=[10], families=["gru"], store=store, workdir=tmp_path)
    with pytest.raises(UserError, match="give --suite, or all of"):
        api.run(tasks=["adding"], store=store, workdir=tmp_path)
    with pytest.raises(UserError, match="--stop-after 0"):
        api.run(suite="quick", store=store, workdir=tmp_path, stop_after=0)
    with pytest.raises(UserError, match="does not exist"):
        api.verify(store)
    with pytest.raises(UserError, match="does not exist"):
        api.results(store)
    assert not (tmp_path / "mlflow.db").exists()
    assert issubclass(UserError, HarnessError) and issubclass(Interrupted, HarnessError)
    assert issubclass(StoreUnavailable, HarnessError)


def test_the_library_reaches_no_command_line_module():
    """Every module harness.api may import, inside functions included, imports nothing of
    harness.cli, typer or rich."""
    graph, files = import_graph(), module_files()
    reached, todo = set(), ["harness.api"]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(graph[module] - reached)
    assert not [m for m in reached if m.startswith("harness.cli")]
    outside = {
        (module, name)
        for module in reached
        for node in ast.walk(ast.parse(files[module].read_text()))
        for name in (
            [a.name for a in node.names]
            if isinstance(node, ast.Import)
            else [node.module or ""]
            if isinstance(node, ast.ImportFrom) and not node.level
            else []
        )
        if name.split(".")[0] in NOT_FOR_THE_LIBRARY
    }
    assert outside == set()
    assert {"harness.runner", "harness.verify", "harness.report"} <= reached
