"""The cell and frontier keys of the quick and study suites, code hashes included, as the golden
list tests/test_suites.py holds: a change to a key (an edit of a task's or family's code, of the
budget or of the key's rule) is then a deliberate one, written anew with `--write`.

    python scripts/cell_keys.py           # print the keys
    python scripts/cell_keys.py --write   # write tests/golden_keys.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.suites import Ask, load_suite  # noqa: E402

SUITES = ("quick", "study")
GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "golden_keys.json"


def suite_keys(name: str) -> dict[str, list[str]]:
    """Every [[cells]] cell's key; each frontier's key and the keys of its cells at its
    shortest and longest length (its first seeds)."""
    suite = load_suite(name)
    frontiers = []
    for spec in suite.frontiers:
        frontiers.append(spec.key)
        for length in (spec.min_length, spec.max_length):
            frontiers.append(spec.cell(Ask(length, 0, "double")).key)
    return {"cells": [cell.key for cell in suite.cells], "frontiers": frontiers}


def keys() -> dict[str, dict[str, list[str]]]:
    return {name: suite_keys(name) for name in SUITES}


if __name__ == "__main__":
    text = json.dumps(keys(), indent=1) + "\n"
    if sys.argv[1:] == ["--write"]:
        GOLDEN.write_text(text)
    else:
        print(text, end="")
