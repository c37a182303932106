"""The root `harness` command: the Typer app, its two consoles and the rule for user errors.

Every command module registers on `app` from here; `harness/cli/__init__.py` imports them.
"""

from __future__ import annotations

import functools
import sys
from pathlib import Path

import typer
from rich.console import Console

from harness import backend
from harness.errors import USER_ERRORS

backend.configure()  # before any command imports Keras

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Benchmark sequence models: Keras Tuner searches per (task, length, family), tracked in MLflow.",
)
out = Console(soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, soft_wrap=True)

DEFAULT_WORKDIR = Path("data")
COMPILE_CACHE = DEFAULT_WORKDIR / "jax-cache"  # for the commands without --workdir


def user_errors(command):
    """Turn a UserError into one line on stderr and exit code 2."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except USER_ERRORS as error:
            err.print(f"error: {error}", highlight=False, markup=False)
            raise typer.Exit(2) from None

    return wrapper
