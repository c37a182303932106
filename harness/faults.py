"""Fault injection for the fault tests: HARNESS_FAULT=POINT[:N][:raise] SIGKILLs this process there.

Points: "trial_start" (a trial's run opened, training not started), "epoch" (end
of an epoch inside a trial), "trial" (a trial just recorded, the next not yet
started), "evaluation" (the search done, evaluation started). N counts arrivals
at that point in this process (default 1; "*" for every arrival). With ":raise" the
point raises MemoryError instead, as a trial running out of memory would. Unset, it
does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_arrivals: Counter[str] = Counter()


def point(name: str) -> None:
    """Die by SIGKILL (or raise) here if HARNESS_FAULT names this point and arrival."""
    wanted = os.environ.get("HARNESS_FAULT")
    if not wanted:
        return
    target, _, rest = wanted.partition(":")
    if target != name:
        return
    count, _, action = rest.partition(":")
    _arrivals[name] += 1
    if count != "*" and _arrivals[name] != int(count or 1):
        return
    if action == "raise":
        raise MemoryError(f"injected fault at {name} {_arrivals[name]}: out of memory")
    os.kill(os.getpid(), signal.SIGKILL)
