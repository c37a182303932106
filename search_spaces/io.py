"""What a task's input and output kinds attach to any backbone: encoder, head, loss, metrics.

A family builds only the backbone; these shared pieces make it fit a task, so a
family never knows about tasks.
"""

from __future__ import annotations

import keras
from keras import layers

from search_spaces.layers import PooledMetric
from tasks.base import IGNORE, Task


def model_input(task: Task) -> keras.KerasTensor:
    """A variable-length input, so the same model can be tested at longer lengths."""
    if task.input.kind == "tokens":
        return keras.Input(shape=(None,), dtype="int32", name="tokens")
    return keras.Input(shape=(None, task.input.width), dtype="float32", name="features")


def encode_input(task: Task, inputs: keras.KerasTensor, width: int) -> keras.KerasTensor:
    """Tokens through an Embedding, real features through a Dense projection, to `width`."""
    if task.input.kind == "tokens":
        return layers.Embedding(task.input.vocab_size, width, name="embed")(inputs)
    return layers.Dense(width, name="project")(inputs)


def per_step_output(task: Task) -> bool:
    """True when the backbone must return one vector per step rather than one per sequence."""
    return task.output.kind == "per_step_classification"


def attach_head(task: Task, features: keras.KerasTensor) -> keras.KerasTensor:
    """The output layer for the task's output kind (`features` already pooled or per step)."""
    if task.output.kind == "regression":
        return layers.Reshape((), name="value")(layers.Dense(1, name="regress")(features))
    return layers.Dense(task.output.classes, activation="softmax", name="classes")(features)


def loss_and_metrics(task: Task) -> tuple[keras.losses.Loss, list]:
    """The Keras loss and the metric named as the task's primary metric (its one definition)."""
    if task.loss == "mse":
        return keras.losses.MeanSquaredError(), [keras.metrics.MeanSquaredError(name="mse")]
    loss = keras.losses.SparseCategoricalCrossentropy(ignore_class=IGNORE)
    kind = "cross_entropy" if task.metric.name == "cross_entropy" else "accuracy"
    return loss, [PooledMetric(kind, IGNORE, name=task.metric.name)]
