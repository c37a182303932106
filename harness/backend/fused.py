"""Whether a training step runs a fused (cuDNN) RNN kernel, as observed on the backend."""

from __future__ import annotations

from harness.backend.device import name


def recurrent_layers(model) -> list:
    """The model's LSTM and GRU layers, both directions of a Bidirectional included."""
    import keras

    cells = {}
    for layer in model._flatten_layers(include_self=False):  # noqa: SLF001 (nested layers)
        inner = (
            [layer.forward_layer, layer.backward_layer]
            if isinstance(layer, keras.layers.Bidirectional)
            else [layer]
        )
        for cell in inner:
            if isinstance(cell, keras.layers.LSTM | keras.layers.GRU):
                cells[id(cell)] = cell
    return list(cells.values())


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

    if not recurrent_layers(model):
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
