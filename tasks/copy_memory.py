"""The copy memory task (Hochreiter & Schmidhuber 1997; the Arjovsky et al. 2016 setting)."""

import math

import numpy as np

from tasks.base import (
    MAX_LENGTH,
    InputSpec,
    Metric,
    OutputSpec,
    Task,
    cross_entropy,
    masked_accuracy,
)

SYMBOLS = 8
RECALL = 10
BLANK, DELIMITER = 8, 9


class CopyMemory(Task):
    """Recall 10 symbols after a delay of T steps.

    For delay T the sequence has T+20 steps: 10 symbols uniform (with replacement) over
    "0".."7", T-1 blanks "_", the delimiter ":", then 10 blanks. The target is blank for
    the first T+10 steps and the 10 symbols, in order, for the last 10.
    Example (T=3, 3 symbols instead of 10): x = 5 2 7 _ _ : _ _ _ -> y = _ _ _ _ _ _ 5 2 7.
    Output: 9 classes per step (the 8 symbols and the blank; the delimiter is never a
    target). Score: cross-entropy over all T+20 steps. The trivial predictor (blank
    with certainty, then uniform over the 8 symbols in the last 10 steps) scores
    10 ln 8 / (T+20); "solved" is below 5% of that, i.e. a mean log-loss on a recalled
    symbol below 0.05 ln 8 ~ 0.10 nats (p(correct) ~ 0.9). `recall_accuracy` is the
    accuracy on the 10 recalled symbols (trivial: 1/8).
    """

    name = "copy"
    description = "recall 10 symbols after a delay of T blanks (per-step classes)"
    length_meaning = "delay T (the sequence has T+20 steps)"
    input = InputSpec("tokens", vocab=(*(str(s) for s in range(SYMBOLS)), "_", ":"))
    output = OutputSpec("per_step_classification", classes=SYMBOLS + 1)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("cross_entropy", "min", "mean log-loss (nats) per step over all T+20 steps")
    extra_metrics = (Metric("recall_accuracy", "max", "accuracy on the 10 recalled symbols"),)
    default_lengths = (100, 200, 500, 1000)
    min_length = 1
    max_length = MAX_LENGTH - 2 * RECALL

    def sequence_steps(self, length):
        return length + 2 * RECALL

    def _generate(self, n, length, rng, split):
        steps = self.sequence_steps(length)
        symbols = rng.integers(0, SYMBOLS, size=(n, RECALL), dtype=np.int32)
        x = np.full((n, steps), BLANK, dtype=np.int32)
        x[:, :RECALL] = symbols
        x[:, length + RECALL - 1] = DELIMITER
        y = np.full((n, steps), BLANK, dtype=np.int32)
        y[:, -RECALL:] = symbols
        return x, y

    def baseline(self, length):
        return RECALL * math.log(SYMBOLS) / self.sequence_steps(length)

    def trivial_prediction(self, x, length):
        probs = np.zeros((len(x), self.sequence_steps(length), SYMBOLS + 1), dtype=np.float32)
        probs[:, :-RECALL, BLANK] = 1.0
        probs[:, -RECALL:, :SYMBOLS] = 1.0 / SYMBOLS
        return probs

    def solved_bar(self, length):
        return 0.05 * self.baseline(length)

    def scores(self, y_true, y_pred):
        return {
            "cross_entropy": cross_entropy(y_true, y_pred),
            "recall_accuracy": masked_accuracy(y_true[:, -RECALL:], y_pred[:, -RECALL:]),
        }
