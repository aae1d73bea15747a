"""Natural-language phrasings of the benchmark's problems: several templates per task, the task's words ordinary
text (no token of their own), so a model that sees them must infer which program to run from the wording.

Each task has :data:`TRAINED` templates that training draws from, and more that it never sees (the
``paraphrase`` split of :mod:`ncl.tasks.mix`). A template names its slots: ``{a}`` and ``{b}`` (two operands),
``{list}`` (the elements, space separated), ``{x}`` (one number), ``{s}``, ``{t}`` and ``{edges}`` (a graph
query: from s to t, then the edges ``u v, u v, ...``).

Two rules hold for every template (``tests/test_mix.py`` checks them):

- the numbers appear in the order of :attr:`~ncl.tasks.Example.numbers`: the tape holds them in prompt order,
  and the program reads the whole tape;
- every number is followed by a character that is not a digit, which ends it on the digit tape, and the text
  itself holds no digit.
"""

from __future__ import annotations

import re

from ncl.tasks.base import Example, cued
from ncl.tasks.synonyms import SYNONYMS

TRAINED = 6  #: templates per task that training draws from; the rest form the ``paraphrase`` split

#: Per task: the trained templates first (:data:`TRAINED`), then the held-out ones.
TEMPLATES: dict[str, tuple[str, ...]] = {
    "long_add": ("What is {a} plus {b}?", "{a} + {b} =", "add {a} and {b}.", "Compute {a} plus {b}.",
                 "How much is {a} + {b}?", "Tell me {a} plus {b}.",
                 "{a} and {b} added together make?", "Please work out {a} + {b}."),
    "long_sub": ("What is {a} minus {b}?", "{a} - {b} =", "subtract: {a} minus {b}.", "Compute {a} minus {b}.",
                 "How much is {a} - {b}?", "Tell me {a} minus {b}.",
                 "{a} take away {b} leaves?", "Please work out {a} - {b}."),
    "long_mul": ("What is {a} times {b}?", "{a} * {b} =", "multiply {a} by {b}.", "Compute the product of {a} and {b}.",
                 "How much is {a} * {b}?", "Tell me {a} times {b}.",
                 "{a} multiplied by {b} gives?", "Please work out {a} * {b}."),
    "long_compare": ("How does {a} compare with {b}?", "{a} vs {b}:", "compare {a} to {b}.",
                     "Is {a} less than, equal to or greater than {b}?", "Relation between {a} and {b}?",
                     "Order {a} against {b}.",
                     "What sign goes between {a} and {b}?", "{a} compared with {b} is?"),
    "sort": ("Put {list} in increasing order.", "sort {list}.", "Sort the list {list}.",
             "Arrange {list} from smallest to largest.", "What is {list} sorted?", "Order these numbers: {list}.",
             "Rank {list} in ascending order.", "List {list} from low to high."),
    "reverse": ("Reverse {list}.", "What is {list} backwards?", "reverse the list {list}.",
                "Write {list} in reverse order.", "Flip the order of {list}.", "{list} reversed is?",
                "Read {list} from the end.", "Turn {list} around."),
    "sum": ("What is the total of {list}?", "Add up {list}.", "sum {list}.", "Compute the sum of the list {list}.",
            "How much do {list} add up to?", "Total these: {list}.",
            "Find the sum of {list}.", "What do {list} come to altogether?"),
    "merge_sort": ("Merge sort {list}.", "Sort {list} with merge sort.", "Recursively sort {list}.",
                   "Use merge sort on {list}.", "Apply merge sort to the list {list}.", "Merge-sort these: {list}.",
                   "Run merge sort over {list}.", "Sort {list} by merging sorted halves."),
    "palindrome": ("Is {x} a palindrome?", "Does {x} read the same backwards?", "palindrome check: {x}.",
                   "Is the number {x} the same reversed?", "Check whether {x} is a palindrome.", "{x} palindrome?",
                   "Tell me if {x} reads the same both ways.", "Is {x} symmetric?"),
    "shortest_path": ("How many steps is the shortest route from {s} to {t} in the graph with edges {edges}?",
                      "Shortest path length from {s} to {t}; edges: {edges}.", "path {s} {t} in {edges}.",
                      "Distance from {s} to {t} given edges {edges}.",
                      "How far is it from {s} to {t} along the edges {edges}?",
                      "Fewest edges from {s} to {t} using {edges}.",
                      "How many hops separate {s} from {t} over {edges}?",
                      "Count the edges on a shortest walk from {s} to {t}; graph: {edges}."),
    "reachable": ("Can you get from {s} to {t} in the graph with edges {edges}?",
                  "Is there a path from {s} to {t} using edges {edges}?", "reach {s} {t} in {edges}.",
                  "From {s}, can {t} be reached over the edges {edges}?",
                  "Does a route lead from {s} to {t}; edges: {edges}?",
                  "Starting at {s}, is {t} reachable via {edges}?",
                  "Can {s} reach {t} through the edges {edges}?",
                  "Is a walk from {s} to {t} possible with edges {edges}?"),
}

