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
import subprocess
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


def use_compile_cache(folder) -> str | None:
    """Turn on JAX's persistent compilation cache in `folder`; the folder in use, or None.

    A program compiled before (the same architecture in another trial or cell, a retrain
    of the best hyperparameters, an evaluation, a rerun) is then loaded rather than
    compiled again, on a GPU and on the CPU alike. Every program is cached, however fast
    it compiled. A cache the user set ($JAX_COMPILATION_CACHE_DIR) wins;
    HARNESS_COMPILE_CACHE=0 turns it off (benchmarks/compile_cache.py). JAX only.
    """
    off = os.environ.get("HARNESS_COMPILE_CACHE") == "0"
    if off or os.environ.get("KERAS_BACKEND", DEFAULT_BACKEND) != "jax":
        return None
    import jax

    chosen = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(folder)
    jax.config.update("jax_compilation_cache_dir", chosen)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    return chosen


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


def free_bytes_of(text: str) -> int | None:
    """The first GPU's free memory in bytes from the output of `nvidia-smi
    --query-gpu=memory.free --format=csv,noheader,nounits` (MiB, one line per GPU), or None."""
    lines = text.strip().splitlines()
    first = lines[0].strip() if lines else ""
    return int(first) * 2**20 if first.isdigit() else None


def gpu_free_bytes() -> int | None:
    """Free memory of the first NVIDIA GPU, asked of nvidia-smi (no framework started), or None
    where there is no nvidia-smi or it fails."""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
            timeout=20,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return free_bytes_of(out.stdout) if out.returncode == 0 else None


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


def _recurrent_layers(model) -> list:
    """The model's LSTM and GRU layers, both directions of a Bidirectional included."""
    import keras

    found = {}
    for layer in model._flatten_layers(include_self=False):  # noqa: SLF001 (nested layers)
        inner = (
            [layer.forward_layer, layer.backward_layer]
            if isinstance(layer, keras.layers.Bidirectional)
            else [layer]
        )
        for cell in inner:
            if isinstance(cell, keras.layers.LSTM | keras.layers.GRU):
                found[id(cell)] = cell
    return list(found.values())


CUDNN_RNN_CALL = "cudnn_rnn"
"""The custom call jax.experimental.rnn (Keras' JAX LSTM on a GPU) lowers to."""


def holds_cudnn_rnn(lowered_text: str) -> bool:
    """Whether a lowered JAX computation calls cuDNN's RNN kernel."""
    return CUDNN_RNN_CALL in lowered_text


def observe_fused_rnn(model, x, y) -> str:
    """Whether a training step of `model` on (x, y) runs a fused (cuDNN) RNN kernel, as seen.

    "yes" or "no" as observed: on torch, whether torch._VF.lstm or torch._VF.gru (the
    cuDNN entry points Keras calls) ran during the step's forward pass in training mode;
    on JAX, whether the lowered loss-and-gradient computation holds the cuDNN RNN call.
    "n/a" without LSTM/GRU layers; on TensorFlow "not observed".
    """
    import keras

    if not _recurrent_layers(model):
        return "n/a"
    backend = name()
    loss_fn = model.loss
    if backend == "jax":
        import jax
        import jax.numpy as jnp

        trainable = [v.value for v in model.trainable_variables]
        frozen = [v.value for v in model.non_trainable_variables]

        def loss(weights, inputs, targets):
            pred, _ = model.stateless_call(weights, frozen, inputs, training=True)
            return loss_fn(targets, pred)

        text = jax.jit(jax.value_and_grad(loss)).lower(trainable, jnp.asarray(x), jnp.asarray(y))
        return "yes" if holds_cudnn_rnn(text.as_text()) else "no"
    if backend == "torch":
        import torch

        calls = []
        originals = {kind: getattr(torch._VF, kind) for kind in ("lstm", "gru")}  # noqa: SLF001

        def watched(kind):
            def call(*args, **kwargs):
                calls.append(kind)
                return originals[kind](*args, **kwargs)

            return call

        try:
            for kind in originals:
                setattr(torch._VF, kind, watched(kind))  # noqa: SLF001
            model(keras.ops.convert_to_tensor(x), training=True)
        finally:
            for kind, original in originals.items():
                setattr(torch._VF, kind, original)  # noqa: SLF001
        return "yes" if calls else "no"
    return "not observed"


class StepFailed(RuntimeError):
    """A training step whose result could not be read: the device computation failed."""


def wait_for_device(model) -> None:
    """Block until every update of `model`'s last step is done on the device.

    JAX (on a CPU too) and PyTorch on a GPU dispatch work asynchronously: a clock stopped
    before this measures the dispatch, not the work.
    """
    backend = name()
    if backend == "jax":
        import jax

        jax.block_until_ready([v.value for v in model.variables])
    elif backend == "torch":
        import torch

        if torch.cuda.is_available():
            torch.cuda.synchronize()
    else:
        import tensorflow as tf

        sync = getattr(getattr(tf.test, "experimental", None), "sync_devices", None)
        if sync is not None and tf.config.list_logical_devices("GPU"):
            sync()


def train_step(model, x, y) -> dict[str, float]:
    """One `train_on_batch` on (x, y), waited for; its logs as Python floats.

    Keras turns each log into a float inside a bare `except: pass`
    (keras.src.utils.python_utils.pythonify_logs): when the device computation failed
    (out of memory on a GPU, reported when the result is read), the step returns at
    once with the failed array left in its logs. That made steps that never ran look
    fast (the cost probe's transformer at L=8192 on the H200: 3.4 ms). Here such a
    value is read again, so the device's error is raised, or StepFailed.
    """
    import numpy as np

    logs = model.train_on_batch(x, y, return_dict=True)
    wait_for_device(model)
    for key, value in logs.items():
        if not isinstance(value, float):
            try:
                float(np.asarray(value))
            except Exception as error:
                raise StepFailed(f"the step's {key} could not be read: {error}") from error
            raise StepFailed(f"the step's {key} is not a number: {type(value).__name__}")
    return logs


TORCH_FRACTION = "HARNESS_TORCH_MEMORY_FRACTION"
"""The share of the GPU's memory a torch process may take (set by harness/pool.py)."""


def share_device() -> None:
    """Hold a torch process to $HARNESS_TORCH_MEMORY_FRACTION of the GPU's memory, when set
    below 1 (several processes share one device). JAX reads its own variables at start."""
    fraction = float(os.environ.get(TORCH_FRACTION, "1"))
    if name() != "torch" or fraction >= 1:
        return
    import torch

    if torch.cuda.is_available():
        torch.cuda.set_per_process_memory_fraction(fraction)


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
