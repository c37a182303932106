"""The task contract: what every benchmark task declares and provides.

A task is a small class: its input and output specs, its primary metric with
direction, its trivial baseline, its "solved" bar, and a vectorised,
deterministic `generate(n, length, seed, split)`. Scoring helpers shared by all
tasks live here so no task re-implements a metric. Tasks import nothing from the
harness: bad input raises `TaskError`, which the harness reports as a user error.

Splits hold distinct examples. A task's space of input sequences at a length is shared
out once among train, val and test, 70/15/15, by a hash of each sequence's bytes
(`row_hashes`, `split_of`), the same for every seed: `generate` keeps only the rows its
split owns, so no val or test row is ever a train row (of any seed, whatever n_train),
and val and test hold each sequence at most once, in the order drawn. Train may repeat
rows. Where a split owns fewer distinct sequences than the n asked for (short lengths of
small vocabularies, see `Task.generate`), val and test hold all of them, fewer than n;
one that owns none raises `TaskError`. A task on a fixed set of examples (digits) keeps
its splits apart itself (`Task.own_splits`).
"""

from __future__ import annotations

import functools
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
"""The splits a task generates; each gets its own generator and its own part of the space
of sequences (no example is in two splits)."""
SPLIT_SHARES = (70, 15, 15)
"""Percent of the space of input sequences each split owns (`split_of`), as SPLITS: the
70/15/15 of digits' split by image."""
EXHAUSTED = 20
"""Val and test stop drawing, holding every sequence their split owns, after this many times
(rows held + 1) draws of their split in a row that were all repeats: were one left unseen,
a uniform draw would have missed it with probability below e^-20 (2e-9)."""
ROUND_ELEMENTS = 1 << 24
"""Most input elements drawn in one round of `Task.generate` (64 MB of float32): rows past
what a split keeps are drawn and dropped a round at a time, never all at once."""


def split_seed(seed: int, split: str) -> int:
    """The generator seed of one split of a search seed: distinct and stable."""
    return seed * len(SPLITS) + SPLITS.index(split)


# -- which split owns a sequence: a stable hash of its bytes --------------------------

