"""The HyperModel every family shares: encoder -> backbone(hp) -> head, compiled from hp."""

from __future__ import annotations

import keras
import keras_tuner as kt

from search_spaces.io import (
    attach_head,
    encode_input,
    loss_and_metrics,
    model_input,
    per_step_output,
)
from tasks.base import Task

CLIP_NORM = 1.0


class FamilyHyperModel(kt.HyperModel):
    """A model family's search space for one task. Subclasses implement `backbone`."""

    family: str = ""
    description: str = ""

    def __init__(self, task: Task, **kwargs):
        super().__init__(name=self.family, **kwargs)
        self.task = task

    def backbone(self, hp: kt.HyperParameters, x, per_step: bool):
        """Map encoded inputs (batch, T, width) to (batch, T, d) if `per_step` else (batch, d)."""
        raise NotImplementedError

    def width(self, hp: kt.HyperParameters) -> int:
        """The encoder's output width (families declare their own hyperparameter)."""
        return hp.Choice("units", [32, 64, 128], default=64)

    def build(self, hp: kt.HyperParameters) -> keras.Model:
        inputs = model_input(self.task)
        x = encode_input(self.task, inputs, self.width(hp))
        features = self.backbone(hp, x, per_step_output(self.task))
        model = keras.Model(inputs, attach_head(self.task, features), name=self.family)
        loss, metrics = loss_and_metrics(self.task)
        model.compile(optimizer=optimizer(hp), loss=loss, metrics=metrics)
        return model


def optimizer(hp: kt.HyperParameters) -> keras.optimizers.Optimizer:
    """Adam with a log-scaled learning rate and optional gradient-norm clipping."""
    learning_rate = hp.Float("learning_rate", 3e-4, 1e-2, sampling="log", default=3e-3)
    clip = hp.Boolean("clip_gradients", default=True)
    return keras.optimizers.Adam(learning_rate, clipnorm=CLIP_NORM if clip else None)
