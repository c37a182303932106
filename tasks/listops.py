"""ListOps (Nangia & Bowman 2018) as in Long Range Arena, generated here with brackets kept."""

import json
import math
import random
import statistics
from functools import lru_cache
from pathlib import Path

import numpy as np

from tasks.base import InputSpec, Metric, OutputSpec, Task, masked_accuracy, one_hot

OPERATORS = ("[MIN", "[MAX", "[MED", "[SM")
VOCAB = ("<pad>", *OPERATORS, "]", *(str(d) for d in range(10)))
PAD, FIRST_OP, CLOSE, FIRST_DIGIT = 0, 1, 5, 6
MAX_ARGS = 10  # LRA: 2..10 arguments per operator
MAX_DEPTH = 10  # LRA: operators only above depth 10, so at most 9 nested brackets
OP_PROB = 0.25  # LRA: an argument is an operator with probability 0.25
FILL = 0.9  # the expression takes 90-100% of the length, the rest is padding
BASELINE_SAMPLES, BASELINE_SEED = 2000, 7_654_321


def _capacity(depth: int) -> int:
    """Most tokens an expression starting at `depth` can have (1: a digit only)."""
    return 1 if depth >= MAX_DEPTH else 2 + MAX_ARGS * _capacity(depth + 1)


CAPACITY = tuple(_capacity(d) for d in range(MAX_DEPTH + 2))


def _apply(op: int, args: list[int]) -> int:
    if op == 0:
        return min(args)
    if op == 1:
        return max(args)
    if op == 2:
        ordered, half = sorted(args), len(args) // 2
        return ordered[half] if len(args) % 2 else (ordered[half - 1] + ordered[half]) // 2
    return sum(args) % 10


