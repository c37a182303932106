"""Everything that depends on the Keras backend (TensorFlow, JAX, PyTorch): one function per need.

    device.py   set-up before Keras is imported, versions, the device, GPU sharing, out of memory
    training.py a training step waited for on the device, its result read (timings trust it)
    fused.py    whether a step runs a fused (cuDNN) RNN kernel
    measure.py  measurements: input gradients, the peak memory of a step, a forward pass's plan, a recurrence's Jacobian chain

Callers import the names below from `harness.backend`.
"""

from harness.backend.device import (
    BACKENDS,
    TORCH_FRACTION,
    accelerator,
    configure,
    device,
    free_bytes_of,
    free_memory,
    gpu_free_bytes,
    is_out_of_memory,
    load_frameworks,
    name,
    process_memory_mb,
    share_device,
    use_compile_cache,
    versions,
)
from harness.backend.fused import holds_cudnn_rnn, observe_fused_rnn
from harness.backend.measure import (
    forward_bytes,
    input_gradient_norms,
    input_gradients,
    jacobian_chain,
    step_memory,
)
from harness.backend.training import StepFailed, train_step

__all__ = [
    "BACKENDS",
    "TORCH_FRACTION",
    "StepFailed",
    "accelerator",
    "configure",
    "device",
    "forward_bytes",
    "free_bytes_of",
    "free_memory",
    "gpu_free_bytes",
    "holds_cudnn_rnn",
    "input_gradient_norms",
    "input_gradients",
    "is_out_of_memory",
    "jacobian_chain",
    "load_frameworks",
    "name",
    "observe_fused_rnn",
    "process_memory_mb",
    "share_device",
    "step_memory",
    "train_step",
    "use_compile_cache",
    "versions",
]
