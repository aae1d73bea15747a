"""What every task is made of: :class:`Example`, :class:`Task`, and the split of the prompt space.

**Disjoint by construction.** In-distribution prompts are partitioned by a hash of their text
(:func:`held_out`): a prompt whose hash falls in the held-out fifth belongs to ``test`` and is never drawn for
``train``, whatever the seed. The out-of-distribution splits lie outside the training sizes on the task's axis,
so they cannot meet the training stream either. ``tests/test_tasks.py`` draws 10,000 training examples per task
and checks that none occurs in any evaluation split.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass, field
from typing import Callable

from ncl.library.symbols import cells, number_cells

#: Every split name a task may have, in table order; ``Task.splits`` lists a task's own.
ALL_SPLITS = ("train", "test", "ood_2x", "ood_4x", "ood_8x")
#: The examples an evaluation split holds by default.
SPLIT_SIZE = 500
_HELD_OUT = 5  #: one prompt in this many is held out for ``test``


def held_out(task: str, prompt: str) -> bool:
    """Whether ``prompt`` belongs to ``task``'s held-out (``test``) part of the prompt space: a stable hash (the
    same on every machine and Python), not a seed."""
    digest = hashlib.sha256(f"{task}\0{prompt}".encode()).digest()
    return int.from_bytes(digest[:8], "little") % _HELD_OUT == 0


@dataclass(frozen=True)
class Example:
    """One task instance.

    Args:
        prompt: the question; every number in it is followed by a character that is not a digit (which ends it
            on the digit tape): the benchmark's prompts are ``"<word> a b ... ="``.
        answer: the answer text.
        program: the library function that computes it.
        numbers: the prompt's numbers in order: the machine's tape holds their digits
            (:func:`ncl.library.symbols.number_cells`), and the tool-use baseline's call passes them.
        size: the example's position on the task's axis (digits, length, depth or nodes).
    """

    prompt: str
    answer: str
    program: str
    numbers: tuple[int, ...]
    size: int

    @property
    def tape(self) -> tuple[int, ...]:
        """The cells the tape writer should produce: each number's digits, then ``SEP``."""
        return tuple(number_cells(self.numbers))

    @property
    def args(self) -> tuple[int, int]:
        """The program's arguments ``(start, length)``: the whole written tape."""
        return 0, len(self.tape)

    @property
    def answer_cells(self) -> tuple[int, ...]:
        """The cells the answer is read from, ending with ``END``."""
        return tuple(cells(self.answer))

    @property
    def call(self) -> str:
        """The tool-use baseline's call text: ``long_add(4071, 98)``."""
        return f"{self.program}({', '.join(map(str, self.numbers))})"


@dataclass(frozen=True)
class Task:
    """A task: its name, prompt word, library program, axis and per-split sizes.

    Args:
        name: the task's name (``ncl train --task``).
        program: the library function that solves it.
        axis: what sizes measure: ``"digits"``, ``"length"``, ``"depth"`` or ``"nodes"``.
        sizes: split → inclusive ``(low, high)`` range on the axis; its keys are the task's splits.
        make: ``make(rng, size)`` → an :class:`Example` of that size.
        segment: ``segment(size)`` → the longest tape segment (digits and separators) an input of that size
            can have.
        n: the machine's value range the program needs at the largest size (its addresses and loop bounds).
    """

    name: str
    program: str
    axis: str
    sizes: dict[str, tuple[int, int]]
    make: Callable[[random.Random, int], Example] = field(repr=False)
    segment: Callable[[int], int] = field(repr=False, default=lambda size: 0)
    n: int = 128

    @property
    def splits(self) -> tuple[str, ...]:
        """The task's splits, in table order."""
        return tuple(s for s in ALL_SPLITS if s in self.sizes)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Every split but ``train``."""
        return tuple(s for s in self.splits if s != "train")

    def size_range(self, split: str) -> tuple[int, int]:
        """The inclusive ``(low, high)`` range of ``split`` on the task's axis."""
        if split not in self.sizes:
            raise ValueError(f"unknown split {split!r} for task {self.name!r}; it has {', '.join(self.splits)}")
        return self.sizes[split]

    def _in_part(self, split: str, e: Example) -> bool:
        if split == "train":
            return not held_out(self.name, e.prompt)
        if split == "test":
            return held_out(self.name, e.prompt)
        return True  # out of distribution: sizes no training example has

    def sample(self, split: str, rng: random.Random) -> Example:
        """One example of ``split`` drawn with ``rng`` (redrawn until it lies in the split's part)."""
        low, high = self.size_range(split)
        while True:
            e = self.make(rng, rng.randint(low, high))
            if self._in_part(split, e):
                return e

    def generate(self, split: str, count: int = SPLIT_SIZE, seed: int = 0) -> list[Example]:
        """``count`` examples of ``split``, reproducible from ``seed``; the evaluation splits hold distinct
        prompts."""
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        self.size_range(split)  # validates the name
        rng = random.Random(f"{self.name}/{split}/{seed}")  # str seeds are hashed deterministically
        if split == "train":
            return [self.sample(split, rng) for _ in range(count)]
        seen, out = set(), []
        for _ in range(100 * count + 1000):
            if len(out) == count:
                break
            e = self.sample(split, rng)
            if e.prompt not in seen:
                seen.add(e.prompt)
                out.append(e)
        else:
            raise RuntimeError(f"{self.name}/{split}: fewer than {count} distinct prompts found")
        return out

    def max_segment(self, split: str) -> int:
        """The longest tape segment an input of ``split`` can have (its numbers' digits and separators), from
        the split's size range alone: what the evaluation sizes the tape and step budget from."""
        return self.segment(self.size_range(split)[1])


#: The last character of every prompt: the answer follows it. The model reads the prompt up to the token before
#: it (its position already predicts the first answer token), so a number must not end the text just before it.
ANSWER_CUE = "="


def fmt(word: str, numbers) -> str:
    """A prompt: ``"<word> a b ... ="``, every number followed by a space (a reader that sees tokens left to
    right then knows where a number ends)."""
    return word + " " + "".join(f"{x} " for x in numbers) + ANSWER_CUE


def cued(text: str) -> str:
    """A natural-language question as a prompt: ``"What is 4 plus 9?"`` → ``"What is 4 plus 9? ="``. Without the
    cue the question's last character would be the first answer position, and a number it ends ("9?") would
    never be closed on the tape."""
    return f"{text} {ANSWER_CUE}"


def as_asked(text: str) -> str:
    """A question as a natural-language task's prompts end: ``text`` with the answer cue (:func:`cued`) unless it
    ends with it already, so that ``ncl trace`` and ``ncl eval --data`` take a question as a user writes it."""
    text = text.rstrip()
    return text if text.endswith(ANSWER_CUE) else cued(text)


def list_text(values) -> str:
    """A list answer: every element followed by a space."""
    return "".join(f"{v} " for v in values)


__all__ = ["ALL_SPLITS", "ANSWER_CUE", "Example", "SPLIT_SIZE", "Task", "as_asked", "cued", "fmt", "held_out",
           "list_text"]
