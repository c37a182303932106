"""Recurrent families: stacked SimpleRNN / LSTM / GRU and their bidirectional wrappers.

LSTM and GRU stay inside the fused-kernel conditions (tanh, sigmoid recurrent
activation, no recurrent dropout, unroll off, bias on); dropout is a separate
layer between recurrent layers, so it never leaves them.
"""

from __future__ import annotations

from search_spaces.base import FamilySpace, choice, integer, real

DEPTH = integer(
    "depth",
    1,
    2,
    default=1,
    source="one layer: the single recurrent layer of the adding and copy papers "
    "(Hochreiter and Schmidhuber 1997; Arjovsky et al. 2016)",
)
DROPOUT = real(
    "dropout", 0.0, 0.3, default=0.0, step=0.1,
    source="none, Keras's default: the synthetic tasks draw fresh data, not a small set to overfit",
)  # fmt: skip


class RecurrentSpace(FamilySpace):
    """A stack of 1-2 recurrent layers; the last one returns its final state unless per step."""

    bidirectional = False
    gates = 1  # weight blocks per layer: 1 SimpleRNN, 4 LSTM, 3 GRU
    biases = 1  # bias vectors per block (GRU with reset_after: 2)
    hyperparameters_own = (DEPTH, DROPOUT)

    def cell(self, values, units: int, return_sequences: bool, name: str):
        raise NotImplementedError

    def backbone(self, values, x, per_step):
        from keras import layers

        units, depth = values["units"], values["depth"]
        for i in range(depth):
            return_sequences = per_step or i < depth - 1
            layer = self.cell(values, units, return_sequences, name=f"{self.family}_{i}")
            if self.bidirectional:
                layer = layers.Bidirectional(layer, name=f"bi_{i}")
            x = layer(x)
            if values["dropout"] > 0:
                x = layers.Dropout(values["dropout"], name=f"dropout_{i}")(x)
        return x

    def backbone_parameters(self, values, width):
        directions = 2 if self.bidirectional else 1
        units, total, inputs = values["units"], 0, width
        for _ in range(values["depth"]):
            per_direction = self.gates * units * (inputs + units + self.biases)
            total += directions * per_direction
            inputs = directions * units
        return total, inputs


class SimpleRNNSpace(RecurrentSpace):
    family = "simple_rnn"
    description = "stacked SimpleRNN (tanh): the vanilla recurrence whose gradient decays"

    def cell(self, values, units, return_sequences, name):
        from keras import layers

        return layers.SimpleRNN(units, return_sequences=return_sequences, name=name)


class LSTMSpace(RecurrentSpace):
    family = "lstm"
    description = "stacked LSTM; forget-gate bias initialisation is a hyperparameter"
    gates = 4
    hyperparameters_own = (
        DEPTH,
        DROPOUT,
        choice(
            "forget_bias", [1.0, 3.0], default=1.0,
            source="Keras's unit_forget_bias, 1.0 (Jozefowicz et al. 2015)",
        ),
    )  # fmt: skip

    def cell(self, values, units, return_sequences, name):
        from keras import layers

        from search_spaces.layers import ForgetBias

        return layers.LSTM(
            units,
            return_sequences=return_sequences,
            unit_forget_bias=False,
            bias_initializer=ForgetBias(values["forget_bias"]),
            name=name,
        )


class GRUSpace(RecurrentSpace):
    family = "gru"
    description = "stacked GRU (reset_after=True, the fused-kernel variant)"
    gates, biases = 3, 2

    def cell(self, values, units, return_sequences, name):
        from keras import layers

        return layers.GRU(units, return_sequences=return_sequences, name=name)


class BiLSTMSpace(LSTMSpace):
    family = "bilstm"
    description = "bidirectional LSTM: the backward pass sees the first input at distance 1"
    bidirectional = True


class BiGRUSpace(GRUSpace):
    family = "bigru"
    description = "bidirectional GRU: the backward pass sees the first input at distance 1"
    bidirectional = True