_HASH_SEED = np.uint64(0x5EED_0F_5B11_75)
_GOLDEN = np.uint64(0x9E37_79B9_7F4A_7C15)
_MIX = (np.uint64(0xBF58_476D_1CE4_E5B9), np.uint64(0x94D0_49BB_1331_11EB))
_BOUNDS = np.array(
    [(1 << 64) * sum(SPLIT_SHARES[: i + 1]) // 100 for i in range(len(SPLITS) - 1)],
    dtype=np.uint64,
)


def _mix(z: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, in place on a uint64 array: every output bit depends on every
    input bit."""
    z ^= z >> np.uint64(30)
    z *= _MIX[0]
    z ^= z >> np.uint64(27)
    z *= _MIX[1]
    z ^= z >> np.uint64(31)
    return z


@functools.lru_cache(maxsize=8)
def _hash_keys(words: int) -> np.ndarray:
    """One fixed odd 64-bit key per word position of a row (splitmix64 of the position)."""
    keys = _mix(np.arange(1, words + 1, dtype=np.uint64) * _GOLDEN ^ _HASH_SEED) | np.uint64(1)
    keys.flags.writeable = False
    return keys


def row_hashes(x: np.ndarray) -> np.ndarray:
    """A 64-bit hash of each row's bytes (`x[i]` whole, little-endian), vectorised: equal rows
    hash equal. A multilinear hash (the row's 8-, 4- or 1-byte words times fixed odd keys,
    summed modulo 2^64), then mixed; the same on every machine and numpy version."""
    rows = np.ascontiguousarray(x)
    rows = rows.reshape(len(rows), -1)
    rows = rows.astype(rows.dtype.newbyteorder("<"), copy=False).view(np.uint8)
    size = rows.shape[1]
    words = rows.view(np.uint64 if size % 8 == 0 else np.uint32 if size % 4 == 0 else np.uint8)
    return _mix(words @ _hash_keys(words.shape[1]))


def _row_pair(found) -> bool:
    """Whether `_generate` returned (x, y), arrays of as many rows."""
    if not (isinstance(found, tuple) and len(found) == 2):
        return False
    x, y = found
    return isinstance(x, np.ndarray) and isinstance(y, np.ndarray) and len(x) == len(y) > 0


def split_of(hashes: np.ndarray) -> np.ndarray:
    """The index in SPLITS of the split that owns each hashed row: the hash's place in
    [0, 2^64), cut SPLIT_SHARES percent apart."""
    return np.searchsorted(_BOUNDS, hashes, side="right")


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


def meets(score: float, bar: float, direction: Direction) -> bool:
    """The one definition of solved, for a seed's score, early stopping and every verdict: a
    finite score at or past the bar in the metric's good direction."""
    score = float(score)
    return math.isfinite(score) and (score <= bar if direction == "min" else score >= bar)


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
        """True when `score` reaches `bar` (`meets`)."""
        return meets(score, bar, self.direction)

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
    own_splits: ClassVar[bool] = False
    """True for a task on a fixed set of examples that keeps its splits apart itself
    (digits): `generate` hands `n` to `_generate` as it is, which must draw each split from
    its own examples, val and test each example at most once. False (generated tasks):
    `generate` keeps the splits apart by hash (see the module's docstring)."""

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

        Synthetic tasks draw every split alike, from the task's distribution (`generate`
        keeps the rows each split owns); a task on a fixed set of examples (`own_splits`)
        draws each split from its own part of the set.
        """

    def generate(self, n: int, length: int, seed: int, split: str) -> tuple[np.ndarray, np.ndarray]:
        """`n` examples of `split` at `length`, deterministic for (`n`, `length`, `seed`,
        `split`): (x, y) as float32/int32 arrays.

        The rows are the task's distribution restricted to the sequences `split` owns
        (`split_of`, 70/15/15 of the space): drawn in rounds, the other splits' rows
        dropped; val and test drop repeats too. Where the space at `length` is small, val
        and test may own fewer than `n` distinct sequences: they then hold all of them, once
        each, in the order drawn (fewer rows than `n`, as digits' 269 test images), and a
        split that owns none raises TaskError. Distinct sequences at a length: counting and
        parity 2^L, first_token 8^L, assoc_recall 921,600 at L=8 (more beyond), copy 8^10
        whatever the delay, listops and adding too many to matter. So val and test hold
        fewer than 1,024 rows only for counting and parity up to L=12 and first_token up to
        L=4 (a few lengths more for larger n), and counting and parity at L=2 have no val
        sequence: tests/test_splits.py checks the counts.
        """
        self.check_length(length)
        if not 1 <= n <= MAX_EXAMPLES:
            raise TaskError(f"n={n} is out of range: accepted 1..{MAX_EXAMPLES}")
        if split not in SPLITS:
            raise TaskError(f"unknown split '{split}': accepted {', '.join(SPLITS)}")
        rng = np.random.default_rng(split_seed(seed, split))
        if self.own_splits:
            return self._generate(n, length, rng, split)
        return self._draw_split(n, length, rng, split)

    def sample(self, n: int, length: int, seed: int, split: str = "test"):
        """`n` draws from the task's distribution at `length`, splits not kept apart (rows may
        repeat, and be any split's): for what depends on the distribution alone, such as a
        measured baseline; train and score on `generate`'s."""
        self.check_length(length)
        return self._generate(n, length, np.random.default_rng(split_seed(seed, split)), split)

    def _draw_split(self, n: int, length: int, rng: np.random.Generator, split: str):
        """`generate` of a task whose splits are kept apart by hash: rounds of `_generate`,
        each sized for what is still missing, keeping the rows `split` owns (val and test:
        only rows not kept before), until `n` rows or, for val and test, every row the split
        owns (EXHAUSTED); a split that owns no row drawn at all raises TaskError."""
        share, wanted = SPLIT_SHARES[SPLITS.index(split)] / 100, SPLITS.index(split)
        distinct = split != "train"
        most = max(1, ROUND_ELEMENTS // (self.sequence_steps(length) * max(1, self.input.width)))
        x_out = y_out = None
        have = repeats = stale = 0
        kept = drawn = np.empty(0, dtype=np.uint64)  # hashes: rows kept; rows drawn while none
        while have < n:
            need = n - have
            rows = min(most, math.ceil(need / share + 4 * math.sqrt(need / share)) + 8)
            found = self._generate(rows, length, rng, split)
            if not _row_pair(found):  # left to the contract's check (tasks.check_task) to name
                return found
            x, y = found
            hashes = row_hashes(x)
            mine = split_of(hashes) == wanted
            new = mine.copy()
            if distinct:
                first = np.zeros(len(x), dtype=bool)
                first[np.unique(hashes, return_index=True)[1]] = True
                new &= first & ~np.isin(hashes, kept)
            taken = np.flatnonzero(new)[:need]
            if taken.size:
                if x_out is None:
                    x_out = np.empty((n, *x.shape[1:]), dtype=x.dtype)
                    y_out = np.empty((n, *y.shape[1:]), dtype=y.dtype)
                x_out[have : have + taken.size] = x[taken]
                y_out[have : have + taken.size] = y[taken]
                have += taken.size
                if distinct:
                    kept = np.union1d(kept, hashes[taken])
                    repeats = int(np.count_nonzero(mine[taken[-1] + 1 :]))
            else:
                repeats += int(np.count_nonzero(mine))
            if distinct and have and repeats >= EXHAUSTED * (have + 1):
                return x_out[:have].copy(), y_out[:have].copy()  # all the split owns
            if not have:  # none of the split's yet: does it own any?
                unique, first = np.unique(hashes, return_index=True)
                fresh = ~np.isin(unique, drawn)
                stale = len(x) - 1 - int(first[fresh].max()) if fresh.any() else stale + len(x)
                drawn = np.union1d(drawn, unique)
                if stale >= EXHAUSTED * (drawn.size + 1):
                    raise TaskError(
                        f"task '{self.name}' has no {split} sequence at length {length}: the "
                        f"{drawn.size} distinct sequences it draws there all belong to other "
                        f"splits (70/15/15 of the space by hash); accepted: a longer length"
                    )
        return x_out, y_out

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
        """Whether `score` at `length` meets the task's bar (`meets`)."""
        return self.metric.meets(score, self.solved_bar(length))

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
