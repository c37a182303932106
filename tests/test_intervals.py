"""Closed-form score intervals (harness/intervals.py) against literature and table values."""

import math

import numpy as np
import pytest

import harness.intervals as intervals
from harness.intervals import (
    holds,
    per_sequence_scores,
    score_interval,
    t_interval,
    t_quantile,
    wilson,
)
from tasks import get_task
from tasks.base import IGNORE, cross_entropy, masked_accuracy, mse, sequence_accuracy

Z = 1.959963984540054  # the normal 0.975 quantile


def wilson_by_hand(hits, n):
    """Wilson (1927), as in Newcombe (1998) eq. 3, with z written out."""
    p = hits / n
    root = Z * math.sqrt(p * (1 - p) / n + Z**2 / (4 * n**2))
    return (
        (p + Z**2 / (2 * n) - root) / (1 + Z**2 / n),
        (p + Z**2 / (2 * n) + root) / (1 + Z**2 / n),
    )


@pytest.mark.parametrize(
    ("hits", "n", "expected"),  # Newcombe (1998), Table I, method 3 (score, no correction)
    [
        (81, 263, (0.2553, 0.3662)),
        (15, 148, (0.0624, 0.1605)),
        (0, 20, (0.0, 0.1611)),
        (1, 29, (0.0061, 0.1718)),
    ],
)
def test_wilson_matches_the_literature(hits, n, expected):
    low, high = wilson(hits, n)
    assert (round(low, 4), round(high, 4)) == expected
    assert (low, high) == pytest.approx(wilson_by_hand(hits, n), rel=1e-12, abs=1e-15)


def test_wilson_edges():
    assert wilson(0, 50) == (0.0, pytest.approx(Z**2 / (50 + Z**2)))
    assert wilson(50, 50) == (pytest.approx(50 / (50 + Z**2)), 1.0)
    assert all(math.isnan(bound) for bound in wilson(0, 0))
    with pytest.raises(ValueError):
        wilson(3, 2)
    with pytest.raises(ValueError):
        wilson(-1, 2)


@pytest.mark.parametrize(
    ("df", "expected"),  # two-sided 95% critical values of Student's t (4 decimals)
    [
        (1, 12.7062),
        (2, 4.3027),
        (3, 3.1824),
        (5, 2.5706),
        (10, 2.2281),
        (30, 2.0423),
        (1023, 1.9623),
    ],
)
def test_t_quantile_matches_the_table(df, expected):
    assert round(t_quantile(0.975, df), 4) == expected


def test_t_quantile_against_closed_forms():
    for p in (0.5001, 0.6, 0.9, 0.975, 0.999, 1 - 1e-9):
        assert t_quantile(p, 1) == pytest.approx(1 / math.tan(math.pi * (1 - p)), rel=1e-10)
        assert t_quantile(p, 2) == pytest.approx(
            (2 * p - 1) / math.sqrt(2 * p * (1 - p)), rel=1e-10
        )
        assert t_quantile(1 - p, 7) == -t_quantile(p, 7)
    assert t_quantile(0.5, 4) == 0.0
    assert t_quantile(0.995, 1) == pytest.approx(63.656741, rel=1e-7)
    assert t_quantile(0.9995, 3) == pytest.approx(12.923979, rel=1e-7)


def test_t_quantile_at_large_df():
    assert t_quantile(0.975, 10**9) == pytest.approx(Z, rel=1e-8)
    assert round(t_quantile(0.975, 10**7), 5) == 1.95996
    assert t_quantile(0.975, 10**6) == pytest.approx(Z + (Z**3 + Z) / 4e6, rel=1e-11)
    # the continued fraction and the expansion agree where one hands over to the other
    df = intervals.LARGE_DF
    expansion = t_quantile(0.975, df)
    intervals.LARGE_DF = 10**9
    try:
        assert t_quantile(0.975, df) == pytest.approx(expansion, rel=1e-11)
    finally:
        intervals.LARGE_DF = df
    for bad in ((0.0, 3), (1.0, 3), (0.9, 0)):
        with pytest.raises(ValueError):
            t_quantile(*bad)


