"""95% intervals of test scores, in closed form, so `harness verify` can recompute them.

Two kinds, picked by `score_interval` from the task's output kind and primary metric:

- Wilson score interval for accuracy where each test sequence gives one prediction
  (output kind "sequence_classification"): hits / n, hits counted from the argmax.
- t-interval over per-sequence scores otherwise (per-step accuracy, cross-entropy,
  regression MSE): centred on the task's own pooled score, half-width
  t_{(1+c)/2, n-1} * sd(per-sequence scores) / sqrt(n), where n is the number of
  sequences with at least one scored step. Where every sequence has the same number of
  scored steps the pooled score equals the mean of the per-sequence scores, and this is
  the textbook t-interval of that mean; otherwise it is the same width around the pooled
  score (sequences as the independent units).

Numpy and the standard library only: the Student t quantile is computed here by
bisection on the regularized incomplete beta function (continued fraction), and by the
Cornish-Fisher expansion for very large degrees of freedom.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import numpy as np

from tasks.base import IGNORE

BOUNDS: dict[str, tuple[float, float]] = {
    "accuracy": (0.0, 1.0),
    "sequence_accuracy": (0.0, 1.0),
    "cross_entropy": (0.0, math.inf),
    "mse": (0.0, math.inf),
}
"""The metrics `per_sequence_scores` knows, with the range a t-interval is clipped into."""

LARGE_DF = 3000
"""From this many degrees of freedom on, `t_quantile` uses the Cornish-Fisher expansion (its
first omitted term is O(df**-5)); there both methods agree within 1e-12 relative for
1e-14 <= p <= 1 - 1e-14, and the continued fraction loses digits at larger df."""


def wilson(hits: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of the proportion hits / n, within [0, 1].

    0 hits gives a lower bound of exactly 0 and n hits an upper bound of exactly 1;
    n = 0 gives (nan, nan). ValueError unless 0 <= hits <= n.
    """
    if not 0 <= hits <= n:
        raise ValueError(f"hits={hits}, n={n}: need 0 <= hits <= n")
    if n == 0:
        return math.nan, math.nan
    z = NormalDist().inv_cdf((1.0 + confidence) / 2.0)
    p = hits / n
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1.0 - p) / n + z * z / (4 * n * n))
    low = 0.0 if hits == 0 else max(0.0, centre - half)
    high = 1.0 if hits == n else min(1.0, centre + half)
    return low, high


def _betainc(a: float, b: float, x: float, y: float) -> float:
    """Regularized incomplete beta I_x(a, b) with y = 1 - x passed exactly (Lentz's
    continued fraction, Numerical Recipes 6.4)."""
    if x <= 0.0:
        return 0.0
    if y <= 0.0:
        return 1.0
    if x > (a + 1.0) / (a + b + 2.0):
        return 1.0 - _betainc(b, a, y, x)
    log_front = (
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log(y)
    )
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    fraction = d
    for m in range(1, 100_000):
        for numerator in (
            m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
            -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1)),
        ):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            fraction *= c * d
        if abs(c * d - 1.0) < 1e-16:
            break
    return math.exp(log_front) * fraction / a


def _t_upper_tail(t: float, df: float) -> float:
    """P(T > t) for t >= 0: I_{df/(df+t^2)}(df/2, 1/2) / 2."""
    return 0.5 * _betainc(df / 2.0, 0.5, df / (df + t * t), t * t / (df + t * t))


def t_quantile(p: float, df: int) -> float:
    """The p quantile of Student's t with `df` >= 1 degrees of freedom (0 at p = 0.5;
    t_quantile(1 - p) = -t_quantile(p)); relative error below 1e-10.

    ValueError unless 0 < p < 1 and df >= 1.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"p={p}: need 0 < p < 1")
    if not df >= 1:
        raise ValueError(f"df={df}: need df >= 1")
    if p < 0.5:
        return -t_quantile(1.0 - p, df)
    if p == 0.5:
        return 0.0
    if df >= LARGE_DF:  # Abramowitz & Stegun 26.7.5
        x = NormalDist().inv_cdf(p)
        g1 = (x**3 + x) / 4
        g2 = (5 * x**5 + 16 * x**3 + 3 * x) / 96
        g3 = (3 * x**7 + 19 * x**5 + 17 * x**3 - 15 * x) / 384
        g4 = (79 * x**9 + 776 * x**7 + 1482 * x**5 - 1920 * x**3 - 945 * x) / 92160
        return x + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    tail = 1.0 - p
    low, high = 0.0, 1.0
    while _t_upper_tail(high, df) > tail:
        low, high = high, 2.0 * high
    while high - low > 1e-15 * high:
        middle = 0.5 * (low + high)
        if middle in (low, high):
            break
        if _t_upper_tail(middle, df) > tail:
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def t_interval(centre: float, values: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    """centre -/+ t_{(1+c)/2, n-1} * sd(values) / sqrt(n), sd with n - 1 in the denominator.

    Fewer than 2 values give (nan, nan) (no spread to estimate); equal values give
    (centre, centre); a nan among the values gives nan bounds.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    n = len(values)
    if n < 2:
        return math.nan, math.nan
    half = (
        t_quantile((1.0 + confidence) / 2.0, n - 1) * float(np.std(values, ddof=1)) / math.sqrt(n)
    )
    return float(centre - half), float(centre + half)


