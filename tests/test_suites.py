"""Suite files: bundled ones load, bad ones fail with one line naming file, key and problem."""

from __future__ import annotations

import json

import pytest

from harness import api
from harness.budget import Budget
from harness.errors import UserError
from harness.suites import Cell, bundled_suites, load_suite
from tests.helpers import REPO, all_runs, harness, one_error_line, store_uri, write_suite

GOOD_BLOCK = {"tasks": ["adding"], "lengths": [10], "families": ["gru"]}


def test_bundled_suites_load_with_distinct_frontiers():
    assert {"quick", "seed"} <= set(bundled_suites())
    for name in ("quick", "seed"):
        suite = load_suite(name)
        keys = [item.key for item in (*suite.cells, *suite.frontiers)]
        assert suite.name == name and len(keys) == len(set(keys)) > 0


def test_the_study_runs_in_parts_that_answer_each_question():
    study = load_suite("study")
    assert set(study.parts) == {"memory", "sensitivity", "hindsight", "recall", "listops", "digits"}
    units = {item.key: item for item in (*study.cells, *study.frontiers)}
    assert set().union(*study.parts.values()) == set(units)  # every block is in a part
    memory = [units[key] for key in study.parts["memory"]]
    assert {(f.task, f.family) for f in memory} >= {
        (task, family)
        for task in ("adding", "copy")
        for family in ("simple_rnn", "lstm", "gru", "mingru", "minlstm", "lru", "transformer",
                       "rotscan", "mingru_signed")
    }  # fmt: skip
    recall = [units[key] for key in study.parts["recall"]]
    assert {c.budget.fixed for c in recall} == {(("depth", 2),)}
    assert {c.budget.params for c in recall} == {70_000}
    sensitivity = [units[key] for key in study.parts["sensitivity"]]
    assert {f.budget.epochs for f in sensitivity} == {4 * study.frontiers[0].budget.epochs}


def test_the_suites_find_the_promised_frontiers_at_one_budget():
    quick = load_suite("quick").frontiers
    assert {f.family for f in quick if f.task == "adding"} == {"simple_rnn", "lstm", "gru"}
    assert {f.family for f in quick if f.task == "first_token"} == {"gru", "bigru"}
    assert {f.budget.params for f in quick} == {10_000}
    seed = load_suite("seed").frontiers
    assert {f.task for f in seed} == {"adding", "copy", "first_token", "assoc_recall"}
    assert {"transformer", "lstm", "mingru", "lru"} <= {
        f.family for f in seed if f.task == "assoc_recall"
    }
    assert {f.seeds for f in seed} == {3} and {f.budget.params for f in seed} == {20_000}


def test_cell_key_is_stable_and_changes_with_the_budget():
    cell = Cell("adding", 100, "lstm", Budget())
    assert cell.key == Cell("adding", 100, "lstm", Budget()).key
    assert cell.key.startswith("adding-L100-lstm-")
    assert cell.key != Cell("adding", 100, "lstm", Budget(epochs=99)).key
    assert cell.key != Cell("adding", 100, "lstm", Budget(), seed=1).key


def test_block_budget_overrides_suite_budget(tmp_path):
    block = {**GOOD_BLOCK, "budget": {"epochs": 7}}
    path = tmp_path / "s.toml"
    path.write_text(
        'name = "s"\n[budget]\nepochs = 3\n[[cells]]\ntasks = ["adding"]\nlengths = [10]\n'
        'families = ["gru"]\nbudget = { epochs = 7 }\n'
    )
    assert block and load_suite(str(path)).cells[0].budget.epochs == 7


def test_eval_lengths_keep_only_longer_ones(tmp_path):
    path = write_suite(
        tmp_path / "s.toml", "s", [{**GOOD_BLOCK, "lengths": [10, 40], "eval_lengths": [20, 80]}]
    )
    cells = {c.length: c.eval_lengths for c in load_suite(str(path)).cells}
    assert cells == {10: (20, 80), 40: (80,)}


