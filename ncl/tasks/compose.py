"""Composed problems: several library calls per problem, each call's result feeding a later one, asked in
natural language. This module is the data: the problems, their gold calls and splits. :mod:`ncl.computer.calls`
runs a chain of calls on the soft machine from per-call heads (tested against these gold calls), and
:mod:`ncl.computer.call_heads` are the model's heads for it (docs/language.md).

A problem is a chain of :class:`Call`\\ s. Its **segments** are the prompt's operands, in the order the text gives
them (a number, or a list of numbers), then each call's result: a call's arguments are segment indices, so
``add 4 and 9, then multiply the result by 12`` is ``long_add(#0, #1)``, ``long_mul(#2, #3)`` over the segments
``4``, ``9``, ``12`` and the first call's result (#3). The first call takes its operands from the prompt; each
later one takes the previous result and, for a binary program, one new operand, on either side.

Programs: ``long_add``, ``long_sub`` (never negative: a chain feeds its result on), ``long_mul``, ``list_sort``,
``list_reverse``, ``merge_sort`` and ``list_sum`` (a list to a number). Operands are numbers of 1–2 digits or
lists of 2–4 elements from 0..99, so the values stay within what the tasks train on.

Splits: ``train`` and ``test`` hold problems of 1 or 2 calls (disjoint by the hash of the prompt, as
:func:`~ncl.tasks.base.held_out`); ``compose_3`` and ``compose_4`` need 3 and 4 calls. Each step is worded by one
of several phrases; the wrapper around the steps comes from the trained set, or for ``paraphrase`` from the
held-out one. Training perturbs its wrapper's wording (:func:`~ncl.tasks.phrasing.perturb`), and ``mix`` ends
some training problems' steps with a clause of filler words (:func:`chatter`).
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from ncl.tasks.base import SPLIT_SIZE, Example, cued, held_out, list_text
from ncl.tasks.phrasing import NOISE, filler, perturb

NAME = "compose"
CALLS = {"train": (1, 2), "test": (1, 2), "paraphrase": (1, 2), "compose_3": (3, 3), "compose_4": (4, 4)}

#: What each program does to its arguments' values (numbers are ints, lists tuples).
APPLY = {"long_add": lambda x, y: x + y, "long_sub": lambda x, y: x - y, "long_mul": lambda x, y: x * y,
         "list_sort": lambda v: tuple(sorted(v)), "list_reverse": lambda v: tuple(reversed(v)),
         "merge_sort": lambda v: tuple(sorted(v)), "list_sum": lambda v: sum(v)}
BINARY = ("long_add", "long_sub", "long_mul")
LIST_OPS = ("list_sort", "list_reverse", "merge_sort")

#: How each call is worded: the first call over its operands (``{a}``, ``{b}``, ``{list}``), then a later call
#: on the previous result (``{b}``: its new operand, if any).
FIRST = {"long_add": ("add {a} and {b}", "take {a} plus {b}"),
         "long_sub": ("subtract {b} from {a}", "take {a} minus {b}"),
         "long_mul": ("multiply {a} by {b}", "take {a} times {b}"),
         "list_sort": ("sort {list}", "put {list} in order"),
         "list_reverse": ("reverse {list}", "write {list} backwards"),
         "merge_sort": ("merge sort {list}", "sort {list} with merge sort"),
         "list_sum": ("add up {list}", "take the total of {list}")}
THEN_LEFT = {"long_add": ("add {b}", "add {b} to it"), "long_sub": ("subtract {b}", "take away {b}"),
             "long_mul": ("multiply it by {b}", "multiply by {b}")}  # result op operand
THEN_RIGHT = {"long_add": ("add it to {b}",), "long_sub": ("subtract it from {b}",),
              "long_mul": ("multiply {b} by it",)}  # operand op result
THEN_UNARY = {"list_sort": ("sort it", "sort the result"), "list_reverse": ("reverse it", "reverse the result"),
              "merge_sort": ("merge sort it", "merge sort the result"),
              "list_sum": ("add up its elements", "take its total")}
#: Sentences around the steps: the trained ones, then the held-out ones (the ``paraphrase`` split).
WRAPPERS = (("{steps}.", "First {steps}. What is the answer?", "Please {steps}.", "{steps}; what do you get?"),
            ("Could you {steps}?", "Your job: {steps}, and report the result."))
JOIN = (", then ", ", and then ")
#: How :func:`chatter`'s clause joins the last step: like :data:`JOIN` but for its last word.
CHATTER_JOIN = (", and ", ", ")


@dataclass(frozen=True)
class Call:
    """One library call: ``program`` on the segments ``args`` (prompt operands, then earlier results)."""

    program: str
    args: tuple[int, ...]


@dataclass(frozen=True)
class Composed(Example):
    """A composed problem: an :class:`~ncl.tasks.Example` (``program``: the last call's; ``numbers``: every
    prompt number in order; ``size``: the number of calls) with its ``operands`` (an int for a number, a tuple
    for a list), its ``calls`` and where each call's step phrase stands in the prompt (``spans``)."""

    operands: tuple = ()
    calls: tuple[Call, ...] = ()
    #: each call's step phrase in the prompt: ``(first character, end)``, for the heads' reading labels
    spans: tuple[tuple[int, int], ...] = ()
    #: whether the text names the calls last first (:mod:`ncl.tasks.nested`): its steps run in reverse order
    nested: bool = False

    @property
    def call(self) -> str:
        """The tool-use text of the calls, ``#k`` naming the result of call k (from 1), a list operand written
        out: ``long_add(4, 9); long_mul(#1, 12)`` (:func:`ncl.training.tooluse.run_calls` runs it)."""
        def arg(k):
            if k >= len(self.operands):
                return f"#{k - len(self.operands) + 1}"
            o = self.operands[k]
            return ", ".join(map(str, o)) if isinstance(o, tuple) else str(o)

        return "; ".join(f"{c.program}({', '.join(arg(a) for a in c.args)})" for c in self.calls)


