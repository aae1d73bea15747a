"""ncl.tasks: seeded generators, split names and sizes, answers against the library's Python sources."""

import math

import pytest

import ncl.library
from ncl import tasks


def test_names_and_splits():
    assert set(tasks.names()) >= {"add", "sub", "mul", "fib", "sort", "gcd", "reverse", "sum"}
    for name in tasks.names():
        t = tasks.get(name)
        for split in tasks.SPLITS:
            low, high = t.size_range(split)
            assert low <= high
            for e in t.generate(split, 20, seed=3):
                assert low <= e.size or t.axis == "operand"
                assert e.prompt.endswith("=")
                assert e.program in ncl.library.names()


def test_seeded_and_splits_differ():
    t = tasks.get("sort")
    assert t.generate("train", 10, seed=1) == t.generate("train", 10, seed=1)
    assert t.generate("train", 10, seed=1) != t.generate("train", 10, seed=2)
    assert t.generate("train", 10, seed=1) != t.generate("test", 10, seed=1)


def test_ood_lengths_are_2x_and_4x():
    for name in ("sort", "reverse", "sum"):
        t = tasks.get(name)
        longest = t.size_range("train")[1]
        assert {e.size for e in t.generate("ood_2x", 10)} == {2 * longest}
        assert {e.size for e in t.generate("ood_4x", 10)} == {4 * longest}
    fib = tasks.get("fib")
    assert fib.size_range("ood_2x")[1] == 2 * fib.size_range("train")[1]


@pytest.mark.parametrize("name", ["add", "sub", "mul", "fib", "sort", "gcd", "reverse", "sum"])
def test_answers_match_the_library(name):
    t = tasks.get(name)
    for split in ("train", "ood_2x"):
        for e in t.generate(split, 15, seed=5):
            tape = list(e.tape) + [0] * (128 - len(e.tape))
            value, out = ncl.library.call_python(e.program, *e.args, mem=tape)
            if t.axis == "length" and name != "sum":
                expect = "".join(f"{v} " for v in out[:len(e.tape)])
            else:
                expect = str((value[0] if isinstance(value, tuple) else value) % 128)
            assert e.answer == expect, (e, expect)
            numbers = [int(x) for x in e.prompt.split()[1:-1]]
            assert tuple(numbers) == e.tape


def test_gcd_and_exact_match():
    for e in tasks.get("gcd").generate("test", 30):
        a, b = e.args
        assert int(e.answer) == math.gcd(a, b)
    ex = tasks.get("add").generate("test", 4)
    assert tasks.exact_match([e.answer for e in ex], ex) == 1.0
    assert tasks.exact_match(["x"] * 4, ex) == 0.0


def test_bad_names():
    with pytest.raises(ValueError, match="unknown task"):
        tasks.get("nope")
    with pytest.raises(ValueError, match="unknown split"):
        tasks.get("add").generate("valid", 3)
