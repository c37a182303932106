"""Parallel-scan recurrences: minGRU, minLSTM (Feng et al. 2024), the LRU (Orvieto et al. 2023),
minGRU with signed transitions (after Grazzi et al. 2025) and the input-dependent rotation RotScan.

Each is a diagonal linear recurrence h_t = a_t * h_{t-1} + b_t (h_0 = 0) whose
coefficients depend on x_t only, so the whole sequence is one
`keras.ops.associative_scan` over time with the operator

    (a1, b1) o (a2, b2) = (a1 * a2, a2 * b1 + b2)        (1 earlier, 2 later)

and no Python loop (`scan_over_time`). Every layer also has `step_by_step(x)`, the same
recurrence as a loop over time, for tests. Nothing depends on the length: a model runs at
lengths longer than any it was trained on. The real recurrences scan (a, b) pairs, in log
space where both are positive (minGRU, minLSTM) and in linear space where a_t may be
negative (signed minGRU); the complex ones (LRU, RotScan) scan (re, im) pairs. One module
for all of them: they share the operators, the scan and the loop.

Under a mixed-precision policy (the cost probe's bfloat16) these layers compute in float32
(autocast off: their variables stay float32, so does the scan) and return the compute
dtype: log-space gates and eigenvalue moduli near 1 do not survive bfloat16.

Imported by search_spaces/layers.py, so `import search_spaces.layers` registers these
for loading saved models.
"""

from __future__ import annotations

import math

import keras
from keras import layers, ops

SCAN_DTYPE = "float32"


def g(x):
    """minGRU's candidate activation: x + 0.5 for x >= 0, sigmoid(x) below; always positive."""
    return ops.where(x >= 0, x + 0.5, ops.sigmoid(x))


def log_g(x):
    """log g(x), computed without forming g(x) for negative x (log sigmoid = -softplus(-x))."""
    return ops.where(x >= 0, ops.log(ops.relu(x) + 0.5), -ops.softplus(-x))


def combine_log(earlier, later):
    """The linear-recurrence operator on (log a, log b) pairs: every a, b > 0.

    (a1 a2, a2 b1 + b2) in log space is (log a1 + log a2, logaddexp(log a2 + log b1, log b2)):
    a logcumsumexp-style combination that never forms a product of many gates, so
    it neither underflows nor loses precision at long lengths.
    """
    log_a1, log_b1 = earlier
    log_a2, log_b2 = later
    return log_a1 + log_a2, ops.logaddexp(log_a2 + log_b1, log_b2)


def combine_linear(earlier, later):
    """The linear-recurrence operator on real (a, b) pairs of any sign (the real half of
    `combine_complex`): nothing is logged or divided."""
    a1, b1 = earlier
    a2, b2 = later
    return a1 * a2, a2 * b1 + b2


def combine_complex(earlier, later):
    """The linear-recurrence operator on complex a, b held as (re, im) pairs of real tensors."""
    a1_re, a1_im, b1_re, b1_im = earlier
    a2_re, a2_im, b2_re, b2_im = later
    return (
        a1_re * a2_re - a1_im * a2_im,
        a1_re * a2_im + a1_im * a2_re,
        a2_re * b1_re - a2_im * b1_im + b2_re,
        a2_re * b1_im + a2_im * b1_re + b2_im,
    )


def scan_over_time(combine, parts):
    """The inclusive scan of `combine` over axis 1 of the same-shaped tensors `parts`.

    `keras.ops.associative_scan` whenever the length is known when the computation is
    traced: always on JAX (jit traces concrete shapes) and PyTorch (eager), and in a
    TensorFlow graph traced for one length. A TensorFlow graph traced for any length
    (`fit` relaxes the traced shapes once batches differ) gets `doubling_scan` instead:
    Keras' TensorFlow scan at an unknown length nests a `tf.cond` per possible level
    (48), which took 30-70 s to trace for one layer here, and compares its inputs'
    lengths with a Python `==`, which fails for more than one input. The parts travel
    stacked as one tensor, and the static shape TensorFlow's graph scan loses is restored.
    """
    count = len(parts)
    packed = ops.stack(parts, axis=-1)

    def packed_combine(earlier, later):
        split = lambda pair: ops.unstack(pair, count, axis=-1)  # noqa: E731
        return ops.stack(combine(split(earlier), split(later)), axis=-1)

    if isinstance(packed.shape[1], int):
        scanned = ops.associative_scan(packed_combine, packed, axis=1)
    else:
        scanned = doubling_scan(packed_combine, packed)
    return ops.unstack(ops.reshape(scanned, ops.shape(packed)), count, axis=-1)


