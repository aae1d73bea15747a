"""Arithmetic expressions as composed problems: ``(4 + 9) * 12 - 5``, ``86 - 5 * 7``, ``4 plus 9 times 12``.

An expression is a chain of calls when each operation has the previous one's result as an operand, which
leaves two shapes. Parentheses stand only where precedence needs them (``*`` binds tighter than ``+`` and
``-``), so the text alone says which shape it is, as a reader of arithmetic knows:

- **left-deep**, ``((a o1 b) o2 c) o3 d``: the calls run in text order and each later call's left operand is
  the previous result, as in ``add 4 and 9, then multiply by 12``. Its steps are ``(4 + 9)``, ``* 12``,
  ``- 5``: the first operation, then one operator and its operand each. The left part is bracketed when its
  top operator binds less tightly than the next one: ``(4 + 9) * 12``, but ``4 * 9 + 12``;
- **right-deep**, ``a o1 (b o2 (c o3 d))``: the innermost operation stands last, so the calls run from the last
  step back to the first, like nested wording (:mod:`ncl.tasks.nested`; ``Composed.nested``), each later call's
  right operand the previous result. Its steps are ``86 -``, ``5 * 7``: an operand and an operator each, then
  the innermost operation. The right part is bracketed unless its top operator binds more tightly
  (``86 - 5 * 7``, but ``86 - (5 + 7)`` and ``4 + (9 + 12)``, which left-deep would read otherwise).

Training also wraps some expressions (:data:`OUTER`) in one more pair of brackets, which change nothing:
``(86 - 5 * 7)`` (:func:`bracketed`). A two-call expression then shows the bracket around a step's first
operand and after its last that only the middle steps of a deeper expression have otherwise
(``81 + (7 + 85 * (3 * 5))``: the step ``7 +`` opens on a bracket), while training still needs two calls.

Each operator is written as a symbol or a word (``+``/``plus``, ``-``/``minus``, ``*``/``times``), drawn per
operator, so one prompt may mix them. Operands are numbers of 1–2 digits, as in :mod:`ncl.tasks.compose`, and no
call's result is negative. Each step phrase but the last ends at a space: that space is the step's end.
"""

from __future__ import annotations

import random
from dataclasses import replace

from ncl.tasks.base import cued
from ncl.tasks.compose import APPLY, BINARY, Call, Composed, answer_text, number, operand_pair
from ncl.tasks.phrasing import perturb

#: Each program's operator: the symbol, then the word.
OPERATORS = {"long_add": ("+", "plus"), "long_sub": ("-", "minus"), "long_mul": ("*", "times")}
#: How tightly each operator binds: a higher one is applied first.
PRECEDENCE = {"long_add": 0, "long_sub": 0, "long_mul": 1}
WORDS = 0.3  #: the chance that an operator is written as its word
OUTER = 0.3  #: the chance that a training expression is wrapped in brackets that change nothing (:func:`bracketed`)
#: Sentences around the expression: the trained ones, then the held-out ones (the ``paraphrase`` split).
WRAPPERS = (("{expr} =", "What is {expr}?", "Compute {expr}.", "Evaluate {expr}."),
            ("Work out {expr}.", "How much is {expr}?"))


def _operator(rng: random.Random, program: str) -> str:
    return OPERATORS[program][rng.random() < WORDS]


def _left_deep(rng: random.Random, calls: int) -> tuple[list[str], list[int], list[Call], int]:
    """Steps, operands (text order), calls and value of ``((a o1 b) o2 c) ...``: call k's left operand is call
    k − 1's result (segment ``P + k − 1`` for P operands)."""
    program = rng.choice(BINARY)
    a, b = operand_pair(rng, program)
    steps, operands, programs = [f"{a} {_operator(rng, program)} {b}"], [a, b], [program]
    value, top = APPLY[program](a, b), program
    for _ in range(calls - 1):
        program = rng.choice(BINARY)
        c = number(rng)
        if program == "long_sub" and c > value:
            c = rng.randint(0, value)
        if PRECEDENCE[top] < PRECEDENCE[program]:  # the left part so far is bracketed
            steps[0] = "(" + steps[0]
            steps[-1] += ")"
        steps.append(f"{_operator(rng, program)} {c}")
        operands.append(c)
        programs.append(program)
        value, top = APPLY[program](value, c), program
    P = len(operands)
    chain = [Call(programs[0], (0, 1))] + [Call(p, (P + k - 1, k + 1)) for k, p in enumerate(programs[1:], 1)]
    return steps, operands, chain, value


