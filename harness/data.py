"""Train/validation/test arrays for a cell, generated once and cached on disk as .npz.

The cache is keyed by task (its name and the hash of its code: `Task.data_name`), length,
n, seed and split, so every family of a suite trains and is tested on exactly the same
arrays, and an edited generator never serves the arrays of the code before (the hash
covers tasks/base.py, where `Task.generate` keeps the splits apart).

Val and test rows are distinct and never train rows (tasks/base.py's module docstring);
where a split owns fewer distinct sequences than n (digits' 269 test images, short lengths
of counting, parity and first_token), it holds all of them: fewer rows than n.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from tasks.base import Task


def split(task: Task, length: int, n: int, seed: int, name: str, cache_dir: Path):
    """(x, y) of one split ("train", "val" or "test") of a search seed, from the cache or
    generated and written atomically."""
    path = cache_dir / f"{task.data_name}_L{length}_n{n}_s{seed}_{name}.npz"
    if path.exists():
        with np.load(path) as cached:
            return cached["x"], cached["y"]
    x, y = task.generate(n, length, seed, name)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".{os.getpid()}.tmp.npz")
    np.savez(partial, x=x, y=y)
    partial.replace(path)
    return x, y


CACHE_FILE = re.compile(r"(?P<data>.+)_L\d+_n\d+_s\d+_(train|val|test)\.npz")


def prune_cache(cache_dir: Path) -> list[Path]:
    """Delete the cached arrays filed under a built-in task's name but not under its current
    `data_name` (arrays of another version of its code, or a file name without a code hash):
    the files deleted. Other files are kept, your own task's among them: which of its
    versions is current is known only by importing it."""
    from tasks import REGISTRY

    today = {task.data_name for task in REGISTRY.values()}
    built_in = re.compile(rf"(?:{'|'.join(map(re.escape, REGISTRY))})(?:-[0-9a-f]{{12}})?")
    stale = []
    for path in sorted(cache_dir.glob("*.npz")) if cache_dir.is_dir() else []:
        name = CACHE_FILE.fullmatch(path.name)
        if name and name["data"] not in today and built_in.fullmatch(name["data"]):
            path.unlink(missing_ok=True)
            stale.append(path)
    return stale
