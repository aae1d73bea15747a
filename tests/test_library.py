"""The compiled library: every function against its Python source and an independent spec, on the VM (at the
default machine size) and on the soft machine (at a small size, on inputs within its hard-limit horizon)."""

from __future__ import annotations

import bisect
import copy
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ncl
from ncl.compiler import ExecutionError
from ncl.library.sources import tape as tape_module
from ncl.machine import vm

#: The VM runs at the default size (n = 128, 128 cells, stacks of 32).
BIG = ncl.MachineConfig()
#: The soft machine runs at n = 32 (the table ALU is O(n²) a step) with 16 cells.
SMALL = ncl.MachineConfig(n=32, cells=16, registers=8, stack=16)

REQUIRED = ["add", "sub", "mul", "divmod", "gcd", "pow_mod", "factorial", "fib", "fib_iter", "insertion_sort",
            "bubble_sort", "reverse", "sum", "max", "count", "binary_search", "copy"]


# --- independent specs: (args, tape, n) -> (results, tape after) ------------------------------------------------

def _segment_op(op):
    def spec(args, tape, n):
        start, length = args[0], args[1]
        out = list(tape)
        out[start:start + length] = op(tape[start:start + length])
        return None, out
    return spec


def _copy(args, tape, n):
    src, dst, length = args
    out = list(tape)
    for i in range(length):  # forward, cell by cell (overlap included)
        out[dst + i] = out[src + i]
    return None, out


def _fib(k):
    a, b = 0, 1
    for _ in range(k):
        a, b = b, a + b
    return a


