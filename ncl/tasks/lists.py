"""Lists of numbers 0–99 (``sort``, ``reverse``, ``sum``, ``merge_sort``) and a recursive test on one long
number (``palindrome``).

Lists: the axis is the length, 1–4 in training and ``test``, exactly 8, 16 and 32 at ``ood_2x``/``4x``/``8x``.
``sum`` is the true integer sum (up to 3,168). ``merge_sort`` runs a recursive program, so its recursion depth
grows with the length.

``palindrome``: the axis is the recursion depth of the program, ``ceil(digits / 2)``: 1–4 in training and
``test`` (1–8 digits), exactly 8 and 16 at ``ood_2x`` and ``ood_4x`` (15–16 and 31–32 digits). Half the
examples are palindromes; the other half differ from one in a single digit, so the answer depends on every pair.
"""

from __future__ import annotations

import random

from ncl.tasks.base import Example, Task, fmt, list_text

LENGTH_SIZES = {"train": (1, 4), "test": (1, 4), "ood_2x": (8, 8), "ood_4x": (16, 16), "ood_8x": (32, 32)}
DEPTH_SIZES = {"train": (1, 4), "test": (1, 4), "ood_2x": (8, 8), "ood_4x": (16, 16)}
MAX_VALUE = 99  #: list elements are 0..99


def _list_task(name: str, word: str, program: str, answer) -> Task:
    def make(rng: random.Random, size: int) -> Example:
        values = tuple(rng.randint(0, MAX_VALUE) for _ in range(size))
        return Example(fmt(word, values), answer(values), program, values, size)

    return Task(name, program, "length", LENGTH_SIZES, make, segment=lambda size: 3 * size)


def _palindrome_task() -> Task:
    def make(rng: random.Random, size: int) -> Example:
        digits = 2 * size - rng.randrange(2)  # depth ceil(digits / 2) = size
        half = [rng.randrange(10) for _ in range((digits + 1) // 2)]
        half[0] = rng.randrange(1, 10) if digits > 1 else half[0]
        text = half + half[:digits // 2][::-1]
        if rng.random() < 0.5:  # one digit changed: not a palindrome unless it is the middle one
            i = rng.randrange(digits)
            text[i] = rng.choice([d for d in range(10) if d != text[i] and not (i == 0 and d == 0 and digits > 1)])
        s = "".join(map(str, text))
        return Example(fmt("pal", (int(s),)), str(int(s == s[::-1])), "palindrome", (int(s),), size)

    return Task("palindrome", "palindrome", "depth", DEPTH_SIZES, make, segment=lambda size: 2 * size + 1)


TASKS = {
    "sort": _list_task("sort", "sort", "list_sort", lambda v: list_text(sorted(v))),
    "reverse": _list_task("reverse", "reverse", "list_reverse", lambda v: list_text(v[::-1])),
    "sum": _list_task("sum", "sum", "list_sum", lambda v: str(sum(v))),
    "merge_sort": _list_task("merge_sort", "msort", "merge_sort", lambda v: list_text(sorted(v))),
    "palindrome": _palindrome_task(),
}

__all__ = ["DEPTH_SIZES", "LENGTH_SIZES", "MAX_VALUE", "TASKS"]