def test_t_interval_by_hand():
    # values 1, 2, 3, 4: sd = sqrt(5/3) = 1.2909944, t_{0.975, 3} = 3.1824463
    half = 3.182446305284263 * math.sqrt(5 / 3) / math.sqrt(4)
    assert t_interval(2.5, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(
        (2.5 - half, 2.5 + half), rel=1e-12
    )
    assert t_interval(0.5, np.array([1.0, 2.0, 3.0, 4.0])) == pytest.approx(
        (0.5 - half, 0.5 + half), rel=1e-12
    )  # centred on the score given, not on the mean
    assert t_interval(0.3, np.full(9, 0.3)) == (0.3, 0.3)
    assert all(math.isnan(bound) for bound in t_interval(0.3, np.array([0.3])))
    assert all(math.isnan(bound) for bound in t_interval(0.3, np.array([])))


def random_probs(shape, classes, seed):
    probs = np.random.default_rng(seed).random((*shape, classes)).astype(np.float32)
    return probs / probs.sum(axis=-1, keepdims=True)


@pytest.mark.parametrize("name", ["counting", "assoc_recall", "copy", "first_token"])
def test_per_sequence_scores_agree_with_the_pooled_metrics(name):
    task = get_task(name)
    _, y = task.generate(40, 30, seed=1, split="test")
    probs = random_probs(y.shape, task.output.classes, seed=2)
    probs[: len(y) // 2] = np.eye(task.output.classes)[np.where(y == IGNORE, 0, y)][: len(y) // 2]
    for metric, pooled in (
        ("accuracy", masked_accuracy),
        ("cross_entropy", cross_entropy),
        ("sequence_accuracy", sequence_accuracy),
    ):
        scores = per_sequence_scores(metric, y, probs)
        assert scores.shape == (len(y),)
        assert scores.mean() == pytest.approx(pooled(y, probs), rel=1e-6)


def test_per_sequence_scores_mse_and_dropped_rows():
    y = np.array([0.5, 1.0, 1.5], dtype=np.float32)
    for pred in (np.array([1.0, 1.0, 1.0]), np.array([[1.0], [1.0], [1.0]])):
        scores = per_sequence_scores("mse", y, pred)
        assert scores == pytest.approx([0.25, 0.0, 0.25])
        assert scores.mean() == pytest.approx(mse(y, pred))
    y = np.array([[1, IGNORE, 0], [IGNORE, IGNORE, IGNORE], [0, 0, IGNORE]])
    probs = np.eye(2)[[[1, 1, 1], [0, 0, 0], [0, 1, 1]]]
    assert per_sequence_scores("accuracy", y, probs) == pytest.approx([0.5, 0.5])
    assert per_sequence_scores("sequence_accuracy", y, probs) == pytest.approx([0.0, 0.0])
    with pytest.raises(ValueError, match="recall_accuracy"):
        per_sequence_scores("recall_accuracy", y, probs)


def test_score_interval_regression_is_a_t_interval():
    task = get_task("adding")
    x, y = task.generate(200, 20, seed=0, split="test")
    pred = task.trivial_prediction(x, 20)
    score = task.scores(y, pred)["mse"]
    low, high = score_interval(task, y, pred, score)
    errors = (pred - y.astype(np.float64)) ** 2
    half = t_quantile(0.975, 199) * errors.std(ddof=1) / math.sqrt(200)
    assert (low, high) == pytest.approx((score - half, score + half), rel=1e-9)
    assert holds((low, high), task.baseline(20)) and not holds((low, high), task.solved_bar(20))
    # one sequence off by 0.1, the rest exact: the interval is clipped at 0
    near = y + 0.1 * (np.arange(200) == 0)
    low, high = score_interval(task, y, near, task.scores(y, near)["mse"])
    assert low == 0.0 < task.scores(y, near)["mse"] < high


def test_score_interval_sequence_classification_is_wilson():
    task = get_task("first_token")
    x, y = task.generate(300, 20, seed=0, split="test")
    pred = task.trivial_prediction(x, 20)  # argmax class 0
    score = task.scores(y, pred)["accuracy"]
    assert score_interval(task, y, pred, score) == wilson(int((y == 0).sum()), 300)
    assert score_interval(task, y, np.eye(8)[y], 1.0) == (pytest.approx(300 / (300 + Z**2)), 1.0)


def test_score_interval_per_step_is_clipped():
    task = get_task("counting")
    x, y = task.generate(100, 30, seed=0, split="test")
    perfect = np.eye(task.output.classes)[y]
    assert score_interval(task, y, perfect, 1.0) == (1.0, 1.0)
    perfect[0, :15] = np.roll(perfect[0, :15], 1, axis=-1)  # one sequence half wrong
    score = task.scores(y, perfect)["accuracy"]
    low, high = score_interval(task, y, perfect, score)
    assert low < score < high == 1.0
    pred = task.trivial_prediction(x, 30)
    score = task.scores(y, pred)["accuracy"]
    low, high = score_interval(task, y, pred, score)
    assert 0.0 < low < score < high < 1.0
    assert high - score == pytest.approx(score - low)
    copy = get_task("copy")
    x, y = copy.generate(50, 10, seed=0, split="test")
    pred = copy.trivial_prediction(x, 10)
    score = copy.scores(y, pred)["cross_entropy"]
    assert score_interval(copy, y, pred, score) == (score, score)  # every row scores the same


def test_holds():
    assert holds((0.2, 0.4), 0.2) and holds((0.2, 0.4), 0.4) and holds((0.2, 0.4), 0.3)
    assert not holds((0.2, 0.4), 0.41)
    assert not holds((math.nan, math.nan), 0.3)


def test_a_metric_of_your_own_has_no_interval():
    """A plug-in task scored by a metric none of BOUNDS' gets nan bounds: its seeds are never
    near the bar, and nothing fails."""
    from dataclasses import replace

    task = get_task("adding")
    own = type("Own", (), {"metric": replace(task.metric, name="f1"), "output": task.output})()
    y = np.zeros(10, dtype=np.float32)
    low, high = score_interval(own, y, y, 0.5)
    assert math.isnan(low) and math.isnan(high) and not holds((low, high), 0.5)