def test_a_fixed_hyperparameter_holds_in_every_trial_and_names_its_budget(tmp_path):
    """`fixed = { depth = 2 }`: every family of the block searches the rest at depth 2, the
    budget's key and words say so, and the stored cell reads back under the same key."""
    from harness.report.read import read_store
    from harness.tracking import open_store

    path = tmp_path / "s.toml"
    text = write_suite(tmp_path / "plain.toml", "s", [GOOD_BLOCK], max_trials=2).read_text()
    path.write_text(text.replace("[[cells]]", "fixed = { depth = 2 }\n[[cells]]"))
    (cell,) = load_suite(str(path)).cells
    (plain,) = load_suite(str(tmp_path / "plain.toml")).cells
    assert cell.budget.fixed == (("depth", 2),) and cell.key != plain.key
    assert plain.budget.fixed is None and "fixed" not in plain.as_dict()["budget"]
    api.run(suite=str(path), store=store_uri(tmp_path), workdir=tmp_path / "data")
    runs = all_runs(store_uri(tmp_path), "s")
    trials = runs[runs["tags.harness.kind"] == "trial"]
    assert len(trials) == 2 and set(trials["params.depth"]) == {"2"}
    (found,) = read_store(open_store(store_uri(tmp_path)), "s").cells
    assert found.budget_key == cell.budget_key
    assert "every family at depth 2" in found.budget.label(1)


def test_a_budget_in_words_counts_trials_and_seeds_in_the_singular_and_plural():
    one, two = Budget(max_trials=1), Budget(max_trials=2)
    assert one.label(1).startswith("random search, 1 trial x up to")
    assert one.label(1).endswith(", 1 seed")
    assert two.label(2).startswith("random search, 2 trials x up to")


@pytest.mark.parametrize(
    ("fixed", "expected"),
    [
        ("{ depth = 3 }", "family 'gru': depth = 3 is outside its range 1 .. 2"),
        ("{ width = 3 }", "family 'gru' has no hyperparameter 'width' to fix or grid: it searches"),
        ("{ depth = [2] }", "key 'budget.fixed.depth' must be a number, boolean or string"),
        ("2", "key 'budget.fixed' must be a table of hyperparameter = value"),
    ],
)
def test_a_fixed_hyperparameter_out_of_range_is_one_line(tmp_path, fixed, expected):
    path = tmp_path / "bad.toml"
    path.write_text(
        f'[budget]\nparams = 10000\nfixed = {fixed}\n[[cells]]\ntasks=["adding"]\n'
        'lengths=[10]\nfamilies=["gru"]\n'
    )
    with pytest.raises(UserError) as error:
        load_suite(str(path))
    assert expected in str(error.value) and "bad.toml" in str(error.value)


def test_parts_select_their_blocks_and_leave_the_keys_alone(tmp_path):
    """`part = NAME` files a block's cells and frontiers under NAME; a part changes no key."""
    from harness.cells import select_cells

    text = (
        'name = "s"\n[[cells]]\ntasks = ["adding"]\nlengths = [10]\nfamilies = ["gru"]\n'
        'part = "a"\n[[cells]]\ntasks = ["adding"]\nlengths = [20]\nfamilies = ["gru"]\n'
        '[[frontier]]\ntasks = ["adding"]\nfamilies = ["lstm"]\npart = "b"\n'
    )
    path = tmp_path / "s.toml"
    path.write_text(text)
    suite = load_suite(str(path))
    (tmp_path / "p.toml").write_text(text.replace('part = "a"\n', "", 1))
    assert suite.cells[0].key == load_suite(str(tmp_path / "p.toml")).cells[0].key
    _, cells, frontiers = select_cells(str(path), (), (), (), {}, None, None, None, "a")
    assert [c.length for c in cells] == [10] and frontiers == []
    _, cells, frontiers = select_cells(str(path), (), (), (), {}, None, None, None, "b")
    assert cells == [] and [f.family for f in frontiers] == ["lstm"]
    result = harness("run", "--suite", str(path), "--part", "c", cwd=tmp_path)
    assert result.returncode == 2 and not (tmp_path / "mlflow.db").exists()
    assert one_error_line(result) == "error: unknown part 'c' of suite 's': accepted a, b"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("name = [", "not valid TOML"),
        (
            '[[cells]]\ntasks=["adding"]\nlengths=[10]\nfamilies=["gru"]\npart = "a b"\n',
            "key 'cells[0].part' must be a name",
        ),
        ('name = "s"\n', "[[cells]]"),
        (
            'name = "s"\nbogus = 1\n[[cells]]\ntasks=["adding"]\nlengths=[10]\nfamilies=["gru"]\n',
            "unknown key 'bogus'",
        ),
        ('[[cells]]\ntasks=["nope"]\nlengths=[10]\nfamilies=["gru"]\n', "unknown task 'nope'"),
        ('[[cells]]\ntasks=["adding"]\nlengths=[10]\nfamilies=["rnn9"]\n', "unknown family 'rnn9'"),
        (
            '[[cells]]\ntasks=["adding"]\nlengths=[1]\nfamilies=["gru"]\n',
            "length 1 is out of range",
        ),
        ('[[cells]]\ntasks=["adding"]\nlengths=[-5]\nfamilies=["gru"]\n', "positive integers"),
        ('[[cells]]\ntasks=["adding"]\nfamilies=["gru"]\n', "'cells[0].lengths'"),
        (
            '[budget]\nmax_trials = 0\n[[cells]]\ntasks=["adding"]\nlengths=[10]\nfamilies=["gru"]\n',
            "'budget.max_trials' must be a positive integer, got 0",
        ),
        (
            '[budget]\ntuner = "gird"\n[[cells]]\ntasks=["adding"]\nlengths=[10]\nfamilies=["gru"]\n',
            "unknown tuner 'gird': accepted bayesian, grid, hyperband, random",
        ),
        (
            '[seeds]\nextra = "x"\n[[cells]]\ntasks=["adding"]\nlengths=[10]\nfamilies=["gru"]\n',
            "seeds.extra",
        ),
    ],
)
def test_bad_suite_files_name_the_file_and_problem(tmp_path, text, expected):
    path = tmp_path / "bad.toml"
    path.write_text(text)
    with pytest.raises(UserError) as error:
        load_suite(str(path))
    message = str(error.value)
    assert expected in message and "bad.toml" in message and "\n" not in message


