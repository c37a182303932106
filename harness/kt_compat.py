"""Keras Tuner's internals the harness relies on, in one place.

Every name below was read from keras-tuner 1.4.8 (the version installed; pyproject allows
>=1.4.7,<1.5). Each says why Keras Tuner's public API does not do it.
tests/test_kt_compat.py holds each of them against real Keras Tuner objects, so an upgrade
that moves or changes one fails there, not mid-search, and it checks that no other module
of the harness spells an internal.

Public names are used where Keras Tuner exports one: `keras_tuner.synchronized`,
`keras_tuner.engine.trial.TrialStatus`, `oracle.get_trial`, `oracle.end_trial`.

Nothing here imports Keras or Keras Tuner when this module loads: the command line reads
it (through harness/budget.py, harness/pool.py, harness/distributed.py) before the backend
is chosen, so each function imports Keras Tuner when it runs.
"""

from __future__ import annotations

import functools
import math
import os
import time
from collections.abc import MutableMapping

# -- the distribution variables ----------------------------------------------------------------
# keras-tuner 1.4.8 reads its distributed mode from three environment variables
# (src/distribute/utils.py, src/engine/base_tuner.py, src/distribute/oracle_client.py): a tuner
# built with them set is the chief (an id holding "chief") or a worker of the oracle at
# IP:PORT. No argument of a tuner sets them: the environment is the only door.

TUNER_ID = "KERASTUNER_TUNER_ID"
ORACLE_IP = "KERASTUNER_ORACLE_IP"
ORACLE_PORT = "KERASTUNER_ORACLE_PORT"
VARIABLES = (TUNER_ID, ORACLE_IP, ORACLE_PORT)


def set_role(role: str, host: str, port: int, env: MutableMapping[str, str] = os.environ) -> None:
    """Make the tuners built from now on (in `env`'s process) the chief or worker `role` of the
    oracle served at host:port (port 0 where the chief serves each search on its own port)."""
    env.update(dict(zip(VARIABLES, (role, host, str(port)), strict=True)))


def set_tuner_id(tuner_id: str, env: MutableMapping[str, str] = os.environ) -> None:
    """Name the tuners built from now on `tuner_id`, not distributed (a chief's tuner reloaded
    from its folder, with no server: the tuner id alone makes no distributed tuner)."""
    env[TUNER_ID] = tuner_id


def clear_role(env: MutableMapping[str, str] = os.environ) -> None:
    """Back to tuners of their own (not distributed): the variables removed from `env`."""
    for name in VARIABLES:
        env.pop(name, None)


def is_distributed(env: MutableMapping[str, str] = os.environ) -> bool:
    """Whether tuners built now belong to a distributed search (Keras Tuner's own test)."""
    return bool(env.get(ORACLE_IP))


# -- a search's end ----------------------------------------------------------------------------


def is_too_many_failures(error: BaseException) -> bool:
    """Whether `error` is how keras-tuner 1.4.8 ends a search whose trials failed
    `max_consecutive_failed_trials` times in a row: a plain RuntimeError from
    `Oracle._check_consecutive_failures`, told apart by its text alone (no class of its own)."""
    return isinstance(error, RuntimeError) and "consecutive failures exceeded" in str(error)


# -- Hyperband's trials ------------------------------------------------------------------------


def hyperband_trials(max_epochs: int, factor: int = 3) -> int:
    """The trials a Hyperband search of one iteration runs (min 1 epoch, as harness/tuning.py
    builds it): keras-tuner 1.4.8's HyperbandOracle runs brackets b = B-1 .. 0 of b+1 rounds
    each, round r holding ceil(ceil(1 + log_factor(max_epochs)) / (b + 1) * factor^(b - r))
    trials (its private `_get_num_brackets` and `_get_size`). The oracle tells no total
    before its search, and a budget is planned (and its trials shown) before any oracle exists.
    """
    brackets, reach = 0, float(max_epochs)
    while reach >= 1:  # the oracle's min_epochs
        reach /= factor
        brackets += 1
    end = math.ceil(1 + math.log(max_epochs, factor))
    return sum(
        math.ceil(end / (b + 1) * factor ** (b - r)) for b in range(brackets) for r in range(b + 1)
    )