def _op_args(extra: int, k: int, cap: int) -> tuple[int, int]:
    """Range of how many of k arguments can be operators when they hold k + extra tokens."""
    if extra == 0:
        return 0, 0
    if cap < 4:
        return 1, 0
    return -(-extra // (cap - 1)), min(k, extra // 3)


def _split(total: int, depth: int, rnd: random.Random) -> list[int]:
    """Random sizes (1 for a digit, >= 4 for an operator) of arguments filling `total` tokens."""
    cap = CAPACITY[depth]
    ks = [k for k in range(2, min(MAX_ARGS, total) + 1) if _fits(total - k, k, cap)]
    k = rnd.choice(ks)
    lo, hi = _op_args(total - k, k, cap)
    if hi == 0:
        return [1] * k
    m = min(hi, max(lo, sum(rnd.random() < OP_PROB for _ in range(k))))
    free, room = total - k - 3 * m, cap - 4  # tokens beyond 4 per operator argument
    cuts = sorted(rnd.randint(0, free) for _ in range(m - 1))
    sizes = [b - a for a, b in zip([0, *cuts], [*cuts, free], strict=True)]
    spill = sum(max(0, s - room) for s in sizes)
    sizes = [min(s, room) for s in sizes]
    for i in range(m):  # give what the capacity cut off to arguments with room left
        moved = min(room - sizes[i], spill)
        sizes[i] += moved
        spill -= moved
    parts = [1] * k
    for position, size in zip(rnd.sample(range(k), m), sizes, strict=True):
        parts[position] = 4 + size
    return parts


def _fits(extra: int, k: int, cap: int) -> bool:
    lo, hi = _op_args(extra, k, cap)
    return lo <= hi


def _expression(size: int, depth: int, rnd: random.Random, out: list[int]) -> int:
    """Append an expression of exactly `size` tokens to `out`; return its value."""
    if size == 1:
        digit = int(rnd.random() * 10)
        out.append(FIRST_DIGIT + digit)
        return digit
    op = int(rnd.random() * 4)
    out.append(FIRST_OP + op)
    args = [_expression(part, depth + 1, rnd, out) for part in _split(size - 2, depth + 1, rnd)]
    out.append(CLOSE)
    return _apply(op, args)


def decode(tokens) -> str:
    """Token ids back to expression text, padding dropped: "[MAX 2 9 [MIN 4 7 ] 0 ]"."""
    return " ".join(VOCAB[t] for t in np.asarray(tokens).tolist() if t != PAD)


def encode(text: str, length: int | None = None) -> np.ndarray:
    """Expression text to token ids (int32), padded to `length` when given; inverse of `decode`."""
    unknown = [word for word in text.split() if word not in VOCAB]
    if unknown:
        raise ValueError(f"unknown tokens {unknown} in {text!r}: accepted {' '.join(VOCAB)}")
    ids = [VOCAB.index(word) for word in text.split()]
    if length is not None and len(ids) > length:
        raise ValueError(f"{len(ids)} tokens do not fit in length {length}")
    return np.array(ids + [PAD] * ((length or 0) - len(ids)), dtype=np.int32)


EVALUATORS = {
    "[MIN": min,
    "[MAX": max,
    "[MED": lambda args: math.floor(statistics.median(args)),
    "[SM": lambda args: sum(args) % 10,
}


def evaluate(text: str) -> int:
    """Value of an expression's text, by a stack parser independent of the generator."""
    stack: list[tuple[str, list[int]]] = []
    result = None
    for word in text.split():
        if result is not None:
            raise ValueError(f"text after the end of the expression: {word!r}")
        if word in EVALUATORS:
            stack.append((word, []))
        elif word == "]" and stack and stack[-1][1]:
            op, args = stack.pop()
            value = EVALUATORS[op](args)
            if stack:
                stack[-1][1].append(value)
            else:
                result = value
        elif len(word) == 1 and word.isdigit() and stack:
            stack[-1][1].append(int(word))
        else:
            raise ValueError(f"unexpected {word!r} in {text!r}")
    if result is None:
        raise ValueError(f"incomplete expression: {text!r}")
    return result


# measure_majority_class at the default lengths, kept so that listing tasks generates
# nothing (tests/test_tasks.py measures them again and compares).
MEASURED_MAJORITY = Path(__file__).with_name("listops_majority.json")


def measure_majority_class(length: int) -> tuple[int, float]:
    """The most frequent label at `length` and its frequency, on a fixed-seed sample of the
    task's distribution (`Task.sample`)."""
    _, y = ListOps().sample(BASELINE_SAMPLES, length, BASELINE_SEED, "test")
    counts = np.bincount(y, minlength=10)
    return int(np.argmax(counts)), float(counts.max() / len(y))


@lru_cache(maxsize=32)
def majority_class(length: int) -> tuple[int, float]:
    """measure_majority_class, read from MEASURED_MAJORITY where it holds `length`."""
    label, frequency = json.loads(MEASURED_MAJORITY.read_text()).get(str(length)) or (
        measure_majority_class(length)
    )
    return int(label), float(frequency)


class ListOps(Task):
    """Evaluate a nested list expression; the label is its value, 0..9.

    Operators (LRA's set): MIN, MAX, MED (the median rounded down: the floor of the
    mean of the two middle values for an even count) and SM (sum modulo 10), each with
    2..10 arguments, digits 0..9 as leaves, at most 9 nested brackets. Unlike LRA's
    tokenizer, the brackets are kept as tokens. Each sequence is one expression of
    90-100% of the length (exactly that many tokens), padded with "<pad>" (id 0) after.
    Example: [MAX 2 9 [MIN 4 7 ] 0 ] -> 9;  [SM 3 [MED 1 8 2 6 ] ] -> 3 + 4 = 7.
    `decode`/`encode` map tokens to text and back; `evaluate` is an independent parser.
    Baseline: the majority class measured on a fixed-seed sample of 2000 at each length.
    Solved: accuracy >= 0.9 (a high bar: the best LRA models reach about 0.6 at 2000).
    """

    name = "listops"
    description = "value (0-9) of a nested MIN/MAX/MED/SM expression, brackets kept"
    input = InputSpec("tokens", vocab=VOCAB)
    output = OutputSpec("sequence_classification", classes=10)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max", "accuracy of the predicted value")
    default_lengths = (128, 256, 512, 2000)
    min_length = 16

    def _generate(self, n, length, rng, split):
        x = np.full((n, length), PAD, dtype=np.int32)
        y = np.empty(n, dtype=np.int32)
        rnd = random.Random(int(rng.integers(2**63)))
        shortest = math.ceil(FILL * length)
        for row in range(n):  # one recursive tree per row (variable shapes)
            tokens: list[int] = []
            y[row] = _expression(rnd.randint(shortest, length), 1, rnd, tokens)
            x[row, : len(tokens)] = tokens
        return x, y

    def baseline(self, length):
        return majority_class(length)[1]

    def trivial_prediction(self, x, length):
        return np.broadcast_to(one_hot(np.array(majority_class(length)[0]), 10), (len(x), 10))

    def solved_bar(self, length):
        return 0.9

    def scores(self, y_true, y_pred):
        return {"accuracy": masked_accuracy(y_true, y_pred)}
