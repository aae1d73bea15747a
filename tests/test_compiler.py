"""The compiler (docs/design.md §4): semantics against Python on the VM, the calling convention, helpers and recursion,
max_steps, the soft machine, disassembly, gradients. CompileError cases are in test_compiler_errors.py."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import ncl
from ncl.compiler import ExecutionError
from ncl.machine import vm

#: A small machine: n=32 keeps the soft table ALU cheap; 16 cells and a 16-deep stack.
CFG = ncl.MachineConfig(n=32, cells=16, registers=8, stack=16)
N = CFG.n
ints = st.integers(0, N - 1)


# --- functions under test (module level, so that inspect finds their source) ---------------------------------

def arith(a, b, c):
    return (a + b) * c - a // (b + 1) + a % (c + 1) - 7


def compare_all(a, b):
    return (a < b) + 2 * (a <= b) + 4 * (a > b) + 8 * (a >= b) + 16 * (a == b) + (a != b)


def chained(a, b, c):
    return a < b <= c


def logic(a, b):
    x = a and b  # Python's value: b if a is true, else a
    y = a or b
    z = not a
    return x + 2 * y + z


def branches(a, b):
    if a > b:
        r = 1
    elif a == b:
        r = 2
    elif a == 0 or b == 0:
        r = 3
    else:
        r = 4 if a + 1 == b else 5
    return r


def min_max(a, b, c):
    return min(a, b, c) + max(a, c) * 2


def while_loop(k):
    total = 0
    i = 0
    while True:
        i += 1
        if i > k:
            break
        if i % 3 == 0:
            continue
        total += i
    return total


def for_loops(a, b):
    s = 0
    for i in range(a):
        s += i
    for j in range(a, b):
        s += 2 * j
    return s


def loop_variable_after(k):
    i = 5
    for i in range(k):
        pass
    return i  # Python: the last value (k - 1), or 5 if the loop never ran


def loop_variable_assigned(k):
    s = 0
    for i in range(k):
        s += i
        i = 0  # changes nothing: the next iteration takes the next value from range
    return s


def swap(a, b):
    a, b = b, a
    return a - b


def unary(a):
    return -a + (+a) + -(-a) + -3


def tape_ops(i, v):
    mem[i] = v
    mem[i + 1] += mem[i] + 1
    return mem[i + 1]


def tape_aug(i):
    mem[i] += 3
    mem[i] *= 2


CASES = [(arith, 3), (compare_all, 2), (chained, 3), (logic, 2), (branches, 2), (min_max, 3), (swap, 2),
         (unary, 1)]


@pytest.mark.parametrize("fn,arity", CASES, ids=[c[0].__name__ for c in CASES])
@settings(max_examples=60, deadline=None)
@given(args=st.lists(st.integers(0, N - 2), min_size=3, max_size=3))
def test_expressions_match_python_on_the_vm(fn, arity, args):
    """Every operator: the machine's answer is Python's, modulo n.

    + - * commute with "mod n"; // and % do not, so divisors like ``b + 1`` must not wrap to 0: inputs stop at
    n - 2.
    """
    args = args[:arity]
    compiled = compiled_for(fn)
    assert compiled.execute(*args, engine="vm").value == int(fn(*args)) % N


@settings(max_examples=40, deadline=None)
@given(k=st.integers(0, 20), a=st.integers(0, 6), b=st.integers(0, 12))
def test_loops_match_python_on_the_vm(k, a, b):
    assert compiled_for(while_loop).execute(k, engine="vm").value == while_loop(k) % N
    assert compiled_for(for_loops).execute(a, b, engine="vm").value == for_loops(a, b) % N
    assert compiled_for(loop_variable_after).execute(k, engine="vm").value == loop_variable_after(k)
    assert compiled_for(loop_variable_assigned).execute(k, engine="vm").value == loop_variable_assigned(k) % N


@settings(max_examples=40, deadline=None)
@given(i=st.integers(0, CFG.cells - 2), v=ints, tape=st.lists(ints, min_size=CFG.cells, max_size=CFG.cells))
def test_tape_reads_and_writes(i, v, tape):
    expected, after = ncl.library.call_python(tape_ops, i, v, mem=tape)
    out = compiled_for(tape_ops).execute(i, v, mem=tape, engine="vm")
    assert out.value == expected % N
    assert out.mem == [x % N for x in after]
    _, after = ncl.library.call_python(tape_aug, i, mem=tape)
    assert compiled_for(tape_aug).execute(i, mem=tape, engine="vm").mem == [x % N for x in after]


def test_tape_addresses_fold_onto_the_cells():
    out = compiled_for(tape_ops).execute(CFG.cells + 2, 9, engine="vm")  # cell 2, then cell 3
    assert out.mem[2] == 9 and out.mem[3] == 10 and out.value == 10


_COMPILED: dict = {}


def compiled_for(fn, *helpers, config=CFG):
    key = (fn, helpers, config)
    if key not in _COMPILED:
        _COMPILED[key] = ncl.compile(fn, *helpers, config=config)
    return _COMPILED[key]


# --- calling convention and program layout -------------------------------------------------------------------

def three(a, b, c):
    return a - c


def test_calling_convention_args_in_r1_result_in_r0():
    compiled = ncl.compile(three, config=CFG)
    assert isinstance(compiled, ncl.CompiledFunction)
    assert isinstance(compiled.program, ncl.Program)
    # The program alone: arguments in r1, r2, r3 from line 0 (the entry stub); the result lands in r0.
    out = compiled.program.execute(9, 4, 2, engine="vm")
    assert out.value == 7 and out.halted == 1.0
    lines = [line.strip() for line in compiled.assembly.splitlines()]
    assert lines[:3] == ["three.entry:", "CALL three", "HALT"]
    assert compiled.program.labels["three.entry"] == 0


def test_wrong_argument_count_is_a_value_error():
    with pytest.raises(ValueError, match="takes 3 argument"):
        ncl.compile(three, config=CFG).execute(1, 2)


def test_default_config_is_the_default_machine():
    assert ncl.compile(three).config == ncl.MachineConfig()


# --- calls: helpers, library, recursion ----------------------------------------------------------------------

def square(x):
    return x * x


def sum_of_squares(a, b):
    return square(a) + square(b)


def keeps_values_across_calls(a, b, c):
    x = square(a)
    y = square(b)
    return x + y + a + b + c  # a, b, c and x must survive the calls


def is_even(k):
    if k == 0:
        return 1
    return is_odd(k - 1)


def is_odd(k):
    if k == 0:
        return 0
    return is_even(k - 1)


def uses_library(a, b):
    q, r = divmod(a, b)  # the library's divmod: a pair in r0 and r1
    return gcd(a, b) + q * 0 + r  # noqa: F821 - resolved to ncl.library's gcd


def mul_mod(a, b, m):
    """A user helper with a library function's name: it shadows the library one in user code."""
    return 0