def doubling_scan(combine, x):
    """The inclusive scan over axis 1 by recursive doubling (Hillis-Steele) in an
    `ops.while_loop`, for a length unknown until run time: log2(T) steps, each combining
    every step t >= d with the one d steps earlier (T log T work instead of T)."""
    length = ops.shape(x)[1]
    steps = ops.reshape(ops.arange(length), (1, -1) + (1,) * (len(x.shape) - 2))

    def body(distance, scanned):
        earlier = ops.roll(scanned, distance, axis=1)  # wrapped-around rows are masked out
        combined = combine(earlier, scanned)
        return distance * 2, ops.where(steps >= distance, combined, scanned)

    _, scanned = ops.while_loop(lambda distance, _: distance < length, body, (1, x))
    return scanned


class ProjectedRecurrence(layers.Layer):
    """A real recurrence h_t = a_t h_{t-1} + b_t whose coefficients come from x_t.

    Subclasses give `coefficients(parts)` (a_t, b_t from the projection k = x W + c, split
    into `blocks` parts); the scan runs in linear space (`combine_linear`), as the loop of
    `step_by_step` does. `units` is the state width; the output is the state h_t at every
    step (batch, T, units).
    """

    blocks = 1  # projections of x_t: gates and candidate

    def __init__(self, units: int, **kwargs):
        super().__init__(**{"autocast": False, **kwargs})
        self.units = int(units)

    def build(self, input_shape):
        self.kernel = self.add_weight(
            (input_shape[-1], self.blocks * self.units), initializer="glorot_uniform", name="kernel"
        )
        self.bias = self.add_weight((self.blocks * self.units,), initializer="zeros", name="bias")

    def project(self, x):
        """The gate and candidate pre-activations of every step, split: `blocks` tensors."""
        k = ops.matmul(ops.cast(x, SCAN_DTYPE), self.kernel) + self.bias
        return [k[..., i * self.units : (i + 1) * self.units] for i in range(self.blocks)]

    def coefficients(self, parts):
        raise NotImplementedError

    def call(self, x):
        _, h = scan_over_time(combine_linear, self.coefficients(self.project(x)))
        return ops.cast(h, self.compute_dtype)

    def step_by_step(self, x):
        """The same recurrence as a loop over time, h_t = a_t h_{t-1} + b_t, in linear space."""
        a, b = self.coefficients(self.project(x))
        h = ops.zeros_like(b[:, 0])
        states = []
        for t in range(x.shape[1]):
            h = a[:, t] * h + b[:, t]
            states.append(h)
        return ops.cast(ops.stack(states, axis=1), self.compute_dtype)

    def compute_output_shape(self, input_shape):
        return (*input_shape[:-1], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}


class LogScanRecurrence(ProjectedRecurrence):
    """A recurrence with positive coefficients a_t, b_t, scanned in log space.

    Subclasses also give `log_coefficients(parts)` (log a_t, log b_t); `coefficients`
    serves the step-by-step loop.
    """

    def log_coefficients(self, parts):
        raise NotImplementedError

    def call(self, x):
        log_a, log_b = self.log_coefficients(self.project(x))
        _, log_h = scan_over_time(combine_log, (log_a, log_b))
        return ops.cast(ops.exp(log_h), self.compute_dtype)


@keras.saving.register_keras_serializable(package="harness")
class MinGRU(LogScanRecurrence):
    """minGRU (Feng et al. 2024): z_t = sigmoid(W_z x_t), h~_t = g(W_h x_t),
    h_t = (1 - z_t) h_{t-1} + z_t h~_t. Gate and candidate depend on x_t only.

    Scanned in the paper's log-space form: log a_t = -softplus(k_z) (= log(1 - z_t)),
    log b_t = -softplus(-k_z) + log g(k_h) (= log z_t + log h~_t).
    """

    blocks = 2

    def log_coefficients(self, parts):
        k_z, k_h = parts
        return -ops.softplus(k_z), -ops.softplus(-k_z) + log_g(k_h)

    def coefficients(self, parts):
        k_z, k_h = parts
        z = ops.sigmoid(k_z)
        return 1.0 - z, z * g(k_h)