# -- an oracle's state -------------------------------------------------------------------------
# keras-tuner 1.4.8's Oracle keeps its trials (`trials`: id -> Trial), the trial each worker
# runs (`ongoing_trials`: tuner id -> Trial), the workers it waits for (`tuner_ids`) and the
# trials queued to run again (`_retry_queue`) as attributes its docs do not name: its public
# methods hand out, update and end one trial at a time, and tell no worker's state. `trials`
# is read here too: the public Oracle documents `get_trial(id)` and `get_best_trials(n)`
# only, not the attribute.


def trials(oracle) -> list:
    """Every trial the oracle has created, in the order it created them."""
    return list(oracle.trials.values())


def trial_count(oracle) -> int:
    """How many trials the oracle has created."""
    return len(oracle.trials)


def running_trials(oracle) -> dict[str, str]:
    """The trial each worker runs now: tuner id -> trial id."""
    return {tuner_id: trial.trial_id for tuner_id, trial in oracle.ongoing_trials.items()}


def workers(oracle) -> set[str]:
    """The workers (tuner ids) the oracle waits for: a chief ends once none is left and no
    trial runs."""
    return set(oracle.tuner_ids)


def forget_worker(oracle, tuner_id: str) -> None:
    """Stop waiting for worker `tuner_id` (lost, or told to leave)."""
    oracle.tuner_ids.discard(tuner_id)


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


def fail_trial(oracle, trial_id: str, reason: str) -> None:
    """End a running trial FAILED with `reason` (its worker lost too often): the oracle ends
    a trial only as a worker reports it, so the chief reports it in the worker's place."""
    from keras_tuner.engine.trial import TrialStatus

    trial = oracle.get_trial(trial_id)
    trial.status, trial.message = TrialStatus.FAILED, reason
    oracle.end_trial(trial)


def synchronized(func):
    """Run `func(oracle, ...)` under the oracle's own lock, as its methods do: the watchdog
    reads and changes the oracle's state from its own thread (`keras_tuner.synchronized`,
    public, imported late; documented for Oracle methods, it locks on the first argument,
    the oracle here too)."""
    import keras_tuner

    return keras_tuner.synchronized(func)


# -- the chief's servicer ----------------------------------------------------------------------
# What a worker asking for a trial is told, in the harness's words: keras-tuner 1.4.8 answers
# with a trial whose status is RUNNING (run it), IDLE (ask again) or STOPPED (the search is
# over: leave).

RUN = "run"  # run the trial handed out
WAIT = "wait"  # ask again: the chief keeps waiting for this worker
LEAVE = "leave"  # leave now; the search goes on without this worker
END = "end"  # leave: the search is over, the chief ends once no trial runs

IDLE_PAUSE_S = 1.0
"""How long the chief holds a worker told to wait: keras-tuner 1.4.8's worker asks again at
once when told IDLE (`BaseTuner.search`), so the chief paces it."""


