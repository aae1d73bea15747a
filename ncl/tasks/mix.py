"""``mix``: every benchmark task at once, asked in natural language (:mod:`ncl.tasks.phrasing`), and composed
problems (:mod:`ncl.tasks.compose`), for one model that must infer from the wording which programs to run, on
which operands, and how many calls a problem needs.

Every example is a :class:`~ncl.tasks.compose.Composed`: a single-task prompt is a chain of one call
(:func:`single_call`), so one model with a chain of calls (``ComputerConfig.calls``) answers all of them.

Splits:

- ``train``: with probability :data:`COMPOSE_SHARE` a composed training problem (1 or 2 calls), else a task
  drawn uniformly, a training problem of it (:meth:`Task.sample`), asked with one of its trained templates;
  the wording perturbed (words deleted, consonant fillers inserted), and with probability :data:`CHATTER` a
  composed problem's last step followed by a clause of fillers (:func:`~ncl.tasks.compose.chatter`);
- ``test``: every task's held-out problems (the same hash partition as the task's own ``test``) under the trained
  templates, and the composed ``test`` problems, in equal shares;
- ``paraphrase``: the same under templates (composed: wrappers) that training never uses;
- ``compose_3``, ``compose_4``: composed problems of 3 and 4 calls, which no training problem has;
- ``TASK/SPLIT`` for every task and each of its evaluation splits (``long_add/ood_4x``): that split's problems
  under the trained templates; ``compose/test`` and ``compose/paraphrase``: the composed shares of ``test`` and
  ``paraphrase``.

With ``nested`` (the task ``mix_nested``), two more composed parts of two calls each join the sequential one:
nested wording (:mod:`ncl.tasks.nested`: ``add 7 to the product of 36 and 12``) and arithmetic expressions
(:mod:`ncl.tasks.expression`: ``(4 + 9) * 12 - 5``, ``86 - 5 * 7``), :data:`NESTED_SHARE` of the composed
training problems between them. Each has its ``PART/test`` and ``PART/paraphrase`` (held-out wrappers), which
``test`` and ``paraphrase`` include, and deeper splits ``PART_3`` and ``PART_4`` (3 and 4 calls). ``nested``
off, every split is drawn exactly as before it existed.

Disjoint by construction: training only asks problems that are in their part's training part, and prompts on
the training side of the mix's own hash partition, so a ``test`` or ``paraphrase`` prompt (a held-out problem,
on the held-out side) and an out-of-distribution one (a size or a chain length no training problem has) never
occur in training; ``paraphrase`` prompts also use wording that training never shows.
"""

from __future__ import annotations

import random
import re

from ncl.tasks import compose, expression, nested
from ncl.tasks.base import SPLIT_SIZE, Example, Task, cued, held_out
from ncl.tasks.compose import Call, Composed
from ncl.tasks.phrasing import NOISE, perturb, phrase, templates

NAME = "mix"
COMPOSE = compose.NAME  #: the name of the composed part (``compose/test``)
NESTED = "nested"  #: the name of the nested part (``nested/test``; :mod:`ncl.tasks.nested`)
EXPRESSION = "expression"  #: the name of the expression part (``expression/test``; :mod:`ncl.tasks.expression`)
#: The parts that ``nested`` adds, each a generator ``make(rng, calls, noise, held)``.
WORDED = {NESTED: nested.make, EXPRESSION: expression.make}
#: The calls of a worded part's splits: ``train``, ``test`` and ``paraphrase`` have two, ``PART_3`` three, ...
NESTED_CALLS = {"train": (2, 2), "test": (2, 2), "paraphrase": (2, 2), "3": (3, 3), "4": (4, 4)}
#: With ``nested``, the share of the composed training problems that is nested or an expression (in halves).
NESTED_SHARE = 0.6
#: ``ncl train --task mix_nested``'s optimizer steps unless ``--steps`` is given: three composed parts and the
#: window gate's precedence take longer to learn than ``mix`` (docs/language.md: 1,500 against 3,000 steps).
NESTED_TRAIN_STEPS = 3000
COMPOSE_SHARE = 0.3  #: the share of composed problems in training: they need a chain's every head
#: ``mix``'s share of its composed training problems that end in a clause of filler words
#: (:func:`~ncl.tasks.compose.chatter`); 0 for ``mix_nested``, whose runs were trained before it existed.
CHATTER = 0.25
#: How far ahead of a token ``mix``'s step-end gate reads (``ComputerConfig.step_reach``): from the comma of
#: ``, and then`` to the ``e`` of ``then``, which no filler word holds (:func:`~ncl.tasks.compose.chatter`).
STEP_REACH = 8
#: Argument slots per call: a graph question has three operands (``from {s} to {t} ... {edges}``).
SLOTS = 3
#: The characters that close a prompt's step phrase: a call's heads read the token that holds one.
_CLOSERS = ".?:;!="


