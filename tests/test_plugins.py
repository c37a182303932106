"""Your own families and tasks by import path: README's example family runs (worker processes
and verify included), a task of your own is cached under its path, an edit starts new cells,
and a plug-in that breaks the contract is refused with one line."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pytest

from tests.conftest import REPO, all_runs, harness, store_uri

TINY = ["--max-trials", "1", "--epochs", "2", "--n-train", "64", "--n-val", "32",
        "--n-test", "32", "--batch-size", "32"]  # fmt: skip
PARITY = '''
import numpy as np
from tasks.base import InputSpec, Metric, OutputSpec, Task, masked_accuracy


class Parity(Task):
    """The parity of a sequence of bits (sequence class)."""

    name = "parity"
    description = "parity of the bits"
    input = InputSpec("tokens", vocab=("0", "1"))
    output = OutputSpec("sequence_classification", classes=2)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max")
    default_lengths = (8,)

    def _generate(self, n, length, rng, split):
        x = rng.integers(0, 2, size=(n, length), dtype=np.int32)
        return x, (x.sum(axis=1) % 2).astype(np.int32)

    def baseline(self, length):
        return 0.5

    def trivial_prediction(self, x, length):
        return np.full((len(x), 2), 0.5, dtype=np.float32)

    def solved_bar(self, length):
        return 0.95

    def scores(self, y_true, y_pred):
        return {"accuracy": masked_accuracy(y_true, y_pred)}
'''


def readme_example() -> str:
    """The example family between README's plug-in markers, as README shows it."""
    text = (REPO / "README.md").read_text()
    block = text.split("<!-- plugin-example:start -->")[1].split("<!-- plugin-example:end -->")[0]
    return re.search(r"```python\n(.*?)```", block, re.S).group(1)


@pytest.fixture
def plugin_dir(workdir) -> Path:
    (workdir / "my_conv.py").write_text(readme_example())
    (workdir / "my_tasks.py").write_text(PARITY)
    return workdir


def cells(folder: Path, experiment: str = "adhoc"):
    runs = all_runs(store_uri(folder), experiment)
    return runs[runs["tags.harness.kind"] == "cell"]


def test_readmes_family_runs_in_worker_processes_and_verifies(plugin_dir):
    assert len(readme_example().strip().splitlines()) <= 25  # "about 20 lines"
    run = ["run", "--task", "adding", "--length", "8", "--family", "my_conv:CausalConv", *TINY]
    result = harness(*run, "--params", "5000", "--workers", "2", cwd=plugin_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    (cell,) = [row for _, row in cells(plugin_dir).iterrows()]
    assert cell["params.family"] == "my_conv:CausalConv" and cell["status"] == "FINISHED"
    assert '"family"' in cell["params.code"] and str(plugin_dir) in cell["params.code_roots"]
    assert abs(cell["metrics.parameters"] - 5000) <= 500
    with tempfile.TemporaryDirectory() as empty:  # verify imports it from where it was
        checked = harness("verify", "--tracking-uri", store_uri(plugin_dir), cwd=Path(empty))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    source = plugin_dir / "my_conv.py"
    source.write_text(source.read_text() + "\n# an edit\n")
    again = harness(*run, "--params", "5000", cwd=plugin_dir)
    assert again.returncode == 0 and "skipped" not in again.stdout  # a new cell
    assert len(cells(plugin_dir)) == 2
    source.write_text(source.read_text() + "# another edit, after the run\n")
    changed = harness("verify", "--tracking-uri", store_uri(plugin_dir), cwd=plugin_dir)
    assert changed.returncode == 1 and "changed since the run" in changed.stderr


def test_your_own_task_is_cached_under_its_import_path(plugin_dir):
    result = harness(
        "run", "--task", "my_tasks:Parity", "--length", "8", "--family", "gru", *TINY,
        cwd=plugin_dir,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    cached = sorted(p.name for p in (plugin_dir / "data" / "cache").glob("*.npz"))
    assert cached and all(name.startswith("my_tasks-Parity-") for name in cached)
    (cell,) = [row for _, row in cells(plugin_dir).iterrows()]
    assert cell["params.task"] == "my_tasks:Parity" and '"task"' in cell["params.code"]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--family", "no_such_module:Thing"], "cannot import 'no_such_module:Thing'"),
        (["--family", "my_tasks:Parity"], "is not a subclass of search_spaces.base.FamilySpace"),
        (["--family", "my_conv"], "unknown family 'my_conv'"),
        (["--task", "my_conv:CausalConv"], "is not a subclass of tasks.base.Task"),
        (["--task", "my_tasks:Broken"], "breaks the task contract"),
    ],
)
def test_a_plugin_that_cannot_be_used_is_one_line_and_exit_2(plugin_dir, flags, expected):
    (plugin_dir / "my_tasks.py").write_text(
        PARITY + "\n\nclass Broken(Parity):\n    def _generate(self, n, length, rng, split):\n"
        "        return [0], [0]\n"
    )
    args = {"--task": "adding", "--length": "8", "--family": "gru"}
    args.update(dict(zip(flags[::2], flags[1::2], strict=True)))
    result = harness("run", *(part for pair in args.items() for part in pair), cwd=plugin_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (plugin_dir / "mlflow.db").exists()
