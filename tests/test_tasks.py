"""Task generators: semantics checked from the arrays alone, determinism, shapes, baselines."""

import json
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tasks.base as base
from tasks import REGISTRY, get_task
from tasks.base import IGNORE, LengthError, TaskError
from tasks.listops import (
    BASELINE_SAMPLES,
    CLOSE,
    FILL,
    FIRST_OP,
    MAX_ARGS,
    MAX_DEPTH,
    MEASURED_MAJORITY,
    PAD,
    ListOps,
    decode,
    encode,
    evaluate,
    measure_majority_class,
)

NAMES = list(REGISTRY)
FEW = settings(max_examples=25, deadline=None)
seeds = st.integers(0, 2**32 - 1)
counts = st.integers(1, 12)


def lengths(task, most=80):
    """Accepted lengths up to `most` (at least three of them): multiples of the task's step."""
    step = task.length_step
    lowest = math.ceil(task.min_length / step)
    return st.integers(lowest, max(lowest + 2, most // step)).map(lambda k: k * step)


# -- every task -----------------------------------------------------------------


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(data=st.data())
def test_shapes_dtypes_and_ranges(name, data):
    task = get_task(name)
    n, seed = data.draw(counts), data.draw(seeds)
    length = data.draw(lengths(task))
    x, y = task.generate(n, length, seed, "train")
    steps = task.sequence_steps(length)
    if task.input.kind == "real":
        assert x.shape == (n, steps, task.input.width) and x.dtype == np.float32
    else:
        assert x.shape == (n, steps) and x.dtype == np.int32
        assert x.min() >= 0 and x.max() < task.input.vocab_size
    if task.output.kind == "regression":
        assert y.shape == (n,) and y.dtype == np.float32
        return
    assert y.dtype == np.int32
    assert y.shape == ((n, steps) if task.output.kind == "per_step_classification" else (n,))
    scored = y[y != IGNORE]
    assert scored.size and scored.min() >= 0 and scored.max() < task.output.classes
    assert y.min() >= (IGNORE if task.output.kind == "per_step_classification" else 0)


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_a_seed_and_different_across_seeds(name):
    task = get_task(name)
    length = task.default_lengths[0]
    x1, y1 = task.generate(16, length, 3, "train")
    x2, y2 = task.generate(16, length, 3, "train")
    x3, _ = task.generate(16, length, 4, "train")
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, x3)


@pytest.mark.parametrize("name", NAMES)
def test_lengths_and_counts_out_of_range_raise(name):
    task = get_task(name)
    for length in (task.min_length - 1, task.max_length + 1):
        with pytest.raises(LengthError, match=f"length {length} is out of range"):
            task.generate(2, length, 0, "train")
    with pytest.raises(TaskError):
        task.generate(0, task.min_length, 0, "train")
    task.generate(1, task.min_length, 0, "train")


@pytest.mark.parametrize("name", NAMES)
def test_declarations_are_consistent(name):
    task = get_task(name)
    info = task.info()
    assert info.name == name and info.metric == task.metric.name
    length = task.default_lengths[0]
    assert task.metric.better(task.solved_bar(length), task.baseline(length))
    assert not task.is_solved(task.baseline(length), length)
    assert {m.name for m in (task.metric, *task.extra_metrics)} <= set(
        task.scores(*_trivial_scored(task, length, 4))
    )
    assert task.loss == (
        "mse" if task.output.kind == "regression" else "sparse_categorical_crossentropy"
    )


def _trivial_scored(task, length, n, seed=11):
    """Targets and trivial predictions on draws from the task's distribution (`Task.sample`,
    splits not kept apart: at short lengths a split owns too few sequences to stand for it),
    where baselines are stated; digits' whole test split (269 images, fewer than `n`)."""
    x, y = task.sample(n, length, seed, "test")
    return y, task.trivial_prediction(x, length)


BASELINE_CASES = [(name, get_task(name).default_lengths[0]) for name in NAMES] + [
    ("counting", 2),
    ("counting", 7),
    ("parity", 2),
    ("copy", 1),
    ("assoc_recall", 8),
]


@pytest.mark.parametrize(("name", "length"), BASELINE_CASES)
def test_baseline_is_the_trivial_predictors_score(name, length):
    """The documented baseline matches the trivial predictor's measured score.

    Scores of 40 batches of 100 are i.i.d., so their spread gives the standard error;
    listops' baseline is itself measured on a sample, whose error adds in.
    """
    task = get_task(name)
    y, pred = _trivial_scored(task, length, 4000)
    if len(y) < 4000:  # digits: its test split, scored whole, gives its baseline exactly
        assert task.scores(y, pred)[task.metric.name] == pytest.approx(task.baseline(length))
        return
    batch = [
        task.scores(y[i : i + 100], pred[i : i + 100])[task.metric.name]
        for i in range(0, 4000, 100)
    ]
    error = np.std(batch, ddof=1) / math.sqrt(len(batch))
    baseline = task.baseline(length)
    if name == "listops":
        error = math.hypot(error, math.sqrt(baseline * (1 - baseline) / BASELINE_SAMPLES))
    assert abs(np.mean(batch) - baseline) <= 4 * error + 1e-6 * abs(baseline)


# -- each task's semantics, from its arrays alone ----------------------------------


@FEW
@given(n=counts, length=st.integers(2, 200), seed=seeds)
def test_adding_two_markers_one_per_half_and_their_sum(n, length, seed):
    x, y = get_task("adding").generate(n, length, seed, "train")
    values, markers = x[..., 0], x[..., 1]
    assert values.min() >= 0 and values.max() < 1
    assert set(np.unique(markers)) <= {0.0, 1.0}
    half = length // 2
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    np.testing.assert_allclose(y, (values * markers).sum(1), rtol=1e-6)


def test_adding_data_does_not_depend_on_thread_count(monkeypatch):
    task = get_task("adding")
    monkeypatch.setattr(base, "CHUNK_ELEMENTS", 64)  # many chunks of 2 rows
    monkeypatch.setattr(base, "worker_count", lambda: 1)
    x1, y1 = task.generate(50, 30, 5, "train")
    monkeypatch.setattr(base, "worker_count", lambda: 3)
    x3, y3 = task.generate(50, 30, 5, "train")
    assert np.array_equal(x1, x3) and np.array_equal(y1, y3)


@FEW
@given(n=counts, length=st.integers(2, 200), seed=seeds)
def test_counting_targets_are_the_running_count_mod_8(n, length, seed):
    x, y = get_task("counting").generate(n, length, seed, "train")
    assert set(np.unique(x)) <= {0, 1}
    count = np.zeros(n, dtype=np.int64)
    for t in range(length):
        count += x[:, t]
        assert (y[:, t] == count % 8).all()


def test_counting_worked_example():
    x = np.array([[1, 1, 0, 1, 1, 1, 1, 1, 1, 0]])
    assert (np.cumsum(x, 1) % 8).tolist() == [[1, 2, 2, 3, 4, 5, 6, 7, 0, 0]]
    # exact baseline at T=2: counts after steps 1, 2 are 1 w.p. 1/2 then 1/2 -> class 1, 0.5
    assert get_task("counting").baseline(2) == pytest.approx(0.5)


@FEW
@given(n=counts, length=st.integers(2, 200), seed=seeds)
def test_parity_targets_flip_on_each_1(n, length, seed):
    x, y = get_task("parity").generate(n, length, seed, "train")
    assert set(np.unique(x)) <= {0, 1}
    parity = np.zeros(n, dtype=np.int64)
    for t in range(length):
        parity ^= x[:, t]
        assert (y[:, t] == parity).all()


def test_parity_worked_example_baseline_and_bar():
    x = np.array([[1, 1, 0, 1, 0, 0, 1, 1]])
    assert (np.cumsum(x, 1) % 2).tolist() == [[1, 0, 0, 1, 1, 1, 0, 1]]
    task = get_task("parity")
    # every step's parity is 0 or 1 with probability 1/2: no constant class beats 1/2
    assert [task.baseline(length) for length in (2, 7, 50, 10_000)] == [0.5] * 4
    assert task.solved_bar(50) == 0.99 and task.output.classes == 2


@FEW
@given(n=counts, delay=st.integers(1, 150), seed=seeds)
def test_copy_layout_and_recall(n, delay, seed):
    task = get_task("copy")
    x, y = task.generate(n, delay, seed, "train")
    assert x.shape[1] == delay + 20
    symbols = x[:, :10]
    assert symbols.min() >= 0 and symbols.max() <= 7
    assert (x[:, 10 : delay + 9] == 8).all()  # T-1 blanks
    assert (x[:, delay + 9] == 9).all()  # the delimiter
    assert (x[:, delay + 10 :] == 8).all()  # 10 blanks while recalling
    assert (y[:, : delay + 10] == 8).all()
    assert np.array_equal(y[:, -10:], symbols)


def test_copy_baseline_is_analytic_and_solved_is_5_percent():
    task = get_task("copy")
    assert task.baseline(100) == pytest.approx(10 * math.log(8) / 120)
    assert task.solved_bar(100) == pytest.approx(0.05 * task.baseline(100))
    y, pred = _trivial_scored(task, 100, 2000)
    assert task.scores(y, pred)["recall_accuracy"] == pytest.approx(1 / 8, abs=0.02)


@FEW
@given(n=counts, length=st.integers(2, 100), seed=seeds)
def test_first_token_label_is_the_first_token(n, length, seed):
    x, y = get_task("first_token").generate(n, length, seed, "train")
    assert np.array_equal(y, x[:, 0])


@FEW
@given(n=st.integers(1, 6), length=st.integers(16, 300), seed=seeds)
def test_listops_expressions_evaluate_to_labels_and_fill_the_length(n, length, seed):
    x, y = get_task("listops").generate(n, length, seed, "train")
    for row, label in zip(x, y, strict=True):
        used = int((row != PAD).sum())
        assert used >= math.ceil(FILL * length)
        assert (row[used:] == PAD).all() and (row[:used] != PAD).all()
        opens = (row >= FIRST_OP) & (row < CLOSE)
        depth = np.cumsum(opens.astype(int) - (row == CLOSE))
        assert opens[0] and depth[used - 1] == 0 and (depth[: used - 1] >= 1).all()
        assert depth.max() < MAX_DEPTH
        text = decode(row)
        assert evaluate(text) == label
        assert np.array_equal(encode(text, length), row)


def test_listops_arguments_per_operator_are_2_to_10():
    x, _ = get_task("listops").generate(30, 200, 1, "train")
    for row in x:
        stack = [0]
        for token in row[row != PAD]:
            if FIRST_OP <= token < CLOSE:
                stack[-1] += 1
                stack.append(0)
            elif token == CLOSE:
                assert 2 <= stack.pop() <= MAX_ARGS
            else:
                stack[-1] += 1


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("[MAX 2 9 [MIN 4 7 ] 0 ]", 9),
        ("[SM 3 [MED 1 8 2 6 ] ]", 7),
        ("[MED 1 2 ]", 1),  # median 1.5 rounded down
        ("[MED 5 1 3 ]", 3),
        ("[SM 9 9 9 ]", 7),
        ("[MIN [MAX 1 2 ] [MAX 3 0 ] ]", 2),
    ],
)
def test_listops_evaluate_and_round_trip(text, value):
    assert evaluate(text) == value
    assert decode(encode(text, 40)) == text


