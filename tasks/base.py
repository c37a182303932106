"""The task contract: what every benchmark task declares and provides.

A task is a small class: its input and output specs, its primary metric with
direction, its trivial baseline, its "solved" bar, and a vectorised,
deterministic `generate(n, length, seed, split)`. Scoring helpers shared by all
tasks live here so no task re-implements a metric. Tasks import nothing from the
harness: bad input raises `TaskError`, which the harness reports as a user error.
"""

from __future__ import annotations

import math
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import ClassVar, Literal

import numpy as np

InputKind = Literal["real", "tokens"]
OutputKind = Literal["regression", "sequence_classification", "per_step_classification"]
Direction = Literal["min", "max"]

IGNORE = -1
"""Target value of a per-step position that is not scored (the loss ignores it)."""

MAX_LENGTH = 100_000
MAX_EXAMPLES = 10_000_000
SPLITS = ("train", "val", "test")
"""The splits a task generates; each gets its own generator, and real-data tasks keep
their examples apart (no example is in two splits)."""


def split_seed(seed: int, split: str) -> int:
    """The generator seed of one split of a search seed: distinct and stable."""
    return seed * len(SPLITS) + SPLITS.index(split)


@dataclass(frozen=True)
class InputSpec:
    """Real features of a given width, or tokens from a vocabulary (index = token id)."""

    kind: InputKind
    width: int = 0
    vocab: tuple[str, ...] = ()

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def describe(self) -> str:
        if self.kind == "real":
            return f"real x{self.width}"
        return f"tokens ({self.vocab_size})"


@dataclass(frozen=True)
class OutputSpec:
    """Regression to one number, one class per sequence, or one class per step."""

    kind: OutputKind
    classes: int = 0

    def describe(self) -> str:
        if self.kind == "regression":
            return "regression"
        short = "per-step" if self.kind == "per_step_classification" else "sequence"
        return f"{short} class ({self.classes})"


@dataclass(frozen=True)
class Metric:
    """A named score with the direction in which it improves."""

    name: str
    direction: Direction
    description: str = ""

    def better(self, a: float, b: float) -> bool:
        """True when score `a` is strictly better than score `b`."""
        return a < b if self.direction == "min" else a > b

    def meets(self, score: float, bar: float) -> bool:
        """True when `score` reaches `bar` (at or past it in the good direction)."""
        return score <= bar if self.direction == "min" else score >= bar

    @property
    def worst(self) -> float:
        """A finite worst-case value (used for diverged trials)."""
        return 1e9 if self.direction == "min" else -1e9


class TaskError(ValueError):
    """Bad input to a task (a name, length, count or split): the CLI's exit code 2."""


class LengthError(TaskError):
    """A length the task cannot take."""


@dataclass(frozen=True)
class TaskInfo:
    """The table row a task prints about itself."""

    name: str
    description: str
    length_meaning: str
    input: str
    output: str
    metric: str
    direction: str
    baseline: float
    solved: float
    default_lengths: tuple[int, ...]
    vocab: tuple[str, ...] = field(default_factory=tuple)


