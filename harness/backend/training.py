"""A training step whose time can be trusted: waited for on the device, its result read."""

from __future__ import annotations

from harness.backend.device import name


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
