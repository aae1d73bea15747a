"""The benchmark's tasks: text in, text out, numbers of any length written digit by digit (docs/results.md).

| task | program | axis | train and test | ood_2x / 4x / 8x |
| --- | --- | --- | --- | --- |
| ``long_add``, ``long_sub``, ``long_mul``, ``long_compare`` | schoolbook long arithmetic | digits | 1–5 | 10 / 20 / 40 |
| ``sort``, ``reverse``, ``sum``, ``merge_sort`` | list programs (``merge_sort`` recursive) | length | 1–4 | 8 / 16 / 32 |
| ``palindrome`` | a recursive check | recursion depth | 1–4 | 8 / 16 |
| ``shortest_path``, ``reachable`` | BFS over an edge list | nodes | 3–6 | 12 / 24 |

``mix`` (:mod:`ncl.tasks.mix`) is all of them at once, asked in natural language (:mod:`ncl.tasks.phrasing`);
``compose`` (:mod:`ncl.tasks.compose`) is problems that chain one to four library calls; ``mix_nested`` is
``mix`` with nested wording of composed problems (:mod:`ncl.tasks.nested`) and arithmetic expressions
(:mod:`ncl.tasks.expression`) too.

Every :class:`Example` carries what the machine should receive (the program, the tape's numbers, the answer's
cells) for auxiliary supervision and for the tool-use baseline's call; ``test`` is disjoint from ``train`` by a
hash of the prompt (:func:`~ncl.tasks.base.held_out`), the other splits by size.
"""

from __future__ import annotations

from ncl.tasks import arithmetic, graphs, lists
from ncl.tasks.base import ALL_SPLITS, SPLIT_SIZE, Example, Task, held_out
from ncl.tasks.compose import ComposeTask
from ncl.tasks.mix import MixTask

TASKS: dict[str, Task] = {**arithmetic.TASKS, **lists.TASKS, **graphs.TASKS}
MIX = MixTask(TASKS)
MIX_NESTED = MixTask(TASKS, nested=True)
COMPOSE = ComposeTask()


def names() -> list[str]:
    """Every benchmark task's name (``mix`` and ``compose`` are not: see :func:`all_names`)."""
    return list(TASKS)


def all_names() -> list[str]:
    """Every name :func:`get` knows: the benchmark tasks, then ``mix``, ``compose`` and ``mix_nested``."""
    return list(TASKS) + [MIX.name, COMPOSE.name, MIX_NESTED.name]


def get(name: str) -> Task | MixTask | ComposeTask:
    """The task called ``name``; ``ValueError`` listing the known ones otherwise."""
    if name == MIX.name:
        return MIX
    if name == COMPOSE.name:
        return COMPOSE
    if name == MIX_NESTED.name:
        return MIX_NESTED
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose one of: {', '.join(all_names())}")
    return TASKS[name]


def exact_match(predictions: list[str], examples: list[Example]) -> float:
    """The fraction of ``predictions`` equal to their example's answer (exact string match)."""
    if len(predictions) != len(examples):
        raise ValueError(f"{len(predictions)} predictions for {len(examples)} examples")
    if not examples:
        return float("nan")
    return sum(p == e.answer for p, e in zip(predictions, examples)) / len(examples)


__all__ = ["ALL_SPLITS", "COMPOSE", "ComposeTask", "Example", "MIX", "MIX_NESTED", "MixTask", "SPLIT_SIZE",
           "TASKS", "Task", "all_names", "exact_match", "get", "held_out", "names"]
