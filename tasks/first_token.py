"""Remember the first token: the plainest long-range dependency."""

import numpy as np

from tasks.base import InputSpec, Metric, OutputSpec, Task, masked_accuracy

SYMBOLS = 8


class FirstToken(Task):
    """Classify a sequence by its first token.

    Input: T tokens uniform over "0".."7"; the label is the first one.
    Example (T=6): 3 1 7 7 0 2 -> class 3.
    A forward RNN must carry the token across all T steps; a backward one reads it one
    step before the end, so the gap between the two directions measures memory alone.
    Baseline: chance, 1/8 (the trivial predictor outputs uniform probabilities, whose
    argmax is class 0). Solved: accuracy >= 0.95.
    Short lengths have few sequences (8^L) to share out among the splits (tasks.base):
    val / test hold 10 / 9 at L=2, 618 / 580 at L=4, 4,892 / 4,901 at L=5.
    """

    name = "first_token"
    description = "label a sequence of 8 symbols by its first token (sequence class)"
    input = InputSpec("tokens", vocab=tuple(str(s) for s in range(SYMBOLS)))
    output = OutputSpec("sequence_classification", classes=SYMBOLS)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max", "accuracy of the predicted first token")
    default_lengths = (100, 200, 500, 1000)
    hindsight = (
        "A forward RNN must carry the first token across all L steps; the backward pass of a "
        "bidirectional one reads it one step before its end."
    )

    def _generate(self, n, length, rng, split):
        x = rng.integers(0, SYMBOLS, size=(n, length), dtype=np.int32)
        return x, x[:, 0].copy()

    def baseline(self, length):
        return 1.0 / SYMBOLS

    def trivial_prediction(self, x, length):
        return np.full((len(x), SYMBOLS), 1.0 / SYMBOLS, dtype=np.float32)

    def solved_bar(self, length):
        return 0.95

    def scores(self, y_true, y_pred):
        return {"accuracy": masked_accuracy(y_true, y_pred)}
