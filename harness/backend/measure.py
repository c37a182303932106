"""Measurements: gradients with respect to the inputs, the peak memory of a step, and the memory
the compiler plans for a forward pass."""

from __future__ import annotations

import contextlib
import gc

from harness.backend.device import accelerator, name


def input_gradients(model, x, y, loss_fn):
    """d loss_fn(y, model(x)) / d x as a numpy array shaped like `x` (a float array).

    `loss_fn(y_true, y_pred)` returns a scalar and is written with keras.ops, so the
    same function is differentiated by jax.grad, tf.GradientTape or torch.autograd.
    The model runs in inference mode (no dropout).
    """
    import keras
    import numpy as np

    backend = name()
    x = np.asarray(x, dtype="float32")
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in model.trainable_variables]
        frozen = [v.value for v in model.non_trainable_variables]
        target = jnp.asarray(y)

        def loss(inputs):
            pred, _ = model.stateless_call(trainable, frozen, inputs, training=False)
            return loss_fn(target, pred)

        return np.asarray(jax.jit(jax.grad(loss))(jnp.asarray(x)))  # one compiled program
    if backend == "tensorflow":
        import tensorflow as tf

        inputs = tf.convert_to_tensor(x)
        with tf.GradientTape() as tape:
            tape.watch(inputs)
            loss = loss_fn(tf.convert_to_tensor(y), model(inputs, training=False))
        return tape.gradient(loss, inputs).numpy()
    if backend == "torch":
        import torch

        inputs = keras.ops.convert_to_tensor(x).detach().clone().requires_grad_(True)
        loss = loss_fn(keras.ops.convert_to_tensor(y), model(inputs, training=False))
        (grad,) = torch.autograd.grad(loss, inputs)
        return grad.detach().cpu().numpy()
    raise ValueError(f"no input gradients for backend '{backend}'")


def input_gradient_norms(model, x, y, loss_fn):
    """The norm of d loss / d x_t for every step t, averaged over the batch: shape (T,).

    `x` is (batch, T, features); the norm is taken over the features of each step.
    """
    import numpy as np

    grads = input_gradients(model, x, y, loss_fn).astype("float64")
    return np.sqrt((grads**2).sum(axis=-1)).mean(axis=0)


class StepMemory:
    """The peak memory a block of code added, in MiB, and how it was measured (`method`).

    `mb` stays NaN when the device or system gives nothing to measure it with; `method`
    then says "not measured" and why (a report prints the MiB as "—").
    """

    def __init__(self):
        self.mb = float("nan")
        self.method = ""


def _gpu_memory(backend: str) -> tuple[float | None, float | None]:
    """(bytes in use now, peak bytes in use) from the backend's own GPU counters; None for a
    counter the device does not keep."""
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("bytes_in_use"), stats.get("peak_bytes_in_use")
    if backend == "torch":
        import torch

        return torch.cuda.memory_allocated(), torch.cuda.max_memory_allocated()
    import tensorflow as tf

    info = tf.config.experimental.get_memory_info("GPU:0")
    return info["current"], info["peak"]


def _reset_gpu_peak(backend: str) -> None:
    if backend == "torch":
        import torch

        torch.cuda.reset_peak_memory_stats()
    elif backend == "tensorflow":
        import tensorflow as tf

        tf.config.experimental.reset_memory_stats("GPU:0")
    # JAX has no reset: its peak is the process's peak, so callers measure ascending sizes


