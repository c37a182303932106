"""MQAR as Zoology defines it (Arora et al. 2023), on a vocabulary a CPU budget allows.

Zoology's generator (HazyResearch/zoology, `multiquery_ar`) draws keys and values from the
two halves of an 8,192-token vocabulary, queries each stored key once at a power-law gap
after the pairs (power_a = 0.01) and fills every other step with random tokens; only the
query steps carry a label. The number of key-value pairs is a task parameter here: one
class, registered once per pair count (`mqar_p4`, `mqar_p8`, `mqar_p16`, `mqar_p32`).

The registered name carries the pair count, and the name is part of a cell's key
(`harness.suites.Cell.key`: the name leads it and is in its digest) and of the data
cache's file name (`Task.data_name`, name and code hash); the code hash itself
(tasks/source.py) is the module's, shared by the variants. So two pair counts never share
a cell or cached arrays.
"""

import numpy as np

from tasks.base import IGNORE, InputSpec, Metric, OutputSpec, Task, masked_accuracy

KEYS = VALUES = 128
NOISE = 64
VOCAB = KEYS + VALUES + NOISE
POWER_A = 0.01
"""Zoology's power_a (train and test alike): gap g = 0, 1, ... has weight (g + 1)^(a - 1)."""
PAIRS = (4, 8, 16, 32)
"""The registered pair counts (`mqar_p4` ... `mqar_p32`), Zoology's Figure 2 range up to 32."""


def gap_law(length: int, pairs: int) -> np.ndarray:
    """The probability of each query slot g = 0 .. S-1 after the pairs, S = (L - 2k) / 2
    (slot g is step 2k + 2g): a power law, proportional to a * (g + 1)^(a - 1)."""
    slots = (length - 2 * pairs) // 2
    weight = POWER_A * np.arange(1, slots + 1, dtype=np.float64) ** (POWER_A - 1)
    return weight / weight.sum()


class MQAR(Task):
    """Store k key-value pairs, then answer one query of each key at a power-law distance.

    Tokens: keys "k0".."k127" (ids 0..127), values "v0".."v127" (ids 128..255), noise
    "n0".."n63" (ids 256..319), three disjoint ranges. A sequence of even length L >= 4k
    opens with k pairs (distinct keys, distinct values: steps 0..2k-1). The rest is
    S = (L - 2k) / 2 slots; slot g is step 2k + 2g. The keys are queried once each, pair i
    at slot g_i, the slots drawn one after the other without replacement with probability
    proportional to (g + 1)^(0.01 - 1) over the free slots (Zoology's law and order: pair 0
    draws first, so its slot follows the law exactly). Every other step is a noise token.
    The target at a query is the index of the value paired with its key; every other step
    is IGNORE (not scored).
    Example (k=2, L=12, slots g_0 = 0, g_1 = 2):
        x = k5 v9 k2 v0 k5 n3 n7 n1 k2 n0 n4 n6 -> y = - - - - 9 - - - 0 - - -.
    Output: 128 classes per step (the value index). Baseline: chance, 1/128 (uniform
    probabilities, argmax class 0; values are uniform). Solved: accuracy on queries >= 0.95.

    Vocabulary: 128 keys, 128 values and 64 noise tokens (320), the largest power-of-two
    key and value sets that a budget of about 70,000 parameters at width 64 allows: the
    embedding is 320 x 64 = 20,480, the head (64 + 1) x 128 = 8,320, together 28,800 (41%),
    which leaves about 41,000 for the backbone (one LSTM layer at 64 is
    4 x (64 x 64 + 64 x 64 + 64) = 33,024). With 256 keys and values the embedding and head
    would take 576 x 64 + 65 x 256 = 53,504 (76%) and the width would fall far below 64.
    128 keys are 4x the largest pair count, so keys are a sparse draw even at k=32.
    Unlike Zoology, noise tokens come from their own range, not from the whole vocabulary:
    a key token after the pairs is then always a query, as the arrays alone show.
    """

    input = InputSpec(
        "tokens",
        vocab=(
            *(f"k{i}" for i in range(KEYS)),
            *(f"v{i}" for i in range(VALUES)),
            *(f"n{i}" for i in range(NOISE)),
        ),
    )
    output = OutputSpec("per_step_classification", classes=VALUES)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max", "accuracy of the recalled values at query steps")
    length_meaning = "number of time steps (even, at least 4 x pairs)"
    length_step = 2

    def __init__(self, pairs: int = 4):
        if not 1 <= pairs <= KEYS:
            raise ValueError(f"pairs={pairs} is out of range: accepted 1..{KEYS}")
        self.pairs = pairs
        self.name = f"mqar_p{pairs}"
        self.description = (
            f"Zoology's MQAR: recall the values of {pairs} keys queried at power-law "
            "distances among noise (per-step classes)"
        )
        self.min_length = 4 * pairs
        self.default_lengths = tuple(n for n in (64, 128, 256, 512) if n >= 4 * pairs)[:3]

    def _generate(self, n, length, rng, split):
        k = self.pairs
        law = gap_law(length, k)
        keys = np.argsort(rng.random((n, KEYS)), axis=1)[:, :k].astype(np.int32)
        values = np.argsort(rng.random((n, VALUES)), axis=1)[:, :k].astype(np.int32)
        # successive draws without replacement, weights `law`: the order of exponential
        # clocks E_g / law_g (Efraimidis-Spirakis), the first k of them
        clocks = rng.standard_exponential((n, len(law))) / law
        first = np.argpartition(clocks, k - 1, axis=1)[:, :k]
        rows = np.arange(n)[:, None]
        gaps = np.take_along_axis(first, np.argsort(clocks[rows, first], axis=1), axis=1)
        x = rng.integers(KEYS + VALUES, VOCAB, size=(n, length), dtype=np.int32)
        x[:, 0 : 2 * k : 2] = keys
        x[:, 1 : 2 * k : 2] = values + KEYS
        asked = 2 * k + 2 * gaps
        x[rows, asked] = keys
        y = np.full((n, length), IGNORE, dtype=np.int32)
        y[rows, asked] = values
        return x, y

    def baseline(self, length):
        return 1.0 / VALUES

    def trivial_prediction(self, x, length):
        return np.full((*x.shape[:2], VALUES), 1.0 / VALUES, dtype=np.float32)

    def solved_bar(self, length):
        return 0.95

    def scores(self, y_true, y_pred):
        return {"accuracy": masked_accuracy(y_true, y_pred)}