class Task(ABC):
    """One benchmark task. Subclasses set the class attributes and implement the methods."""

    name: ClassVar[str]
    description: ClassVar[str]
    length_meaning: ClassVar[str] = "number of time steps"
    input: ClassVar[InputSpec]
    output: ClassVar[OutputSpec]
    loss: ClassVar[str]
    """Keras loss: "mse" or "sparse_categorical_crossentropy" (IGNORE targets are skipped)."""
    metric: ClassVar[Metric]
    extra_metrics: ClassVar[tuple[Metric, ...]] = ()
    default_lengths: ClassVar[tuple[int, ...]]
    min_length: ClassVar[int] = 2
    max_length: ClassVar[int] = MAX_LENGTH
    length_step: ClassVar[int] = 1
    """Accepted lengths are the multiples of this between min_length and max_length."""
    hindsight: ClassVar[str] = ""
    """Why a bidirectional model has it easier on this task; a task that says so gets the
    report's hindsight section (forward versus bidirectional families by length)."""

    @property
    def data_name(self) -> str:
        """The name its cached data is filed under: its name (a plug-in's import path) and the
        hash of the code that generates it (tasks/source.py), so an edit is never served stale
        arrays."""
        from tasks.source import source_hash

        return f"{self.name.replace(':', '-')}-{source_hash(type(self))}"

    # -- data ---------------------------------------------------------------
    @abstractmethod
    def _generate(
        self, n: int, length: int, rng: np.random.Generator, split: str
    ) -> tuple[np.ndarray, np.ndarray]:
        """Sample `n` examples of `length` for `split` with `rng` (validated arguments).

        Synthetic tasks draw every split alike (each split's `rng` differs); a task on a
        fixed set of examples draws each split from its own part of the set.
        """

    def generate(self, n: int, length: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        """`n` examples of `split` at `length`, deterministic for (`seed`, `split`):
        (x, y) as float32/int32 arrays."""
        self.check_length(length)
        if not 1 <= n <= MAX_EXAMPLES:
            raise TaskError(f"n={n} is out of range: accepted 1..{MAX_EXAMPLES}")
        if split not in SPLITS:
            raise TaskError(f"unknown split '{split}': accepted {', '.join(SPLITS)}")
        return self._generate(n, length, np.random.default_rng(split_seed(seed, split)), split)

    def sequence_steps(self, length: int) -> int:
        """Number of input time steps for a task length (differs from it for `copy`)."""
        return length

    def check_length(self, length: int) -> None:
        if not self.min_length <= length <= self.max_length or length % self.length_step:
            step = f" in steps of {self.length_step}" if self.length_step > 1 else ""
            raise LengthError(
                f"length {length} is out of range for task '{self.name}': "
                f"accepted {self.min_length}..{self.max_length}{step} ({self.length_meaning})"
            )

    def accepted_length(self, length: float, round_up: bool) -> int | None:
        """The accepted length nearest `length` from above (or from below); None outside."""
        step = self.length_step
        found = (math.ceil(length / step) if round_up else math.floor(length / step)) * step
        lowest, highest = math.ceil(self.min_length / step) * step, self.max_length
        return found if lowest <= found <= highest else None

    # -- scores ---------------------------------------------------------------
    @abstractmethod
    def baseline(self, length: int) -> float:
        """The trivial predictor's primary score at `length`."""

    @abstractmethod
    def trivial_prediction(self, x: np.ndarray, length: int) -> np.ndarray:
        """What the trivial predictor outputs for inputs `x` (same form as a model's output)."""

    @abstractmethod
    def solved_bar(self, length: int) -> float:
        """The primary score that counts as solved at `length`."""

    @abstractmethod
    def scores(self, y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
        """Primary and extra scores of predictions (regression values or class probabilities)."""

    def is_solved(self, score: float, length: int) -> bool:
        return bool(np.isfinite(score)) and self.metric.meets(score, self.solved_bar(length))

    def info(self, length: int | None = None) -> TaskInfo:
        length = length or self.default_lengths[0]
        return TaskInfo(
            name=self.name,
            description=self.description,
            length_meaning=self.length_meaning,
            input=self.input.describe(),
            output=self.output.describe(),
            metric=self.metric.name,
            direction=self.metric.direction,
            baseline=float(self.baseline(length)),
            solved=float(self.solved_bar(length)),
            default_lengths=tuple(self.default_lengths),
            vocab=self.input.vocab,
        )


# -- your own classes, by import path -----------------------------------------


def is_import_path(name: str) -> bool:
    """Whether a task or family name is an import path, `package.module:ClassName`."""
    return ":" in name


def load_class(path: str, base: type) -> type:
    """The class at `package.module:ClassName`, a subclass of `base`; ValueError with one
    line naming what is wrong otherwise (tasks and search_spaces load plug-ins with it).

    The folder you run in is importable, as under `python -m harness`, also from the
    installed `harness` script (whose own folder is first on sys.path instead)."""
    import importlib
    import sys

    module_name, _, class_name = path.partition(":")
    if not module_name or not class_name.isidentifier():
        raise ValueError(f"'{path}' is not an import path: accepted package.module:ClassName")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except Exception as error:
        raise ValueError(f"cannot import '{path}': {type(error).__name__}: {error}") from None
    found = getattr(module, class_name, None)
    if not (isinstance(found, type) and issubclass(found, base)):
        raise ValueError(
            f"'{path}' is not a subclass of {base.__module__}.{base.__name__} (found {found!r})"
        )
    return found


def plugin_call(step: str, function: Callable, *args):
    """`function(*args)` where it runs a plug-in's own code: whatever it raises becomes a
    ValueError of one line naming `step` and the exception (the contract checks use it)."""
    try:
        return function(*args)
    except Exception as error:
        lines = str(error).strip().splitlines()
        raise ValueError(
            f"{step} raised {type(error).__name__}" + (f": {lines[0]}" if lines else "")
        ) from None


# -- shared numpy scoring helpers ---------------------------------------------


def mse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    return float(np.mean((np.asarray(y_pred, np.float64).reshape(y_true.shape) - y_true) ** 2))


def masked_accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Accuracy over scored positions (targets != IGNORE), pooled over all of them.

    The one definition of accuracy: a row with more scored steps weighs more. Training
    and the search's objective use the same, written in keras.ops
    (search_spaces.layers.PooledMetric).
    """
    mask = y_true != IGNORE
    hits = (np.argmax(probs, axis=-1) == y_true) & mask
    return float(hits.sum() / max(mask.sum(), 1))


def sequence_accuracy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Fraction of sequences whose every scored step is right."""
    mask = y_true != IGNORE
    hits = (np.argmax(probs, axis=-1) == y_true) | ~mask
    return float(np.mean(np.all(hits.reshape(len(y_true), -1), axis=1)))


def cross_entropy(y_true: np.ndarray, probs: np.ndarray) -> float:
    """Mean negative log-likelihood (nats) over scored positions."""
    mask = y_true != IGNORE
    picked = np.take_along_axis(probs, np.where(mask, y_true, 0)[..., None], axis=-1)[..., 0]
    nll = -np.log(np.clip(picked, 1e-12, 1.0))
    return float(nll[mask].mean())


def one_hot(classes: np.ndarray, depth: int) -> np.ndarray:
    """Class ids as probability vectors (how a trivial classifier 'predicts')."""
    return np.eye(depth, dtype=np.float32)[classes]


# -- shared generation helpers ----------------------------------------------

CHUNK_ELEMENTS = 1 << 20
"""Rows per generation chunk = CHUNK_ELEMENTS // length (a few MB of float32 per chunk)."""


def worker_count() -> int:
    """CPU cores this process may use (threads for chunked generation)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def fill_row_chunks(
    n: int,
    length: int,
    rng: np.random.Generator,
    fill: Callable[[int, int, np.random.Generator], None],
) -> None:
    """Call `fill(lo, hi, chunk_rng)` for consecutive row chunks [lo, hi) of `n` rows, in threads.

    Chunk boundaries depend only on (n, length) and every chunk gets its own generator
    spawned from `rng`, so the data is the same whatever the thread count; numpy's
    generators and ufuncs release the GIL, so the chunks really run in parallel.
    """
    rows = max(1, CHUNK_ELEMENTS // max(length, 1))
    starts = range(0, n, rows)
    children = rng.spawn(len(starts))
    jobs = [(lo, min(n, lo + rows), child) for lo, child in zip(starts, children, strict=True)]
    workers = min(worker_count(), len(jobs))
    if workers <= 1:
        for job in jobs:
            fill(*job)
        return
    with ThreadPoolExecutor(workers) as pool:
        for _ in pool.map(lambda job: fill(*job), jobs):
            pass