@keras.saving.register_keras_serializable(package="harness")
class MinLSTM(LogScanRecurrence):
    """minLSTM (Feng et al. 2024) with normalised gates: f_t = sigmoid(W_f x_t),
    i_t = sigmoid(W_i x_t), f'_t = f_t / (f_t + i_t), i'_t = i_t / (f_t + i_t),
    h_t = f'_t h_{t-1} + i'_t g(W_h x_t).

    In log space (the paper's form): with d = softplus(-k_f) - softplus(-k_i)
    (= log i_t - log f_t), log f'_t = -softplus(d) and log i'_t = -softplus(-d).
    """

    blocks = 3

    def log_coefficients(self, parts):
        k_f, k_i, k_h = parts
        difference = ops.softplus(-k_f) - ops.softplus(-k_i)
        return -ops.softplus(difference), -ops.softplus(-difference) + log_g(k_h)

    def coefficients(self, parts):
        k_f, k_i, k_h = parts
        f, i = ops.sigmoid(k_f), ops.sigmoid(k_i)
        return f / (f + i), i / (f + i) * g(k_h)


@keras.saving.register_keras_serializable(package="harness")
class SignedMinGRU(ProjectedRecurrence):
    """minGRU with a signed transition: z_t = sigmoid(W_z x_t), h~_t = g(W_h x_t),
    h_t = (1 - 2 z_t) h_{t-1} + z_t h~_t.

    The transition lies in (-1, 1), as Grazzi et al. (2025) widen a linear RNN's eigenvalues
    to [-1, 1] for state tracking: z_t near 1 flips the state, h -> h~ - h (parity's
    toggle). A negative a_t has no logarithm, so the scan runs in linear space; |a_t| < 1
    keeps |h| below max|b| / (1 - max|a|).
    """

    blocks = 2

    def coefficients(self, parts):
        k_z, k_h = parts
        z = ops.sigmoid(k_z)
        return 1.0 - 2.0 * z, z * g(k_h)


def normal(stddev: float):
    return keras.initializers.RandomNormal(stddev=stddev)


def logit(p: float) -> float:
    return math.log(p / (1 - p))


def open_uniform(shape):
    """Uniform on (0, 1]: no log(0) of it."""
    return 1.0 - keras.random.uniform(shape)


class ComplexRecurrence(layers.Layer):
    """A diagonal complex recurrence h_t = a_t * h_{t-1} + b_t (h_0 = 0) read out as
    y_t = Re(C h_t) + D * x_t.

    Complex numbers are pairs of real tensors (real and imaginary parts: B_re, B_im,
    C_re, C_im, and the state as h_re, h_im), never a complex dtype, so the layer runs
    unchanged on JAX, TensorFlow and PyTorch and saves as plain float32 weights.
    `state_size` is N (the number of complex state channels); the output has the
    input's width H. Subclasses build their own weights, then `build_readout`, and give
    `coefficients(x)`: (Re a, Im a, Re b, Im b) at every step, (batch, T, N) each.
    """

    def __init__(self, state_size: int, **kwargs):
        super().__init__(**{"autocast": False, **kwargs})
        self.state_size = int(state_size)

    def build_readout(self, width: int):
        n = self.state_size
        c_scale = 1 / math.sqrt(n)
        self.C_re = self.add_weight((n, width), initializer=normal(c_scale), name="C_re")
        self.C_im = self.add_weight((n, width), initializer=normal(c_scale), name="C_im")
        self.D = self.add_weight((width,), initializer=normal(1.0), name="D")

    def coefficients(self, x):
        raise NotImplementedError

    def readout(self, x, h_re, h_im):
        """y_t = Re(C h_t) + D * x_t in the compute dtype."""
        y = ops.matmul(h_re, self.C_re) - ops.matmul(h_im, self.C_im)
        return ops.cast(y + ops.cast(x, SCAN_DTYPE) * self.D, self.compute_dtype)

    def call(self, x):
        _, _, h_re, h_im = scan_over_time(combine_complex, self.coefficients(x))
        return self.readout(x, h_re, h_im)

    def step_by_step(self, x):
        """The same recurrence as a loop over time: h_t = a_t h_{t-1} + b_t."""
        a_re, a_im, b_re, b_im = self.coefficients(x)
        h_re, h_im = ops.zeros_like(b_re[:, 0]), ops.zeros_like(b_im[:, 0])
        states_re, states_im = [], []
        for t in range(x.shape[1]):
            h_re, h_im = (
                a_re[:, t] * h_re - a_im[:, t] * h_im + b_re[:, t],
                a_re[:, t] * h_im + a_im[:, t] * h_re + b_im[:, t],
            )
            states_re.append(h_re)
            states_im.append(h_im)
        return self.readout(x, ops.stack(states_re, axis=1), ops.stack(states_im, axis=1))

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "state_size": self.state_size}


