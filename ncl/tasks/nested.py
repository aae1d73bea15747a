"""Nested wording of composed problems: ``add 7 to the product of 36 and 12``, ``the total of the reverse of 5 3
9``, where a call's result is named by a noun phrase inside the next call's words.

Such text names its calls outermost first, so the calls run in the **reverse** order of their phrases: the last
phrase (``the product of 36 and 12``) is call 1, the one before it (``add 7 to``) call 2, on call 1's result. A
chain model (:mod:`ncl.computer.call_heads`, ``ComputerConfig.nesting``) reads such a prompt's steps from the
last back to the first.

The calls are those of :mod:`ncl.tasks.compose` (the same programs, operands of 1–2 digits or lists of 2–4
elements): call 1 takes its operands from its own phrase; each later call takes the previous result and, for a
binary program, one new operand that its phrase names before the result's phrase. Each phrase but the last ends
where the next begins with ``the``: that space is the step's end.
"""

from __future__ import annotations

import random

from ncl.tasks.base import cued
from ncl.tasks.compose import (APPLY, BINARY, LIST_OPS, Call, Composed, answer_text, number, operand_pair,
                               short_list)
from ncl.tasks.phrasing import perturb

#: Call 1's phrase, over its own operands (the innermost, last in the text).
INNER = {"long_add": ("the sum of {a} and {b}",), "long_sub": ("the difference of {a} and {b}",),
         "long_mul": ("the product of {a} and {b}",),
         "list_sort": ("the sorted version of {list}",), "list_reverse": ("the reverse of {list}",),
         "merge_sort": ("the merge sort of {list}",), "list_sum": ("the total of {list}", "the sum of {list}")}
#: A later call named as a noun, the previous result's phrase after it: ``{b}`` its new operand, then the result.
NOUN = {"long_add": ("the sum of {b} and",), "long_sub": ("the difference of {b} and",),
        "long_mul": ("the product of {b} and",),
        "list_sort": ("the sorted version of",), "list_reverse": ("the reverse of",),
        "merge_sort": ("the merge sort of",), "list_sum": ("the total of", "the sum of")}
#: The last call as a verb (the outermost phrase, first in the text). ``subtract {b} from`` is the result minus
#: ``b``; every other binary takes ``b`` first.
VERB = {"long_add": ("add {b} to",), "long_sub": ("subtract {b} from",), "long_mul": ("multiply {b} by",),
        "list_sort": ("sort",), "list_reverse": ("reverse",), "merge_sort": ("merge sort",),
        "list_sum": ("add up",)}
#: Sentences around a verb phrase, and around a noun phrase (the last call named as a noun too): the trained
#: ones, then the held-out ones (the ``paraphrase`` split).
VERB_WRAPPERS = (("{steps}.", "Please {steps}.", "{steps}; what do you get?"),
                 ("Could you {steps}?", "I need you to {steps}."))
NOUN_WRAPPERS = (("What is {steps}?", "Compute {steps}.", "Tell me {steps}."),
                 ("Find {steps}.", "Give me {steps}, please."))


def make(rng: random.Random, calls: int, noise: float = 0.0, held: bool = False) -> Composed:
    """A nested problem of ``calls`` >= 2 calls in one of the trained wrappers (``held``: the held-out ones),
    its wrapper's words perturbed at the rate ``noise``
    (:func:`~ncl.tasks.phrasing.perturb`; the phrases' own words are kept, as they carry the calls)."""
    if calls < 2:
        raise ValueError(f"a nested problem needs at least 2 calls, got {calls}")
    verb = rng.random() < 0.5
    # in execution order: each call's program, its phrase, its operands in the phrase's text order, and whether
    # the previous result is its first argument (``subtract {b} from``: the result minus b)
    programs, phrases, own, result_first = [], [], [], [False]
    if rng.random() < 0.5:
        program = rng.choice(BINARY)
        a, b = operand_pair(rng, program)
        programs.append(program)
        phrases.append(rng.choice(INNER[program]).format(a=a, b=b))
        own.append([a, b])
        value = APPLY[program](a, b)
    else:
        program = rng.choice(LIST_OPS + ("list_sum",))
        v = short_list(rng)
        programs.append(program)
        phrases.append(rng.choice(INNER[program]).format(list=" ".join(map(str, v))))
        own.append([v])
        value = APPLY[program](v)
    for k in range(1, calls):
        last = k == calls - 1
        table = VERB if last and verb else NOUN
        if isinstance(value, tuple):
            program = rng.choice(LIST_OPS + ("list_sum",))
            phrases.append(rng.choice(table[program]))
            own.append([])
            first = False
            value = APPLY[program](value)
        else:
            b = number(rng)
            choices = [p for p in BINARY if p != "long_sub" or table is VERB or b >= value]
            program = rng.choice(choices)
            first = program == "long_sub" and table is VERB
            if first:
                b = min(b, value)  # the result minus b stays >= 0
            phrases.append(rng.choice(table[program]).format(b=b))
            own.append([b])
            value = APPLY[program](value, b) if first else APPLY[program](b, value)
        programs.append(program)
        result_first.append(first)
    # the text names the calls last first; operands are numbered in text order
    order = list(range(calls - 1, -1, -1))
    operands, index = [], {}
    for k in order:
        index[k] = list(range(len(operands), len(operands) + len(own[k])))
        operands += own[k]
    P = len(operands)
    chain = [Call(programs[0], tuple(index[0]))]
    for k in range(1, calls):
        result = P + k - 1
        args = (result,) if not index[k] else ((result, index[k][0]) if result_first[k] else (index[k][0], result))
        chain.append(Call(programs[k], args))
    wrapper = rng.choice((VERB_WRAPPERS if verb else NOUN_WRAPPERS)[held])
    wrapper = perturb(wrapper, rng, noise) if noise else wrapper
    steps = " ".join(phrases[k] for k in order)
    text = wrapper.format(steps=steps)
    text = cued(text[0].upper() + text[1:])
    at, starts = wrapper.index("{steps}"), {}
    for k in order:
        starts[k] = at
        at += len(phrases[k]) + 1
    spans = tuple((starts[k], starts[k] + len(phrases[k])) for k in range(calls))
    numbers = tuple(x for o in operands for x in (o if isinstance(o, tuple) else (o,)))
    return Composed(text, answer_text(value), programs[-1], numbers, calls, tuple(operands), tuple(chain), spans,
                    nested=True)


__all__ = ["INNER", "NOUN", "NOUN_WRAPPERS", "VERB", "VERB_WRAPPERS", "make"]
