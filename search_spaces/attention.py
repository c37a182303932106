"""The attention baseline: a small pre-norm Transformer encoder with sinusoidal positions."""

from __future__ import annotations

from search_spaces.base import FamilySpace, choice, integer, real


class TransformerSpace(FamilySpace):
    family = "transformer"
    description = "Transformer encoder (MultiHeadAttention, sinusoidal positions, mean pooling)"
    width_name = "width"
    hyperparameters_own = (
        choice("heads", [2, 4], default=4, source="four heads, each a quarter of the width"),
        integer(
            "depth",
            1,
            2,
            default=2,
            source="two layers: one attention layer cannot find a key and read the token "
            "after it (Olsson et al. 2022, induction heads)",
        ),
        real("dropout", 0.0, 0.3, default=0.0, step=0.1, source="none, Keras's default"),
    )
    structural = ("depth", "heads")

    @staticmethod
    def head_size(values) -> int:
        """Each head's key size: the width split across the heads (at least 1)."""
        return max(1, values["width"] // values["heads"])

    def backbone(self, values, x, per_step):
        from keras import layers

        from search_spaces.layers import SinusoidalPosition

        x = SinusoidalPosition(name="positions")(x)
        for i in range(values["depth"]):
            x = encoder_block(x, values["heads"], self.head_size(values), values["dropout"], i)
        x = layers.LayerNormalization(name="final_norm")(x)
        return x if per_step else layers.GlobalAveragePooling1D(name="pool")(x)

    def backbone_parameters(self, values, width):
        attention = values["heads"] * self.head_size(values)  # the projected width
        block = (
            2 * 2 * width  # two layer norms
            + 3 * (width * attention + attention)  # query, key, value
            + attention * width + width  # output projection
            + width * 2 * width + 2 * width  # feed-forward in
            + 2 * width * width + width  # feed-forward out
        )  # fmt: skip
        return values["depth"] * block + 2 * width, width


def encoder_block(x, heads: int, head_size: int, dropout: float, index: int):
    """Pre-norm self-attention and feed-forward, each with a residual connection."""
    from keras import layers

    name, width = f"block_{index}", x.shape[-1]
    h = layers.LayerNormalization(name=f"{name}_norm1")(x)
    h = layers.MultiHeadAttention(heads, head_size, dropout=dropout, name=f"{name}_mha")(h, h)
    x = layers.Add(name=f"{name}_res1")([x, h])
    h = layers.LayerNormalization(name=f"{name}_norm2")(x)
    h = layers.Dense(2 * width, activation="gelu", name=f"{name}_ff1")(h)
    h = layers.Dense(width, name=f"{name}_ff2")(layers.Dropout(dropout)(h))
    return layers.Add(name=f"{name}_res2")([x, h])
