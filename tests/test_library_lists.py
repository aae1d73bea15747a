"""The digit-tape list programs (``ncl.library.sources.lists``): ``list_sort``, ``list_reverse``, ``list_sum``,
``merge_sort`` and ``palindrome`` against independent specs, on the VM over their whole range (n = C = 128) and
within their ``resources`` bounds, as Python, and on the soft machine at small sizes."""

from __future__ import annotations

import itertools
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ncl
from ncl.compiler import ExecutionError
from ncl.library.symbols import SEP, number_cells, text

#: The VM at the functions' full range; 33 stack positions hold palindrome's 32 nested calls at 64 digits.
VM = ncl.MachineConfig(n=128, cells=128, registers=8, stack=33)
#: The soft machine: sharp enough (β = 120) that leaked mass underflows and hard inputs stay exact.
SOFT = ncl.MachineConfig(n=128, cells=48, registers=8, stack=24, sharpness=120.0)
LISTS = ["list_sort", "list_reverse", "list_sum", "merge_sort"]
#: Fills the tape past the input: a cell the function should neither read as zero nor write.
SENTINEL = 123


def spec(name: str, values: list[int]) -> str:
    """The answer's text, by Python."""
    if name in ("list_sort", "merge_sort"):
        return "".join(f"{v} " for v in sorted(values))
    if name == "list_reverse":
        return "".join(f"{v} " for v in reversed(values))
    return str(sum(values))


def palindrome_spec(digits: list[int]) -> str:
    return "1" if digits == digits[::-1] else "0"


def check_vm(name: str, segment: list[int], want: str):
    """Runs ``name`` on the segment at cell 0 on the VM and as Python: the answer, its cell count, the step
    bound, and no write at or past the cell bound (the tape past the input holds SENTINEL)."""
    length = len(segment)
    cells, steps = ncl.library.resources(name, length)
    assert cells <= VM.cells
    tape = segment + [SENTINEL] * (VM.cells - length)
    out = ncl.library.get(name, VM).execute(0, length, mem=tape, engine="vm")
    assert text(out.mem) == want, f"{name}: {text(out.mem)!r} != {want!r}"
    assert out.value == len(want)
    assert out.steps <= steps, f"{name}: {out.steps} steps, bound {steps}"
    assert out.mem[cells:] == tape[cells:]
    value, after = ncl.library.call_python(name, 0, length, mem=tape)
    assert (text(after), value) == (want, len(want))
    assert after[cells:] == tape[cells:]
    return out


# --- inputs -------------------------------------------------------------------------------------------------

@st.composite
def element_lists(draw, max_size=32):
    """1..max_size elements of 0..99, as drawn, sorted, descending, all equal, or all zero."""
    size = draw(st.integers(1, max_size))  # drawn first: the list strategy itself would favour short lists
    values = draw(st.lists(st.integers(0, 99), min_size=size, max_size=size))
    shape = draw(st.sampled_from(["as drawn", "sorted", "descending", "equal", "zeros"]))
    if shape == "sorted":
        values.sort()
    elif shape == "descending":
        values.sort(reverse=True)
    elif shape == "equal":
        values = [values[0]] * len(values)
    elif shape == "zeros":
        values = [0] * len(values)
    return values


