"""Keras Tuner's internals the harness relies on (harness/kt_compat.py) are where and as it
uses them, held against real Keras Tuner objects: an upgrade that moves or changes one fails
here, not mid-search. And no other module of the harness spells one."""

from __future__ import annotations

import inspect
import re
from pathlib import Path

import keras
import keras_tuner as kt
import numpy as np
import pytest
from keras_tuner.engine.trial import TrialStatus
from keras_tuner.src import protos
from keras_tuner.src.distribute import utils as distribute_utils

from harness import kt_compat
from harness.budget import planned_trials

REPO = Path(__file__).resolve().parent.parent
KT_SOURCE = Path(kt.__file__).parent / "src"


def oracle(folder, max_trials: int = 3):
    hp = kt.HyperParameters()
    hp.Int("units", 1, 100)
    found = kt.oracles.RandomSearchOracle(
        objective=kt.Objective("loss", "min"), max_trials=max_trials, hyperparameters=hp, seed=0
    )
    found._set_project_dir(str(folder), "project")
    return found


def complete(found, trial) -> None:
    """A worker's report of a finished trial, as the oracle takes it."""
    found.update_trial(trial.trial_id, {"loss": 1.0})
    trial.status = TrialStatus.COMPLETED
    found.end_trial(trial)


def build(hp):
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(hp.Int("u", 1, 2))])
    model.compile("sgd", "mse")
    return model


# -- the distribution variables ----------------------------------------------------------------


def test_the_distribution_variables_make_keras_tuners_chief_or_worker(monkeypatch):
    for name in kt_compat.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert not distribute_utils.has_chief_oracle() and not kt_compat.is_distributed()
    kt_compat.set_role("chief", "127.0.0.1", 0)
    assert distribute_utils.has_chief_oracle() and distribute_utils.is_chief_oracle()
    assert kt_compat.is_distributed()
    kt_compat.set_role("tuner0", "127.0.0.1", 8470)
    assert distribute_utils.has_chief_oracle() and not distribute_utils.is_chief_oracle()
    kt_compat.clear_role()
    assert not distribute_utils.has_chief_oracle() and not kt_compat.is_distributed()
    env = {"PATH": "/bin"}
    kt_compat.set_role("w1", "h", 1, env)
    kt_compat.clear_role(env)
    assert env == {"PATH": "/bin"}


def test_a_tuner_id_alone_names_a_tuner_that_is_not_distributed(tmp_path, monkeypatch):
    for name in kt_compat.VARIABLES:
        monkeypatch.delenv(name, raising=False)
    kt_compat.set_tuner_id("chief")
    tuner = kt.RandomSearch(build, objective="loss", max_trials=1, directory=str(tmp_path))
    assert tuner.tuner_id == "chief" and not kt_compat.is_distributed()
    assert isinstance(tuner.oracle, kt.oracles.RandomSearchOracle)  # no client of a chief


# -- a search's end ----------------------------------------------------------------------------


def test_a_search_whose_trials_all_fail_ends_with_the_error_told_apart(tmp_path):
    calls = []

    def broken(hp):  # declares its space once (the tuner's first call), then fails each trial
        calls.append(1)
        if len(calls) == 1:
            return build(hp)
        raise ValueError("no model")

    tuner = kt.RandomSearch(
        broken,
        objective="loss",
        max_trials=3,
        max_consecutive_failed_trials=2,
        directory=str(tmp_path),
    )
    with pytest.raises(RuntimeError) as raised:
        tuner.search(np.zeros((4, 1)), np.zeros((4, 1)), epochs=1, verbose=0)
    assert kt_compat.is_too_many_failures(raised.value)
    assert not kt_compat.is_too_many_failures(RuntimeError("another error"))
    assert not kt_compat.is_too_many_failures(ValueError("consecutive failures exceeded"))


# -- Hyperband's trials ------------------------------------------------------------------------


