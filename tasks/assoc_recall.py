"""Multi-query associative recall (MQAR; Arora et al. 2023, Zoology; also in MAD)."""

import numpy as np

from tasks.base import IGNORE, InputSpec, Metric, OutputSpec, Task, masked_accuracy

KEYS = VALUES = 16


def pairs_for(length: int) -> int:
    """Key-value pairs in a sequence of `length` steps: min(16, length // 4)."""
    return min(KEYS, length // 4)


class AssocRecall(Task):
    """Store k key-value pairs, then answer queries of those keys.

    Keys "k0".."k15" (token ids 0..15) and values "v0".."v15" (ids 16..31) are disjoint
    vocabularies. A sequence of length L holds k = min(16, L // 4) pairs with distinct
    keys and distinct values (2k steps), then L - 2k queries, each a key drawn uniformly
    from the k stored ones. The target at a query is the index of the value paired with
    that key; the pair section is not scored (IGNORE).
    Example (L=8, k=2): x = k3 v7 k9 v1 k9 k3 k3 k9 -> y = - - - - 1 7 7 1.
    Output: 16 classes per step (the value index). Baseline: chance, 1/16 (uniform
    probabilities, argmax class 0). Solved: accuracy on queries >= 0.95.
    """

    name = "assoc_recall"
    description = "recall the value paired with each queried key (per-step classes)"
    input = InputSpec(
        "tokens", vocab=(*(f"k{i}" for i in range(KEYS)), *(f"v{i}" for i in range(VALUES)))
    )
    output = OutputSpec("per_step_classification", classes=VALUES)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max", "accuracy of the recalled values at query steps")
    default_lengths = (64, 128, 256)
    min_length = 8

    def _generate(self, n, length, rng, split):
        k = pairs_for(length)
        keys = np.argsort(rng.random((n, KEYS)), axis=1)[:, :k].astype(np.int32)
        values = np.argsort(rng.random((n, VALUES)), axis=1)[:, :k].astype(np.int32)
        asked = rng.integers(0, k, size=(n, length - 2 * k))
        rows = np.arange(n)[:, None]
        x = np.empty((n, length), dtype=np.int32)
        x[:, 0 : 2 * k : 2] = keys
        x[:, 1 : 2 * k : 2] = values + KEYS
        x[:, 2 * k :] = keys[rows, asked]
        y = np.full((n, length), IGNORE, dtype=np.int32)
        y[:, 2 * k :] = values[rows, asked]
        return x, y

    def baseline(self, length):
        return 1.0 / VALUES

    def trivial_prediction(self, x, length):
        return np.full((*x.shape[:2], VALUES), 1.0 / VALUES, dtype=np.float32)

    def solved_bar(self, length):
        return 0.95

    def scores(self, y_true, y_pred):
        return {"accuracy": masked_accuracy(y_true, y_pred)}
