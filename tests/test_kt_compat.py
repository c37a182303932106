"""Keras Tuner's internals the harness relies on (harness/kt_compat.py) are where and as it
uses them: a Keras Tuner upgrade that moves or changes one fails here, not mid-search."""

from __future__ import annotations

import inspect

import keras
import keras_tuner as kt
import numpy as np

from harness import kt_compat
from harness.kt_compat import TrialStatus


def oracle(folder, max_trials: int = 3):
    hp = kt.HyperParameters()
    hp.Int("units", 1, 100)
    found = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("loss", "min"), max_trials=max_trials, hyperparameters=hp, seed=0
    )
    found._set_project_dir(str(folder), "project")
    return found


def test_trial_states_the_watchdog_sets_exist():
    for name in ("RUNNING", "IDLE", "STOPPED", "FAILED", "COMPLETED"):
        status = getattr(TrialStatus, name)
        assert TrialStatus.from_proto(TrialStatus.to_proto(status)) == status, name


def test_a_requeued_trial_is_the_next_one_handed_out(tmp_path):
    found = oracle(tmp_path)
    trial = found.create_trial("w0")
    assert found.ongoing_trials == {"w0": trial} and "w0" in found.tuner_ids
    kt_compat.requeue(found, "w0", trial.trial_id)
    assert found.ongoing_trials == {}
    again = found.create_trial("w1")  # the retry queue comes first
    assert again.trial_id == trial.trial_id and again.status == TrialStatus.RUNNING


def test_synchronized_runs_a_function_under_the_oracles_lock(tmp_path):
    found = oracle(tmp_path)
    seen = kt_compat.synchronized(lambda o, value: (o, value))(found, 3)
    assert seen == (found, 3)


def test_the_chief_servicer_answers_create_trial_and_its_stop_flag(tmp_path):
    servicer_class = kt_compat.oracle_servicer()
    params = list(inspect.signature(servicer_class.__init__).parameters)
    assert params[:2] == ["self", "oracle"]
    for method in ("CreateTrial", "UpdateTrial", "EndTrial", "GetTrial"):
        assert callable(getattr(servicer_class, method)), method
    servicer = servicer_class(oracle(tmp_path))
    assert servicer.stop_triggered is False
    trial = servicer.oracle.create_trial("w0")
    response = kt_compat.create_trial_response(trial)
    assert response.trial.trial_id == trial.trial_id


def test_a_servicer_registers_on_a_grpc_server(tmp_path):
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    kt_compat.add_servicer(kt_compat.oracle_servicer()(oracle(tmp_path)), server)
    server.stop(None)


def test_the_objective_is_reduced_from_fit_histories_as_the_oracle_does():
    objective = kt.Objective("val_loss", "min")
    histories = []
    for values in ([0.5, 0.2, 0.3], [0.4, 0.6]):  # each execution's fit, its best epoch taken
        history = keras.callbacks.History()
        history.history = {"val_loss": values}
        histories.append(history)
    assert kt_compat.objective_value(histories, objective) == np.mean([0.2, 0.4])


def test_the_tuner_callback_swap_keeps_the_epoch_hooks_and_drops_the_batch_hooks(
    tmp_path, monkeypatch
):
    """`_build_and_fit_model` is the hook, TunerCallback(tuner, trial) the class it swaps."""
    from keras_tuner.src.engine import tuner_utils

    assert list(inspect.signature(kt.Tuner._build_and_fit_model).parameters)[:2] == [
        "self",
        "trial",
    ]
    original = tuner_utils.TunerCallback("tuner", "trial")
    swapped = kt_compat.EpochTunerCallback(original.tuner, original.trial)
    assert (swapped.tuner, swapped.trial) == ("tuner", "trial")
    for hook in ("on_batch_begin", "on_batch_end"):  # Keras skips a callback's base hooks
        assert getattr(type(swapped), hook) is getattr(keras.callbacks.Callback, hook)
    assert type(swapped).on_epoch_end is tuner_utils.TunerCallback.on_epoch_end

    class Seen(kt_compat.EpochCallbacks, kt.RandomSearch):
        pass

    def build(hp):
        model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(hp.Int("u", 1, 2))])
        model.compile("sgd", "mse")
        return model

    used = []
    tuner = Seen(build, objective="loss", max_trials=1, directory=str(tmp_path), seed=0)
    original_fit = keras.Model.fit

    def fit(model, *args, callbacks=(), **kwargs):
        used.extend(type(c) for c in callbacks)
        return original_fit(model, *args, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)  # to see the callbacks Keras Tuner passes
    tuner.search(np.zeros((4, 1)), np.zeros((4, 1)), epochs=1, verbose=0)
    assert kt_compat.EpochTunerCallback in used and tuner_utils.TunerCallback not in used