def operand_groups(text: str) -> list[tuple[int, ...]]:
    """The operands of a prompt's ``text``: runs of numbers whose gaps are a space or a comma and a space (a
    list, an edge list), as the chain's operand-end gate cuts them (:mod:`ncl.computer.call_heads`): a number
    ends an operand unless a digit follows within two characters."""
    groups: list[list[int]] = []
    end = None
    for m in re.finditer(r"\d+", text):
        if end is not None and text[end:m.start()] in (" ", ", "):
            groups[-1].append(int(m.group()))
        else:
            groups.append([int(m.group())])
        end = m.end()
    return [tuple(g) for g in groups]


def single_call(task: str, e: Example, template: str) -> Composed:
    """``e``, an example of ``task``, asked with ``template`` as a chain of one call: the program on every
    operand in order (:func:`operand_groups`; the program reads their concatenation, the whole tape), its step
    phrase the whole question up to its closing character."""
    asked = phrase(task, e, template)
    body = asked.prompt[:-len(cued(""))]  # the question without the answer cue
    groups = operand_groups(body)
    if tuple(x for g in groups for x in g) != tuple(e.numbers):
        raise ValueError(f"template {template!r} of {task!r} does not give the numbers in order")
    operands = tuple(g[0] if len(g) == 1 else g for g in groups)
    end = len(body) - 1 if body[-1] in _CLOSERS else len(body)
    return Composed(asked.prompt, e.answer, e.program, e.numbers, e.size, operands,
                    (Call(e.program, tuple(range(len(operands)))),), ((0, end),))


