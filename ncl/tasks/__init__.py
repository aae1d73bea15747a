"""Algorithmic tasks for the augmented model (issue 7): text in, text out, numbers in decimal digits.

Every task has a seeded generator and four splits with the same names (so results tables line up):

- ``train`` and ``test``: the training distribution (disjoint seeds, not disjoint sets: the spaces are small);
- ``ood_2x``: twice the training size along the task's axis;
- ``ood_4x``: four times it.

The axis is the list length (``sort``, ``reverse``, ``sum``), the recursion depth (``fib``: its argument), or the
operand size (``add``, ``sub``, ``mul``, ``gcd``: operands below 32 in training, in ``[32, 64)`` at 2x and
``[64, 128)`` at 4x, which also brings the first 3-digit numbers). ``Task.sizes(split)`` gives the range.

Format: ``"<word> a b ... ="`` (every number is followed by a space, so a reader that sees tokens left to right
knows where a number ends) and the answer ``"r"`` for a scalar or ``"x y z "`` for a list (each element
followed by a space). Arithmetic is modulo 128.

Each :class:`Example` also carries what the machine should receive (program, arguments, tape), which the
trainer may use for auxiliary supervision, and ``size`` (its position on the axis) for plots.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Callable

N = 128  #: values are in Z_128
SPLITS = ("train", "test", "ood_2x", "ood_4x")


@dataclass(frozen=True)
class Example:
    """One task instance.

    ``prompt`` (ends with ``"="``) and ``answer`` are text; ``program`` is the library function that computes
    it, ``args`` its register arguments (r1, r2, ...), ``tape`` the numbers of the prompt in order (what the
    tape writes should append), ``size`` its value on the task's axis.
    """

    prompt: str
    answer: str
    program: str
    args: tuple[int, ...]
    tape: tuple[int, ...]
    size: int


@dataclass(frozen=True)
class Task:
    """A task: its name, library program, axis, and per-split size ranges.

    ``sizes[split] = (low, high)`` inclusive; ``make(rng, size)`` builds an :class:`Example`.
    """

    name: str
    program: str
    axis: str
    sizes: dict[str, tuple[int, int]]
    make: Callable[[random.Random, int], Example] = field(repr=False)

    def sample(self, split: str, rng: random.Random) -> Example:
        """One example of ``split`` drawn with ``rng``."""
        low, high = self.size_range(split)
        return self.make(rng, rng.randint(low, high))

    def size_range(self, split: str) -> tuple[int, int]:
        """The inclusive ``(low, high)`` range of ``split`` on the task's axis."""
        if split not in SPLITS:
            raise ValueError(f"unknown split {split!r}; every task has {', '.join(SPLITS)}")
        return self.sizes[split]

    def generate(self, split: str, count: int, seed: int = 0) -> list[Example]:
        """``count`` examples of ``split``, reproducible from ``seed`` (splits use different streams)."""
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        self.size_range(split)  # validates the name
        rng = random.Random(f"{self.name}/{split}/{seed}")  # str seeds are hashed deterministically
        return [self.sample(split, rng) for _ in range(count)]


def _fmt(word: str, numbers) -> str:
    return word + " " + "".join(f"{x} " for x in numbers) + "="


def _list_answer(values) -> str:
    return "".join(f"{v} " for v in values)


def _arith(name: str, op: Callable[[int, int], int]) -> Task:
    def make(rng: random.Random, size: int) -> Example:
        # size is the operand bound's exponent: operands lie in [size_low, size_high) (see _OPERAND_RANGES)
        low, high = _OPERAND_RANGES[size]
        a, b = rng.randrange(low, high), rng.randrange(0, high)
        if rng.random() < 0.5:
            a, b = b, a
        return Example(_fmt(name, (a, b)), str(op(a, b) % N), name, (a, b), (a, b), max(a, b))

    return Task(name, name, "operand", {"train": (0, 0), "test": (0, 0), "ood_2x": (1, 1), "ood_4x": (2, 2)},
                make)


#: operand ranges per arithmetic size class: the larger operand lies in [low, high); the other in [0, high).
_OPERAND_RANGES = {0: (0, 32), 1: (32, 64), 2: (64, 128)}


def _gcd_task() -> Task:
    def make(rng: random.Random, size: int) -> Example:
        low, high = _OPERAND_RANGES[size]
        # draw a common factor often, or gcd is almost always 1
        g = rng.choice([1, 1, 2, 3, 4, 5, 6, 7, 8])
        a = rng.randrange(max(low, 1), high)
        b = rng.randrange(1, high)
        if g > 1:  # round both to multiples of g, keeping a in [low, high)
            up = -(-a // g) * g
            a = up if up < high else (a // g) * g
            b = max(g, (b // g) * g)
        if rng.random() < 0.5:
            a, b = b, a
        return Example(_fmt("gcd", (a, b)), str(math.gcd(a, b)), "gcd", (a, b), (a, b), max(a, b))

    return Task("gcd", "gcd", "operand", {"train": (0, 0), "test": (0, 0), "ood_2x": (1, 1), "ood_4x": (2, 2)},
                make)


def _fib(k: int) -> int:
    a, b = 0, 1
    for _ in range(k):
        a, b = b, a + b
    return a % N


def _fib_task() -> Task:
    def make(rng: random.Random, size: int) -> Example:
        return Example(_fmt("fib", (size,)), str(_fib(size)), "fib", (size,), (size,), size)

    # depth = k; training k <= 4 (<= 91 machine steps), 2x: 5..8, 4x: 9..16 (fib(16) takes ~1e4 steps)
    return Task("fib", "fib", "depth", {"train": (0, 4), "test": (0, 4), "ood_2x": (5, 8), "ood_4x": (9, 16)},
                make)


def _list_task(name: str, program: str, answer: Callable[[list[int]], str], max_train: int = 4) -> Task:
    def make(rng: random.Random, size: int) -> Example:
        values = [rng.randrange(N) for _ in range(size)]
        return Example(_fmt(name, values), answer(values), program, (0, size), tuple(values), size)

    # 2x and 4x are exactly twice and four times the longest training length
    return Task(name, program, "length", {"train": (1, max_train), "test": (1, max_train),
                                          "ood_2x": (2 * max_train, 2 * max_train),
                                          "ood_4x": (4 * max_train, 4 * max_train)}, make)


TASKS: dict[str, Task] = {
    "add": _arith("add", lambda a, b: a + b),
    "sub": _arith("sub", lambda a, b: a - b),
    "mul": _arith("mul", lambda a, b: a * b),
    "fib": _fib_task(),
    "sort": _list_task("sort", "insertion_sort", lambda v: _list_answer(sorted(v))),
    "reverse": _list_task("reverse", "reverse", lambda v: _list_answer(v[::-1])),
    "sum": _list_task("sum", "sum", lambda v: str(sum(v) % N)),
    "gcd": _gcd_task(),
}


def names() -> list[str]:
    """Every task name."""
    return list(TASKS)


def get(name: str) -> Task:
    """The task called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(TASKS)}")
    return TASKS[name]


def exact_match(predictions: list[str], examples: list[Example]) -> float:
    """The fraction of ``predictions`` equal to their example's answer (exact string match)."""
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    if not examples:
        return float("nan")
    return sum(p == e.answer for p, e in zip(predictions, examples)) / len(examples)


__all__ = ["Example", "Task", "TASKS", "SPLITS", "names", "get", "exact_match", "N"]
