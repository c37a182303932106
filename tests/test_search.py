"""A Keras Tuner search through the harness's tuner goes on past trials whose loss diverges,
and records them."""

from __future__ import annotations

import math

import keras
import keras_tuner as kt
import pytest

from harness.tracking import Tracker
from harness.tuning import SpaceHyperModel, make_tuner
from search_spaces.base import FamilySpace, choice
from tasks import get_task
from tests.helpers import store_uri


class ExplodingSpace(FamilySpace):
    """A ReLU recurrence trained by SGD: with a huge learning rate its loss turns NaN/inf."""

    family = "exploding"

    def hyperparameters(self):
        return (choice("units", [4, 8], 4), choice("learning_rate", [1e8, 1e-2], 1e8))

    def model(self, values):
        inputs = keras.Input((None, 2))
        x = keras.layers.SimpleRNN(values["units"], activation="relu")(inputs)
        model = keras.Model(inputs, keras.layers.Reshape(())(keras.layers.Dense(1)(x)))
        model.compile(
            keras.optimizers.SGD(values["learning_rate"]),
            loss="mse",
            metrics=[keras.metrics.MeanSquaredError(name="mse")],
        )
        return model


# the Bayesian oracle fits its model to every score, the diverged trials' included (the
# random oracle, which only records them, in the slow tier)
@pytest.mark.parametrize("tuner_kind", ["bayesian", pytest.param("random", marks=pytest.mark.slow)])
def test_diverged_trials_are_recorded_and_the_search_goes_on(workdir, tuner_kind):
    task = get_task("adding")
    x, y = task.generate(128, 10, 0, "train")
    tracker = Tracker(store_uri(workdir))
    experiment_id = tracker.experiment_id("diverge")
    parent = tracker.start_run(experiment_id, "parent", {"harness.kind": "cell"})
    tuner = make_tuner(
        tuner_kind,
        SpaceHyperModel(ExplodingSpace(task)),
        task,
        10,
        max_trials=4,
        epochs=2,
        executions_per_trial=1,
        seed=1,
        directory=str(workdir / "tuners"),
        project_name="explode",
        tracker=tracker,
        experiment_id=experiment_id,
        parent_run_id=parent,
    )
    tuner.search(x, y, validation_data=(x, y), epochs=2, batch_size=32, verbose=0)

    trials = list(tuner.oracle.trials.values())
    assert len(trials) == 4 and all(
        t.status == kt.engine.trial.TrialStatus.COMPLETED for t in trials
    )
    assert all(math.isfinite(t.score) for t in trials)
    children = tracker.trial_runs(experiment_id, parent)
    status = {c.params["learning_rate"]: set() for c in children}
    for child in children:
        status[child.params["learning_rate"]].add((child.status, child.tags["harness.status"]))
    assert status["100000000.0"] == {("FAILED", "diverged")}
    assert status["0.01"] == {("FINISHED", "finished")}
    diverged = [c for c in children if c.tags["harness.status"] == "diverged"]
    assert all("loss became" in c.tags["harness.reason"] for c in diverged)
    best = tuner.oracle.get_best_trials(1)[0]
    assert best.hyperparameters.get("learning_rate") == 0.01