class MixTask:
    """The ``mix`` task over ``tasks`` (name → :class:`~ncl.tasks.Task`) and, if ``composed``, the composed
    problems, its training wording perturbed at the rate ``noise`` (:func:`~ncl.tasks.phrasing.perturb`; 0: the
    templates as written), with :class:`~ncl.tasks.Task`'s interface: :meth:`sample`, :meth:`generate`,
    :attr:`eval_splits`, :meth:`size_range`, :meth:`max_segment`, ``n`` (the largest value range any part
    needs), and the chain a model needs: ``calls`` (K, the longest composed split's) and ``slots``."""

    name = NAME
    axis = "task"
    calls = compose.ComposeTask.calls
    slots = SLOTS

    def __init__(self, tasks: dict[str, Task], noise: float = NOISE, composed: bool = True, nested: bool = False,
                 chatter: float | None = None):
        if nested and not composed:
            raise ValueError("nested wording is a share of the composed problems: it needs composed=True")
        chatter = (0.0 if nested else CHATTER) if chatter is None else chatter
        if not 0 <= chatter <= 1:
            raise ValueError(f"chatter must be in [0, 1], got {chatter}")
        self.tasks = dict(tasks)
        self.noise = noise
        self.chatter = chatter
        self.composed = composed
        self.nested = nested
        self.name = f"{NAME}_{NESTED}" if nested else NAME
        if nested:  # ncl train's default optimizer steps for this task (unset: TrainConfig's)
            self.train_steps = NESTED_TRAIN_STEPS
        else:  # ncl train's default words' view for this task's chain (unset: ComputerConfig's): a pretrained
            # encoder knows the English of held-out wording that no trained template holds, and the pointers read
            # the collapsed prompt, on which they keep to a long chain's later steps (docs/language.md)
            self.word_view = "hybrid"
            self.step_reach = STEP_REACH  # (unset: ComputerConfig's)
            self.program_norm = False  # the program head: a linear map of the encoder's mean (docs/language.md)
        self.n = max([t.n for t in self.tasks.values()] + [compose.ComposeTask.n])

    @property
    def splits(self) -> tuple[str, ...]:
        """``train``, ``test``, ``paraphrase``, ``compose_3``, ``compose_4`` (with ``nested``: ``nested_3`` ...
        ``expression_4``), then ``TASK/SPLIT`` for every task's evaluation splits, then ``compose/test`` and
        ``compose/paraphrase`` (with ``nested``: ``nested/test`` ... ``expression/paraphrase``; without
        ``composed``: none of the composed splits)."""
        chains = ("compose_3", "compose_4") if self.composed else ()
        worded = tuple(WORDED) if self.nested else ()
        chains += tuple(f"{part}_{k}" for part in worded for k in (3, 4))
        return (("train", "test", "paraphrase") + chains
                + tuple(f"{name}/{s}" for name, t in self.tasks.items() for s in t.eval_splits)
                + ((f"{COMPOSE}/test", f"{COMPOSE}/paraphrase") if self.composed else ())
                + tuple(f"{part}/{s}" for part in worded for s in ("test", "paraphrase")))

    @property
    def eval_splits(self) -> tuple[str, ...]:
        """Every split but ``train``."""
        return self.splits[1:]

    def _parts(self, split: str) -> list[tuple[str, str, bool]]:
        """``(task or compose, its split, held-out templates)`` choices a ``split`` example is drawn from."""
        if split not in self.splits:
            named = ", ".join(s for s in self.splits if "/" not in s)
            raise ValueError(f"unknown split {split!r} for task {self.name!r}; it has {named} and TASK/SPLIT, e.g. "
                             f"{next(s for s in self.splits if '/' in s)}")
        worded = list(WORDED) if self.nested else []
        if split in ("train", "test"):
            return ([(name, split, False) for name in self.tasks] + [(COMPOSE, split, False)] * self.composed
                    + [(part, split, False) for part in worded])
        if split == "paraphrase":
            return ([(name, "test", True) for name in self.tasks] + [(COMPOSE, "paraphrase", True)] * self.composed
                    + [(part, "paraphrase", True) for part in worded])
        if split in ("compose_3", "compose_4"):
            return [(COMPOSE, split, False)]
        if "/" not in split:  # PART_3, PART_4
            part, calls = split.rsplit("_", 1)
            return [(part, calls, False)]
        name, inner = split.split("/", 1)
        return [(name, inner, inner == "paraphrase")]

    def split_axis(self, split: str) -> str:
        """What ``split``'s sizes measure: calls for the composed splits, the task's axis for ``TASK/SPLIT``, and
        ``task`` (sizes on several axes) for ``train``, ``test`` and ``paraphrase``."""
        parts = {name for name, _, _ in self._parts(split)}
        if parts <= {COMPOSE, *WORDED}:
            return compose.ComposeTask.axis
        return self.tasks[parts.pop()].axis if len(parts) == 1 else self.axis

    def size_range(self, split: str) -> tuple[int, int]:
        """The sizes ``split``'s problems have on their own axis (the union over its parts; a composed problem's
        size is its number of calls)."""
        calls = {COMPOSE: compose.CALLS, **{part: NESTED_CALLS for part in WORDED}}
        ranges = [calls[name][inner] if name in calls else self.tasks[name].size_range(inner)
                  for name, inner, _ in self._parts(split)]
        return min(lo for lo, _ in ranges), max(hi for _, hi in ranges)

    def max_segment(self, split: str) -> int:
        """The longest tape any call of a ``split`` problem can get."""
        return max(compose.ComposeTask.call_tape if name in (COMPOSE, *WORDED) else self.tasks[name].max_segment(inner)
                   for name, inner, _ in self._parts(split))

    def _example(self, name: str, inner: str, held: bool, rng: random.Random, noisy: bool) -> Composed:
        """A problem of part ``name``'s split ``inner``. In distribution, the prompt's text must also fall on its
        side of the mix's own hash partition (:func:`~ncl.tasks.base.held_out`): the parts' partitions are
        separate, and one part's training prompt can read exactly like another's held-out one (a composed
        ``Sort 50 7 with merge sort.``; a ``merge_sort`` prompt whose perturbation dropped ``Merge``)."""
        while True:
            if name == COMPOSE:
                e = compose.sample(inner, rng)
            elif name in WORDED:
                e = WORDED[name](rng, rng.randint(*NESTED_CALLS[inner]), NOISE if inner == "train" else 0.0, held)
                if inner in ("train", "test") and held_out(COMPOSE, e.prompt) != (inner == "test"):
                    continue  # the composed part's own partition, as compose.sample keeps it
            else:
                template = rng.choice(templates(name, held))
                if noisy and self.noise:
                    template = perturb(template, rng, self.noise)
                e = single_call(name, self.tasks[name].sample(inner, rng), template)
            if inner not in ("train", "test", "paraphrase") or held_out(NAME, e.prompt) == (inner != "train"):
                # redundant outer brackets only after the partition: a bracketed training prompt's problem, as
                # written without them, is on the training side too
                if name == EXPRESSION and inner == "train" and rng.random() < expression.OUTER:
                    e = expression.bracketed(e)
                if name == COMPOSE and inner == "train" and self.chatter and rng.random() < self.chatter:
                    e = compose.chatter(e, rng)  # (also after the partition, as the brackets)
                return e

    def sample(self, split: str, rng: random.Random) -> Composed:
        """One example of ``split``: a part (``train``: composed with probability :data:`COMPOSE_SHARE`), a
        problem of it, a template, all drawn with ``rng``; a training template's wording perturbed
        (:func:`~ncl.tasks.phrasing.perturb`, at the task's ``noise`` rate; composed problems perturb their
        wrappers themselves)."""
        parts = self._parts(split)
        if split == "train":
            tasks = [p for p in parts if p[0] not in (COMPOSE, *WORDED)]
            part = (parts[len(tasks)] if self.composed and rng.random() < COMPOSE_SHARE else rng.choice(tasks))
            if part[0] == COMPOSE and self.nested and rng.random() < NESTED_SHARE:
                part = rng.choice(parts[len(tasks) + 1:])
        else:
            part = rng.choice(parts)
        return self._example(*part, rng, split == "train")

    def generate(self, split: str, count: int = SPLIT_SIZE, seed: int = 0) -> list[Composed]:
        """``count`` examples of ``split``, reproducible from ``seed``; an evaluation split's prompts are distinct
        and its parts come in equal shares (in turn)."""
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
            e = self._example(*parts[len(out) % len(parts)], rng, False)
            if e.prompt not in seen:
                seen.add(e.prompt)
                out.append(e)
        else:
            raise RuntimeError(f"mix/{split}: fewer than {count} distinct prompts found")
        return out


__all__ = ["CHATTER", "COMPOSE", "COMPOSE_SHARE", "EXPRESSION", "NAME", "NESTED", "NESTED_CALLS", "NESTED_SHARE",
           "NESTED_TRAIN_STEPS", "SLOTS", "STEP_REACH", "WORDED", "MixTask", "operand_groups", "single_call"]
