"""The code of a task's data and of a family's model names the cached arrays and the cell: an
edit that can change behaviour is new data and a new cell, a docstring or formatting edit is
not; `harness clean-cache` deletes the arrays no task names today."""

from __future__ import annotations

from typer.testing import CliRunner

import tasks.source as source
from harness.budget import Budget
from harness.data import prune_cache, split
from harness.provenance import cell_code
from harness.suites import Cell
from tasks import get_task
from tests.helpers import REPO

ADDING, LAYERS = REPO / "tasks" / "adding.py", REPO / "search_spaces" / "layers.py"


def edit(monkeypatch, path, change) -> None:
    """Read `path` as if `change` had been made to its source (the file itself is untouched)."""
    edited = change(path.read_text())
    assert edited != path.read_text()
    read = source._syntax
    monkeypatch.setattr(
        source, "_syntax", lambda p: source._read_syntax(edited) if p == path else read(p)
    )


def names(task: str = "adding", family: str = "gru") -> tuple[str, str]:
    """The data name of `task` and the key of its cell with `family`, as a suite makes it."""
    cell = Cell(task, 50, family, Budget(), code=cell_code(task, family))
    return get_task(task).data_name, cell.key


def reworded(text: str) -> str:
    """A docstring reworded, a comment added, a line wrapped: no behaviour changed."""
    text = text.replace('"""', '"""Reworded. ', 1).replace("import sys\n", "import sys  # why\n")
    return text + "\n\n# a closing comment\n"


def test_a_built_in_tasks_data_and_cell_are_named_by_its_code(monkeypatch, tmp_path):
    before = names()
    assert before[0].startswith("adding-") and before[0] != "adding"
    edit(monkeypatch, ADDING, reworded)
    assert names() == before
    edit(monkeypatch, ADDING, lambda text: text.replace("np.float32", "np.float64", 1))
    data, key = names()
    assert data != before[0] and key != before[1]
    split(get_task("adding"), 8, 4, 0, "test", tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == [f"{data}_L8_n4_s0_test.npz"]


def test_a_shared_module_a_task_builds_on_is_part_of_its_code(monkeypatch):
    before = names()
    edit(
        monkeypatch,
        REPO / "tasks" / "base.py",
        lambda t: t.replace("MAX_LENGTH = ", "MAX_LENGTH = 1 + ", 1),
    )
    after = names()
    assert after[0] != before[0] and after[1] != before[1]


def test_a_built_in_familys_model_is_part_of_the_cell_not_of_the_data(monkeypatch):
    before, other = names(), names(family="transformer")
    edit(monkeypatch, REPO / "search_spaces" / "recurrent.py", reworded)
    assert names() == before
    edit(
        monkeypatch,
        LAYERS,
        lambda text: text.replace("import math\n", "import math\nimport os\n", 1),
    )
    data, key = names()
    assert data == before[0] and key != before[1]
    assert names(family="transformer")[1] != other[1]  # layers.py is shared by both modules
    assert cell_code("adding", "gru") == cell_code("adding", "lstm")  # one module, one hash


def test_an_edited_copy_of_a_task_module_is_a_new_data_file_and_cell(tmp_path, monkeypatch):
    """Your own task hashes alike: the file is read as it is now, not as it was imported."""
    module = tmp_path / "my_adding.py"
    module.write_text(ADDING.read_text())
    monkeypatch.syspath_prepend(str(tmp_path))
    path = "my_adding:Adding"
    before = names(path)
    assert before[0].startswith("my_adding-Adding-")
    module.write_text(reworded(ADDING.read_text()))
    assert names(path) == before
    module.write_text(ADDING.read_text().replace("np.float32", "np.float64", 1))
    after = names(path)
    assert after[0] != before[0] and after[1] != before[1]


def test_clean_cache_deletes_only_the_arrays_no_task_names_today(tmp_path):
    from harness.cli import app

    cache = tmp_path / "data" / "cache"
    today = split(get_task("adding"), 8, 4, 0, "test", cache)[0]
    assert today.shape == (4, 8, 2)
    kept = {p.name for p in cache.iterdir()} | {
        "my_tasks-Parity-0123456789ab_L8_n4_s0_test.npz",  # your own task's: kept
        f"{get_task('adding').data_name}_L8_n4_s0_val.123.tmp.npz",  # a write under way
        "notes.txt",
    }
    stale = {"adding_L8_n4_s0_test.npz", "adding-0123456789ab_L8_n4_s0_val.npz"}
    for name in (kept | stale) - {p.name for p in cache.iterdir()}:
        (cache / name).write_bytes(b"")
    assert {p.name for p in prune_cache(cache)} == stale
    assert {p.name for p in cache.iterdir()} == kept
    for name in stale:
        (cache / name).write_bytes(b"")
    result = CliRunner().invoke(app, ["clean-cache", "--workdir", str(tmp_path / "data")])
    assert result.exit_code == 0, result.output
    assert "removed 2 cache files" in result.output
    assert {p.name for p in cache.iterdir()} == kept
