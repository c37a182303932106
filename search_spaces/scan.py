"""Parallel-scan recurrences: minGRU (also signed), minLSTM, the LRU and RotScan, stacked in
residual blocks.

The recurrences are in search_spaces/scan_layers.py (one `keras.ops.associative_scan`
over time each). Here they are stacked as their papers stack them, pre-norm with
residual connections, then a final LayerNormalization:

- minGRU, minLSTM (Feng et al. 2024) and signed minGRU: x + Rec(LN(x)), then
  x + MLP(LN(x)) with the MLP Dense(2w, gelu) -> Dense(w) (the transformer family's
  feed-forward);
- LRU (Orvieto et al. 2023) and RotScan: x + GLU(GELU(Rec(LN(x)))), the GLU
  Dense(w) * sigmoid(Dense(w)), one residual per block as in the LRU paper
  (LayerNormalization where the paper's LRA models use BatchNorm: it does not depend on
  the batch or the length).

Dropout (searched, 0 to 0.3) follows the recurrence and the MLP/GLU when above 0. A
sequence output is the LAST step (the recurrences are causal: the last step has seen
the whole sequence, as the recurrent families' final state has); a per-step output is
every step. The state width is a fixed multiple of the width w (minGRU/minLSTM:
expansion 1, state w, no output projection; LRU, RotScan: N = w complex channels), so a
parameter budget maps to exactly one width; depth (1-2) is the one other structural
hyperparameter. No Keras import here: `harness spaces` lists the families without it.
"""

from __future__ import annotations

from search_spaces.base import FamilySpace, boolean, choice
from search_spaces.recurrent import DEPTH, DROPOUT


def layer_norm_parameters(width: int) -> int:
    return 2 * width  # scale and offset


class ScanSpace(FamilySpace):
    """A stack of 1-2 residual blocks around a parallel-scan recurrence of width `units`."""

    hyperparameters_own = (DEPTH, DROPOUT)
    structural = ("depth",)

    def block(self, values, x, index: int):
        raise NotImplementedError

    def block_parameters(self, values, width: int) -> int:
        raise NotImplementedError

    def backbone(self, values, x, per_step):
        from keras import layers

        from search_spaces.scan_layers import LastStep

        for i in range(values["depth"]):
            x = self.block(values, x, i)
        x = layers.LayerNormalization(name="final_norm")(x)
        return x if per_step else LastStep(name="last_step")(x)

    def backbone_parameters(self, values, width):
        blocks = values["depth"] * self.block_parameters(values, width)
        return blocks + layer_norm_parameters(width), width


def dropout(x, rate: float, name: str):
    from keras import layers

    return layers.Dropout(rate, name=name)(x) if rate > 0 else x


class MinRecurrenceSpace(ScanSpace):
    """minGRU/minLSTM blocks: x + Rec(LN(x)), then x + MLP(LN(x)); state width = width."""

    mlp_expansion = 2
    layer = ""  # the recurrence's class in search_spaces/scan_layers.py
    projections = 0
    """Its width x width projections (with bias) from x_t: the layer's `blocks`, restated
    here so that counting needs no Keras (tests/test_scan.py holds the counts equal)."""

    def recurrence(self, units: int, name: str):
        from search_spaces import scan_layers

        return getattr(scan_layers, self.layer)(units, name=name)

    def recurrence_parameters(self, width: int) -> int:
        return self.projections * (width * width + width)

    def block(self, values, x, index):
        from keras import layers

        name, width, rate = f"block_{index}", values["units"], values["dropout"]
        h = layers.LayerNormalization(name=f"{name}_norm1")(x)
        h = self.recurrence(width, name=f"{name}_{self.family}")(h)
        x = layers.Add(name=f"{name}_res1")([x, dropout(h, rate, f"{name}_drop1")])
        h = layers.LayerNormalization(name=f"{name}_norm2")(x)
        h = layers.Dense(self.mlp_expansion * width, activation="gelu", name=f"{name}_mlp1")(h)
        h = layers.Dense(width, name=f"{name}_mlp2")(h)
        return layers.Add(name=f"{name}_res2")([x, dropout(h, rate, f"{name}_drop2")])

    def block_parameters(self, values, width):
        inner = self.mlp_expansion * width
        mlp = inner * width + inner + width * inner + width
        return 2 * layer_norm_parameters(width) + self.recurrence_parameters(width) + mlp


class MinGRUSpace(MinRecurrenceSpace):
    """minGRU blocks: expansion 1 (state width = width), the MLP 2x; depth and dropout searched."""

    family = "mingru"
    description = (
        "minGRU (Feng et al. 2024): gates from x_t only, log-space parallel scan; "
        "pre-norm residual blocks with an MLP, last-step output"
    )

    layer, projections = "MinGRU", 2  # gate and candidate