@pytest.mark.parametrize("epochs", [1, 2, 3, 4, 5, 8, 9, 10, 27, 30, 100])
def test_hyperbands_trials_are_its_oracles_brackets(tmp_path, epochs):
    found = kt.oracles.HyperbandOracle(objective="loss", max_epochs=epochs, hyperband_iterations=1)
    assert (found.factor, found.min_epochs) == (3, 1)  # as harness/tuning.py builds it
    brackets = found._get_num_brackets()
    sizes = sum(found._get_size(b, r) for b in range(brackets) for r in range(b + 1))
    assert kt_compat.hyperband_trials(epochs) == sizes == planned_trials("hyperband", 7, epochs)


@pytest.mark.parametrize("epochs", [1, 2, 3, 9])
def test_hyperbands_trials_are_what_its_oracle_hands_out(tmp_path, epochs):
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    found = kt.oracles.HyperbandOracle(
        objective=kt.Objective("loss", "min"),
        max_epochs=epochs,
        hyperband_iterations=1,
        hyperparameters=hp,
        seed=0,
    )
    found._set_project_dir(str(tmp_path), "project")
    while (trial := found.create_trial("w0")).status == TrialStatus.RUNNING:
        complete(found, trial)
    assert kt_compat.trial_count(found) == kt_compat.hyperband_trials(epochs)


# -- an oracle's state -------------------------------------------------------------------------


def test_an_oracles_trials_and_workers_are_read_as_it_keeps_them(tmp_path):
    found = oracle(tmp_path)
    assert kt_compat.trials(found) == [] and kt_compat.trial_count(found) == 0
    first, second = found.create_trial("w0"), found.create_trial("w1")
    assert kt_compat.trials(found) == [first, second] and kt_compat.trial_count(found) == 2
    assert kt_compat.running_trials(found) == {"w0": first.trial_id, "w1": second.trial_id}
    assert kt_compat.workers(found) == {"w0", "w1"}
    complete(found, first)
    assert kt_compat.running_trials(found) == {"w1": second.trial_id}
    assert kt_compat.workers(found) == {"w0", "w1"}  # w0 has not been told to stop yet
    kt_compat.forget_worker(found, "w0")
    kt_compat.forget_worker(found, "nobody")
    assert kt_compat.workers(found) == {"w1"}


def test_a_requeued_trial_is_the_next_one_handed_out(tmp_path):
    found = oracle(tmp_path, max_trials=1)
    trial = found.create_trial("w0")
    assert kt_compat.has_work(found, 2)  # one more to create
    assert kt_compat.has_work(found, 1)  # all created, one running
    kt_compat.requeue(found, "w0", trial.trial_id)
    assert kt_compat.running_trials(found) == {}
    assert kt_compat.has_work(found, 1)  # one queued to run again
    again = found.create_trial("w1")  # the retry queue comes first
    assert again.trial_id == trial.trial_id and again.status == TrialStatus.RUNNING
    complete(found, again)
    assert not kt_compat.has_work(found, 1)


def test_a_failed_trial_is_ended_with_its_reason(tmp_path):
    found = oracle(tmp_path)
    trial = found.create_trial("w0")
    kt_compat.fail_trial(found, trial.trial_id, "worker w0 silent")
    ended = found.get_trial(trial.trial_id)
    assert (ended.status, ended.message) == (TrialStatus.FAILED, "worker w0 silent")
    assert kt_compat.running_trials(found) == {}


def test_synchronized_runs_a_function_under_the_oracles_lock(tmp_path):
    found = oracle(tmp_path)
    seen = kt_compat.synchronized(lambda o, value: (o, value))(found, 3)
    assert seen == (found, 3)


# -- the chief's servicer ----------------------------------------------------------------------


class Told:
    """Records what the servicer's doors see; answers from a script."""

    def __init__(self, answers: list[str]):
        self.answers, self.offers, self.heard, self.ended = answers, [], [], 0


def scripted_servicer(found, told: Told):
    class Scripted(kt_compat.chief_servicer_class()):
        def heard_from(self, tuner_id):
            told.heard.append(tuner_id)

        def answer(self, offered, running):
            told.offers.append((offered, running))
            return told.answers.pop(0)

        def trial_ended(self):
            told.ended += 1

    return Scripted(found)


