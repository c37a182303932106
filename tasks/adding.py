"""The adding problem (Hochreiter & Schmidhuber 1997; the Arjovsky et al. 2016 variant)."""

import sys

import numpy as np

from tasks.base import InputSpec, Metric, OutputSpec, Task, fill_row_chunks, mse

LITTLE_ENDIAN = sys.byteorder == "little"


class Adding(Task):
    """Sum the two marked values.

    Input (T, 2): channel 0 holds values uniform in [0, 1); channel 1 is a marker
    with exactly two 1s, one uniformly in the first half, one in the second.
    Example (T=4): values .2 .7 .1 .5, markers 1 0 0 1 -> target .2 + .5 = .7.
    Predicting 1.0 always gives MSE Var(U+U) = 1/6; "solved" is MSE < 0.01
    (6% of the baseline: the two values must really be read and added).
    Rows are generated in chunks across threads (`fill_row_chunks`): the data depends
    only on the seed, never on the thread count.
    """

    name = "adding"
    description = "sum the two marked values among T uniform ones (regression)"
    input = InputSpec("real", width=2)
    output = OutputSpec("regression")
    loss = "mse"
    metric = Metric("mse", "min", "mean squared error of the predicted sum")
    default_lengths = (100, 200, 400, 1000)

    def _generate(self, n, length, rng, split):
        half = length // 2
        x = np.empty((n, length, 2), dtype=np.float32)
        y = np.empty(n, dtype=np.float32)

        def fill(lo, hi, chunk_rng):
            values = chunk_rng.random((hi - lo, length), dtype=np.float32)
            if LITTLE_ENDIAN:  # one contiguous pass: (value, 0.0) pairs as uint64 words
                np.copyto(x[lo:hi].view(np.uint64)[..., 0], values.view(np.uint32))
            else:  # pragma: no cover
                x[lo:hi, :, 0] = values
                x[lo:hi, :, 1] = 0.0
            rows = np.arange(hi - lo)
            first = chunk_rng.integers(0, half, size=hi - lo)
            second = chunk_rng.integers(half, length, size=hi - lo)
            x[lo + rows, first, 1] = 1.0
            x[lo + rows, second, 1] = 1.0
            y[lo:hi] = values[rows, first] + values[rows, second]

        fill_row_chunks(n, length, rng, fill)
        return x, y

    def baseline(self, length):
        return 1.0 / 6.0

    def trivial_prediction(self, x, length):
        return np.ones(len(x), dtype=np.float32)

    def solved_bar(self, length):
        return 0.01

    def scores(self, y_true, y_pred):
        return {"mse": mse(y_true, y_pred)}
