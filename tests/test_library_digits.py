"""The digit-tape long arithmetic (``ncl.library.sources.digits``): ``long_add``, ``long_sub``, ``long_mul`` and
``long_compare`` against Python's integers, on the VM over their whole range (1 to 40 digits an operand; n = C =
128, and 256 for mul) and within their ``resources`` bounds, as Python, and on the soft machine at small sizes."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ncl
from ncl.library.sources.digits import MAX_DIGITS
from ncl.library.sources.digits import resources as digit_resources
from ncl.library.symbols import END, SEP, text

#: The VM at the functions' full range: mul's product sits above the input, so it needs the larger machine.
VM = ncl.MachineConfig(n=128, cells=128, registers=8, stack=24)
VM_MUL = ncl.MachineConfig(n=256, cells=256, registers=8, stack=24)
#: The soft machine: sharp enough (β = 120) that leaked mass underflows and hard inputs stay exact.
SOFT = ncl.MachineConfig(n=128, cells=32, registers=8, stack=24, sharpness=120.0)
SOFT_MUL = ncl.MachineConfig(n=256, cells=32, registers=8, stack=24, sharpness=120.0)
NAMES = ["long_add", "long_sub", "long_mul", "long_compare"]
#: Fills the tape past the input: a cell the function should neither read as a digit nor write.
SENTINEL = 99


def vm_config(name: str) -> ncl.MachineConfig:
    return VM_MUL if name == "long_mul" else VM


def spec(name: str, a: int, b: int) -> str:
    """The answer's text, by Python."""
    if name == "long_add":
        return str(a + b)
    if name == "long_sub":
        return str(a - b)
    if name == "long_mul":
        return str(a * b)
    return "<" if a < b else "=" if a == b else ">"


def segment(a: str, b: str) -> list[int]:
    """The input cells of two numbers given as digit strings (leading zeros kept)."""
    return [int(c) for c in a] + [SEP] + [int(c) for c in b] + [SEP]


def check_vm(name: str, a: str, b: str, start: int = 0):
    """Runs ``name`` on the numbers' segment at ``start`` on the VM and as Python: the answer, its length, the step
    bound, and no write at or past the cell bound (the tape past the input holds SENTINEL)."""
    config = vm_config(name)
    cells_in = segment(a, b)
    length = len(cells_in)
    cells, steps = ncl.library.resources(name, length)
    cells += start
    assert cells <= config.cells
    tape = [SENTINEL] * start + cells_in + [SENTINEL] * (config.cells - start - length)
    want = spec(name, int(a), int(b))
    out = ncl.library.get(name, config).execute(start, length, mem=tape, engine="vm")
    assert text(out.mem) == want, f"{name}({a}, {b}): {text(out.mem)!r} != {want!r}"
    assert out.value == len(want)
    assert out.steps <= steps, f"{name}({a}, {b}): {out.steps} steps, bound {steps}"
    assert out.mem[cells:] == tape[cells:]
    value, after = ncl.library.call_python(name, start, length, mem=tape)
    assert (text(after), value) == (want, len(want))
    assert [v % config.n for v in after] == out.mem  # Python's tape may hold start - 1 = -1 where the VM has n - 1
    return out


# --- inputs -------------------------------------------------------------------------------------------------

def number(rng: random.Random, digits: int) -> str:
    return str(rng.randrange(10 ** (digits - 1) if digits > 1 else 0, 10 ** digits))


@st.composite
def operands(draw, max_digits=MAX_DIGITS):
    """Two numbers of 1..max_digits digits each: random, all nines, a power of ten, equal, or sharing a prefix
    with the other (so the comparison and the borrow run far)."""
    sizes = [draw(st.integers(1, max_digits)) for _ in range(2)]
    out = []
    for size in sizes:
        kind = draw(st.sampled_from(["random", "random", "nines", "power"]))
        if kind == "nines":
            out.append(int("9" * size))
        elif kind == "power":
            out.append(10 ** (size - 1))
        else:
            out.append(draw(st.integers(10 ** (size - 1) if size > 1 else 0, 10 ** size - 1)))
    a, b = out
    relation = draw(st.sampled_from(["free", "equal", "prefix"]))
    if relation == "equal":
        b = a
    elif relation == "prefix" and a >= 10:
        keep = draw(st.integers(1, len(str(a)) - 1))
        b = int(str(a)[:keep] + str(draw(st.integers(0, 10 ** (len(str(a)) - keep) - 1))).zfill(len(str(a)) - keep))
    if draw(st.booleans()):
        a, b = b, a
    return str(a), str(b)


NINES = "9" * MAX_DIGITS
EDGE = [("0", "0"), ("0", "7"), ("7", "0"), ("5", "5"), ("4071", "98"), ("98", "4071"), ("1000000", "1"),
        ("1", "1000000"), ("99999", "1"), ("1", "99999"), ("123456789", "123456789"), ("123456789", "123456780"),
        ("123456780", "123456789"), ("10", "9"), ("9", "10"), (NINES, "1"), ("1", NINES), (NINES, NINES),
        ("1" + "0" * 39, "1"), ("1" + "0" * 39, "9" * 39), ("5" * 40, "5" * 39 + "6"), ("1" + "0" * 39, "0")]


# --- the VM over the whole range ----------------------------------------------------------------------------

@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("a,b", EDGE, ids=lambda x: x[:6] + (f"({len(x)})" if len(x) > 6 else ""))
def test_edge_cases(name, a, b):
    check_vm(name, a, b)


