"""Search spaces: the parameter formula equals Keras' count, parameter budgets are met within
10% for every family, task kind and depth, budgets out of reach are refused by name, the
spaces are listed without a framework, and the fused-kernel tag says what was observed."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys

import pytest

from harness import backend

backend.configure()

from harness.backend.fused import recurrent_layers  # noqa: E402
from search_spaces import REGISTRY, describe_space, get_space  # noqa: E402
from search_spaces.base import BUDGET_TOLERANCE, BudgetError  # noqa: E402
from tasks import REGISTRY as TASKS  # noqa: E402
from tasks import get_task  # noqa: E402
from tests.helpers import REPO, harness  # noqa: E402

FAMILIES = list(REGISTRY)
# One task per input and output kind: real/regression, tokens/sequence, tokens/per-step.
KIND_TASKS = ["adding", "first_token", "assoc_recall"]
BUDGETS = [5_000, 20_000, 100_000]


def combinations(space):
    """Every combination of a space's structural hyperparameters, the rest at defaults."""
    structural = [h for h in space.hyperparameters() if h.name in space.structural]
    for combo in itertools.product(*(h.options() for h in structural)):
        yield {h.name: value for h, value in zip(structural, combo, strict=True)}


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("task", KIND_TASKS)
def test_the_parameter_formula_is_keras_count(family, task):
    space = get_space(family, get_task(task))
    for combo in combinations(space):
        values = {**space.defaults(), **combo, space.width_name: 13}
        assert space.model(values).count_params() == space.parameters(values), combo


@pytest.mark.parametrize("params", BUDGETS)
@pytest.mark.parametrize("family", FAMILIES)
def test_every_budget_is_met_within_10_percent_on_every_task(family, params):
    """For every depth (and head count) in the space: the count is the model's (the test
    above checks the formula against Keras at any width)."""
    for name in TASKS:
        space = get_space(family, get_task(name), params)
        assert space.width_name not in {h.name for h in space.hyperparameters()}  # derived
        for combo in combinations(space):
            count = space.parameters(space.complete({**space.defaults(), **combo}))
            assert abs(count - params) <= BUDGET_TOLERANCE * params, (name, combo, count)


def test_a_depth_that_cannot_meet_the_budget_is_left_out():
    def depths(params):
        space = get_space("bilstm", get_task("adding"), params)
        return next(h for h in space.hyperparameters() if h.name == "depth").options()

    assert depths(500) == (1,)  # two stacked BiLSTMs cannot be this small
    assert depths(20_000) == (1, 2)


def test_a_budget_out_of_reach_names_the_smallest_one():
    with pytest.raises(BudgetError, match="the smallest it can meet is ([0-9,]+)") as error:
        get_space("transformer", get_task("listops"), 100)
    smallest = int(error.value.args[0].rsplit("is ", 1)[1].split(" ")[0].replace(",", ""))
    assert "family 'transformer'" in str(error.value) and "task 'listops'" in str(error.value)
    get_space("transformer", get_task("listops"), smallest)  # met


def test_spaces_and_tasks_are_listed_without_importing_a_framework():
    """`harness spaces` and `harness tasks` import neither Keras nor TensorFlow nor JAX: the
    modules loaded when the command exits (-X importtime cannot tell, since
    backend.load_frameworks silences stderr while it imports)."""
    frameworks = ("keras", "tensorflow", "jax", "keras_tuner", "torch")
    script = (
        "import atexit, runpy, sys\n"
        f"atexit.register(lambda: print('LOADED', *[m for m in {frameworks!r} if m in sys.modules],"
        " file=sys.stderr))\n"
        "sys.argv = ['harness', *sys.argv[1:]]\n"
        "runpy.run_module('harness', run_name='__main__')\n"
    )
    for command in (["spaces", "--json"], ["tasks", "--json"]):
        result = subprocess.run(
            [sys.executable, "-c", script, *command],
            cwd=REPO, capture_output=True, text=True, timeout=120,
            env={**os.environ, "KERAS_BACKEND": "jax"},
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-2000:]
        assert result.stderr.splitlines()[-1] == "LOADED", (command, result.stderr[-500:])
    rows = json.loads(harness("spaces", "--json", cwd=REPO, check=True).stdout)
    assert [row["family"] for row in rows] == FAMILIES
    assert rows[0] == describe_space(FAMILIES[0])


def test_the_fused_kernel_tag_says_what_was_observed():
    """Observed "yes" only where cuDNN runs: Keras on JAX takes it for LSTM on a GPU, and has
    no cuDNN GRU (both directions of a Bidirectional looked at); "n/a" without LSTM/GRU;
    the JAX check reads the lowered step."""
    task = get_task("adding")
    x, y = task.generate(4, 8, 0, "train")
    gpu = backend.accelerator() is not None
    for family, expected in (("lstm", "yes" if gpu else "no"), ("gru", "no"), ("bigru", "no")):
        model = get_space(family, task).default_model()
        assert backend.observe_fused_rnn(model, x, y) == expected, family
    assert backend.observe_fused_rnn(get_space("transformer", task).default_model(), x, y) == "n/a"
    lowered = 'stablehlo.custom_call @cudnn_rnn(%0, %1) {backend_config = ""}'
    assert backend.holds_cudnn_rnn(lowered) and not backend.holds_cudnn_rnn("stablehlo.dot")
    layers = recurrent_layers(get_space("bigru", task).default_model())
    assert len(layers) == 2 and {layer.go_backwards for layer in layers} == {False, True}


TORCH_WATCH = """
from harness import backend; backend.configure()
import keras, torch
from search_spaces import get_space; from tasks import get_task
task = get_task('adding'); x, y = task.generate(4, 8, 0, 'train')

class WithTorchLSTM(keras.Model):  # torch.nn.LSTM calls torch._VF.lstm on the CPU too
    def __init__(self):
        super().__init__()
        self.torch_lstm = keras.layers.TorchModuleWrapper(
            torch.nn.LSTM(x.shape[-1], 4, batch_first=True))
        self.keras_lstm = keras.layers.LSTM(4)

    def call(self, inputs):
        return self.keras_lstm(self.torch_lstm(inputs)[0])

print(backend.accelerator() is not None,
      backend.observe_fused_rnn(get_space('lstm', task).default_model(), x, y),
      backend.observe_fused_rnn(WithTorchLSTM(), x, y))
"""


@pytest.mark.slow  # a process that starts torch
def test_on_torch_the_fused_kernel_is_watched_in_a_training_step():
    """Keras' torch LSTM calls torch._VF.lstm (cuDNN) on CUDA only: "no" on a CPU. The watch
    itself is seen to fire on a CPU through a torch.nn.LSTM inside the model."""
    result = subprocess.run(
        [sys.executable, "-c", TORCH_WATCH], cwd=REPO, capture_output=True, text=True,
        timeout=300, env={**os.environ, "KERAS_BACKEND": "torch"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    gpu, keras_lstm, with_torch_lstm = result.stdout.strip().splitlines()[-1].split()
    assert keras_lstm == ("yes" if gpu == "True" else "no")
    assert with_torch_lstm == "yes"
