"""Your own families and tasks by import path: docs/adding.md's example family runs (worker processes
and verify included), a task of your own is cached under its path (and runs in worker processes
and verifies), both load from the installed `harness` script, an edit starts new cells, and a
plug-in that breaks the contract is refused with one line."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from tests.helpers import REPO, all_runs, store_uri, tiny_cell, write_suite
from tests.helpers import harness_process as harness  # each command imports your modules afresh

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
    """The example family between docs/adding.md's plug-in markers, as it shows it."""
    text = (REPO / "docs" / "adding.md").read_text()
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


@pytest.mark.slow
def test_readmes_family_and_your_own_task_run_in_worker_processes_cached_and_verify(plugin_dir):
    """A suite of both plug-ins in two worker processes; then `status` (which keys the suite's
    cells as `run` does) shows that a comment keeps the cell and an edit makes a new one."""
    assert len(readme_example().strip().splitlines()) <= 25  # "about 20 lines"
    block = {"tasks": ["my_tasks:Parity"], "lengths": [8], "families": ["my_conv:CausalConv"]}
    suite = write_suite(plugin_dir / "mine.toml", "mine", [block], max_trials=1, epochs=2,
                        params=5000)  # fmt: skip
    result = harness("run", "--suite", str(suite), "--workers", "2", cwd=plugin_dir)
    assert result.returncode == 0, result.stdout + result.stderr
    (cell,) = [row for _, row in cells(plugin_dir, "mine").iterrows()]
    assert cell["params.family"] == "my_conv:CausalConv" and cell["status"] == "FINISHED"
    assert cell["params.task"] == "my_tasks:Parity"
    code = cell["params.code"]
    assert '"family"' in code and '"task"' in code and str(plugin_dir) in cell["params.code_roots"]
    assert abs(cell["metrics.parameters"] - 5000) <= 500
    cached = sorted(p.name for p in (plugin_dir / "data" / "cache").glob("*.npz"))
    assert cached and all(name.startswith("my_tasks-Parity-") for name in cached)  # its path
    with tempfile.TemporaryDirectory() as empty:  # verify imports it from where it was
        checked = harness("verify", "--tracking-uri", store_uri(plugin_dir), cwd=Path(empty))
    assert checked.returncode == 0, checked.stdout + checked.stderr

    source = plugin_dir / "my_conv.py"
    source.write_text(source.read_text() + "\n# a comment: the same code, the same cell\n")
    status = harness("status", "--suite", str(suite), cwd=plugin_dir)
    assert status.returncode == 0 and "1 done;" in status.stdout, status.stdout + status.stderr
    source.write_text(source.read_text() + "EDITED = True\n")
    status = harness("status", "--suite", str(suite), cwd=plugin_dir)
    assert "1 not started;" in status.stdout, status.stdout + status.stderr  # a new cell
    changed = harness("verify", "--tracking-uri", store_uri(plugin_dir), cwd=plugin_dir)
    assert changed.returncode == 1 and "changed since the run" in changed.stderr


BROKEN_TASKS = (  # Parity, and tasks of its kind that break the contract
    PARITY
    + PARITY.replace("class Parity(Task)", "class NoMetric(Task)").replace(
        '    metric = Metric("accuracy", "max")\n', ""
    )
    + """

class KeyErrorTask(Parity):
    def _generate(self, n, length, rng, split):
        return {}["x"]


class WrongShape(Parity):
    def _generate(self, n, length, rng, split):
        x, y = super()._generate(n, length, rng, split)
        return x[:, :-1], y
"""
)
BROKEN_FAMILIES = """
from search_spaces.base import FamilySpace


class Uncounted(FamilySpace):
    def backbone(self, values, x, per_step):
        return x


class CountRaises(Uncounted):
    def backbone_parameters(self, values, width):
        return values.width, 1


class BackboneRaises(FamilySpace):
    def backbone(self, values, x, per_step):
        raise IndexError("no layer 3")

    def backbone_parameters(self, values, width):
        return width * values["units"], values["units"]
"""


# Each case is a process of its own (~5 s): one case of each kind of break in the fast tier,
# the other contract breaks in the slow tier.
@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--family", "no_such_module:Thing"], "cannot import 'no_such_module:Thing'"),
        (["--family", "my_tasks:Parity"], "is not a subclass of search_spaces.base.FamilySpace"),
        (["--family", "my_conv"], "unknown family 'my_conv'"),
        (["--family", "broken:Uncounted"], "'broken:Uncounted' breaks the family contract: it "
         "does not define backbone_parameters"),
        pytest.param(["--family", "broken:CountRaises"], "'broken:CountRaises' breaks the family "
         "contract: backbone_parameters(defaults, 8) raised AttributeError: 'dict' object has no "
         "attribute", marks=pytest.mark.slow),
        (["--task", "my_conv:CausalConv"], "is not a subclass of tasks.base.Task"),
        (["--task", "my_tasks:NoMetric"], "'my_tasks:NoMetric' breaks the task contract: class "
         "attribute 'metric' must be a Metric (it is missing)"),
        pytest.param(["--task", "my_tasks:KeyErrorTask"], "'my_tasks:KeyErrorTask' breaks the "
         "task contract: generate(2, 2, 0, 'train') raised KeyError: 'x'", marks=pytest.mark.slow),
        pytest.param(["--task", "my_tasks:WrongShape"], "'my_tasks:WrongShape' breaks the task "
         "contract: generate must return x as int32 of shape (2, 2) (got int32 of shape (2, 1))",
         marks=pytest.mark.slow),
    ],
)  # fmt: skip
def test_a_plugin_that_cannot_be_used_is_one_line_and_exit_2(plugin_dir, flags, expected):
    (plugin_dir / "my_tasks.py").write_text(BROKEN_TASKS)
    (plugin_dir / "broken.py").write_text(BROKEN_FAMILIES)
    args = {"--task": "adding", "--length": "8", "--family": "gru"}
    args.update(dict(zip(flags[::2], flags[1::2], strict=True)))
    result = harness("run", *(part for pair in args.items() for part in pair), cwd=plugin_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (plugin_dir / "mlflow.db").exists()


def test_a_family_whose_backbone_raises_is_one_line_and_exit_2(plugin_dir):
    (plugin_dir / "broken.py").write_text(BROKEN_FAMILIES)
    result = harness("run", *tiny_cell("broken:BackboneRaises", max_trials=1), cwd=plugin_dir)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stderr.strip() == (
        "error: family 'broken:BackboneRaises' breaks the family contract: "
        "backbone(per_step=False) raised IndexError: no layer 3"
    )
    assert not any(cells(plugin_dir)["status"] == "FINISHED")


@pytest.mark.slow  # a cell in a process of its own (~13 s)
def test_your_own_task_and_family_load_from_the_installed_script(plugin_dir):
    """The `harness` console script, whose own folder (not the one you run in) is first on
    sys.path, imports plug-ins from the folder you run in as `python -m harness` does."""
    script = Path(sys.executable).parent / "harness"
    if not script.exists():
        pytest.skip(f"no console script at {script} (`pip install -e .` makes it)")
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    flags = ["--task", "my_tasks:Parity", "--length", "8", "--family", "my_conv:CausalConv"]
    result = subprocess.run(
        [str(script), "run", *flags, *TINY], cwd=plugin_dir, capture_output=True, text=True,
        env={**env, "KERAS_BACKEND": "jax"}, timeout=900,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    (cell,) = [row for _, row in cells(plugin_dir).iterrows()]
    assert cell["status"] == "FINISHED" and cell["params.family"] == "my_conv:CausalConv"
