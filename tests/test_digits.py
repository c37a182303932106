"""digits and pdigits: real images, split by image, each pixel held L/64 steps, one fixed
permutation; every property recovered from the generated arrays alone."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tasks import get_task
from tasks.base import SPLITS, LengthError
from tasks.digits import (
    PERMUTATION,
    PERMUTATION_SEED,
    PIXELS,
    images,
    majority_class,
    split_indices,
)

FEW = settings(max_examples=15, deadline=None)
NAMES = ("digits", "pdigits")
SIZES = {"train": 1259, "val": 269, "test": 269}
INVERSE = np.argsort(PERMUTATION)


def dehold(x: np.ndarray) -> np.ndarray:
    """(n, 64k, 1) -> (n, 64) after checking that every pixel is held exactly k steps."""
    n, length, width = x.shape
    assert width == 1 and length % PIXELS == 0
    held = x[..., 0].reshape(n, PIXELS, length // PIXELS)
    assert (held == held[..., :1]).all()
    return held[..., 0]


def identities(rows: np.ndarray) -> np.ndarray:
    """Dataset index of each row of 64 row-by-row pixels (the images are all distinct)."""
    pixels, _ = images()
    index = {pixels[i].tobytes(): i for i in range(len(pixels))}
    assert len(index) == len(pixels)
    return np.array([index[row.astype(np.float32).tobytes()] for row in rows])


def digits_identities(name: str, x: np.ndarray) -> np.ndarray:
    rows = dehold(x)
    return identities(rows[:, INVERSE] if name == "pdigits" else rows)


@pytest.mark.parametrize("name", NAMES)
@FEW
@given(
    n=st.integers(1, 40),
    k=st.integers(1, 5),
    seed=st.integers(0, 2**32 - 1),
    split=st.sampled_from(SPLITS),
)
def test_shapes_ranges_and_labels_match_the_images(name, n, k, seed, split):
    x, y = get_task(name).generate(n, PIXELS * k, seed, split)
    assert x.shape == (n, PIXELS * k, 1) and x.dtype == np.float32
    assert x.min() >= 0 and x.max() <= 1
    assert y.shape == (n,) and y.dtype == np.int32 and y.min() >= 0 and y.max() <= 9
    ids = digits_identities(name, x)  # also: every pixel held exactly k steps
    assert np.array_equal(y, images()[1][ids])
    assert len(set(ids)) == n  # n <= the split's size: no image twice


def test_pixels_are_the_grey_levels_scaled_to_0_1():
    x, _ = get_task("digits").generate(300, PIXELS, 0, "train")
    levels = np.unique(x * 16)
    assert np.allclose(levels, np.round(levels)) and levels.min() == 0 and levels.max() == 16


@pytest.mark.parametrize("name", NAMES)
def test_deterministic_for_seed_and_split(name):
    task = get_task(name)
    x1, y1 = task.generate(20, 128, 5, "val")
    x2, y2 = task.generate(20, 128, 5, "val")
    assert np.array_equal(x1, x2) and np.array_equal(y1, y2)
    assert not np.array_equal(x1, task.generate(20, 128, 6, "val")[0])
    assert not np.array_equal(x1, task.generate(20, 128, 5, "test")[0])


@pytest.mark.parametrize("name", NAMES)
def test_splits_are_disjoint_by_image_and_cover_the_dataset(name):
    task = get_task(name)
    seen = {}
    for split in SPLITS:
        x, _ = task.generate(SIZES[split], 2 * PIXELS, 1, split)
        ids = digits_identities(name, x)
        assert len(set(ids)) == SIZES[split]  # the whole split, each image once
        assert set(ids) == set(split_indices()[split])
        seen[split] = set(ids)
    assert not seen["train"] & seen["val"] and not seen["train"] & seen["test"]
    assert not seen["val"] & seen["test"]
    assert set().union(*seen.values()) == set(range(1797))


def test_split_sizes_are_about_70_15_15_and_stratified():
    labels = images()[1]
    assert {split: len(idx) for split, idx in split_indices().items()} == SIZES
    counts = {s: np.bincount(labels[split_indices()[s]], minlength=10) for s in SPLITS}
    everything = np.bincount(labels, minlength=10)
    assert np.array_equal(counts["train"] + counts["val"] + counts["test"], everything)
    assert np.array_equal(counts["val"], np.round(0.15 * everything))
    assert np.array_equal(counts["test"], np.round(0.15 * everything))


@pytest.mark.parametrize("name", NAMES)
def test_more_examples_than_a_split_repeat_only_training_images(name):
    """Validation and test score each of their images once, however many are asked for;
    training repeats its images past its size."""
    for split in ("val", "test"):
        x, y = get_task(name).generate(2 * SIZES[split] + 7, PIXELS, 3, split)
        ids = digits_identities(name, x)
        assert sorted(ids) == sorted(split_indices()[split])
        assert np.array_equal(y, images()[1][ids])
    size = SIZES["train"]
    ids = digits_identities(name, get_task(name).generate(2 * size + 7, PIXELS, 3, "train")[0])
    times = np.bincount(ids, minlength=1797)[split_indices()["train"]]
    assert times.min() == 2 and times.max() == 3 and (times == 3).sum() == 7


def test_the_permutation_is_fixed_and_a_real_permutation_of_the_64_pixels():
    assert sorted(PERMUTATION) == list(range(PIXELS)) and PERMUTATION != tuple(range(PIXELS))
    # written out in the module; this is where it came from
    assert np.random.RandomState(PERMUTATION_SEED).permutation(PIXELS).tolist() == list(PERMUTATION)
    digits, pdigits = get_task("digits"), get_task("pdigits")
    for length, seed, split in [
        (64, 0, "train"),
        (192, 0, "train"),
        (64, 9, "val"),
        (64, 9, "test"),
    ]:
        plain, labels = digits.generate(25, length, seed, split)
        permuted, permuted_labels = pdigits.generate(25, length, seed, split)
        assert np.array_equal(labels, permuted_labels)
        assert np.array_equal(dehold(permuted)[:, INVERSE], dehold(plain))
        assert np.array_equal(dehold(permuted), dehold(plain)[:, list(PERMUTATION)])
        assert not np.array_equal(dehold(permuted), dehold(plain))


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("length", [1, 63, 65, 100, 127, 200, 320 + 1])
def test_lengths_not_multiples_of_64_are_rejected(name, length):
    with pytest.raises(LengthError, match=f"length {length} is out of range.*in steps of 64"):
        get_task(name).generate(2, length, 0, "train")


def test_accepted_lengths_are_the_multiples_of_64():
    task = get_task("digits")
    for length in (64, 128, 192, 640):
        task.check_length(length)
    assert task.accepted_length(100, round_up=True) == 128
    assert task.accepted_length(100, round_up=False) == 64
    assert task.accepted_length(50, round_up=False) is None
    assert task.max_length % PIXELS == 0


def test_baseline_is_the_exact_majority_frequency_of_the_test_images():
    counts = np.bincount(images()[1][split_indices()["test"]], minlength=10)
    assert majority_class() == (0, 27 / 269) == (int(np.argmax(counts)), counts.max() / 269)
    for name in NAMES:
        task = get_task(name)
        assert task.baseline(64) == task.baseline(640) == pytest.approx(0.1004, abs=1e-4)
        x, y = task.generate(SIZES["test"], 64, 0, "test")  # every test image once
        assert task.scores(y, task.trivial_prediction(x, 64))["accuracy"] == 27 / 269
        assert task.solved_bar(64) == 0.9


def test_the_images_are_scikit_learns_digits():
    from sklearn.datasets import load_digits

    pixels, labels = images()
    data = load_digits()
    assert np.array_equal(pixels, (data.data / 16).astype(np.float32))
    assert np.array_equal(labels, data.target) and labels.dtype == np.int32