@keras.saving.register_keras_serializable(package="harness")
class LRU(ComplexRecurrence):
    """The Linear Recurrent Unit (Orvieto et al. 2023), diagonal and complex.

        h_t = lambda * h_{t-1} + gamma * (B x_t),    y_t = Re(C h_t) + D * x_t,
        lambda = exp(-exp(nu_log) + i * exp(theta_log)),  gamma = exp(gamma_log).

    Initialisation as in the paper: |lambda| uniform on the ring r_min <= |lambda| <= r_max
    (in area), its phase theta uniform in [0, 2 pi max_phase], gamma_log = log sqrt(1 -
    |lambda|^2) (then learned), B and C complex Glorot-like normals, D normal.

    `max_phase` is a FRACTION OF THE FULL CIRCLE, not radians as in the paper's code: the
    phase bound is 2 pi max_phase radians, so 1.0 (the default) is the paper's 2 pi and the
    paper's pi / 10 (used on some of its long-range tasks) is max_phase = 0.05.
    Trainable parameters: 3 N + 4 N H + H.
    """

    def __init__(
        self,
        state_size: int,
        r_min: float = 0.9,
        r_max: float = 0.999,
        max_phase: float = 1.0,
        **kwargs,
    ):
        super().__init__(state_size, **kwargs)
        if not 0.0 <= r_min < r_max < 1.0:
            raise ValueError(f"LRU needs 0 <= r_min < r_max < 1; got {r_min}, {r_max}")
        self.r_min, self.r_max, self.max_phase = float(r_min), float(r_max), float(max_phase)

    def build(self, input_shape):
        width, n = input_shape[-1], self.state_size
        r_min, r_max, max_phase = self.r_min, self.r_max, self.max_phase

        def ring(shape, dtype=None):
            radius_squared = open_uniform(shape) * (r_max**2 - r_min**2) + r_min**2
            return ops.log(-0.5 * ops.log(radius_squared))

        def phase(shape, dtype=None):
            return ops.log(open_uniform(shape) * (2 * math.pi * max_phase))

        self.nu_log = self.add_weight((n,), initializer=ring, name="nu_log")
        self.theta_log = self.add_weight((n,), initializer=phase, name="theta_log")
        nu_log = ops.convert_to_tensor(self.nu_log)

        def normaliser(shape, dtype=None):  # log sqrt(1 - |lambda|^2) at initialisation
            return 0.5 * ops.log(1.0 - ops.exp(-2.0 * ops.exp(nu_log)))

        self.gamma_log = self.add_weight((n,), initializer=normaliser, name="gamma_log")
        b_scale = 1 / math.sqrt(2 * width)
        self.B_re = self.add_weight((width, n), initializer=normal(b_scale), name="B_re")
        self.B_im = self.add_weight((width, n), initializer=normal(b_scale), name="B_im")
        self.build_readout(width)

    def diagonal(self):
        """(Re lambda, Im lambda) of every state channel, float32."""
        modulus = ops.exp(-ops.exp(self.nu_log))
        theta = ops.exp(self.theta_log)
        return modulus * ops.cos(theta), modulus * ops.sin(theta)

    def coefficients(self, x):
        """lambda (the same at every step) and gamma * (B x_t), float32."""
        gamma, x = ops.exp(self.gamma_log), ops.cast(x, SCAN_DTYPE)
        b_re, b_im = ops.matmul(x, self.B_re) * gamma, ops.matmul(x, self.B_im) * gamma
        lam_re, lam_im = self.diagonal()
        a_re = ops.broadcast_to(lam_re, ops.shape(b_re))
        return a_re, ops.broadcast_to(lam_im, ops.shape(b_im)), b_re, b_im

    def get_config(self):
        return {
            **super().get_config(),
            "r_min": self.r_min,
            "r_max": self.r_max,
            "max_phase": self.max_phase,
        }