def _right_deep(rng: random.Random, calls: int) -> tuple[list[str], list[int], list[Call], int]:
    """Steps, operands (text order), calls and value of ``a o1 (b o2 (c o3 d))``: the calls run from the last
    step back, call k's right operand call k − 1's result."""
    program = rng.choice(BINARY)
    a, b = operand_pair(rng, program)
    # built from the inside out: inner[0] is the innermost step, in execution order
    inner, own, programs = [f"{a} {_operator(rng, program)} {b}"], [[a, b]], [program]
    value, top = APPLY[program](a, b), program
    for _ in range(calls - 1):
        c = number(rng)
        program = rng.choice([p for p in BINARY if p != "long_sub" or c >= value])
        if PRECEDENCE[top] <= PRECEDENCE[program]:  # the right part so far is bracketed
            inner[-1] = "(" + inner[-1]  # the part's first step in the text
            inner[0] += ")"
        inner.append(f"{c} {_operator(rng, program)}")
        own.append([c])
        programs.append(program)
        value, top = APPLY[program](c, value), program
    steps = inner[::-1]
    operands = [x for o in own[::-1] for x in o]
    P = len(operands)
    # call k (execution order) owns the operand at text position calls - 1 - k; call 0 the last two
    chain = [Call(programs[0], (P - 2, P - 1))] + [Call(p, (calls - 1 - k, P + k - 1))
                                                    for k, p in enumerate(programs[1:], 1)]
    return steps, operands, chain, value


def make(rng: random.Random, calls: int, noise: float = 0.0, held: bool = False) -> Composed:
    """An expression of ``calls`` >= 2 operations, left- or right-deep with equal chance, in one of the trained
    wrappers (``held``: the held-out ones) whose words are perturbed at the rate ``noise``
    (:func:`~ncl.tasks.phrasing.perturb`; the expression itself is kept)."""
    if calls < 2:
        raise ValueError(f"an expression problem needs at least 2 calls, got {calls}")
    right = rng.random() < 0.5
    steps, operands, chain, value = (_right_deep if right else _left_deep)(rng, calls)
    wrapper = rng.choice(WRAPPERS[held])
    wrapper = perturb(wrapper, rng, noise) if noise else wrapper
    text = wrapper.format(expr=" ".join(steps))
    text = cued(text[0].upper() + text[1:])
    at, spans = wrapper.index("{expr}"), []
    for step in steps:
        spans.append((at, at + len(step)))
        at += len(step) + 1
    order = spans[::-1] if right else spans  # in execution order
    return Composed(text, answer_text(value), chain[-1].program, tuple(operands), calls, tuple(operands),
                    tuple(chain), tuple(order), nested=right)


def bracketed(e: Composed) -> Composed:
    """``e`` (from :func:`make`) with its whole expression in one more pair of brackets: ``What is (86 - 5 * 7)?``.
    The value, the calls and their order stay; the first step in the text opens with ``(``, the last closes
    with ``)``, and every span moves with its step."""
    first = min(start for start, _ in e.spans)
    last = max(end for _, end in e.spans)
    text = e.prompt[:first] + "(" + e.prompt[first:last] + ")" + e.prompt[last:]
    spans = tuple((start + (start > first), end + 1 + (end == last)) for start, end in e.spans)
    return replace(e, prompt=text, spans=spans)


__all__ = ["OPERATORS", "OUTER", "PRECEDENCE", "WORDS", "WRAPPERS", "bracketed", "make"]
