"""The custom Keras objects the families' models hold, registered for saving and loading.

Imported when a model is built or loaded (`import search_spaces.layers`, which also registers
the scan recurrences of search_spaces/scan_layers.py), never by the registry, so listing
families needs no Keras.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import layers, ops


@keras.saving.register_keras_serializable(package="harness")
class ForgetBias(keras.initializers.Initializer):
    """LSTM bias: zeros except the forget-gate slice (gate order i, f, c, o) set to `value`."""

    def __init__(self, value: float = 1.0):
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        bias = np.zeros(shape, dtype="float32")
        units = shape[0] // 4
        bias[units : 2 * units] = self.value
        return keras.ops.convert_to_tensor(bias, dtype=dtype)

    def get_config(self):
        return {"value": self.value}


@keras.saving.register_keras_serializable(package="harness")
class SinusoidalPosition(layers.Layer):
    """Adds sinusoidal position codes computed from the input's own length.

    Nothing is learned per position, so the model runs at lengths longer than
    any it was trained on.
    """

    def call(self, x):
        length, width = ops.shape(x)[1], x.shape[-1]
        positions = ops.cast(ops.arange(length), "float32")[:, None]
        rates = ops.exp(ops.arange(0, width, 2, dtype="float32") * (-math.log(10000.0) / width))
        angles = positions * rates[None, :]
        codes = ops.reshape(ops.stack([ops.sin(angles), ops.cos(angles)], axis=-1), (length, -1))
        return x + ops.cast(codes[None, :, :width], x.dtype)


@keras.saving.register_keras_serializable(package="harness")
class PooledMetric(keras.metrics.Metric):
    """Accuracy or cross-entropy pooled over every scored target (targets != IGNORE).

    The same definition as tasks.base.masked_accuracy and cross_entropy: hits (or
    log-losses) summed over all scored steps of all rows, divided by their count, so
    the search's objective equals the score evaluation reports.
    """

    def __init__(self, kind: str = "accuracy", ignore: int = -1, name=None, **kwargs):
        super().__init__(name=name or kind, **kwargs)
        self.kind, self.ignore = kind, ignore
        self.total = self.add_variable((), initializer="zeros", name="total")
        self.count = self.add_variable((), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        y_true = ops.cast(ops.reshape(y_true, ops.shape(y_pred)[:-1]), "int32")
        scored = ops.cast(ops.not_equal(y_true, self.ignore), "float32")
        if self.kind == "accuracy":
            predicted = ops.cast(ops.argmax(y_pred, axis=-1), "int32")
            values = ops.cast(ops.equal(predicted, y_true), "float32")
        else:
            picked = ops.take_along_axis(
                y_pred, ops.expand_dims(ops.where(scored > 0, y_true, 0), -1), axis=-1
            )[..., 0]
            values = -ops.log(ops.clip(ops.cast(picked, "float32"), 1e-12, 1.0))
        self.total.assign_add(ops.sum(values * scored))
        self.count.assign_add(ops.sum(scored))

    def result(self):
        return self.total / ops.maximum(self.count, 1.0)

    def get_config(self):
        return {**super().get_config(), "kind": self.kind, "ignore": self.ignore}


# The parallel-scan recurrences live in their own module; importing it here registers them
# wherever `import search_spaces.layers` does (model building and loading).
from search_spaces import scan_layers  # noqa: E402, F401
