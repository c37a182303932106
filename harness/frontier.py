"""`harness frontier`: the longest length each family solves at a parameter budget."""

from __future__ import annotations


def frontier_section(runs: list):
    """The report's frontier section from the experiment's frontier runs (None without any)."""
    return None
