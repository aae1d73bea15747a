"""``mix``: every benchmark task at once, asked in natural language (:mod:`ncl.tasks.phrasing`), for one model
that must infer from the wording which program to run.

Splits:

- ``train``: a task drawn uniformly, a training problem of it (:meth:`Task.sample`), asked with one of its
  trained templates, its wording perturbed (words deleted, consonant fillers inserted);
- ``test``: every task's held-out problems (the same hash partition as the task's own ``test``) under the trained
  templates, the tasks in equal shares;
- ``paraphrase``: held-out problems under templates training never uses;
- ``TASK/SPLIT`` for every task and each of its evaluation splits (``long_add/ood_4x``): that split's problems
  under the trained templates.

Disjoint by construction: training only asks problems that are in their task's training part, so a ``test`` or
``paraphrase`` prompt (a held-out problem) and an out-of-distribution one (a size no training problem has) never
occur in training; ``paraphrase`` prompts also use wording that training never shows.
"""

from __future__ import annotations

import random

from ncl.tasks.base import SPLIT_SIZE, Example, Task
from ncl.tasks.phrasing import NOISE, perturb, phrase, templates

NAME = "mix"


class MixTask:
    """The ``mix`` task over ``tasks`` (name → :class:`~ncl.tasks.Task`), its training wording perturbed at the
    rate ``noise`` (:func:`~ncl.tasks.phrasing.perturb`; 0: the templates as written), with
    :class:`~ncl.tasks.Task`'s interface: :meth:`sample`, :meth:`generate`, :attr:`eval_splits`,
    :meth:`size_range`, :meth:`max_segment` and ``n`` (the largest value range any of its tasks needs)."""

    name = NAME
    axis = "task"

    def __init__(self, tasks: dict[str, Task], noise: float = NOISE):
        self.tasks = dict(tasks)
        self.noise = noise
        self.n = max(t.n for t in self.tasks.values())

    @property
    def splits(self) -> tuple[str, ...]:
        """``train``, ``test``, ``paraphrase``, then ``TASK/SPLIT`` for every task's evaluation splits."""
        return ("train", "test", "paraphrase") + tuple(f"{name}/{s}" for name, t in self.tasks.items()
                                                       for s in t.eval_splits)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Every split but ``train``."""
        return self.splits[1:]

    def _parts(self, split: str) -> list[tuple[str, str, bool]]:
        """``(task, its split, held-out templates)`` choices a ``split`` example is drawn from."""
        if split not in self.splits:
            raise ValueError(f"unknown split {split!r} for task 'mix'; it has train, test, paraphrase and "
                             f"TASK/SPLIT, e.g. {self.splits[3]}")
        if split in ("train", "test"):
            return [(name, split, False) for name in self.tasks]
        if split == "paraphrase":
            return [(name, "test", True) for name in self.tasks]
        name, inner = split.split("/", 1)
        return [(name, inner, False)]

    def size_range(self, split: str) -> tuple[int, int]:
        """The sizes ``split``'s problems have on their own task's axis (the union over its tasks)."""
        ranges = [self.tasks[name].size_range(inner) for name, inner, _ in self._parts(split)]
        return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)

    def max_segment(self, split: str) -> int:
        """The longest tape segment any problem of ``split`` can have."""
        return max(self.tasks[name].max_segment(inner) for name, inner, _ in self._parts(split))

    def sample(self, split: str, rng: random.Random) -> Example:
        """One example of ``split``: a task, a problem of it, a template, all drawn with ``rng``; a training
        template's wording perturbed (:func:`~ncl.tasks.phrasing.perturb`, at the task's ``noise`` rate)."""
        name, inner, held = rng.choice(self._parts(split))
        template = rng.choice(templates(name, held))
        if split == "train" and self.noise:
            template = perturb(template, rng, self.noise)
        return phrase(name, self.tasks[name].sample(inner, rng), template)

    def generate(self, split: str, count: int = SPLIT_SIZE, seed: int = 0) -> list[Example]:
        """``count`` examples of ``split``, reproducible from ``seed``; an evaluation split's prompts are distinct
        and its tasks come in equal shares (in turn)."""
        if not isinstance(count, int) or count < 0:
            raise ValueError(f"count must be an int >= 0, got {count!r}")
        parts = self._parts(split)
        rng = random.Random(f"{NAME}/{split}/{seed}")
        if split == "train":
            return [self.sample(split, rng) for _ in range(count)]
        seen, out = set(), []
        for i in range(100 * count + 1000):
            if len(out) == count:
                break
            name, inner, held = parts[len(out) % len(parts)]
            e = phrase(name, self.tasks[name].sample(inner, rng), rng.choice(templates(name, held)))
            if e.prompt not in seen:
                seen.add(e.prompt)
                out.append(e)
        else:
            raise RuntimeError(f"mix/{split}: fewer than {count} distinct prompts found")
        return out


__all__ = ["NAME", "MixTask"]
