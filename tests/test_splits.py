"""Splits hold distinct examples: no val or test row repeated, none in another split; digits
scores each of its 269 test images once; a space too small for n gives all it has."""

import itertools

import numpy as np
import pytest

import tasks.base as base
from tasks import REGISTRY, check_task, get_task
from tasks.base import SPLITS, InputSpec, Metric, OutputSpec, Task, TaskError, row_hashes, split_of
from tasks.digits import images, split_indices

NAMES = list(REGISTRY)
N = {"train": 400, "val": 150, "test": 150}


def short(task) -> int:
    """A short length of the task, where its space of sequences is smallest."""
    return task.accepted_length(max(task.min_length, 6), True)


def rows(x: np.ndarray) -> list[bytes]:
    return [row.tobytes() for row in np.ascontiguousarray(x)]


@pytest.fixture(scope="module")
def drawn() -> dict:
    """Every task's three splits at its short length, seed 0."""
    return {
        name: {s: get_task(name).generate(N[s], short(get_task(name)), 0, s) for s in SPLITS}
        for name in NAMES
    }


@pytest.mark.parametrize("name", NAMES)
def test_val_and_test_rows_are_distinct_and_in_no_other_split(name, drawn):
    train, val, test = (set(rows(drawn[name][s][0])) for s in SPLITS)
    for split in ("val", "test"):
        x, y = drawn[name][split]
        assert len(set(rows(x))) == len(x) == len(y) > 0  # none repeated
    assert not test & val and not test & train and not val & train


@pytest.mark.parametrize("name", NAMES)
def test_each_split_is_deterministic_and_differs_across_seeds(name, drawn):
    task = get_task(name)
    for split in SPLITS:
        x, y = task.generate(N[split], short(task), 0, split)
        assert np.array_equal(x, drawn[name][split][0]) and np.array_equal(y, drawn[name][split][1])
    other, _ = task.generate(N["test"], short(task), 1, "test")
    assert not np.array_equal(other, drawn[name]["test"][0])


@pytest.mark.parametrize("name", [n for n in NAMES if not REGISTRY[n].own_splits])
def test_generated_rows_belong_to_their_split_whatever_the_seed(name):
    """The hash partition does not depend on the seed: no test row of one seed is a train
    row of another."""
    task = get_task(name)
    for seed, split in itertools.product((0, 7), SPLITS):
        x, _ = task.generate(60, short(task), seed, split)
        assert (split_of(row_hashes(x)) == SPLITS.index(split)).all()


def test_more_train_rows_than_its_space_holds_repeat_them():
    x, _ = get_task("counting").generate(500, 6, 0, "train")  # 45 train sequences of 64
    assert len(x) == 500 and len(set(rows(x))) == 45


# -- a space too small for n ------------------------------------------------------------------


def every_sequence(symbols: int, length: int) -> np.ndarray:
    """All symbols^length token sequences, as the tasks make them (int32)."""
    return np.array(list(itertools.product(range(symbols), repeat=length)), dtype=np.int32)


OWNED = [  # (task, length): distinct val and test sequences, as the tasks' docstrings state
    ("counting", 2, 0, 1),
    ("counting", 10, 159, 161),
    ("counting", 12, 599, 618),
    ("counting", 13, 1255, 1185),
    ("parity", 2, 0, 1),
    ("first_token", 2, 10, 9),
    ("first_token", 4, 618, 580),
    ("first_token", 5, 4892, 4901),
]


@pytest.mark.parametrize(("name", "length", "val", "test"), OWNED)
def test_the_stated_counts_of_sequences_each_split_owns(name, length, val, test):
    space = every_sequence(get_task(name).input.vocab_size, length)
    owned = np.bincount(split_of(row_hashes(space)), minlength=3)
    assert (owned[1], owned[2]) == (val, test) and owned.sum() == len(space)


@pytest.mark.parametrize(
    ("name", "length", "split"),
    [("counting", 10, "val"), ("parity", 8, "test"), ("first_token", 3, "test")],
)
def test_a_split_owning_fewer_than_n_gives_all_it_owns_once(name, length, split):
    task = get_task(name)
    space = every_sequence(task.input.vocab_size, length)
    owned = set(rows(space[split_of(row_hashes(space)) == SPLITS.index(split)]))
    x, y = task.generate(1024, length, 3, split)
    assert len(owned) < 1024 and len(x) == len(y) == len(owned) and set(rows(x)) == owned
    again, _ = task.generate(1024, length, 4, split)  # another seed: the same rows, reordered
    assert set(rows(again)) == owned and not np.array_equal(again, x)
    assert len(task.generate(10, length, 3, split)[0]) == 10  # n below: n of them


def test_a_split_owning_no_sequence_raises_naming_it():
    with pytest.raises(TaskError, match="task 'counting' has no val sequence at length 2: "):
        get_task("counting").generate(5, 2, 0, "val")
    assert len(get_task("counting").generate(5, 2, 0, "test")[0]) == 1  # its 4: 3 train, 1 test


