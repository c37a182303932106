"""The attention baseline: a small Transformer encoder with sinusoidal positions."""

from __future__ import annotations

import math

import keras
from keras import layers, ops

from search_spaces.base import FamilyHyperModel


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


def encoder_block(x, heads: int, width: int, dropout: float, name: str):
    """Pre-norm self-attention and feed-forward, each with a residual connection."""
    h = layers.LayerNormalization(name=f"{name}_norm1")(x)
    h = layers.MultiHeadAttention(heads, width // heads, dropout=dropout, name=f"{name}_mha")(h, h)
    x = layers.Add(name=f"{name}_res1")([x, h])
    h = layers.LayerNormalization(name=f"{name}_norm2")(x)
    h = layers.Dense(2 * width, activation="gelu", name=f"{name}_ff1")(h)
    h = layers.Dense(width, name=f"{name}_ff2")(layers.Dropout(dropout)(h))
    return layers.Add(name=f"{name}_res2")([x, h])


class TransformerSpace(FamilyHyperModel):
    family = "transformer"
    description = "Transformer encoder (MultiHeadAttention, sinusoidal positions, mean pooling)"

    def width(self, hp):
        return hp.Choice("width", [32, 64, 128], default=64)

    def backbone(self, hp, x, per_step):
        width = self.width(hp)
        heads = hp.Choice("heads", [2, 4], default=4)
        depth = hp.Int("depth", 1, 2, default=2)
        dropout = hp.Float("dropout", 0.0, 0.3, step=0.1, default=0.0)
        x = SinusoidalPosition(name="positions")(x)
        for i in range(depth):
            x = encoder_block(x, heads, width, dropout, name=f"block_{i}")
        x = layers.LayerNormalization(name="final_norm")(x)
        return x if per_step else layers.GlobalAveragePooling1D(name="pool")(x)