def ask(servicer, tuner_id: str):
    request = protos.get_service().CreateTrialRequest(tuner_id=tuner_id)
    trial = servicer.CreateTrial(request, None).trial
    return trial.trial_id, TrialStatus.from_proto(trial.status)


def test_the_chief_servicer_tells_each_worker_what_its_door_answers(tmp_path, monkeypatch):
    monkeypatch.setattr(kt_compat, "IDLE_PAUSE_S", 0.0)
    found = oracle(tmp_path, max_trials=1)
    told = Told([kt_compat.RUN, kt_compat.WAIT, kt_compat.LEAVE, kt_compat.END])
    servicer = scripted_servicer(found, told)
    assert servicer.ended is False
    assert ask(servicer, "w0") == ("0", TrialStatus.RUNNING)
    assert ask(servicer, "w1")[1] == TrialStatus.IDLE  # offered END (no trial left): told WAIT
    assert "w1" in kt_compat.workers(found)  # so the chief waits for it
    assert ask(servicer, "w1")[1] == TrialStatus.STOPPED  # told LEAVE
    assert "w1" not in kt_compat.workers(found) and not servicer.ended
    servicer.GetTrial(protos.get_service().GetTrialRequest(trial_id="0"), None)
    trial = found.get_trial("0")
    trial.metrics.register("loss", "min")
    trial.metrics.update("loss", 1.0)
    trial.status = TrialStatus.COMPLETED
    servicer.EndTrial(protos.get_service().EndTrialRequest(trial=trial.to_proto()), None)
    assert ask(servicer, "w2")[1] == TrialStatus.STOPPED and servicer.ended  # told END
    assert told.offers == [
        (kt_compat.RUN, True),
        (kt_compat.END, True),  # w0's trial still runs
        (kt_compat.END, True),
        (kt_compat.END, False),
    ]
    assert told.heard == ["w0", "w1", "w1", "w0", "w0", "w2"]  # GetTrial, EndTrial: w0's
    assert told.ended == 1


def test_the_chief_servicer_offers_wait_when_the_oracle_says_idle(tmp_path, monkeypatch):
    """Hyperband's oracle answers IDLE while a round waits for its trials to end."""
    monkeypatch.setattr(kt_compat, "IDLE_PAUSE_S", 0.0)
    hp = kt.HyperParameters()
    hp.Float("x", 0.0, 1.0)
    found = kt.oracles.HyperbandOracle(
        objective=kt.Objective("loss", "min"), max_epochs=3, hyperparameters=hp, seed=0
    )
    found._set_project_dir(str(tmp_path), "project")
    told = Told([kt_compat.RUN] * 20)
    servicer = scripted_servicer(found, told)
    statuses = [ask(servicer, f"w{i}")[1] for i in range(kt_compat.hyperband_trials(3) + 1)]
    assert (kt_compat.WAIT, True) in told.offers, statuses


def test_a_servicer_registers_on_a_grpc_server(tmp_path):
    from concurrent import futures

    import grpc

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    kt_compat.add_servicer(kt_compat.chief_servicer_class()(oracle(tmp_path)), server)
    server.stop(None)


# -- a trial's objective and its callbacks -----------------------------------------------------


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
    swapped_class = kt_compat.epoch_tuner_callback()
    original = tuner_utils.TunerCallback("tuner", "trial")
    swapped = swapped_class(original.tuner, original.trial)
    assert (swapped.tuner, swapped.trial) == ("tuner", "trial")
    for hook in ("on_batch_begin", "on_batch_end"):  # Keras skips a callback's base hooks
        assert getattr(swapped_class, hook) is getattr(keras.callbacks.Callback, hook)
    assert swapped_class.on_epoch_end is tuner_utils.TunerCallback.on_epoch_end

    class Seen(kt_compat.EpochCallbacks, kt.RandomSearch):
        pass

    used = []
    tuner = Seen(build, objective="loss", max_trials=1, directory=str(tmp_path), seed=0)
    original_fit = keras.Model.fit

    def fit(model, *args, callbacks=(), **kwargs):
        used.extend(type(c) for c in callbacks)
        return original_fit(model, *args, callbacks=callbacks, **kwargs)

    monkeypatch.setattr(keras.Model, "fit", fit)  # to see the callbacks Keras Tuner passes
    tuner.search(np.zeros((4, 1)), np.zeros((4, 1)), epochs=1, verbose=0)
    assert swapped_class in used and tuner_utils.TunerCallback not in used


