"""What several commands share: their option types, the budget flags (defined once for `run`
and `frontier`), and how the options that name a store and an experiment are read."""

from __future__ import annotations

import functools
import inspect
from pathlib import Path
from typing import Annotated

import typer

from harness.cli.root import err
from harness.errors import UserError

TrackingUri = Annotated[
    str | None,
    typer.Option(
        "--tracking-uri",
        help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    ),
]
Workdir = Annotated[Path, typer.Option(help="Data cache and tuner folders.")]
WorkersOption = Annotated[
    str,
    typer.Option(
        help="Trials, evaluations and retrains at once on this machine: N, or auto (1 on a "
        "CPU; on a GPU by its free memory)."
    ),
]
ReadSuite = Annotated[
    str | None, typer.Option(help="Bundled suite name or path to a suite TOML: its experiment.")
]
ReadExperiment = Annotated[
    str | None,
    typer.Option(help="MLflow experiment (default: the suite's, else the latest run's)."),
]
FamiliesOption = Annotated[
    list[str] | None, typer.Option(help="Families (repeatable or comma-separated).")
]
LengthsOption = Annotated[
    list[str] | None, typer.Option(help="Lengths (repeatable or comma-separated).")
]
OutDir = Annotated[Path, typer.Option("--out", help="Output folder.")]

BUDGET_FLAGS: dict[str, tuple[str, type, str]] = {
    "tuner": ("--tuner", str, "random, bayesian, hyperband or grid."),
    "max_trials": ("--max-trials", int, "Trials per cell."),
    "epochs": ("--epochs", int, "Epochs per trial."),
    "executions_per_trial": ("--executions", int, "Executions per trial."),
    "batch_size": ("--batch-size", int, "Batch size."),
    "n_train": ("--n-train", int, "Training examples."),
    "n_val": ("--n-val", int, "Validation examples."),
    "n_test": ("--n-test", int, "Test examples."),
    "params": (
        "--params",
        int,
        "Parameter budget: each family's width gives its model this many trainable "
        "parameters (within 10%); the width is then not searched.",
    ),
    "fixed": (
        "--fixed",
        str,
        "Hyperparameters every family takes at one value, not searched: NAME=VALUE[,...] "
        "(e.g. depth=2).",
    ),
    "grid": (
        "--grid",
        str,
        "With --tuner grid, its axes: NAME=V1:V2[,NAME=...] (default "
        "learning_rate=0.001:0.003:0.01); every other hyperparameter at its default.",
    ),
}
"""Each field of `harness.budget.Budget`: its flag, type and help. A flag left out keeps the suite's value
(or Budget's default)."""


def budget_options(command):
    """Give `command` a flag per budget field in place of its `budget` parameter; it receives
    the flags given as `budget`, a dict of Budget fields."""
    signature = inspect.signature(command, eval_str=True)
    flags = [
        inspect.Parameter(
            name,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            default=None,
            annotation=Annotated[kind | None, typer.Option(flag, help=text)],
        )
        for name, (flag, kind, text) in BUDGET_FLAGS.items()
    ]
    parameters = []
    for parameter in signature.parameters.values():
        parameters.extend(flags if parameter.name == "budget" else [parameter])

    @functools.wraps(command)
    def with_budget(**values):
        given = {name: values.pop(name) for name in BUDGET_FLAGS}
        if given["fixed"] is not None:
            given["fixed"] = parse_fixed(given["fixed"])
        if given["grid"] is not None:
            given["grid"] = parse_grid(given["grid"])
        return command(budget={k: v for k, v in given.items() if v is not None}, **values)

    with_budget.__signature__ = signature.replace(parameters=parameters)
    return with_budget


def parse_fixed(text: str) -> dict:
    """--fixed depth=2,unit_modulus=true as {"depth": 2, "unit_modulus": True}."""
    return {
        name: _value(value)
        for name, value in _pairs(text, "--fixed", "NAME=VALUE[,NAME=VALUE] (e.g. depth=2)")
    }


def parse_grid(text: str) -> dict:
    """--grid learning_rate=0.001:0.01,depth=1:2 as {"learning_rate": [0.001, 0.01], ...}."""
    form = "NAME=V1:V2[,NAME=V1:V2] (e.g. learning_rate=0.001:0.003:0.01)"
    return {
        name: [_value(v) for v in values.split(":")]
        for name, values in _pairs(text, "--grid", form)
    }


def _pairs(text: str, flag: str, form: str) -> list[tuple[str, str]]:
    """NAME=VALUE pairs of a comma-separated flag, each part stripped and non-empty."""
    pairs = []
    for pair in text.split(","):
        name, sign, value = pair.strip().partition("=")
        if not sign or not name.strip() or not value.strip():
            raise UserError(f"{flag} '{text}' is not {form}")
        pairs.append((name.strip(), value.strip()))
    return pairs


def _value(text: str):
    """A flag's value as TOML would read it: a boolean, an integer, a float, else the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_names(values: list[str] | None, default: tuple[str, ...]) -> list[str]:
    """Repeatable options that also take comma-separated lists: --families lstm,gru."""
    names = [part.strip() for value in values or [] for part in value.split(",") if part.strip()]
    return list(dict.fromkeys(names)) if names else list(default)


def parse_lengths(values: list[str] | None, default: tuple[int, ...]) -> list[int]:
    """Lengths given as `parse_names` takes them, as sorted whole numbers."""
    lengths = []
    for text in parse_names(values, tuple(map(str, default))):
        try:
            lengths.append(int(text))
        except ValueError:
            raise UserError(f"length '{text}' is not a whole number") from None
    return sorted(set(lengths))


def note_latest(suite: str | None, experiment: str | None, name: str) -> None:
    """Say which experiment a reading command read when neither --suite nor --experiment
    named one (the store's latest run's)."""
    if not suite and not experiment:
        err.print(
            f"experiment '{name}' (the store's latest run; --suite or --experiment for another)",
            highlight=False,
            markup=False,
        )