class MinLSTMSpace(MinRecurrenceSpace):
    """minLSTM blocks: expansion 1 (state width = width), the MLP 2x; depth and dropout searched."""

    family = "minlstm"
    description = (
        "minLSTM (Feng et al. 2024): normalised forget/input gates from x_t only, log-space "
        "parallel scan; pre-norm residual blocks with an MLP, last-step output"
    )

    layer, projections = "MinLSTM", 3  # forget, input and candidate


class SignedMinGRUSpace(MinRecurrenceSpace):
    """Signed minGRU blocks (transition 1 - 2 z_t in (-1, 1)); otherwise as minGRU.

    A family of its own, not a searched option of minGRU, so a cell never mixes signed
    and positive transitions.
    """

    family = "mingru_signed"
    description = (
        "minGRU with a signed transition 1 - 2 z_t in (-1, 1) (after Grazzi et al. 2025), "
        "linear-space parallel scan; pre-norm residual blocks with an MLP, last-step output"
    )

    layer, projections = "SignedMinGRU", 2  # gate and candidate


class GLUBlockSpace(ScanSpace):
    """Blocks x + GLU(GELU(Rec(LN(x)))) around a complex recurrence of N = width channels."""

    def recurrence(self, values, width: int, name: str):
        raise NotImplementedError

    def recurrence_parameters(self, values, width: int) -> int:
        raise NotImplementedError

    def block(self, values, x, index):
        from keras import layers

        name, width, rate = f"block_{index}", values["units"], values["dropout"]
        h = layers.LayerNormalization(name=f"{name}_norm")(x)
        h = self.recurrence(values, width, name=f"{name}_{self.family}")(h)
        h = dropout(layers.Activation("gelu", name=f"{name}_gelu")(h), rate, f"{name}_drop1")
        gate = layers.Dense(width, activation="sigmoid", name=f"{name}_gate")(h)
        h = layers.Multiply(name=f"{name}_glu")(
            [layers.Dense(width, name=f"{name}_value")(h), gate]
        )
        return layers.Add(name=f"{name}_res")([x, dropout(h, rate, f"{name}_drop2")])

    def block_parameters(self, values, width):
        glu = 2 * (width * width + width)
        return layer_norm_parameters(width) + self.recurrence_parameters(values, width) + glu


class LRUSpace(GLUBlockSpace):
    """LRU blocks: state size N = width complex channels; r_min, r_max, depth, dropout searched.

    r_min and r_max bound the eigenvalues' moduli at initialisation (the ring); the
    choices are the paper's: r_min 0 or 0.5 (short memory allowed) or 0.9 (its LRA
    setting), r_max 0.99 or 0.999. The phase is drawn from the whole circle, [0, 2 pi]
    (the layer's max_phase 1.0, a fraction of the circle).
    """

    family = "lru"
    description = (
        "Linear Recurrent Unit (Orvieto et al. 2023): complex diagonal recurrence with ring "
        "init and gamma normalisation, parallel scan; residual blocks with a GLU, last-step output"
    )
    hyperparameters_own = (
        DEPTH,
        DROPOUT,
        choice(
            "r_min",
            [0.0, 0.5, 0.9],
            default=0.9,
            source="the ring Orvieto et al. (2023) initialise long-range tasks with",
        ),
        choice("r_max", [0.99, 0.999], default=0.999, source="as r_min"),
    )

    def recurrence(self, values, width, name):
        from search_spaces.scan_layers import LRU

        return LRU(width, r_min=values["r_min"], r_max=values["r_max"], name=name)

    def recurrence_parameters(self, values, width):
        state = width  # N = H
        return 3 * state + 4 * state * width + width  # nu, theta, gamma; B, C complex; D


class RotScanSpace(GLUBlockSpace):
    """RotScan blocks: N = width complex channels rotated (and shrunk) by the input;
    depth, dropout and whether the modulus is fixed at 1 (`unit_modulus`) searched."""

    family = "rotscan"
    description = (
        "RotScan: complex diagonal recurrence whose rotation r(x_t) exp(i theta(x_t)) depends "
        "on the input, parallel scan; residual blocks with a GLU, last-step output"
    )
    hyperparameters_own = (
        DEPTH,
        DROPOUT,
        boolean(
            "unit_modulus", default=False,
            source="the modulus learned, as LRU's eigenvalues are",
        ),
    )  # fmt: skip
    structural = ("depth", "unit_modulus")

    def recurrence(self, values, width, name):
        from search_spaces.scan_layers import RotScan

        return RotScan(width, unit_modulus=values["unit_modulus"], name=name)

    def recurrence_parameters(self, values, width):
        state = width  # N = H
        phase = state * width + state  # theta's kernel and bias
        modulus = 0 if values["unit_modulus"] else state * width + state
        return phase + modulus + 4 * state * width + width  # B, C complex; D