@st.composite
def digit_strings(draw, max_digits=64):
    """A number's digits (no leading zero): a palindrome (odd or even length), one that differs in a single
    digit near the middle, or random digits."""
    kind = draw(st.sampled_from(["middle", "palindrome", "random"]))
    size = draw(st.integers(1, max_digits))
    digits = draw(st.lists(st.integers(0, 9), min_size=size, max_size=size))
    if kind != "random":
        digits = digits[:(size + 1) // 2] + digits[:size // 2][::-1]
    if digits[0] == 0 and size > 1:
        digits[0] = digits[-1] = draw(st.integers(1, 9))
    if kind == "middle" and size > 1:  # just left of the middle: an odd palindrome's centre would not do
        i = size // 2 - 1
        digits[i] = draw(st.sampled_from([x for x in range(1 if i == 0 else 0, 10) if x != digits[size - 1 - i]]))
    return digits


EDGE_LISTS = [[0], [5], [99], [0, 0, 0], [10, 9], [9, 10], [7] * 32, [99] * 32, [0] * 32, list(range(32)),
              list(range(99, 67, -1)), list(range(9, -1, -1)) * 3, [1, 0, 10, 100 - 1, 11, 0]]
EDGE_DIGITS = [[7], [1, 1], [1, 2], [1, 2, 1], [1, 2, 2], [1, 0, 0, 1], [1, 2, 3, 4, 3, 2, 1], [9] * 64,
               [1] + [0] * 62 + [1], [1] + [0] * 30 + [5] + [0] * 31 + [1], [4] * 31 + [3, 5] + [4] * 31, [3] * 63]


# --- the VM over the whole range ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", LISTS)
@pytest.mark.parametrize("values", EDGE_LISTS, ids=lambda v: f"{len(v)}:{v[:3]}")
def test_lists_edge_cases(name, values):
    check_vm(name, number_cells(values), spec(name, values))


@pytest.mark.parametrize("name", LISTS)
@settings(max_examples=40)
@given(values=element_lists())
def test_lists_equal_python_spec(name, values):
    check_vm(name, number_cells(values), spec(name, values))


@pytest.mark.parametrize("seed", range(8))
def test_full_size_random_inputs(seed):
    """The largest sizes: 32 elements of 0..99, 64 digits (hypothesis favours smaller inputs)."""
    rng = random.Random(seed)
    values = [rng.randrange(100) for _ in range(32)]
    for name in LISTS:
        check_vm(name, number_cells(values), spec(name, values))
    half = [rng.randrange(1, 10)] + [rng.randrange(10) for _ in range(31)]
    digits = half + half[::-1]
    if seed % 2:
        digits[31] = (digits[31] + 1) % 10
    check_vm("palindrome", digits + [SEP], palindrome_spec(digits))


@pytest.mark.parametrize("digits", EDGE_DIGITS, ids=lambda d: "".join(map(str, d[:8])) + f"({len(d)})")
def test_palindrome_edge_cases(digits):
    check_vm("palindrome", digits + [SEP], palindrome_spec(digits))


@settings(max_examples=60)
@given(digits=digit_strings())
def test_palindrome_equals_python_spec(digits):
    check_vm("palindrome", digits + [SEP], palindrome_spec(digits))


def test_lists_do_not_assume_start_zero():
    """A segment further up the tape: the answer still goes to cell 0."""
    segment = number_cells([31, 4, 77])
    tape = [5, 5, 5] + segment + [0] * 20
    for name in LISTS:
        out = ncl.library.get(name, VM).execute(3, len(segment), mem=tape, engine="vm")
        assert text(out.mem) == spec(name, [31, 4, 77]), name
    out = ncl.library.get("palindrome", VM).execute(2, 4, mem=[9, 9, 4, 0, 4, SEP], engine="vm")
    assert text(out.mem) == "1"


@pytest.mark.parametrize("name", ["list_sort", "list_reverse", "list_sum", "merge_sort"])
@settings(max_examples=40)
@given(data=st.data())
def test_lists_halt_on_any_tape(name, data):
    """Malformed segments (any cell values) give some answer, but the VM halts without a stack fault."""
    length = data.draw(st.integers(0, VM.n - 1))
    start = data.draw(st.integers(0, VM.n - 1 - length))
    tape = data.draw(st.lists(st.integers(0, VM.n - 1), min_size=VM.cells, max_size=VM.cells))
    ncl.library.get(name, VM).execute(start, length, mem=tape, engine="vm")


# --- resources, recursion and the stack ---------------------------------------------------------------------

@pytest.mark.parametrize("name,values", [("list_sort", list(range(99, 67, -1))), ("list_reverse", [99] * 32),
                                         ("merge_sort", list(range(99, 67, -1))), ("list_sum", [99] * 32)])
def test_step_bounds_are_not_loose(name, values):
    """At the largest size (32 two-digit elements) the bound is within 10% of a worst-case run."""
    out = check_vm(name, number_cells(values), spec(name, values))
    assert ncl.library.resources(name, 96)[1] <= 1.1 * out.steps


@pytest.mark.parametrize("name", ["list_sort", "merge_sort"])
def test_sort_bounds_hold_on_every_order(name):
    """Every order of 6 one-digit values (the most elements 12 cells hold): within the bound, and close to it."""
    compiled = ncl.library.get(name, VM)
    worst = 0
    for order in itertools.permutations(range(6)):
        segment = number_cells(list(order))
        out = compiled.execute(0, len(segment), mem=segment, engine="vm")
        assert text(out.mem) == "0 1 2 3 4 5 "
        worst = max(worst, out.steps)
    bound = ncl.library.resources(name, 12)[1]
    assert bound * 0.95 <= worst <= bound


def test_palindrome_step_bound_is_exact_at_64_digits():
    out = check_vm("palindrome", [9] * 64 + [SEP], "1")
    assert out.steps == ncl.library.resources("palindrome", 65)[1]


def test_merge_sort_recurses_on_both_halves():
    compiled = ncl.library.get("merge_sort", VM)
    assert compiled.functions == ["merge_sort", "list_parse", "merge_sort_run", "list_print"]
    body = compiled.assembly.split("\nmerge_sort_run:\n")[1].split("\nlist_print:\n")[0]
    assert body.count("CALL merge_sort_run") == 2


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8, 17, 32])
def test_merge_sort_stack_depth(count):
    """Two return slots and two data slots a level of recursion: S = 2 ceil(log2 count) + 4 suffices, one less
    faults."""
    values = list(range(count, 0, -1))
    need = 2 * math.ceil(math.log2(count)) + 4
    tape = number_cells(values)
    config = ncl.MachineConfig(n=128, cells=128, registers=8, stack=need)
    out = ncl.library.get("merge_sort", config).execute(0, len(tape), mem=tape, engine="vm")
    assert text(out.mem) == spec("merge_sort", values)
    with pytest.raises(ExecutionError, match="stack overflow"):
        config = ncl.MachineConfig(n=128, cells=128, registers=8, stack=need - 1)
        ncl.library.get("merge_sort", config).execute(0, len(tape), mem=tape, engine="vm")