def _malloc_trim() -> None:
    """Hand freed heap memory back to the OS (glibc), so RSS before a step is what is live."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _rss_kib(field_name: str) -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(field_name + ":"):
                return float(line.split()[1])
    raise OSError(f"{field_name} not in /proc/self/status")


@contextlib.contextmanager
def step_memory():
    """Measure the peak memory the block adds, in MiB, into the yielded StepMemory.

    On a GPU: the backend's own counters (peak minus in use before the block; torch and
    TensorFlow reset their peak first, JAX keeps a lifetime peak). On CPU: process
    memory growth, the peak resident set size during the block (Linux VmHWM, reset
    through /proc/self/clear_refs before it) minus the resident size before it. The
    figure is what was measured, never clamped; NaN where nothing measures it.
    """
    backend = name()
    result = StepMemory()
    if accelerator() is not None:
        _reset_gpu_peak(backend)
        before = _gpu_memory(backend)[0]
        yield result
        peak = _gpu_memory(backend)[1]
        if before is None or peak is None:
            result.method = f"not measured: {backend} keeps no memory counters on this GPU"
        else:
            result.mb = (peak - before) / 2**20
            result.method = f"{backend} GPU counters: peak bytes in use minus bytes in use before"
        return
    gc.collect()
    _malloc_trim()
    try:
        with open("/proc/self/clear_refs", "w") as refs:
            refs.write("5")  # resets VmHWM (peak RSS) to the current RSS
        before = _rss_kib("VmRSS")
    except OSError as error:
        yield result
        result.method = f"not measured: no resettable peak resident set size here ({error})"
        return
    yield result
    result.mb = (_rss_kib("VmHWM") - before) / 1024
    result.method = (
        "CPU: peak resident set size during the step (VmHWM) minus RSS before it, "
        "freed memory trimmed first"
    )


def forward_bytes(model, x) -> int | None:
    """The memory XLA plans for one forward pass of `model` on `x` (its arguments, output and
    temporaries), read from the compiled program without running it; None off JAX."""
    if name() != "jax":
        return None
    import jax

    def forward(trainable, non_trainable, inputs):
        return model.stateless_call(trainable, non_trainable, inputs, training=False)[0]

    trainable = [v.value for v in model.trainable_variables]
    non_trainable = [v.value for v in model.non_trainable_variables]
    inputs = jax.ShapeDtypeStruct(x.shape, x.dtype)
    stats = jax.jit(forward).lower(trainable, non_trainable, inputs).compile().memory_analysis()
    if stats is None:
        return None
    return stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes


def jacobian_chain(step, state_size: int, x, entering):
    """The input gradients a recurrence predicts from its state Jacobians, without
    backpropagating through time; None off JAX.

    `step(state, x_t) -> state` is one step of the recurrence for one example on flat
    vectors (the state of every stacked layer concatenated), written with keras.ops;
    the state starts at zeros. `x` is (batch, T, features), `entering` (batch, state_size)
    the loss's gradient with respect to the last state, d loss / d s_T. Along each
    example's forward trajectory, J_t = d s_t / d s_{t-1} and B_t = d s_t / d x_t are
    exact Jacobians of the step (jax.jacfwd), and P = J_T ... J_2 is multiplied as a
    matrix chain (rescaled at every step, the scale kept as a logarithm). Returns three
    float64 arrays of shape (batch,):

    - log ||B_1^T P^T g||: the gradient predicted at the first input (the chain applied to g);
    - log ||B_T^T g||: the gradient at the last input, through the last state;
    - log ||P||_2: the operator (spectral) norm of the chain itself, loss-free.
    """
    if name() != "jax":
        return None
    import jax
    import jax.numpy as jnp
    import numpy as np

    x = jnp.asarray(np.asarray(x, dtype="float32"))
    entering = jnp.asarray(np.asarray(entering, dtype="float32"))
    state_jacobian = jax.jacfwd(step, argnums=0)
    input_jacobian = jax.jacfwd(step, argnums=1)

    def one(xs, g):
        start = jnp.zeros((state_size,), xs.dtype)

        def forward(state, x_t):
            return step(state, x_t), state

        _, before = jax.lax.scan(forward, start, xs)  # s_{t-1} for every t

        def chain(carry, t):
            matrix, log_scale = carry
            matrix = state_jacobian(before[t], xs[t]) @ matrix
            scale = jnp.linalg.norm(matrix)
            scale = jnp.where(scale > 0, scale, 1.0)
            return (matrix / scale, log_scale + jnp.log(scale)), None

        eye = jnp.eye(state_size, dtype=xs.dtype)
        (matrix, log_scale), _ = jax.lax.scan(
            chain, (eye, jnp.zeros((), xs.dtype)), jnp.arange(1, xs.shape[0])
        )
        first = input_jacobian(before[0], xs[0]).T @ (matrix.T @ g)
        last = input_jacobian(before[-1], xs[-1]).T @ g
        spectral = jnp.linalg.svd(matrix, compute_uv=False)[0]
        return (
            jnp.log(jnp.linalg.norm(first)) + log_scale,
            jnp.log(jnp.linalg.norm(last)),
            jnp.log(spectral) + log_scale,
        )

    logs = jax.jit(jax.vmap(one))(x, entering)
    return tuple(np.asarray(part, dtype="float64") for part in logs)
