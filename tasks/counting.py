"""Counting modulo N: keep a running count of events (a regular-language task)."""

from functools import lru_cache

import numpy as np

from tasks.base import (
    InputSpec,
    Metric,
    OutputSpec,
    Task,
    masked_accuracy,
    one_hot,
    sequence_accuracy,
)

MODULUS = 8


@lru_cache(maxsize=64)
def constant_class_accuracy(length: int, modulus: int = MODULUS) -> tuple[float, ...]:
    """Expected per-step accuracy of always predicting class c, for every c (exact).

    Dynamic programming over the distribution P_t of the count mod N after step t:
    P_t = (P_{t-1} + roll(P_{t-1}, 1)) / 2, starting from a count of 0; the accuracy
    of class c is the mean of P_t(c) over t = 1..T. P_t converges to uniform (within
    1e-15 after a few hundred steps), after which every step adds 1/N.
    """
    p = np.zeros(modulus)
    p[0] = 1.0
    total = np.zeros(modulus)
    for step in range(length):
        p = 0.5 * (p + np.roll(p, 1))
        total += p
        if np.abs(p - 1.0 / modulus).max() < 1e-15:
            total += (length - step - 1) / modulus
            break
    return tuple(total / length)


class Counting(Task):
    """Count the 1s seen so far, modulo 8, at every step.

    Input: T tokens "0"/"1", each 1 with probability 1/2. Target at step t: the number
    of 1s in steps 0..t (inclusive) mod 8.
    Example (T=10): x = 1 1 0 1 1 1 1 1 1 0 -> y = 1 2 2 3 4 5 6 7 0 0.
    Baseline: the best constant class, whose expected per-step accuracy is computed
    exactly (`constant_class_accuracy`): about 1/8, a little more at short T where
    small counts dominate. Solved: per-step accuracy >= 0.99.
    Short lengths have few sequences (2^L) to share out among the splits (tasks.base):
    val / test hold 159 / 161 at L=10, 599 / 618 at L=12, 1,255 / 1,185 at L=13, and
    L=2 has no val sequence (its 4 go 3 to train, 1 to test).
    """

    name = "counting"
    description = "running count of 1s modulo 8 at every step (per-step classes)"
    input = InputSpec("tokens", vocab=("0", "1"))
    output = OutputSpec("per_step_classification", classes=MODULUS)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max", "per-step accuracy of the running count mod 8")
    extra_metrics = (Metric("sequence_accuracy", "max", "fraction of sequences all right"),)
    default_lengths = (50, 100, 200, 400)
    modulus = MODULUS

    def _generate(self, n, length, rng, split):
        x = rng.integers(0, 2, size=(n, length), dtype=np.int32)
        y = np.cumsum(x, axis=1, dtype=np.int32) % self.modulus
        return x, y

    def _best_class(self, length):
        accuracy = constant_class_accuracy(length, self.modulus)
        return int(np.argmax(accuracy)), max(accuracy)

    def baseline(self, length):
        return self._best_class(length)[1]

    def trivial_prediction(self, x, length):
        probs = one_hot(np.array(self._best_class(length)[0]), self.modulus)
        return np.broadcast_to(probs, (*x.shape[:2], self.modulus))

    def solved_bar(self, length):
        return 0.99

    def scores(self, y_true, y_pred):
        return {
            "accuracy": masked_accuracy(y_true, y_pred),
            "sequence_accuracy": sequence_accuracy(y_true, y_pred),
        }
