"""Recurrent families: stacked SimpleRNN / LSTM / GRU and their bidirectional wrappers.

LSTM and GRU stay inside the fused-kernel conditions (tanh, sigmoid recurrent
activation, no recurrent dropout, unroll off, bias on); dropout is a separate
layer between recurrent layers, so it never leaves them.
"""

from __future__ import annotations

import keras
import keras_tuner as kt
import numpy as np
from keras import layers

from search_spaces.base import FamilyHyperModel


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


class RecurrentHyperModel(FamilyHyperModel):
    """A stack of 1-2 recurrent layers; the last one returns its final state unless per step."""

    bidirectional = False

    def cell(self, hp: kt.HyperParameters, units: int, return_sequences: bool, name: str):
        raise NotImplementedError

    def backbone(self, hp, x, per_step):
        units = self.width(hp)
        depth = hp.Int("depth", 1, 2, default=1)
        dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
        for i in range(depth):
            return_sequences = per_step or i < depth - 1
            layer = self.cell(hp, units, return_sequences, name=f"{self.family}_{i}")
            if self.bidirectional:
                layer = layers.Bidirectional(layer, name=f"bi_{i}")
            x = layer(x)
            if dropout > 0:
                x = layers.Dropout(dropout, name=f"dropout_{i}")(x)
        return x


class SimpleRNNSpace(RecurrentHyperModel):
    family = "simple_rnn"
    description = "stacked SimpleRNN (tanh): the vanilla recurrence whose gradient decays"

    def cell(self, hp, units, return_sequences, name):
        return layers.SimpleRNN(units, return_sequences=return_sequences, name=name)


class LSTMSpace(RecurrentHyperModel):
    family = "lstm"
    description = "stacked LSTM; forget-gate bias initialisation is a hyperparameter"

    def cell(self, hp, units, return_sequences, name):
        forget_bias = hp.Choice("forget_bias", [1.0, 3.0], default=1.0)
        return layers.LSTM(
            units,
            return_sequences=return_sequences,
            unit_forget_bias=False,
            bias_initializer=ForgetBias(forget_bias),
            name=name,
        )


class GRUSpace(RecurrentHyperModel):
    family = "gru"
    description = "stacked GRU (reset_after=True, the fused-kernel variant)"

    def cell(self, hp, units, return_sequences, name):
        return layers.GRU(units, return_sequences=return_sequences, name=name)


class BiLSTMSpace(LSTMSpace):
    family = "bilstm"
    description = "bidirectional LSTM: the backward pass sees the first input at distance 1"
    bidirectional = True


class BiGRUSpace(GRUSpace):
    family = "bigru"
    description = "bidirectional GRU: the backward pass sees the first input at distance 1"
    bidirectional = True