def test_listops_kept_majority_classes_are_a_fresh_measurement():
    """The file `harness tasks` reads instead of generating equals measuring again."""
    kept = json.loads(MEASURED_MAJORITY.read_text())
    assert set(kept) == {str(length) for length in ListOps.default_lengths}
    for length, (label, frequency) in kept.items():
        assert measure_majority_class(int(length)) == (label, frequency)


@pytest.mark.parametrize("text", ["", "[MAX 1", "[MAX ]", "1 2", "[MAX 1 2 ] 3", "]", "[FOO 1 ]"])
def test_listops_evaluate_rejects_malformed_text(text):
    with pytest.raises(ValueError):
        evaluate(text)


@FEW
@given(n=counts, length=st.integers(8, 120), seed=seeds)
def test_assoc_recall_targets_are_the_paired_values(n, length, seed):
    x, y = get_task("assoc_recall").generate(n, length, seed, "train")
    k = min(16, length // 4)
    keys, values = x[:, 0 : 2 * k : 2], x[:, 1 : 2 * k : 2] - 16
    assert keys.max() < 16 and values.min() >= 0 and values.max() < 16
    for row_keys, row_values in zip(keys, values, strict=True):
        assert len(set(row_keys)) == k and len(set(row_values)) == k
    assert (y[:, : 2 * k] == IGNORE).all()
    table = np.full((n, 16), -2)
    table[np.arange(n)[:, None], keys] = values
    queries = x[:, 2 * k :]
    assert queries.max() < 16
    paired = table[np.arange(n)[:, None], queries]
    assert (paired >= 0).all() and np.array_equal(y[:, 2 * k :], paired)


def test_registry_order():
    assert NAMES[:6] == ["adding", "counting", "copy", "first_token", "listops", "assoc_recall"]
