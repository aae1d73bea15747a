"""ncl.tasks: disjoint splits, sizes on each task's axis, and answers equal to an independent spec and to the
library's Python sources on the digit tape."""

from __future__ import annotations

import pytest

import ncl.library
from ncl import tasks
from ncl.library import symbols
from ncl.tasks import graphs

EVAL_PROMPTS = 500


@pytest.fixture(scope="module")
def eval_prompts():
    return {name: {s: {e.prompt for e in tasks.get(name).generate(s, EVAL_PROMPTS, seed=1234)}
                   for s in tasks.get(name).eval_splits} for name in tasks.names()}


def test_the_benchmark_tasks_exist():
    assert {"long_add", "long_sub", "long_mul", "long_compare", "sort", "reverse", "sum", "merge_sort", "palindrome",
            "shortest_path", "reachable"} <= set(tasks.names())


@pytest.mark.parametrize("name", tasks.names())
def test_training_never_meets_an_evaluation_split(name, eval_prompts):
    """10,000 training examples against every evaluation split: the partition is by the prompt's hash (test) or
    by size (the others), so no seed can make them meet."""
    train = tasks.get(name).generate("train", 10_000, seed=7)
    for split, prompts in eval_prompts[name].items():
        overlap = [e.prompt for e in train if e.prompt in prompts]
        assert not overlap, (split, overlap[:3])


@pytest.mark.parametrize("name", tasks.names())
def test_every_evaluation_split_holds_500_distinct_prompts(name, eval_prompts):
    for split, prompts in eval_prompts[name].items():
        assert len(prompts) == EVAL_PROMPTS, split


@pytest.mark.parametrize("name", tasks.names())
def test_sizes_and_out_of_distribution_multiples(name):
    t = tasks.get(name)
    longest = t.size_range("train")[1]
    assert t.size_range("test") == t.size_range("train")
    for split, factor in (("ood_2x", 2), ("ood_4x", 4), ("ood_8x", 8)):
        if split in t.splits:
            assert t.size_range(split) == (factor * longest, factor * longest)
    for split in t.splits:
        low, high = t.size_range(split)
        for e in t.generate(split, 20, seed=3):
            assert low <= e.size <= high
            assert e.prompt.endswith("=") and e.program in ncl.library.names()
            assert len(e.tape) <= t.max_segment(split)


def test_digit_counts_are_true_lengths():
    t = tasks.get("long_add")
    for split, digits in (("ood_2x", 10), ("ood_4x", 20), ("ood_8x", 40)):
        for e in t.generate(split, 20):
            assert max(len(str(x)) for x in e.numbers) == digits
            assert int(e.answer) == sum(e.numbers)  # true integers: nothing wraps


@pytest.mark.parametrize("name", tasks.names())
def test_answers_match_the_library_sources(name):
    """The answer the task states equals what the library's Python source leaves on the digit tape."""
    t = tasks.get(name)
    for split in t.splits[:3]:
        for e in t.generate(split, 8, seed=5):
            tape = list(e.tape) + [0] * 256
            _, out = ncl.library.call_python(e.program, *e.args, mem=tape)
            assert symbols.text(out) == e.answer, e


def test_independent_specs():
    for e in tasks.get("long_sub").generate("test", 50):
        a, b = e.numbers
        assert int(e.answer) == a - b
    for e in tasks.get("long_mul").generate("ood_2x", 20):
        a, b = e.numbers
        assert int(e.answer) == a * b
    for e in tasks.get("long_compare").generate("test", 50):
        a, b = e.numbers
        assert e.answer == ("<" if a < b else ">" if a > b else "=")
    for e in tasks.get("merge_sort").generate("ood_4x", 10):
        assert [int(x) for x in e.answer.split()] == sorted(e.numbers)
    for e in tasks.get("palindrome").generate("ood_2x", 30):
        s = str(e.numbers[0])
        assert e.answer == str(int(s == s[::-1])) and -(-len(s) // 2) == e.size
    for e in tasks.get("shortest_path").generate("ood_4x", 10):
        s, t, *flat = e.numbers
        edges = list(zip(flat[::2], flat[1::2]))
        assert len(edges) == e.size and int(e.answer) == graphs.distances(edges, e.size, s)[t] >= 1


def test_balanced_answers():
    for name, answers in (("reachable", {"0", "1"}), ("palindrome", {"0", "1"}), ("long_compare", {"<", "=", ">"})):
        seen = [e.answer for e in tasks.get(name).generate("test", 300)]
        for a in answers:
            assert seen.count(a) > 300 / len(answers) / 2, (name, a)


def test_tape_and_call():
    e = tasks.get("long_add").make(__import__("random").Random(0), 3)
    assert e.tape == tuple(symbols.number_cells(e.numbers)) and e.args == (0, len(e.tape))
    assert e.call == f"long_add({e.numbers[0]}, {e.numbers[1]})"
    assert e.answer_cells[-1] == symbols.END


def test_seeded_and_bad_names():
    t = tasks.get("sort")
    assert t.generate("train", 10, seed=1) == t.generate("train", 10, seed=1)
    assert t.generate("train", 10, seed=1) != t.generate("train", 10, seed=2)
    with pytest.raises(ValueError, match="unknown task"):
        tasks.get("nope")
    with pytest.raises(ValueError, match="unknown split"):
        tasks.get("palindrome").generate("ood_8x", 3)
    ex = tasks.get("sum").generate("test", 4)
    assert tasks.exact_match([e.answer for e in ex], ex) == 1.0
    assert tasks.exact_match(["x"] * 4, ex) == 0.0