@pytest.mark.parametrize("name", ["long_add", "long_sub", "long_compare"])
@settings(max_examples=40)
@given(ab=operands())
def test_equal_python(name, ab):
    check_vm(name, *ab)


@settings(max_examples=15)
@given(ab=operands())
def test_mul_equals_python(ab):
    check_vm("long_mul", *ab)


@pytest.mark.parametrize("seed", range(4))
def test_full_size_random_inputs(seed):
    """Two 40-digit operands, and 40 digits against a few (hypothesis favours smaller inputs)."""
    rng = random.Random(seed)
    for a, b in [(number(rng, 40), number(rng, 40)), (number(rng, 40), number(rng, 1 + seed)),
                 (number(rng, 1 + seed), number(rng, 40))]:
        for name in NAMES:
            check_vm(name, a, b)


@pytest.mark.parametrize("name", NAMES)
def test_leading_zeros_in_the_inputs(name):
    """Inputs never carry them, but they cost little: the answer has none."""
    for a, b in [("007", "5"), ("0", "000"), ("0009", "0010"), ("00", "00"), ("0123", "123"), ("10", "0010")]:
        check_vm(name, a, b)


@pytest.mark.parametrize("name", NAMES)
def test_segment_further_up_the_tape(name):
    """A segment not at cell 0: the answer still goes to cell 0."""
    for a, b in [("4071", "98"), ("12", "3456"), ("777", "777")]:
        check_vm(name, a, b, start=7)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30)
@given(data=st.data())
def test_halt_on_any_tape(name, data):
    """Segments that are not two numbers (any cell values) give some answer, but the VM halts; 1 to 3 cells (no
    room for two numbers) give no answer, within the bounds of 4 cells."""
    config = vm_config(name)
    length = data.draw(st.integers(1, 40))
    room = config.cells - (2 * length - 2 if name == "long_mul" else length)  # mul's rows go above the segment
    start = data.draw(st.integers(0, max(room, 0)))
    tape = data.draw(st.lists(st.integers(0, data.draw(st.sampled_from([SEP, 16, config.n - 1]))),
                              min_size=config.cells, max_size=config.cells))
    out = ncl.library.get(name, config).execute(start, length, mem=tape, engine="vm")
    if length < 4:
        assert (out.value, out.mem[0]) == (0, END)
        assert out.steps <= ncl.library.resources(name, length)[1]


# --- resources ----------------------------------------------------------------------------------------------

#: The costliest inputs at the worst split of 2k digits: the carry rippling through all of a and rotated in; a's
#: leading zeros skipped one by one; the largest square of rows, and a product of zeros stripped down to one.
WORST = {"long_add": lambda k: ("9" * (2 * k - 1), "1"),
         "long_compare": lambda k: ("0" * (2 * k - 1), "0"),
         "long_mul": lambda k: ("0" * k, "0" * k)}


@pytest.mark.parametrize("name", ["long_add", "long_compare", "long_mul"])
@pytest.mark.parametrize("k", [1, 2, 5, 20])
def test_step_bounds_are_exact_at_the_worst_case(name, k):
    a, b = WORST[name](k)
    out = check_vm(name, a, b)
    assert out.steps == ncl.library.resources(name, len(segment(a, b)))[1]


@pytest.mark.parametrize("a,b", [("5" * 40, "5" * 39 + "6"), ("1" + "0" * 39, "1"), ("12", "13"),
                                 ("1" + "0" * 19, "1")])
def test_sub_step_bound_is_close(a, b):
    """Subtraction's bound adds the comparison's worst to the subtraction's: within 25% of these costly runs."""
    out = check_vm("long_sub", a, b)
    assert ncl.library.resources("long_sub", len(segment(a, b)))[1] <= 1.25 * out.steps


def test_resources_cover_the_range_and_no_more():
    """Cells: the segment for add, sub and compare, twice it for mul; past two 40-digit numbers the bounds stop
    growing (no input is in range there), and an unknown name is a KeyError."""
    assert ncl.library.resources("long_add", 82) == (82, ncl.library.resources("long_add", 200)[1])
    assert ncl.library.resources("long_mul", 82)[0] == 162 <= VM_MUL.cells
    assert ncl.library.resources("long_mul", 100) == ncl.library.resources("long_mul", 82)
    assert ncl.library.resources("long_compare", 2) == ncl.library.resources("long_compare", 4)
    with pytest.raises(KeyError, match="no resource bounds"):
        digit_resources("long_div", 8)


# --- the soft machine ---------------------------------------------------------------------------------------

SOFT_CASES = {"long_add": [("4071", "98"), ("99", "1"), ("12345", "67890")],
              "long_sub": [("1000", "1"), ("5", "12345"), ("777", "777")],
              "long_compare": [("123", "124"), ("98", "4071"), ("55555", "55555")],
              "long_mul": [("99", "99"), ("12345", "678"), ("0", "4071")]}


@pytest.mark.parametrize("name", NAMES)
def test_soft_equals_vm(name):
    """The compiled program as shipped (fp32) at β = 120 on one-hot inputs: the same tape, registers and halting
    step as the VM."""
    compiled = ncl.library.get(name, SOFT_MUL if name == "long_mul" else SOFT)
    for a, b in SOFT_CASES[name]:
        cells_in = segment(a, b)
        hard = compiled.execute(0, len(cells_in), mem=cells_in, engine="vm")
        soft = compiled.execute(0, len(cells_in), mem=cells_in)
        assert text(hard.mem) == spec(name, int(a), int(b))
        assert soft.mem == hard.mem and soft.regs == hard.regs and soft.steps == hard.steps
        assert soft.halted >= 0.99