_KIND = {"long_add": "pair", "long_sub": "pair", "long_mul": "pair", "long_compare": "pair", "sort": "list",
         "reverse": "list", "sum": "list", "merge_sort": "list", "palindrome": "one", "shortest_path": "graph",
         "reachable": "graph"}


def slots(task: str, numbers: tuple[int, ...]) -> dict[str, str]:
    """The text of each slot of ``task``'s templates for a problem's ``numbers``."""
    if task not in _KIND:
        raise ValueError(f"no phrasings for task {task!r}; they exist for: {', '.join(_KIND)}")
    kind = _KIND[task]
    if kind == "pair":
        return {"a": str(numbers[0]), "b": str(numbers[1])}
    if kind == "list":
        return {"list": " ".join(map(str, numbers))}
    if kind == "one":
        return {"x": str(numbers[0])}
    edges = numbers[2:]
    return {"s": str(numbers[0]), "t": str(numbers[1]),
            "edges": ", ".join(f"{edges[i]} {edges[i + 1]}" for i in range(0, len(edges), 2))}


def templates(task: str, held_out: bool = False) -> tuple[str, ...]:
    """``task``'s trained templates, or with ``held_out`` its paraphrase ones."""
    if task not in TEMPLATES:
        raise ValueError(f"no phrasings for task {task!r}; they exist for: {', '.join(TEMPLATES)}")
    return TEMPLATES[task][TRAINED:] if held_out else TEMPLATES[task][:TRAINED]


#: Letters of the filler words :func:`perturb` inserts: consonants only, so a filler is never an English word
#: (every word of every template has a vowel, or is trained wording: ``vs``, ``by``), least of all a held-out one.
FILLER_LETTERS = "bcdfghjklmnpqrstvwxz"
#: The rate of each edit :func:`perturb` makes, per word.
NOISE = 0.15
#: The probability that :func:`perturb` replaces a word that the synonym table holds by one of its WordNet
#: synonyms. 0: off. Tried on ``mix`` at 0.15 and 0.45, it did not move held-out wording (docs/language.md).
SYNONYM_RATE = 0.0


#: Words whose WordNet senses are mostly other things (``in``: indium, ``it``: information technology, ``me``:
#: Maine): :func:`perturb` never replaces them (EDA's stop words), and they are not keys of the synonym table.
FUNCTION_WORDS = ("a", "an", "and", "are", "at", "be", "by", "can", "do", "does", "for", "from", "how", "in",
                  "into", "is", "it", "its", "me", "of", "on", "or", "than", "that", "the", "there", "these",
                  "this", "to", "up", "via", "vs", "what", "whether", "with", "you")


def perturb(template: str, rng, rate: float = NOISE, synonyms: float | None = None) -> str:
    """``template`` with its wording perturbed, for training (easy data augmentation, EDA): each word that holds
    no slot is deleted with probability ``rate``, and after each word a filler (2-7 of :data:`FILLER_LETTERS`) is
    inserted with probability ``rate``. Six templates per task would otherwise let a model learn each template's
    whole shape and miss the words that name the task in wording it has not seen. With ``synonyms`` > 0
    (None: :data:`SYNONYM_RATE`) a word that is kept is replaced, with that probability, by one of its WordNet
    synonyms (:data:`~ncl.tasks.synonyms.SYNONYMS`, uniformly): words that no template uses, a little of the
    knowledge of the language that a pretrained model has and this one lacks. The slots stay, in order, each
    followed by a character that is not a digit (a space or the template's own)."""
    synonyms = SYNONYM_RATE if synonyms is None else synonyms
    words = []
    for w in template.split(" "):
        if "{" in w or rng.random() >= rate:
            words.append(_replace(w, rng, synonyms) if synonyms and "{" not in w else w)
        if rng.random() < rate:
            words.append(filler(rng))
    return " ".join(words)


def filler(rng) -> str:
    """A filler word: 2-7 of :data:`FILLER_LETTERS`, never English."""
    return "".join(rng.choice(FILLER_LETTERS) for _ in range(rng.randint(2, 7)))


def _replace(word: str, rng, rate: float) -> str:
    """``word`` (with any punctuation after it), or with probability ``rate`` one of its synonyms, capitalised as
    it is; a word that the synonym table does not hold stays, and draws nothing from ``rng``."""
    m = re.fullmatch(r"([A-Za-z]+)([^A-Za-z]*)", word)  # a whole word: not the "merge" of "Merge-sort"
    choices = SYNONYMS.get(m.group(1).lower(), ()) if m else ()
    if not choices or rng.random() >= rate:
        return word
    new = rng.choice(choices)
    return (new[:1].upper() + new[1:] if m.group(1)[0].isupper() else new) + m.group(2)


def phrase(task: str, e: Example, template: str) -> Example:
    """``e``, an example of ``task``, asked with ``template``: the same problem, answer, program and numbers, new
    prompt text (ended by the answer cue, :func:`~ncl.tasks.base.cued`)."""
    return Example(cued(template.format(**slots(task, e.numbers))), e.answer, e.program, e.numbers, e.size)


__all__ = ["FILLER_LETTERS", "FUNCTION_WORDS", "NOISE", "SYNONYM_RATE", "TEMPLATES", "TRAINED", "filler", "perturb",
           "phrase", "slots", "templates"]
