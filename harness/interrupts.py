"""Ctrl-C, taken at safe points: the first SIGINT is noted and raised as KeyboardInterrupt
at the next epoch boundary or step of the runner; a second one raises at once. A time
limit (`harness run --stop-after`) asks for the same stop through `request()`.

Raised wherever the signal lands, a KeyboardInterrupt can fall inside a garbage-collection
callback (SQLAlchemy's, say), where Python ignores it and the search would go on.
"""

from __future__ import annotations

import signal

_requested = False


def _note(signum, frame) -> None:
    global _requested
    if _requested:
        raise KeyboardInterrupt
    _requested = True


def install() -> None:
    """Take SIGINT through `check()` from now on, nothing asked yet (the CLI's `run` does
    this)."""
    global _requested
    _requested = False
    signal.signal(signal.SIGINT, _note)


def request() -> None:
    """Ask for the stop a first Ctrl-C asks for (from any thread)."""
    global _requested
    _requested = True


def requested() -> bool:
    """Whether a stop was asked for since `install()`."""
    return _requested


def check() -> None:
    """Raise KeyboardInterrupt here if Ctrl-C was pressed since `install()`."""
    if _requested:
        raise KeyboardInterrupt