def values(e: Composed) -> list:
    """Every segment's value: the operands (an int, or a tuple for a list), then each call's result."""
    out = list(e.operands)
    for c in e.calls:
        out.append(APPLY[c.program](*(out[a] for a in c.args)))
    return out


def answer_text(value) -> str:
    """A result as the answer prints it: a number, or a list with every element followed by a space."""
    return list_text(value) if isinstance(value, tuple) else str(value)


def number(rng: random.Random) -> int:
    """A number operand: from 0..99, or with chance 0.3 from 0..9."""
    return rng.randrange(100) if rng.random() < 0.7 else rng.randrange(10)


def operand_pair(rng: random.Random, program: str) -> tuple[int, int]:
    """A binary ``program``'s two operands (:func:`number`), the larger first for ``long_sub``: no result is
    negative."""
    a, b = number(rng), number(rng)
    return (max(a, b), min(a, b)) if program == "long_sub" else (a, b)


def short_list(rng: random.Random) -> tuple[int, ...]:
    """A list operand: 2–4 elements from 0..99."""
    return tuple(rng.randrange(100) for _ in range(rng.randint(2, 4)))


def make(rng: random.Random, calls: int, wrappers: tuple[str, ...], noise: float = 0.0) -> Composed:
    """A problem of ``calls`` chained calls, worded with one of ``wrappers``, its words perturbed at the rate
    ``noise`` (:func:`~ncl.tasks.phrasing.perturb`; the steps' own words are kept, as they carry the calls)."""
    operands, steps, chain = [], [], []
    kind = rng.choice(("number", "list"))
    first = rng.choice(BINARY if kind == "number" else LIST_OPS + ("list_sum",))
    if first in BINARY:
        a, b = operand_pair(rng, first)
        phrase = rng.choice(FIRST[first])
        swapped = phrase.index("{b}") < phrase.index("{a}")  # "subtract {b} from {a}": b comes first
        operands += [b, a] if swapped else [a, b]
        steps.append(phrase.format(a=a, b=b))
        chain.append(Call(first, (1, 0) if swapped else (0, 1)))
        value = APPLY[first](a, b)
    else:
        v = short_list(rng)
        operands.append(v)
        steps.append(rng.choice(FIRST[first]).format(list=" ".join(map(str, v))))
        chain.append(Call(first, (0,)))
        value = APPLY[first](v)
    for _ in range(calls - 1):
        if isinstance(value, tuple):
            program = rng.choice(LIST_OPS + ("list_sum",))
            steps.append(rng.choice(THEN_UNARY[program]))
            args = (None,)
        else:
            program = rng.choice(BINARY)
            b = number(rng)
            right = rng.random() < 0.3 and (program != "long_sub" or b >= value)
            if program == "long_sub" and not right and b > value:
                b = rng.randint(0, value)
            steps.append(rng.choice((THEN_RIGHT if right else THEN_LEFT)[program]).format(b=b))
            operands.append(b)
            args = (len(operands) - 1, None) if right else (None, len(operands) - 1)
        chain.append(Call(program, args))
        x = [value if a is None else operands[a] for a in args]
        value = APPLY[program](*x)
    # segments: the operands, then the results; None (the previous result) becomes its segment
    P = len(operands)
    calls_ = tuple(Call(c.program, tuple(P + i - 1 if a is None else a for a in c.args)) for i, c in enumerate(chain))
    wrapper = rng.choice(wrappers)
    wrapper = perturb(wrapper, rng, noise) if noise else wrapper
    join = rng.choice(JOIN)
    text = wrapper.format(steps=join.join(steps))
    text = cued(text[0].upper() + text[1:])
    at, spans = wrapper.index("{steps}"), []
    for step in steps:
        spans.append((at, at + len(step)))
        at += len(step) + len(join)
    numbers = tuple(x for o in operands for x in (o if isinstance(o, tuple) else (o,)))
    return Composed(text, answer_text(value), calls_[-1].program, numbers, calls, tuple(operands), calls_,
                    tuple(spans))