def shadowing(a, b, m):
    return pow_mod(a, b, m) + mul_mod(a, b, m)  # noqa: F821 - pow_mod is the library's; it calls the library mul_mod


@settings(max_examples=30, deadline=None)
@given(a=ints, b=ints, c=ints)
def test_composition_through_helpers(a, b, c):
    assert compiled_for(sum_of_squares, square).execute(a, b, engine="vm").value == (a * a + b * b) % N
    got = compiled_for(keeps_values_across_calls, square).execute(a, b, c, engine="vm").value
    assert got == keeps_values_across_calls(a, b, c) % N


def test_mutual_recursion():
    compiled = compiled_for(is_even, is_odd)
    assert [compiled.execute(k, engine="vm").value for k in range(8)] == [1, 0, 1, 0, 1, 0, 1, 0]
    assert compiled.functions == ["is_even", "is_odd"]


@settings(max_examples=30, deadline=None)
@given(a=ints, b=st.integers(1, N - 1))
def test_calls_into_the_library(a, b):
    assert compiled_for(uses_library).execute(a, b, engine="vm").value == (math.gcd(a, b) + a % b) % N


def double(x):
    return x + x


def quadruple(x):
    return double(double(x))


def test_the_compiler_takes_its_library_as_an_argument():
    """The compiler knows no library of its own: ncl.compile is ncl.library.compile, which passes ncl.library's
    functions; ncl.compiler.compile reaches only the library it is given."""
    assert ncl.compile is ncl.library.compile
    with pytest.raises(ncl.CompileError, match=r"unknown function divmod\(\)"):
        ncl.compiler.compile(uses_library, config=CFG)
    compiled = ncl.compiler.compile(uses_library, config=CFG, library=ncl.library.functions())
    assert compiled.execute(12, 8, engine="vm").value == (4 + 12 % 8) % N
    with pytest.raises(ncl.CompileError, match=r"double\(\) is not compiled"):
        ncl.compiler.compile(quadruple, config=CFG)
    compiled = ncl.compiler.compile(quadruple, config=CFG, library={"double": double})
    assert compiled.functions == ["quadruple", "double"]
    assert [compiled(x) for x in (0, 1, 5, 9)] == [0, 4, 20, 36 % N]