def per_sequence_scores(metric: str, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """One score per sequence, as tasks.base pools them over all scored steps: "accuracy"
    and "cross_entropy" over a row's scored steps (targets != IGNORE), "sequence_accuracy"
    (1.0 where every scored step is right), "mse" (a row's mean squared error).

    Classification y_pred are class probabilities: (n, C) with y_true (n,), or (n, T, C)
    with y_true (n, T). Rows without a scored step are dropped (tasks.base's
    sequence_accuracy counts them as right). ValueError for another metric name.
    """
    y_true = np.asarray(y_true)
    n = len(y_true)
    if metric == "mse":
        pred = np.asarray(y_pred, np.float64).reshape(y_true.shape)
        return ((pred - y_true.astype(np.float64)) ** 2).reshape(n, -1).mean(axis=1)
    if metric not in BOUNDS:
        raise ValueError(
            f"no per-sequence score for metric '{metric}': accepted {', '.join(BOUNDS)}"
        )
    probs = np.asarray(y_pred)
    mask = (y_true != IGNORE).reshape(n, -1)
    counts = mask.sum(axis=1)
    keep = counts > 0
    if metric == "cross_entropy":
        picked = np.take_along_axis(
            probs, np.where(y_true != IGNORE, y_true, 0)[..., None], axis=-1
        )
        nll = -np.log(np.clip(picked[..., 0].astype(np.float64), 1e-12, 1.0)).reshape(n, -1)
        return np.where(mask, nll, 0.0).sum(axis=1)[keep] / counts[keep]
    right = (np.argmax(probs, axis=-1) == y_true).reshape(n, -1) & mask
    if metric == "sequence_accuracy":
        return np.all(right | ~mask, axis=1)[keep].astype(np.float64)
    return right.sum(axis=1)[keep] / counts[keep]


def by_wilson(task) -> bool:
    """Whether `task`'s intervals are Wilson's: one prediction per sequence, scored by
    accuracy (else a t-interval over per-sequence scores)."""
    return task.output.kind == "sequence_classification" and task.metric.name == "accuracy"


def score_interval(
    task, y_true: np.ndarray, y_pred: np.ndarray, score: float
) -> tuple[float, float]:
    """The 95% interval of `task`'s primary score (`score`, from task.scores).

    Wilson (hits / n over scored targets; `score` is not used) for a sequence
    classification task scored by accuracy; otherwise the t-interval of
    `per_sequence_scores` centred on `score`, clipped into the metric's range ([0, 1]
    for accuracies, [0, inf) for mse and cross_entropy). nan bounds where it cannot be
    estimated (no scored target for Wilson, fewer than 2 sequences for t, a metric of your
    own task that is none of BOUNDS': its seeds are then never near the bar).
    """
    metric = task.metric.name
    if metric not in BOUNDS:
        return math.nan, math.nan
    y_true = np.asarray(y_true)
    if by_wilson(task):
        mask = y_true != IGNORE
        hits = int(((np.argmax(np.asarray(y_pred), axis=-1) == y_true) & mask).sum())
        return wilson(hits, int(mask.sum()))
    low, high = t_interval(score, per_sequence_scores(metric, y_true, y_pred))
    floor, ceiling = BOUNDS[metric]
    return float(np.clip(low, floor, ceiling)), float(np.clip(high, floor, ceiling))


def holds(interval: tuple[float, float], bar: float) -> bool:
    """Whether `bar` lies in the closed interval (the score is "near the bar"); False
    for nan bounds."""
    low, high = interval
    return bool(low <= bar <= high)
