"""Everything that depends on the Keras backend (TensorFlow, JAX, PyTorch): one function per need.

`configure()` must run before Keras is imported. The default backend is JAX: on
this project's 2-core CPU it trained LSTM/GRU/SimpleRNN fastest (see
benchmarks/backend_epochs.py); set KERAS_BACKEND to override.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import platform
from importlib import metadata

DEFAULT_BACKEND = "jax"
BACKENDS = ("jax", "tensorflow", "torch")
_FRAMEWORK_PACKAGE = {"jax": "jax", "tensorflow": "tensorflow", "torch": "torch"}


def configure() -> str:
    """Set the backend (KERAS_BACKEND or the default) and quiet TensorFlow's C++ logging."""
    os.environ.setdefault("KERAS_BACKEND", DEFAULT_BACKEND)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    os.environ.setdefault("XLA_FLAGS", "--xla_cpu_multi_thread_eigen=true")
    return os.environ["KERAS_BACKEND"]


@contextlib.contextmanager
def _stderr_silenced():
    """Silence file descriptor 2 (C++ start-up logging that no environment variable turns off)."""
    saved, devnull = os.dup(2), os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def load_frameworks() -> None:
    """Import Keras and Keras Tuner (which imports TensorFlow) without TensorFlow's start-up noise."""
    configure()
    with _stderr_silenced():
        import keras  # noqa: F401
        import keras_tuner  # noqa: F401

        if importlib.util.find_spec(
            "tensorflow"
        ):  # absent on GPU images; Keras Tuner then skips it
            import tensorflow  # noqa: F401  (Keras Tuner imports it during trials anyway)


def name() -> str:
    import keras

    return keras.backend.backend()


def versions() -> dict[str, str]:
    """Versions of keras, keras-tuner and the backend's framework."""
    backend = name()
    return {
        "keras": metadata.version("keras"),
        "keras_tuner": metadata.version("keras-tuner"),
        "backend": backend,
        "framework": f"{_FRAMEWORK_PACKAGE[backend]} {metadata.version(_FRAMEWORK_PACKAGE[backend])}",
    }


def accelerator() -> str | None:
    """The GPU's name when the backend runs on one, else None."""
    backend = name()
    if backend == "jax":
        import jax

        gpus = [d for d in jax.devices() if d.platform == "gpu"]
        return gpus[0].device_kind if gpus else None
    if backend == "torch":
        import torch

        return torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    return tf.config.experimental.get_device_details(gpus[0]).get("device_name") if gpus else None


def device() -> str:
    """The GPU's name, or the CPU model with its core count."""
    gpu = accelerator()
    if gpu:
        return gpu
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{model} ({os.cpu_count()} cores)"


def fused_rnn_kernel(model) -> str:
    """Whether the model's LSTM/GRU layers run on a fused (cuDNN) kernel: yes, no, or n/a.

    Keras takes the fused path only on a GPU, with tanh/sigmoid activations, no
    recurrent dropout, unroll off and bias on; on JAX only LSTM has one (GRU is a
    lax.scan), and GRU needs reset_after=True.
    """
    import keras

    cells = [
        layer.forward_layer if isinstance(layer, keras.layers.Bidirectional) else layer
        for layer in model._flatten_layers(include_self=False)
    ]
    cells = [c for c in cells if isinstance(c, keras.layers.LSTM | keras.layers.GRU)]
    if not cells:
        return "n/a"
    if accelerator() is None:
        return "no"
    for cell in cells:
        is_gru = isinstance(cell, keras.layers.GRU)
        conditions = (
            cell.cell.activation is keras.activations.tanh
            and cell.cell.recurrent_activation is keras.activations.sigmoid
            and cell.cell.recurrent_dropout == 0
            and not cell.unroll
            and cell.cell.use_bias
            and (not is_gru or cell.cell.reset_after)
            and not (is_gru and name() == "jax")
        )
        if not conditions:
            return "no"
    return "yes"


def free_memory() -> None:
    """Drop Keras' global state and collect garbage between trials."""
    import keras

    keras.backend.clear_session()
    gc.collect()


def process_memory_mb() -> float:
    """Resident memory of this process, in MiB."""
    import psutil

    return psutil.Process().memory_info().rss / 2**20


# -- probes: gradients with respect to inputs, and memory per step ----------------------------


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

        return np.asarray(jax.grad(loss)(jnp.asarray(x)))
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
    """The peak memory a block of code used, in MiB, and how it was measured (`method`)."""

    def __init__(self):
        self.mb = float("nan")
        self.method = ""


def _gpu_memory(backend: str) -> tuple[float, float] | None:
    """(bytes in use now, peak bytes) from the backend's own GPU counters, or None on CPU."""
    if accelerator() is None:
        return None
    if backend == "jax":
        import jax

        stats = jax.devices()[0].memory_stats() or {}
        return stats.get("bytes_in_use", 0.0), stats.get("peak_bytes_in_use", 0.0)
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
    through /proc/self/clear_refs before it) minus the resident size before it.
    """
    backend = name()
    result = StepMemory()
    gpu = _gpu_memory(backend)
    if gpu is not None:
        _reset_gpu_peak(backend)
        before = _gpu_memory(backend)[0]
        yield result
        result.mb = max(0.0, (_gpu_memory(backend)[1] - before) / 2**20)
        result.method = f"{backend} GPU counters: peak bytes in use minus bytes in use before"
        return
    gc.collect()
    _malloc_trim()
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")  # resets VmHWM (peak RSS) to the current RSS
    before = _rss_kib("VmRSS")
    yield result
    result.mb = max(0.0, (_rss_kib("VmHWM") - before) / 1024)
    result.method = (
        "CPU: peak resident set size during the step (VmHWM) minus RSS before it, "
        "freed memory trimmed first"
    )


def is_out_of_memory(error: BaseException) -> bool:
    """Whether an exception from a backend means the device ran out of memory."""
    text = f"{type(error).__name__} {error}".lower()
    return isinstance(error, MemoryError) or any(
        word in text
        for word in (
            "resource_exhausted",
            "resourceexhausted",
            "out of memory",
            "outofmemory",
            "failed to allocate",
            "bad_alloc",
            "cannot allocate memory",
        )
    )
