"""Zoology's MQAR (tasks/mqar.py), checked from the generated arrays alone: the vocabulary's
ranges, the power-law distances of the queries, the targets; each pair count its own
cells and cached arrays."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.budget import Budget
from harness.data import CACHE_FILE
from harness.data import split as cached_split
from harness.provenance import cell_code
from harness.suites import Cell
from tasks import REGISTRY, get_task
from tasks.base import IGNORE, LengthError
from tasks.mqar import KEYS, MQAR, NOISE, PAIRS, VALUES, VOCAB, gap_law

NAMES = [f"mqar_p{k}" for k in PAIRS]
FEW = settings(max_examples=20, deadline=None)


def parts(task, x, y):
    """(keys, values, the step of each key's query) of every row, read from the arrays."""
    k, n = task.pairs, len(x)
    keys, values = x[:, 0 : 2 * k : 2], x[:, 1 : 2 * k : 2] - KEYS
    rest = x[:, 2 * k :]
    where = np.full((n, KEYS), -1)
    found = np.argwhere(rest < KEYS)  # a key token after the pairs is a query
    where[found[:, 0], rest[found[:, 0], found[:, 1]]] = 2 * k + found[:, 1]
    return keys, values, where[np.arange(n)[:, None], keys]


def test_the_registered_variants():
    assert [name for name in REGISTRY if name.startswith("mqar")] == NAMES
    for k in PAIRS:
        task = get_task(f"mqar_p{k}")
        assert task.pairs == k and task.min_length == 4 * k and task.length_step == 2
        assert task.input.vocab_size == VOCAB == KEYS + VALUES + NOISE
        assert task.output.classes == VALUES and task.baseline(64) == 1 / VALUES
        assert task.solved_bar(64) == 0.95 and min(task.default_lengths) >= 4 * k
    assert get_task("mqar_p4").default_lengths == (64, 128, 256)
    with pytest.raises(ValueError, match="pairs=0 is out of range"):
        MQAR(0)


def test_lengths_are_even_and_hold_the_pairs_and_their_queries():
    task = get_task("mqar_p16")
    for length in (63, 65, 62):
        with pytest.raises(LengthError, match=f"length {length} is out of range"):
            task.generate(1, length, 0, "train")
    assert task.accepted_length(65, True) == 66 and task.accepted_length(50, False) is None
    x, y = task.generate(5, 64, 0, "train")  # 16 slots for 16 queries: every slot a query
    assert ((y[:, 32::2] != IGNORE).all()) and (y[:, 33::2] == IGNORE).all()


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(data=st.data())
def test_vocabulary_queries_and_targets(name, data):
    task = get_task(name)
    k = task.pairs
    n = data.draw(st.integers(1, 12))
    length = data.draw(st.integers(2 * k, 2 * k + 40).map(lambda h: 2 * h))
    x, y = task.generate(n, length, data.draw(st.integers(0, 2**32 - 1)), "train")
    keys, values, asked = parts(task, x, y)
    # keys, values and noise in their own ranges; distinct keys, distinct values per row
    assert keys.min() >= 0 and keys.max() < KEYS and values.min() >= 0 and values.max() < VALUES
    for row_keys, row_values in zip(keys, values, strict=True):
        assert len(set(row_keys)) == k and len(set(row_values)) == k
    rest = x[:, 2 * k :]
    assert (((rest >= 0) & (rest < KEYS)) | ((rest >= KEYS + VALUES) & (rest < VOCAB))).all()
    assert ((rest < KEYS).sum(1) == k).all()  # each stored key queried once, no other key
    assert (asked >= 2 * k).all() and (asked % 2 == 0).all()  # slots at even offsets
    # every scored target is the value paired with its key; every other step IGNORE
    rows = np.arange(n)[:, None]
    assert np.array_equal(y[rows, asked], values)
    scored = np.zeros_like(y, dtype=bool)
    scored[rows, asked] = True
    assert (y[~scored] == IGNORE).all() and (y[:, : 2 * k] == IGNORE).all()


def test_queries_follow_zoologys_power_law():
    """Pair i's query waits 2(k - i) + 2 g_i steps after its key; the slots g are drawn one
    after the other without replacement with weights (g + 1)^(a - 1): pair 0's slot follows
    the law, pair 1's the law without pair 0's slot, and short waits are far more frequent."""
    task, length, n = get_task("mqar_p4"), 64, 40_000
    k = task.pairs
    x, y = task.sample(n, length, 0)
    _, _, asked = parts(task, x, y)
    distance = asked - np.arange(0, 2 * k, 2)
    assert (distance > 0).all()
    slots = (asked - 2 * k) // 2
    assert np.array_equal(distance, 2 * (k - np.arange(k)) + 2 * slots)
    law = gap_law(length, k)
    assert len(law) == 28 and law[0] / law[-1] == pytest.approx(28**0.99)
    after = law * ((law / (1 - law)).sum() - law / (1 - law))  # pair 1: law without g_0
    for pair, expected in ((0, law), (1, after / after.sum())):
        seen = np.bincount(slots[:, pair], minlength=len(law)) / n
        error = np.sqrt(expected * (1 - expected) / n)
        assert (np.abs(seen - expected) <= 5 * error).all(), (pair, seen, expected)
    pooled = np.bincount(slots.ravel(), minlength=len(law))
    assert pooled[0] > 5 * pooled[-1] and pooled[:4].sum() > pooled[-14:].sum()
    assert (np.diff(pooled[:10]) < 0).all()  # ever rarer at first


def test_the_law_of_the_worked_example():
    law = gap_law(12, 2)  # 4 slots: weights 1, 2^-0.99, 3^-0.99, 4^-0.99
    weights = np.arange(1, 5) ** -0.99
    np.testing.assert_allclose(law, weights / weights.sum())


def test_each_pair_count_has_its_own_cells_and_cached_arrays(tmp_path):
    budget = Budget(params=70_000)
    cells = [
        Cell(task=name, length=128, family="lstm", budget=budget, code=cell_code(name, "lstm"))
        for name in NAMES
    ]
    assert len({cell.key for cell in cells}) == len(NAMES)
    assert all(
        cell.key.startswith(f"{name}-L128-") for cell, name in zip(cells, NAMES, strict=True)
    )
    assert len({get_task(name).data_name for name in NAMES}) == len(NAMES)
    for name in NAMES[:2]:
        x, _ = cached_split(get_task(name), 128, 4, 0, "train", tmp_path)
        assert (x[:, : 2 * get_task(name).pairs : 2] < KEYS).all()
    files = sorted(p.name for p in tmp_path.glob("*.npz"))
    assert len(files) == 2
    assert sorted(CACHE_FILE.fullmatch(f)["data"] for f in files) == sorted(
        get_task(name).data_name for name in NAMES[:2]
    )