class Constant(Task):
    """One sequence only, whatever the draw: its split gets it, the others raise."""

    name = "constant"
    description = "the same sequence every time"
    input = InputSpec("tokens", vocab=("0", "1"))
    output = OutputSpec("sequence_classification", classes=2)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max")
    default_lengths = (4,)

    def _generate(self, n, length, rng, split):
        return np.zeros((n, length), dtype=np.int32), np.zeros(n, dtype=np.int32)

    def baseline(self, length):
        return 1.0

    def trivial_prediction(self, x, length):
        return np.ones((len(x), 2), dtype=np.float32) / 2

    def solved_bar(self, length):
        return 1.0

    def scores(self, y_true, y_pred):
        return {"accuracy": 1.0}


def test_a_task_of_one_sequence_ends_with_it_or_with_an_error():
    task = Constant()
    owner = SPLITS[int(split_of(row_hashes(np.zeros((1, 4), dtype=np.int32)))[0])]
    for split in SPLITS:
        if split == owner:
            x, _ = task.generate(50, 4, 0, split)
            assert len(x) == (50 if split == "train" else 1)
        else:
            with pytest.raises(TaskError, match=f"has no {split} sequence at length 4"):
                task.generate(50, 4, 0, split)


def test_a_plugin_that_returns_no_pair_of_rows_is_left_to_the_contract_check():
    class WrongShape(Constant):
        def _generate(self, n, length, rng, split):
            x = rng.integers(0, 2, size=(n, length), dtype=np.int32)
            return x[:, :-1], x[:, 0].copy()

    class NoPair(Constant):
        def _generate(self, n, length, rng, split):
            return [np.zeros((n, length), dtype=np.int32)]

    with pytest.raises(
        ValueError, match=r"x as int32 of shape \(2, 2\) \(got int32 of shape \(2, 1\)"
    ):
        check_task(WrongShape())
    with pytest.raises(ValueError, match=r"generate must return a pair \(x, y\) \(got list\)"):
        check_task(NoPair())


def test_rounds_smaller_than_n_give_the_same_guarantees(monkeypatch):
    monkeypatch.setattr(base, "ROUND_ELEMENTS", 64 * 5)  # 5 rows of adding L=32 a round
    task = get_task("adding")
    x, y = task.generate(40, 32, 0, "test")
    assert len(set(rows(x))) == 40 and (split_of(row_hashes(x)) == 2).all()
    assert np.array_equal(x, task.generate(40, 32, 0, "test")[0])
    np.testing.assert_allclose(y, (x[..., 0] * x[..., 1]).sum(1), rtol=1e-6)


def test_row_hashes_are_pinned_and_see_every_byte():
    """The partition is part of the data: the same on every machine (little-endian bytes,
    fixed keys), over 8-, 4- and 1-byte words; a change here reshuffles every split."""
    words8 = np.arange(8, dtype=np.int32).reshape(2, 4)
    words4 = np.arange(6, dtype=np.int32).reshape(2, 3)
    words1 = np.arange(250, 256, dtype=np.uint8).reshape(2, 3)
    found = [row_hashes(a).tolist() for a in (words8, words4, words1)]
    assert found == PINNED
    big = np.arange(8, dtype=">i4").reshape(2, 4)  # big-endian input, same values: same hash
    assert row_hashes(big).tolist() == PINNED[0]
    x = np.zeros((65, 64), dtype=np.float32)
    x[np.arange(1, 65), np.arange(64)] = 1e-45  # each row one bit apart from row 0
    assert len(set(row_hashes(x).tolist())) == 65


PINNED = [
    [5630093431918666595, 10065788710970520199],
    [4989059353946211142, 13713646900663312558],
    [14691395655026573005, 17257019212864332049],
]


# -- digits: fixed splits, each val and test image once -----------------------------------------


def identities(name: str, x: np.ndarray) -> np.ndarray:
    pixels, _ = images()
    index = {pixels[i].tobytes(): i for i in range(len(pixels))}
    order = np.argsort(get_task(name).order) if get_task(name).order else slice(None)
    return np.array([index[row[order].tobytes()] for row in x[..., 0]])


@pytest.mark.parametrize("name", ["digits", "pdigits"])
def test_digits_score_each_of_their_269_test_images_once(name):
    task = get_task(name)
    for split in ("val", "test"):
        x, y = task.generate(1024, 64, 0, split)
        ids = identities(name, x)
        assert len(x) == len(y) == 269 and len(set(ids)) == 269
        assert set(ids) == set(split_indices()[split]) and np.array_equal(y, images()[1][ids])
        again = identities(name, task.generate(1024, 64, 1, split)[0])
        assert set(again) == set(ids) and not np.array_equal(again, ids)  # order from rng
    x, _ = task.generate(2000, 64, 0, "train")  # train repeats its 1,259 past them
    assert len(x) == 2000 and set(identities(name, x)) == set(split_indices()["train"])
