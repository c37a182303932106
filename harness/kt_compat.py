"""Keras Tuner's internals the harness relies on, in one place (keras-tuner >=1.4.7,<1.5).

Each has no public form; the comment beside it says why the harness needs it.
tests/test_kt_compat.py fails when an upgrade moves or changes one of them. Keras Tuner's
own attributes read elsewhere (`oracle.ongoing_trials`, `oracle.tuner_ids`,
`servicer.stop_triggered`: the chief's state, undocumented) are held by that test too.
"""

from __future__ import annotations

import keras
from keras_tuner.src.engine import tuner_utils

# The states of a trial as the chief's servicer and the watchdog set them: Keras Tuner
# exports no TrialStatus at its top level.
from keras_tuner.src.engine.trial import TrialStatus  # noqa: F401  (re-exported)


def oracle_servicer() -> type:
    """The chief's gRPC servicer: the watchdog (harness/distributed.py) must sit inside it
    to see who spoke when, and Keras Tuner serves it only behind its own blocking loop.
    Imported late: its protobuf modules are loaded only by a distributed search."""
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    return OracleServicer


def create_trial_response(trial):
    """The chief's answer to a worker's CreateTrial: the proto messages have no public form."""
    from keras_tuner.src import protos

    return protos.get_service().CreateTrialResponse(trial=trial.to_proto())


def add_servicer(servicer, server) -> None:
    """Register `servicer` on a gRPC `server` (Keras Tuner's generated service module)."""
    from keras_tuner.src import protos

    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)


def synchronized(func):
    """Run `func(oracle, ...)` under the oracle's own lock, as its methods do: the watchdog
    reads and changes the oracle's state from its own thread."""
    from keras_tuner.src.engine.oracle import synchronized as oracle_lock

    return oracle_lock(func)


def has_work(oracle, planned: int) -> bool:
    """Whether a search can still use a worker: a trial of the `planned` not created yet,
    one queued to run again, or one running (whose worker may be lost)."""
    return len(oracle.trials) < planned or bool(oracle._retry_queue or oracle.ongoing_trials)


def requeue(oracle, tuner_id: str, trial_id: str) -> None:
    """Take a lost worker's trial from it and queue it to run again: the oracle's retry
    queue, which it fills itself only when it reloads, has no public door."""
    del oracle.ongoing_trials[tuner_id]
    oracle._retry_queue.append(trial_id)
    oracle.save()


def objective_value(results, objective) -> float:
    """A trial's objective from its fit histories, reduced as Keras Tuner reduces them (its
    `convert_to_metrics_dict`, not public), so the value logged is the oracle's."""
    metrics = tuner_utils.convert_to_metrics_dict(results, objective)
    return float(metrics[objective.name])


class EpochTunerCallback(tuner_utils.TunerCallback):
    """Keras Tuner's own callback without its no-op batch hooks.

    A callback with batch hooks makes Keras copy the logs to the host after every
    batch (a device sync on JAX): harness/bare-fit time went from 1.33 to 1.10 with
    this (benchmarks/trial_overhead.py). Keras Tuner's base tuners do nothing per batch,
    and it adds its TunerCallback inside `_build_and_fit_model` with no option to leave it out.
    """

    on_batch_begin = keras.callbacks.Callback.on_batch_begin
    on_batch_end = keras.callbacks.Callback.on_batch_end


class EpochCallbacks:
    """Mixin for a Keras Tuner class: fits with `EpochTunerCallback` in place of Keras
    Tuner's own, swapped in `_build_and_fit_model` (the one hook between the callbacks
    it adds and `model.fit`)."""

    def _build_and_fit_model(self, trial, *args, **kwargs):
        kwargs["callbacks"] = [
            EpochTunerCallback(c.tuner, c.trial) if type(c) is tuner_utils.TunerCallback else c
            for c in kwargs.get("callbacks", [])
        ]
        return super()._build_and_fit_model(trial, *args, **kwargs)