SPECS = {
    "add": lambda a, t, n: (a[0] + a[1], t),
    "sub": lambda a, t, n: (a[0] - a[1], t),
    "mul": lambda a, t, n: (a[0] * a[1], t),
    "divmod": lambda a, t, n: (divmod(a[0], a[1]) if a[1] else (0, 0), t),
    "gcd": lambda a, t, n: (math.gcd(a[0], a[1]), t),
    "mul_mod": lambda a, t, n: (a[0] * a[1] % a[2] if a[2] else 0, t),
    "pow_mod": lambda a, t, n: (pow(a[0], a[1], a[2]) if a[2] else 0, t),
    "factorial": lambda a, t, n: (math.factorial(a[0]), t),
    "fib": lambda a, t, n: (_fib(a[0]), t),
    "fib_iter": lambda a, t, n: (_fib(a[0]), t),
    "sum_to": lambda a, t, n: (a[0] * (a[0] + 1) // 2, t),
    "insertion_sort": _segment_op(sorted),
    "bubble_sort": _segment_op(sorted),
    "reverse": _segment_op(lambda seg: seg[::-1]),
    "sum": lambda a, t, n: (sum(t[a[0]:a[0] + a[1]]), t),
    "max": lambda a, t, n: (max(t[a[0]:a[0] + a[1]], default=0), t),
    "count": lambda a, t, n: (t[a[0]:a[0] + a[1]].count(a[2]), t),
    "binary_search": lambda a, t, n: (bisect.bisect_left(t[a[0]:a[0] + a[1]], a[2]), t),
    "copy": _copy,
}


# --- inputs -------------------------------------------------------------------------------------------------

@st.composite
def segment(draw, config, max_length, sort=False):
    """``(start, length, tape)`` with the segment inside the tape and ``start + length < n`` (no wrap)."""
    room = min(config.cells, config.n - 1)
    length = draw(st.integers(0, min(max_length, room)))
    start = draw(st.integers(0, room - length))
    tape = draw(st.lists(st.integers(0, config.n - 1), min_size=config.cells, max_size=config.cells))
    if sort:
        tape[start:start + length] = sorted(tape[start:start + length])
    return start, length, tape


@st.composite
def inputs(draw, name, config, soft):
    """``(args, tape)`` for a library function. ``soft`` keeps the run short enough for the soft machine to stay
    exact (its hard-limit horizon, docs/library.md): fewer loop iterations and shallower recursion."""
    n = config.n
    value = st.integers(0, n - 1)
    if name in ("add", "sub", "mul", "divmod", "gcd"):
        return (draw(value), draw(value)), None
    if name == "mul_mod":  # exact for m <= (n + 1) // 2: no partial sum 2m - 2 wraps around n
        return (draw(value), draw(value), draw(st.integers(0, (n + 1) // 2))), None
    if name == "pow_mod":
        m = draw(st.integers(0, 3 if soft else (n + 1) // 2))
        return (draw(value), draw(st.integers(0, 1 if soft else n - 1)), m), None
    if name in ("factorial", "fib", "fib_iter", "sum_to"):
        soft_top = {"factorial": 8, "fib": 4, "fib_iter": 16, "sum_to": 9}[name]
        hard_top = {"factorial": config.stack - 1, "fib": 12, "fib_iter": n - 1, "sum_to": config.stack - 2}[name]
        return (draw(st.integers(0, soft_top if soft else hard_top)),), None
    if name == "copy":
        room = min(config.cells, config.n - 1)
        length = draw(st.integers(0, min(8 if soft else config.cells // 2, room)))
        src = draw(st.integers(0, room - length))
        dst = draw(st.integers(0, room - length))
        tape = draw(st.lists(value, min_size=config.cells, max_size=config.cells))
        return (src, dst, length), tape
    longest = {"insertion_sort": 3, "bubble_sort": 3, "count": 10}.get(name, config.cells) if soft else 24
    start, length, tape = draw(segment(config, longest, sort=name == "binary_search"))
    if name == "count":
        return (start, length, draw(st.sampled_from(tape))), tape
    if name == "binary_search":
        return (start, length, draw(value)), tape
    return (start, length), tape


# --- checking -----------------------------------------------------------------------------------------------

def results_of(out, count):
    return (out.value,) if count == 1 else (out.regs[0], out.regs[1])


def expected(name, args, tape, config):
    """The Python source's answer, checked against the spec, reduced modulo n."""
    n = config.n
    tape = tape if tape is not None else [0] * config.cells
    value, after = ncl.library.call_python(name, *args, mem=tape)
    spec_value, spec_after = SPECS[name](args, tape, n)
    if ncl.library.get(name, config).results == 2:
        value, spec_value = tuple(value), tuple(spec_value)
    else:
        value, spec_value = (value,), (spec_value,)
    assert after == spec_after, f"{name}{args}: the Python source disagrees with the spec on the tape"
    if spec_value != (None,):
        assert value == spec_value, f"{name}{args}: the Python source gives {value}, the spec {spec_value}"
    reduced = tuple(v % n for v in value) if value != (None,) else None
    return reduced, [x % n for x in after]


_SOFT: dict = {}


def soft_copy(name):
    """A float64 copy of the compiled function: the negative-rounding blow-up of fp32 (docs/library.md) cannot
    strike, so a failure here is a real disagreement."""
    if name not in _SOFT:
        _SOFT[name] = copy.deepcopy(ncl.library.get(name, SMALL))
        _SOFT[name].program.double()
    return _SOFT[name]


#: The functions on Z_n and on raw tape segments; the digit-tape programs have their own tests
#: (tests/test_library_digits.py, tests/test_library_lists.py, tests/test_library_graphs.py).
NAMES = [name for name in ncl.library.names() if name in SPECS]


def test_the_library_has_the_required_functions():
    assert set(REQUIRED) <= set(NAMES)
    assert set(NAMES) == set(SPECS)


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_vm_equals_python(name, data):
    args, tape = data.draw(inputs(name, BIG, soft=False))
    compiled = ncl.library.get(name, BIG)
    want, want_tape = expected(name, args, tape, BIG)
    out = compiled.execute(*args, mem=tape, engine="vm")
    if want is not None:
        assert results_of(out, compiled.results) == want
    assert out.mem == want_tape
    assert out.halted == 1.0


@pytest.mark.parametrize("name", NAMES)
@settings(max_examples=25, deadline=None)
@given(data=st.data())
def test_soft_equals_vm_and_python(name, data):
    args, tape = data.draw(inputs(name, SMALL, soft=True))
    compiled = soft_copy(name)
    want, want_tape = expected(name, args, tape, SMALL)
    hard = compiled.execute(*args, mem=tape, engine="vm")
    soft = compiled.execute(*args, mem=tape)
    if want is not None:
        assert results_of(soft, compiled.results) == results_of(hard, compiled.results) == want
    assert soft.mem == hard.mem == want_tape
    assert soft.regs == hard.regs and soft.steps == hard.steps
    assert soft.halted >= 0.99


def test_soft_fp32_default_dtype():
    """The library as shipped (fp32) on a few fixed inputs."""
    gcd = ncl.library.get("gcd", SMALL)
    out = gcd.execute(21, 12)
    assert out.value == 3 and out.halted >= 0.99
    sort = ncl.library.get("insertion_sort", SMALL)
    out = sort.execute(2, 4, mem=[9, 9, 7, 1, 30, 4])
    assert out.mem[:6] == [9, 9, 1, 4, 7, 30] and out.halted >= 0.99


# --- conventions --------------------------------------------------------------------------------------------

def test_divmod_returns_quotient_in_r0_and_remainder_in_r1():
    out = ncl.library.get("divmod", SMALL).execute(17, 5, engine="vm")
    assert (out.value, out.regs[1]) == (3, 2)
    out = ncl.library.get("divmod", SMALL).execute(17, 0, engine="vm")
    assert (out.value, out.regs[1]) == (0, 0)


def test_get_is_cached_per_config():
    assert ncl.library.get("gcd") is ncl.library.get("gcd")
    assert ncl.library.get("gcd", SMALL) is not ncl.library.get("gcd")
    assert ncl.library.get("gcd", SMALL).config == SMALL
    with pytest.raises(KeyError, match="no library function 'nope'"):
        ncl.library.get("nope")


def test_library_functions_call_each_other():
    compiled = ncl.library.get("pow_mod", SMALL)
    assert compiled.functions == ["pow_mod", "mul_mod"]
    assert "CALL mul_mod" in compiled.assembly


def test_call_python_restores_the_module_tape():
    before = tape_module.mem
    value, after = ncl.library.call_python("sum", 0, 3, mem=[1, 2, 3, 4])
    assert (value, after) == (6, [1, 2, 3, 4]) and tape_module.mem is before


@pytest.mark.parametrize("fn,depth_ok", [("factorial", SMALL.stack - 1), ("sum_to", SMALL.stack - 2)])
def test_recursion_up_to_the_stack_depth(fn, depth_ok):
    """factorial(k) makes k nested calls (the stub's included); sum_to(k) makes k + 1. A stack holds S - 1."""
    compiled = ncl.library.get(fn, SMALL)
    out = compiled.execute(depth_ok, engine="vm")
    assert out.value == SPECS[fn]((depth_ok,), None, SMALL.n)[0] % SMALL.n
    with pytest.raises(ExecutionError, match="stack overflow"):
        compiled.execute(depth_ok + 1, engine="vm")


# --- the image ----------------------------------------------------------------------------------------------

def test_image_holds_every_function_behind_its_entry():
    program = ncl.library.image(SMALL)
    assert isinstance(program, ncl.Program)
    assert list(program.entries) == ncl.library.names()
    assert program is not ncl.library.image(SMALL)  # a fresh, trainable module each time
    cases = {"gcd": ((18, 12), None), "pow_mod": ((3, 5, 7), None), "fib": ((7,), None),
             "insertion_sort": ((1, 5), [8, 5, 4, 3, 2, 1]), "divmod": ((30, 7), None)}
    for name in ncl.library.names():
        args, tape = cases.get(name, ((3, 4, 5)[:len(ncl.library.get(name, SMALL).params)], [4, 9, 1, 7, 2, 2]))
        alone = ncl.library.get(name, SMALL).execute(*args, mem=tape, engine="vm")
        state = vm.run(program, SMALL, regs=[0, *args], mem=tape, ip=program.entries[name], max_steps=10_000)
        assert state.halted and state.faults == 0, name
        assert state.regs[:2] == alone.regs[:2] and state.mem == alone.mem, name


def test_image_soft_run_from_an_entry():
    program = ncl.library.image(SMALL)
    entry = program.entries["gcd"]
    steps = vm.run(program, SMALL, regs=[0, 21, 6], ip=entry).steps
    regs = torch.nn.functional.one_hot(torch.tensor([[0, 21, 6, 0, 0, 0, 0, 0]]), SMALL.n).float()
    mem = torch.nn.functional.one_hot(torch.zeros(1, SMALL.cells, dtype=torch.long), SMALL.n).float()
    ip = torch.nn.functional.one_hot(torch.tensor([entry]), program.length).float()
    with torch.no_grad():
        out = program.run(regs, mem, ip=ip, max_steps=steps)
    assert int(out.r0.argmax()) == 3 and float(out.unhalted[0]) < 0.01


def test_image_round_trips_through_disassembly():
    program = ncl.library.image(SMALL)
    again = ncl.assemble(program.disassemble(), SMALL)
    assert again.instructions() == program.instructions()


# --- gradients ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name,args,tape", [("gcd", (12, 8), None), ("insertion_sort", (0, 3), [5, 1, 3])])
def test_gradients_reach_logits_and_inputs(name, args, tape):
    compiled = copy.deepcopy(ncl.library.get(name, SMALL))
    steps = compiled.trace(*args, mem=tape).steps
    cfg = SMALL
    regs = torch.nn.functional.one_hot(torch.tensor([[0, *args] + [0] * (cfg.registers - 1 - len(args))]),
                                       cfg.n).float().requires_grad_(True)
    cells = (tape or []) + [0] * (cfg.cells - len(tape or []))
    mem = torch.nn.functional.one_hot(torch.tensor([cells]), cfg.n).float().requires_grad_(True)
    out = compiled.run(regs, mem, max_steps=steps)
    if name == "gcd":
        loss = -torch.log(out.r0[0, 4] + 1e-12)
    else:
        loss = -sum(torch.log(out.mem[0, i, v] + 1e-12) for i, v in enumerate([1, 3, 5]))
    loss.backward()
    grads = [p.grad for p in compiled.program.parameters()]
    for g in [*grads, regs.grad, mem.grad]:
        assert g is not None and torch.isfinite(g).all()
    assert any(g.abs().sum() > 0 for g in grads)
    assert regs.grad.abs().sum() > 0 or mem.grad.abs().sum() > 0
    assert (regs.grad if name == "gcd" else mem.grad).abs().sum() > 0
