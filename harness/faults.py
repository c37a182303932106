"""Fault injection for the resume tests: HARNESS_FAULT=POINT[:N] SIGKILLs this process there.

Points: "epoch" (end of an epoch inside a trial), "trial" (a trial just recorded,
the next not yet started), "evaluation" (the search done, evaluation started).
N counts arrivals at that point in this process (default 1). Unset, it does nothing.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

_arrivals: Counter[str] = Counter()


def point(name: str) -> None:
    """Die by SIGKILL here if HARNESS_FAULT names this point and arrival."""
    wanted = os.environ.get("HARNESS_FAULT")
    if not wanted:
        return
    target, _, count = wanted.partition(":")
    if target != name:
        return
    _arrivals[name] += 1
    if _arrivals[name] == int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
