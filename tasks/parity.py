"""Running parity: the number of 1s seen so far is even or odd (a regular-language task)."""

from tasks.base import Metric, OutputSpec
from tasks.counting import Counting


class Parity(Counting):
    """The parity of the 1s seen so far, at every step: counting modulo 2.

    Input: T tokens "0"/"1", each 1 with probability 1/2. Target at step t: the number
    of 1s in steps 0..t (inclusive) mod 2, so a 1 flips the class and a 0 keeps it.
    Example (T=8): x = 1 1 0 1 0 0 1 1 -> y = 1 0 0 1 1 1 0 1.
    Baseline: the best constant class, whose expected per-step accuracy is computed
    exactly (`constant_class_accuracy` with modulus 2): 1/2 at every step, so 1/2.
    Solved: per-step accuracy >= 0.99. Short lengths share few sequences (2^L) among the
    splits, as in `counting` (the same inputs): L=2 has no val sequence.
    """

    name = "parity"
    description = "running parity of the 1s at every step (per-step classes)"
    output = OutputSpec("per_step_classification", classes=2)
    metric = Metric("accuracy", "max", "per-step accuracy of the running parity")
    modulus = 2