@keras.saving.register_keras_serializable(package="harness")
class RotScan(ComplexRecurrence):
    """A diagonal complex recurrence whose transition depends on the input: x_t rotates
    and shrinks the state.

        h_t = r(x_t) exp(i theta(x_t)) * h_{t-1} + B x_t,    y_t = Re(C h_t) + D * x_t,
        r(x) = sigmoid(x W_r + c_r) (or 1 with `unit_modulus`),  theta(x) = x W_theta + c_theta.

    The phase is unbounded (a rotation by pi, parity's, is reachable); B has no bias, so
    an input of zeros adds nothing. With theta = 2 pi / 8 on a 1 and 0 on a 0, r = 1, this
    is the seed's rotation counter computed by a parallel scan. No gamma normalisation
    (sqrt(1 - r^2) would silence B as r -> 1). Initialisation: r near 1 (W_r small, c_r
    uniform between the logits of 0.9 and 0.999), c_theta uniform on the circle, W_theta, B and C
    Glorot-like normals, D normal. Trainable parameters: 5 N H + N + H, plus N H + N
    for the modulus unless `unit_modulus`.
    """

    def __init__(self, state_size: int, unit_modulus: bool = False, **kwargs):
        super().__init__(state_size, **kwargs)
        self.unit_modulus = bool(unit_modulus)

    def build(self, input_shape):
        width, n = input_shape[-1], self.state_size
        scale = 1 / math.sqrt(width)
        circle = keras.initializers.RandomUniform(0.0, 2 * math.pi)
        near_one = keras.initializers.RandomUniform(logit(0.9), logit(0.999))
        self.theta_kernel = self.add_weight((width, n), initializer=normal(scale), name="theta_W")
        self.theta_bias = self.add_weight((n,), initializer=circle, name="theta_c")
        if not self.unit_modulus:
            self.modulus_kernel = self.add_weight(
                (width, n), initializer=normal(0.1 * scale), name="modulus_W"
            )
            self.modulus_bias = self.add_weight((n,), initializer=near_one, name="modulus_c")
        b_scale = 1 / math.sqrt(2 * width)
        self.B_re = self.add_weight((width, n), initializer=normal(b_scale), name="B_re")
        self.B_im = self.add_weight((width, n), initializer=normal(b_scale), name="B_im")
        self.build_readout(width)

    def coefficients(self, x):
        """r(x_t) exp(i theta(x_t)) and B x_t at every step, float32."""
        x = ops.cast(x, SCAN_DTYPE)
        theta = ops.matmul(x, self.theta_kernel) + self.theta_bias
        a_re, a_im = ops.cos(theta), ops.sin(theta)
        if not self.unit_modulus:
            modulus = ops.sigmoid(ops.matmul(x, self.modulus_kernel) + self.modulus_bias)
            a_re, a_im = modulus * a_re, modulus * a_im
        return a_re, a_im, ops.matmul(x, self.B_re), ops.matmul(x, self.B_im)

    def get_config(self):
        return {**super().get_config(), "unit_modulus": self.unit_modulus}


@keras.saving.register_keras_serializable(package="harness")
class LastStep(layers.Layer):
    """The last step of a sequence: (batch, T, d) -> (batch, d), whatever T."""

    def call(self, x):
        return x[:, -1, :]

    def compute_output_shape(self, input_shape):
        return (input_shape[0], input_shape[-1])
