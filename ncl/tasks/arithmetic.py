"""True integer arithmetic on numbers of any length, written digit by digit: ``long_add``, ``long_sub``,
``long_mul``, ``long_compare``.

The axis is the digit count of the longer operand: 1–5 in training and ``test``, exactly 10, 20 and 40 at
``ood_2x``, ``ood_4x`` and ``ood_8x``; the other operand has 1 to that many digits.
"""

from __future__ import annotations

import random

from ncl.tasks.base import Example, Task, fmt

#: Digit counts per split (the training maximum is 5).
DIGIT_SIZES = {"train": (1, 5), "test": (1, 5), "ood_2x": (10, 10), "ood_4x": (20, 20), "ood_8x": (40, 40)}


def random_number(rng: random.Random, digits: int) -> int:
    """A number of exactly ``digits`` digits (0 counts as one digit)."""
    return rng.randrange(10 ** (digits - 1), 10 ** digits) if digits > 1 else rng.randrange(10)


def operands(rng: random.Random, size: int) -> tuple[int, int]:
    """Two operands: one of ``size`` digits, the other of 1..``size``, in random order."""
    a, b = random_number(rng, size), random_number(rng, rng.randint(1, size))
    return (a, b) if rng.random() < 0.5 else (b, a)


def _binary(name: str, word: str, op, n: int = 128) -> Task:
    def make(rng: random.Random, size: int) -> Example:
        a, b = operands(rng, size)
        return Example(fmt(word, (a, b)), str(op(a, b)), name, (a, b), size)

    return Task(name, name, "digits", DIGIT_SIZES, make, segment=lambda size: 2 * size + 2, n=n)


def _compare_task() -> Task:
    def make(rng: random.Random, size: int) -> Example:
        kind = rng.randrange(3)
        if kind == 2:
            a, b = operands(rng, size)
        else:  # equal (a third of the answers), or the same length differing in one digit, which the
            # comparison must read up to: both have `size` digits, so no size meets another split's
            a = random_number(rng, size)
            digits = list(str(a))
            if kind == 1:
                i = rng.randrange(len(digits))
                digits[i] = rng.choice([d for d in "0123456789"
                                        if d != digits[i] and not (i == 0 and d == "0" and len(digits) > 1)])
            a, b = (a, int("".join(digits))) if rng.random() < 0.5 else (int("".join(digits)), a)
        answer = "<" if a < b else ">" if a > b else "="
        return Example(fmt("cmp", (a, b)), answer, "long_compare", (a, b), size)

    return Task("long_compare", "long_compare", "digits", DIGIT_SIZES, make, segment=lambda size: 2 * size + 2)


TASKS = {
    "long_add": _binary("long_add", "add", lambda a, b: a + b),
    "long_sub": _binary("long_sub", "sub", lambda a, b: a - b),
    "long_mul": _binary("long_mul", "mul", lambda a, b: a * b, n=256),  # the product's 80 digits need > 128 cells
    "long_compare": _compare_task(),
}

__all__ = ["DIGIT_SIZES", "TASKS", "operands", "random_number"]