def chatter(e: Composed, rng: random.Random) -> Composed:
    """``e`` with a clause of 1-3 filler words (:func:`~ncl.tasks.phrasing.filler`, never English) after its
    last step, joined as a step is but without ``then``: ``Sort 5 3 9, then reverse it, and bcd gh. =``. The
    trained wrappers end their steps with a full stop, a question mark or a semicolon; with this clause a
    comma followed by ``and`` is not by itself a step end, and the step-end gate has to read on to ``then``
    (docs/language.md). The calls, operands and step spans stay: the clause follows every step."""
    at = max(end for _, end in e.spans)
    clause = rng.choice(CHATTER_JOIN) + " ".join(filler(rng) for _ in range(rng.randint(1, 3)))
    return replace(e, prompt=e.prompt[:at] + clause + e.prompt[at:])


def sample(split: str, rng: random.Random) -> Composed:
    """One problem of ``split`` (:data:`CALLS`) drawn with ``rng``; ``train`` and ``test`` keep to their side of
    the prompt hash (:func:`~ncl.tasks.base.held_out`), and ``train``'s wrapper is perturbed (:data:`NOISE`)."""
    if split not in CALLS:
        raise ValueError(f"unknown split {split!r} for composed problems; they have {', '.join(CALLS)}")
    low, high = CALLS[split]
    while True:
        e = make(rng, rng.randint(low, high), WRAPPERS[split == "paraphrase"], NOISE if split == "train" else 0.0)
        if split not in ("train", "test") or held_out(NAME, e.prompt) == (split == "test"):
            return e


def generate(split: str, count: int = SPLIT_SIZE, seed: int = 0) -> list[Composed]:
    """``count`` problems of ``split`` (:data:`CALLS`), reproducible from ``seed``; an evaluation split's prompts
    are distinct."""
    if split not in CALLS:
        raise ValueError(f"unknown split {split!r} for composed problems; they have {', '.join(CALLS)}")
    rng = random.Random(f"{NAME}/{split}/{seed}")
    seen, out = set(), []
    for _ in range(100 * count + 1000):
        if len(out) == count:
            break
        e = sample(split, rng)
        if split == "train" or e.prompt not in seen:
            seen.add(e.prompt)
            out.append(e)
    else:
        raise RuntimeError(f"{NAME}/{split}: fewer than {count} distinct prompts found")
    return out


class ComposeTask:
    """The composed problems as a task (``ncl train --task compose``), with :class:`~ncl.tasks.Task`'s interface
    for training and evaluation: :meth:`sample`, :meth:`generate`, :attr:`eval_splits`, :meth:`size_range`
    (sizes are call counts), :meth:`max_segment`, ``n``, and ``calls``: the chain a model needs (K = 4, the
    longest evaluation split's) and ``slots``."""

    name = NAME
    axis = "calls"
    n = 256  #: the value range: the digit tape's symbols, addresses and digit sums fit
    calls = max(high for _, high in CALLS.values())
    slots = 2  #: argument slots per call: every composed call takes one or two operands
    #: The longest tape any call of a problem can get: a product of five 2-digit numbers (10 digits) and a
    #: 2-digit operand, each with its SEP, or a 4-element list (12 cells); results grow, so this bounds the
    #: machine's tape and steps, not the prompt.
    call_tape = 16

    @property
    def splits(self) -> tuple[str, ...]:
        return tuple(CALLS)

    @property
    def eval_splits(self) -> tuple[str, ...]:
        return tuple(s for s in CALLS if s != "train")

    def size_range(self, split: str) -> tuple[int, int]:
        if split not in CALLS:
            raise ValueError(f"unknown split {split!r} for task {NAME!r}; it has {', '.join(CALLS)}")
        return CALLS[split]

    def max_segment(self, split: str) -> int:
        self.size_range(split)
        return self.call_tape

    def sample(self, split: str, rng: random.Random) -> Composed:
        return sample(split, rng)

    def generate(self, split: str, count: int = SPLIT_SIZE, seed: int = 0) -> list[Composed]:
        return generate(split, count, seed)


__all__ = ["APPLY", "CALLS", "CHATTER_JOIN", "Call", "ComposeTask", "Composed", "NAME", "answer_text", "chatter",
           "generate", "make", "number", "operand_pair", "sample", "short_list", "values"]