def test_user_helper_shadows_a_library_name_without_clashing():
    compiled = compiled_for(shadowing, mul_mod)
    assert "mul_mod.user:" in compiled.assembly and "\nmul_mod:" in compiled.assembly
    assert compiled.execute(3, 4, 7, engine="vm").value == pow(3, 4, 7)


def test_saved_registers_go_on_the_data_stack():
    text = compiled_for(keeps_values_across_calls, square).assembly
    assert "PUSH" in text and "POP" in text and text.count("CALL square") == 2


# --- recursion up to the stack depth -------------------------------------------------------------------------

def depth(k):
    if k == 0:
        return 0
    return depth(k - 1) + 1  # nothing to save: one return-stack slot a level


def rsum(k):
    if k == 0:
        return 0
    return k + rsum(k - 1)  # k is saved: one data-stack slot a level too


@pytest.mark.parametrize("fn", [depth, rsum])
def test_recursion_up_to_the_stack_depth(fn):
    """A stack holds S - 1 items. The entry stub's CALL takes one return slot, so k + 1 <= S - 1."""
    small = ncl.MachineConfig(n=32, cells=4, registers=4, stack=8)
    compiled = ncl.compile(fn, config=small)
    deepest = small.stack - 2
    out = compiled.execute(deepest, engine="vm")
    assert out.value == fn(deepest) % small.n
    state = vm.run(compiled.program, small, regs=[0, deepest], max_steps=10_000)
    assert state.halted and state.faults == 0
    soft = compiled.execute(deepest)
    assert soft.value == out.value and soft.halted >= 0.99
    with pytest.raises(ExecutionError, match="stack overflow"):
        compiled.execute(deepest + 1, engine="vm")
    with pytest.raises(ExecutionError, match="stack overflow"):
        compiled.execute(deepest + 1)


# --- max_steps -----------------------------------------------------------------------------------------------

def forever(k):
    while True:
        k += 1
    return k


def test_max_steps_none_runs_exactly_to_the_halting_step():
    compiled = compiled_for(while_loop)
    traced = compiled.trace(9)
    soft = compiled.execute(9)
    assert soft.steps == traced.steps == compiled.execute(9, engine="vm").steps
    assert soft.value == while_loop(9) % N and soft.halted >= 0.99


def test_a_program_that_never_halts_is_a_clear_error():
    compiled = ncl.compile(forever, config=CFG)
    with pytest.raises(ExecutionError, match="did not halt"):
        compiled.execute(1, engine="vm")
    # An explicit bound runs that many steps and reports what halted.
    out = compiled.execute(1, engine="vm", max_steps=50)
    assert out.steps == 50 and out.halted == 0.0


# --- the soft machine ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn,args", [(arith, (5, 6, 7)), (branches, (4, 4)), (logic, (0, 9)),
                                     (while_loop, (7,)), (swap, (3, 30)), (min_max, (8, 3, 5))])
def test_soft_machine_matches_vm_and_python(fn, args):
    compiled = compiled_for(fn)
    soft = compiled.execute(*args)
    hard = compiled.execute(*args, engine="vm")
    assert soft.value == hard.value == int(fn(*args)) % N
    assert soft.regs == hard.regs and soft.mem == hard.mem and soft.steps == hard.steps
    assert soft.halted >= 0.99