@functools.cache
def chief_servicer_class() -> type:
    """Keras Tuner's chief servicer with doors for the harness's watchdog.

    keras-tuner 1.4.8 serves its oracle (`OracleServicer`, private, in
    src/distribute/oracle_chief.py) only behind its own blocking loop, which waits forever
    for a worker that died (keras-tuner #915, #344), and tells a worker to leave whenever it
    has no trial for it now. The harness serves it itself (harness/distributed.py), so it
    subclasses that servicer; a subclass of this class overrides:

    - `heard_from(tuner_id)`: each request, with the worker it came from;
    - `answer(offered, running) -> told`: what a worker asking for a trial is told, from
      what the oracle offers (RUN, WAIT or END) and whether any trial still runs;
    - `trial_ended()`: after each trial's end.

    `ended` is whether a worker was told END. Imported late: its protobuf and gRPC modules
    load only for a distributed search.
    """
    from keras_tuner.engine.trial import TrialStatus
    from keras_tuner.src import protos
    from keras_tuner.src.distribute.oracle_chief import OracleServicer

    offers = {TrialStatus.RUNNING: RUN, TrialStatus.IDLE: WAIT, TrialStatus.STOPPED: END}

    class ChiefServicer(OracleServicer):
        def heard_from(self, tuner_id: str) -> None:
            pass

        def answer(self, offered: str, running: bool) -> str:
            return offered

        def trial_ended(self) -> None:
            pass

        @property
        def ended(self) -> bool:
            return self.stop_triggered

        def _heard_trial(self, trial_id: str) -> None:
            for tuner_id, running in running_trials(self.oracle).items():
                if running == trial_id:
                    self.heard_from(tuner_id)

        def CreateTrial(self, request, context):
            tuner_id = request.tuner_id
            self.heard_from(tuner_id)
            trial = self.oracle.create_trial(tuner_id)
            told = self.answer(offers.get(trial.status, END), bool(self.oracle.ongoing_trials))
            if told == LEAVE:
                self.oracle.tuner_ids.discard(tuner_id)
                trial.status = TrialStatus.STOPPED
            elif told == END:
                self.stop_triggered = True
                trial.status = TrialStatus.STOPPED
            elif told == WAIT:
                trial.status = TrialStatus.IDLE
                self.oracle.tuner_ids.add(tuner_id)  # the chief waits for it: it asks again
                time.sleep(IDLE_PAUSE_S)
            return protos.get_service().CreateTrialResponse(trial=trial.to_proto())

        def UpdateTrial(self, request, context):
            self._heard_trial(request.trial_id)
            return super().UpdateTrial(request, context)

        def EndTrial(self, request, context):
            self._heard_trial(request.trial.trial_id)
            response = super().EndTrial(request, context)
            self.trial_ended()
            return response

        def GetTrial(self, request, context):
            self._heard_trial(request.trial_id)
            return super().GetTrial(request, context)

    return ChiefServicer


def add_servicer(servicer, server) -> None:
    """Register `servicer` on a gRPC `server`: the service module keras-tuner 1.4.8 generates
    from its protos is private (src/protos)."""
    from keras_tuner.src import protos

    protos.get_service_grpc().add_OracleServicer_to_server(servicer, server)


# -- a trial's objective and its callbacks -----------------------------------------------------


def objective_value(results, objective) -> float:
    """A trial's objective from its fit histories, reduced as Keras Tuner reduces them
    (keras-tuner 1.4.8's `tuner_utils.convert_to_metrics_dict`, not public), so the value
    logged is the oracle's."""
    from keras_tuner.src.engine import tuner_utils

    metrics = tuner_utils.convert_to_metrics_dict(results, objective)
    return float(metrics[objective.name])


@functools.cache
def epoch_tuner_callback() -> type:
    """Keras Tuner's own callback (keras-tuner 1.4.8's private `tuner_utils.TunerCallback`)
    without its no-op batch hooks.

    A callback with batch hooks makes Keras copy the logs to the host after every
    batch (a device sync on JAX): harness/bare-fit time went from 1.33 to 1.10 with
    this (benchmarks/trial_overhead.py). Keras Tuner's base tuners do nothing per batch,
    and it adds its TunerCallback inside `Tuner._build_and_fit_model` with no option to
    leave it out.
    """
    import keras
    from keras_tuner.src.engine import tuner_utils

    class EpochTunerCallback(tuner_utils.TunerCallback):
        on_batch_begin = keras.callbacks.Callback.on_batch_begin
        on_batch_end = keras.callbacks.Callback.on_batch_end

    return EpochTunerCallback


class EpochCallbacks:
    """Mixin for a Keras Tuner class: fits with `epoch_tuner_callback()` in place of Keras
    Tuner's own, swapped in keras-tuner 1.4.8's private `Tuner._build_and_fit_model(trial,
    *args, **kwargs)`, the one hook between the callbacks it adds and `model.fit`."""

    def _build_and_fit_model(self, trial, *args, **kwargs):
        from keras_tuner.src.engine import tuner_utils

        swapped = epoch_tuner_callback()
        kwargs["callbacks"] = [
            swapped(c.tuner, c.trial) if type(c) is tuner_utils.TunerCallback else c
            for c in kwargs.get("callbacks", [])
        ]
        return super()._build_and_fit_model(trial, *args, **kwargs)