def test_unknown_suite_name_lists_bundled_ones():
    with pytest.raises(UserError, match="unknown suite 'nosuch': accepted .*quick"):
        load_suite("nosuch")


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ("5", "family 'simple_rnn' cannot meet a budget of 5 parameters on task 'adding': the "
         "smallest it can meet is 8"),
        ("20", "family 'gru' cannot meet a budget of 20 parameters on task 'first_token': the "
         "smallest it can meet is 33"),
    ],
)  # fmt: skip
def test_a_params_override_out_of_reach_stops_the_run_before_any_work(tmp_path, params, expected):
    """`run --suite S --params N` checks every cell's and frontier's family on its task."""
    path = write_suite(tmp_path / "s.toml", "s", [{**GOOD_BLOCK, "families": ["simple_rnn"]}])
    path.write_text(
        path.read_text() + '[[frontier]]\ntasks = ["first_token"]\nfamilies = ["gru"]\n'
    )
    result = harness("run", "--suite", str(path), "--params", params, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("flags", "expected"),
    [
        (["--seed", "-5"], "key '--seed' must be an integer in 0..2147483647, got -5"),
        (["--extra-seed", "2147483648"], "key '--extra-seed' must be an integer in 0..2147483647"),
    ],
)
def test_a_seed_override_out_of_range_stops_the_run_before_any_work(tmp_path, flags, expected):
    path = write_suite(tmp_path / "s.toml", "s", [GOOD_BLOCK])
    result = harness("run", "--suite", str(path), *flags, cwd=tmp_path)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and expected in lines[0], result.stderr
    assert not (tmp_path / "mlflow.db").exists()


def test_every_cell_of_a_suite_carries_the_hashes_of_its_code(tmp_path):
    """Built-in or your own: an edit to the task's data or the family's model is a new key."""
    from harness.provenance import cell_code

    path = write_suite(
        tmp_path / "s.toml", "coded", [{"tasks": ["adding"], "lengths": [8], "families": ["gru"]}]
    )
    (cell,) = load_suite(str(path)).cells
    assert cell.code == cell_code("adding", "gru")
    assert cell.key != Cell("adding", 8, "gru", cell.budget, code=None).key


def test_the_quick_and_study_suites_keep_their_golden_cell_keys():
    """The keys of the bundled suites' cells and frontiers, code hashes included, equal the
    committed list: a key changes only on purpose (`python scripts/cell_keys.py --write`)."""
    import importlib.util

    path = REPO / "scripts" / "cell_keys.py"
    spec = importlib.util.spec_from_file_location("cell_keys", path)
    cell_keys = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cell_keys)
    assert cell_keys.keys() == json.loads(cell_keys.GOLDEN.read_text())