# -- no other module spells an internal --------------------------------------------------------

INTERNALS = (
    "keras_tuner.src",
    "OracleServicer",
    "oracle_chief",
    "protos",
    "tuner_utils",
    "TunerCallback",
    "convert_to_metrics_dict",
    "TrialStatus",
    "ongoing_trials",
    "tuner_ids",
    "stop_triggered",
    "KERASTUNER_",
    "consecutive failures exceeded",
    "_retry_queue",
    "_build_and_fit_model",
    "_populate_space",
    "_display",
    "_set_project_dir",
    "_check_consecutive_failures",
    "_get_num_brackets",
    "_get_size",
)
"""Spelled nowhere in harness/ but kt_compat.py, prose included."""

PATTERNS = (
    # the oracle's trials: an attribute its docs do not name (kt_compat.trials)
    r"\boracle\.trials\b",
    # any private attribute read through a Keras Tuner object
    r"\b(?:oracle|tuner|trial|servicer|hypermodel|hyperparameters)\._[a-z]\w*",
)
"""Allowed: Keras Tuner's public API (`oracle.get_best_trials`, `oracle.get_trial`,
`oracle.objective`, `tuner.tuner_id`, `tuner.hypermodel`, `trial.trial_id`, `trial.score`,
`trial.hyperparameters`, ...)."""


def keras_tuner_private_names() -> set[str]:
    """The private attributes and methods Keras Tuner's own source defines."""
    names = set()
    for path in KT_SOURCE.rglob("*.py"):
        text = path.read_text()
        names |= set(re.findall(r"\bdef (_[a-z]\w*)\(", text))
        names |= set(re.findall(r"\bself\.(_[a-z]\w*)\b", text))
    return names


PRIVATE = keras_tuner_private_names()
OWN_PRIVATE = re.compile(  # one of them read through `self` or `super()`, or a method of it
    r"(?:\bself\.|\bsuper\(\)\.|^[ \t]+def )(" + "|".join(map(re.escape, PRIVATE)) + r")\b",
    re.MULTILINE,
)


def internals_in(text: str) -> list[str]:
    """The Keras Tuner internals `text` spells."""
    found = [name for name in INTERNALS if name in text]
    found += [m.group(0) for pattern in PATTERNS for m in re.finditer(pattern, text)]
    return found + [m.group(1) for m in OWN_PRIVATE.finditer(text)]


def test_no_module_but_kt_compat_spells_a_keras_tuner_internal():
    harness = sorted(p for p in (REPO / "harness").rglob("*.py") if p.name != "kt_compat.py")
    assert len(harness) > 30
    found = [
        f"{path.relative_to(REPO)}: {name}"
        for path in harness
        for name in internals_in(path.read_text())
    ]
    assert found == [], "Keras Tuner internals outside harness/kt_compat.py"


def test_the_internals_check_sees_what_it_looks_for():
    """The check catches what it is meant to (a check that finds nothing proves little)."""
    assert {"_retry_queue", "_build_and_fit_model", "_display", "_get_size"} <= PRIVATE
    text = (
        "trial = self.oracle.ongoing_trials\nn = len(tuner.oracle.trials)\n"
        "oracle._retry_queue.append(1)\nx = tuner._populate_space(1)\n"
        "class T:\n    def _try_build(self, hp):\n        self._display.on_trial_end()\n"
        "def _retry(call):\n    return super()._build_hypermodel(hp)\n"
    )
    assert internals_in(text) == [
        "ongoing_trials",
        "_retry_queue",
        "_populate_space",
        "_display",
        "oracle.trials",
        "oracle._retry_queue",
        "tuner._populate_space",
        "_try_build",
        "_display",
        "_build_hypermodel",
    ]
    assert internals_in("def _retry(call):\n    return _retry(call)\n") == []  # not Keras Tuner's