def test_batched_run_on_distributions():
    compiled = compiled_for(sum_of_squares, square)
    args = torch.tensor([[0, 3, 4, 0, 0, 0, 0, 0], [0, 5, 1, 0, 0, 0, 0, 0]])
    regs = torch.nn.functional.one_hot(args, N).float()
    mem = torch.nn.functional.one_hot(torch.zeros(2, CFG.cells, dtype=torch.long), N).float()
    with torch.no_grad():
        out = compiled.run(regs, mem, max_steps=compiled.trace(3, 4).steps)
    assert out.r0.argmax(-1).tolist() == [25, 26]
    assert float(out.unhalted.max()) < 0.01


# --- disassembly ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("fn,helpers", [(keeps_values_across_calls, (square,)), (while_loop, ()),
                                        (is_even, (is_odd,)), (tape_ops, ())])
def test_disassemble_reassemble_round_trip(fn, helpers):
    program = compiled_for(fn, *helpers).program
    again = ncl.assemble(program.disassemble(), CFG)
    assert again.instructions() == program.instructions()
    for (name, p), (_, q) in zip(program.named_parameters(), again.named_parameters()):
        assert torch.equal(p, q), name
    assert again.disassemble() == program.disassemble()


# --- gradients -----------------------------------------------------------------------------------------------

def test_gradients_reach_program_logits_and_inputs():
    compiled = ncl.compile(sum_of_squares, square, config=CFG)
    steps = compiled.trace(3, 4).steps
    args = torch.tensor([[0, 3, 4, 0, 0, 0, 0, 0]])
    regs = torch.nn.functional.one_hot(args, N).float().requires_grad_(True)
    mem = torch.nn.functional.one_hot(torch.zeros(1, CFG.cells, dtype=torch.long), N).float()
    mem.requires_grad_(True)
    out = compiled.run(regs, mem, max_steps=steps)
    loss = -torch.log(out.r0[0, 25] + 1e-12)  # the answer 3² + 4² = 25
    loss.backward()
    grads = {name: p.grad for name, p in compiled.program.named_parameters()}
    for g in [*grads.values(), regs.grad]:
        assert g is not None and torch.isfinite(g).all()
    assert any(g.abs().sum() > 0 for g in grads.values())
    assert regs.grad.abs().sum() > 0


# --- loop constants ------------------------------------------------------------------------------------------

def crowded_loop(a, b, c, d, e):
    s = 0
    for i in range(a):
        s += b
        s += c
        s += d
        s += e
        s += 7
    return s


def _const_before_loop(text: str, value: int) -> bool:
    head = text.split("crowded_loop.for", 1)[0]
    return "CONST r" in head and f", {value}\n" in head


@pytest.mark.parametrize("registers,hoisted", [(9, True), (8, False)])
def test_loop_constants_are_hoisted_when_registers_allow(registers, hoisted):
    """With a spare register the loop's constant is loaded once, before the loop; without one, at each use."""
    config = ncl.MachineConfig(n=32, cells=16, registers=registers, stack=16)
    compiled = ncl.compile(crowded_loop, config=config)
    assert _const_before_loop(compiled.assembly, 7) == hoisted
    assert compiled.execute(5, 1, 2, 3, 4, engine="vm").value == crowded_loop(5, 1, 2, 3, 4) % 32
    steps = compiled.trace(5, 1, 2, 3, 4).steps
    other = ncl.compile(crowded_loop, config=ncl.MachineConfig(n=32, cells=16, registers=17 - registers, stack=16))
    assert (steps < other.trace(5, 1, 2, 3, 4).steps) == hoisted  # hoisting saves a step an iteration


# --- library names that are also builtins --------------------------------------------------------------------

from ncl.library.sources.tape import max as tape_max  # noqa: E402 - a library function under another name


def builtin_and_library_names(k):
    total = sum(0, k)  # not an op: the library's tape sum
    biggest = tape_max(0, k)  # bound to the library's tape max
    return max(total, biggest) + min(total, 1)  # the MAX and MIN ops


def test_builtin_names_versus_library_names():
    compiled = compiled_for(builtin_and_library_names)
    assert sorted(compiled.functions) == ["builtin_and_library_names", "max", "sum"]
    tape = [3, 9, 4]
    assert compiled.execute(3, mem=tape, engine="vm").value == max(16, 9) + 1
    assert "MAX r" in compiled.assembly and "MIN r" in compiled.assembly
