"""The process and its device: the Keras backend's set-up, versions, the device's name and free
memory, sharing one GPU between processes, and what an out-of-memory error looks like.

`configure()` must run before Keras is imported. The default backend is JAX: on this
project's 2-core CPU it trained LSTM/GRU/SimpleRNN fastest (see benchmarks/backend_epochs.py);
set KERAS_BACKEND to override.
"""

from __future__ import annotations

import contextlib
import gc
import importlib.util
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path

DEFAULT_BACKEND = "jax"
BACKENDS = ("jax", "tensorflow", "torch")
"""The Keras backends; each is also the name of its framework's package."""


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

    chosen = os.environ.get("JAX_COMPILATION_CACHE_DIR") or str(Path(folder).resolve())
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
        "framework": f"{backend} {metadata.version(backend)}",
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