@pytest.mark.parametrize("digits", [1, 2, 3, 8, 46, 47, 64])
def test_palindrome_recursion_depth(digits):
    """ceil(d/2) nested calls and nothing saved across them: d digits need stack >= ceil(d/2) + 1 (the
    computer's stack of 24 reaches 46 digits; 64 need 33)."""
    need = max(2, (digits + 1) // 2 + 1)
    segment = [7] * digits + [SEP]
    config = ncl.MachineConfig(n=128, cells=128, registers=8, stack=need)
    assert "CALL palindrome" in ncl.library.get("palindrome", config).assembly.split("\npalindrome:\n")[1]
    assert text(ncl.library.get("palindrome", config).execute(0, len(segment), mem=segment, engine="vm").mem) == "1"
    if need > 2:
        with pytest.raises(ExecutionError, match="stack overflow"):
            config = ncl.MachineConfig(n=128, cells=128, registers=8, stack=need - 1)
            ncl.library.get("palindrome", config).execute(0, len(segment), mem=segment, engine="vm")


def test_helpers_are_compiled_but_no_entries():
    names = ncl.library.names()
    assert set(LISTS + ["palindrome"]) <= set(names)
    assert not {"list_parse", "list_print", "merge_sort_run"} & set(names)
    program = ncl.library.image(SOFT)
    assert "list_parse.entry" not in program.labels and "list_parse" in program.labels
    with pytest.raises(KeyError, match="no resource bounds"):
        ncl.library.resources("list_parse", 4)


# --- the soft machine ---------------------------------------------------------------------------------------

def check_soft(name: str, segment: list[int], want: str):
    compiled = ncl.library.get(name, SOFT)
    hard = compiled.execute(0, len(segment), mem=segment, engine="vm")
    soft = compiled.execute(0, len(segment), mem=segment)
    assert text(hard.mem) == want
    assert soft.mem == hard.mem and soft.regs == hard.regs and soft.steps == hard.steps
    assert soft.halted >= 0.99


@pytest.mark.parametrize("name", LISTS)
@settings(max_examples=4)
@given(values=element_lists(max_size=4))
def test_lists_soft_equals_vm(name, values):
    check_soft(name, number_cells(values), spec(name, values))


@settings(max_examples=6)
@given(digits=digit_strings(max_digits=8))
def test_palindrome_soft_equals_vm(digits):
    check_soft("palindrome", digits + [SEP], palindrome_spec(digits))
