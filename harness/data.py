"""Train/validation/test arrays for a cell, generated once and cached on disk as .npz.

The cache is keyed by task, length, n, seed and split, so every family of a suite
trains and is tested on exactly the same arrays.
"""

from __future__ import annotations

import os
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
