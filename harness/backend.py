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
        if importlib.util.find_spec("tensorflow"):  # absent on GPU images; Keras Tuner then skips it
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
