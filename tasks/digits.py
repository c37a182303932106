"""Sequential digits: scikit-learn's 8x8 handwritten digits read pixel by pixel.

The small cousin of sequential MNIST (28x28, 784 steps), the real-data task of the
TCN (Bai et al. 2018) and unitary-RNN (Arjovsky et al. 2016) papers, and of its
permuted variant. The images ship inside scikit-learn's wheel (no download).
"""

import importlib.util
from functools import lru_cache
from pathlib import Path
from typing import ClassVar

import numpy as np

from tasks.base import (
    MAX_LENGTH,
    SPLITS,
    InputSpec,
    Metric,
    OutputSpec,
    Task,
    masked_accuracy,
    one_hot,
)

PIXELS = 64
CLASSES = 10
GREY_LEVELS = 16  # pixel values are 0..16
HELD_OUT = 0.15  # of each class's images, for val and for test each: about 70/15/15
SPLIT_SEED = 20_240_601
"""Seed of the fixed split: numpy's legacy RandomState, whose streams numpy keeps frozen."""
PERMUTATION_SEED = 1_234_567
"""Seed that derived PERMUTATION: `np.random.RandomState(PERMUTATION_SEED).permutation(64)`."""
# fmt: off
PERMUTATION = (
    4, 49, 61, 47, 59, 56, 3, 25, 46, 1, 37, 51, 55, 62, 10, 17,
    21, 43, 54, 42, 31, 29, 50, 24, 38, 41, 28, 9, 44, 15, 16, 8,
    0, 12, 20, 40, 23, 57, 33, 53, 22, 39, 36, 7, 18, 63, 30, 27,
    60, 2, 48, 45, 11, 35, 26, 14, 13, 58, 32, 34, 5, 6, 52, 19,
)
# fmt: on
"""pdigits' pixel order, written out so it never changes: step t reads pixel PERMUTATION[t]
(pixels numbered row by row, 0..63)."""


@lru_cache(maxsize=1)
def images() -> tuple[np.ndarray, np.ndarray]:
    """All 1,797 images as (1797, 64) float32 pixels in [0, 1] (row by row) and int32 labels.

    Read from the file scikit-learn ships and `sklearn.datasets.load_digits` reads (64
    pixel columns, then the label), found without importing scikit-learn, whose import
    alone takes over a second (`harness tasks` prints this task's baseline).
    """
    found = importlib.util.find_spec("sklearn")
    if found is None or found.origin is None:
        raise RuntimeError("the digits tasks need scikit-learn: pip install scikit-learn")
    table = np.loadtxt(Path(found.origin).parent / "datasets" / "data" / "digits.csv.gz",
                       delimiter=",")  # fmt: skip
    pixels = (table[:, :PIXELS].astype(np.float32) / GREY_LEVELS).reshape(-1, PIXELS)
    return pixels, table[:, PIXELS].astype(np.int32)


@lru_cache(maxsize=1)
def split_indices() -> dict[str, np.ndarray]:
    """Image indices of each split, fixed once and disjoint, stratified by class.

    Each class's images (in the dataset's order) are shuffled by RandomState(SPLIT_SEED);
    the first round(15%) go to test, the next round(15%) to val, the rest to train.
    Sizes: train 1,259, val 269, test 269 (70/15/15).
    """
    _, labels = images()
    shuffle = np.random.RandomState(SPLIT_SEED)
    parts: dict[str, list[np.ndarray]] = {split: [] for split in SPLITS}
    for label in range(CLASSES):
        members = np.flatnonzero(labels == label)[shuffle.permutation(int((labels == label).sum()))]
        held = round(HELD_OUT * len(members))
        parts["test"].append(members[:held])
        parts["val"].append(members[held : 2 * held])
        parts["train"].append(members[2 * held :])
    return {split: np.sort(np.concatenate(parts[split])) for split in SPLITS}


@lru_cache(maxsize=1)
def majority_class() -> tuple[int, float]:
    """The most frequent class among the test split's images (lowest id on a tie) and its
    exact frequency there."""
    counts = np.bincount(images()[1][split_indices()["test"]], minlength=CLASSES)
    return int(np.argmax(counts)), float(counts.max() / counts.sum())


