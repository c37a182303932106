"""The `harness` command line: the only place that prints and exits.

Errors a user can cause (UserError) end with one line on stderr and exit code 2.

    root.py     the Typer app, its consoles, the user-error rule
    options.py  options shared by several commands (the budget flags among them)
    data.py     tasks, spaces, generate, clean-cache
    run.py      run, frontier
    read.py     status, report, verify, ui
    probes.py   the `probe` sub-commands
"""

from harness.cli import data, probes, read, run
from harness.cli.root import app

__all__ = ["app", "data", "probes", "read", "run"]