def draw(n: int, size: int, rng: np.random.Generator, repeat: bool = True) -> np.ndarray:
    """`n` positions in 0..size-1: without replacement when n <= size; beyond, with `repeat`,
    one fresh shuffle of all `size` after another, so each image appears n // size or
    n // size + 1 times (every draw is uniform over the split); without it, all `size` once
    each, in an order drawn from `rng` (fewer than `n`)."""
    rounds = -(-n // size) if repeat else 1
    return np.concatenate([rng.permutation(size) for _ in range(rounds)])[:n]


class Digits(Task):
    """Classify a handwritten digit (8x8, 16 grey levels) read one pixel per step.

    Input: the 64 pixels row by row, scaled to [0, 1], one real feature per step; length
    L = 64k holds each pixel for k steps (L=128: p0 p0 p1 p1 ... p63 p63).
    Example (a 2x2 "image" instead of 8x8, k=2): pixels [[0, 16], [8, 4]] ->
    x = 0 0 1 1 .5 .5 .25 .25 -> the image's digit.
    Splits are by image, fixed once (see `split_indices`): of each class, 15% test, 15%
    val, the rest train; 1,259 / 269 / 269 images. A split's n examples are its images
    drawn with `rng` without replacement when n <= its size. Val and test hold each of
    their images at most once: a larger n gives all 269, in an order drawn from `rng`
    (so the test score counts every test image once). Train repeats its images (and
    only those) past 1,259, each n // size or n // size + 1 times.
    Baseline: the majority class of the test split's 269 images, exact: class 0, 27/269 ~
    0.1004 (nine classes tie at 27 there, the lowest id wins; class 8 has 26). The trivial
    predictor outputs it, one-hot.
    Solved: accuracy >= 0.9, far above chance (0.1) and below what the images allow, so it
    says "learned the digits" and leaves room to fail by forgetting. Measured on the test
    split (2-core CPU, JAX, one run each, Adam 3e-3, batch 32, the 1,259 training images):
    an MLP (128 units) on the 64 pixels at once 0.98; a GRU read pixel by pixel at L=64,
    32 units for 40 epochs 0.90, 64 units for 100 epochs 0.95 (pdigits 0.77 and 0.87:
    harder, as permuted MNIST is); at L=256 the 32-unit GRU reached only 0.54 in 40 epochs.
    """

    name = "digits"
    description = (
        "sklearn 8x8 digits, one pixel per L/64 steps; fixed split by image 1259/269/269, "
        "val and test each image once, train repeats past 1259 (sequence class)"
    )
    length_meaning = "time steps: 64 pixels, each held L/64 steps"
    input = InputSpec("real", width=1)
    output = OutputSpec("sequence_classification", classes=CLASSES)
    loss = "sparse_categorical_crossentropy"
    metric = Metric("accuracy", "max", "accuracy of the predicted digit")
    default_lengths = (64, 128, 256, 512)
    min_length = PIXELS
    max_length = MAX_LENGTH // PIXELS * PIXELS
    length_step = PIXELS
    order: ClassVar[tuple[int, ...] | None] = None
    """Pixel order of the steps; None reads row by row."""
    own_splits = True

    def _generate(self, n, length, rng, split):
        pixels, labels = images()
        members = split_indices()[split]
        chosen = members[draw(n, len(members), rng, repeat=split == "train")]
        x = pixels[chosen]
        if self.order is not None:
            x = x[:, np.asarray(self.order)]
        x = np.repeat(x, length // PIXELS, axis=1)[..., None]
        return np.ascontiguousarray(x, dtype=np.float32), labels[chosen].copy()

    def baseline(self, length):
        return majority_class()[1]

    def trivial_prediction(self, x, length):
        return np.broadcast_to(one_hot(np.array(majority_class()[0]), CLASSES), (len(x), CLASSES))

    def solved_bar(self, length):
        return 0.9

    def scores(self, y_true, y_pred):
        return {"accuracy": masked_accuracy(y_true, y_pred)}


class PermutedDigits(Digits):
    """`digits` with its 64 pixels read in one fixed random order (permuted sequential MNIST).

    Step t reads pixel PERMUTATION[t] (written out in this module; derived once from
    `np.random.RandomState(1234567).permutation(64)`), the same for every split, length
    and seed; then each pixel is held L/64 steps as in `digits`.
    Example (k=1): x_t = pixel PERMUTATION[t] = 4, 49, 61, ... of the row-by-row image.
    The permutation scatters neighbouring pixels across the sequence, so strokes are no
    longer local in time. Splits, baseline (class 0, 27/269) and solved bar (0.9) as in
    `digits`; a 64-unit GRU reached 0.87 at L=64 in 100 epochs (digits: 0.95).
    """

    name = "pdigits"
    description = (
        "digits with its pixels in one fixed permuted order (permuted sequential MNIST), "
        "same splits (sequence class)"
    )
    order = PERMUTATION
