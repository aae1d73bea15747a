"""``ncl.compile(..., overflow="error")``: the integer runs raise ``OverflowError`` where an ADD, SUB, MUL, INC or
DEC leaves the machine's values ``0..n-1`` (``"wrap"``, the default, wraps around Z_n like the soft machine);
and an argument out of range is named as the function's argument, not as a register."""

from __future__ import annotations

import pytest

import ncl
from ncl.machine import MachineConfig, assemble, vm

N32 = MachineConfig(n=32)


def square(x):
    return x * x


def difference(a, b):
    return a - b


def count_up(a):
    a += 1
    return a


def gcd(a, b):
    while b != 0:
        a, b = b, a % b
    return a


def test_wrap_is_the_default():
    f = ncl.compile(square, config=N32)
    assert f.overflow == "wrap" and f(6) == 36 % 32


def test_error_names_the_call_the_line_and_the_operands():
    f = ncl.compile(square, config=N32, overflow="error")
    assert f(5) == 25
    with pytest.raises(OverflowError) as err:
        f(6)
    message = str(err.value)
    assert message.startswith("square(6): line ") and "(MUL r" in message
    assert "6 * 6 = 36 is outside the machine's values 0..31 (overflow='wrap' would give 4)" in message
    assert "overflow='error'" in repr(f)


@pytest.mark.parametrize("fn, args, text", [(difference, (1, 5), "1 - 5 = -4"), (count_up, (31,), "31 + 1 = 32")])
def test_every_wrapping_op_is_checked(fn, args, text):
    f = ncl.compile(fn, config=N32, overflow="error")
    with pytest.raises(OverflowError, match=text.replace("+", r"\+")):
        f(*args)
    assert ncl.compile(fn, config=N32)(*args) == eval(text.split(" = ")[1]) % 32


def test_programs_within_range_run_as_before():
    f = ncl.compile(gcd, config=N32, overflow="error")
    assert [f(a, b) for a, b in [(12, 18), (31, 7), (0, 5)]] == [6, 1, 5]
    assert f.execute(12, 18).value == 6  # the soft run, after the VM's check


@pytest.mark.parametrize("call", [lambda f: f(6), lambda f: f.execute(6), lambda f: f.execute(6, engine="vm"),
                                  lambda f: f.execute(6, max_steps=10), lambda f: f.trace(6)],
                         ids=["call", "execute", "execute vm", "execute max_steps", "trace"])
def test_every_integer_run_checks(call):
    with pytest.raises(OverflowError, match="6 \\* 6 = 36"):
        call(ncl.compile(square, config=N32, overflow="error"))


def test_the_vm_raises_before_changing_the_state():
    program = assemble("CONST r1, 30\nINC r0, r1\nDEC r2, r3\nHALT", N32)
    assert vm.run(program, regs=[0, 31]).regs[:3] == [31, 30, 31]  # wraps: DEC of 0 is 31
    state = vm.initial_state(N32, [0, 31])
    code = vm.decode(program)
    vm.step(code, state, N32, "error")
    vm.step(code, state, N32, "error")  # INC r0, r1 = 31: in range
    with pytest.raises(OverflowError, match=r"line 2 \(DEC r2, r3\), step 3: 0 - 1 = -1"):
        vm.step(code, state, N32, "error")
    assert state.steps == 2 and state.ip == 2 and state.regs[2] == 0


def test_a_bad_overflow_mode_is_refused():
    with pytest.raises(ValueError, match="overflow must be one of 'wrap', 'error', got 'saturate'"):
        ncl.compile(square, config=N32, overflow="saturate")
    with pytest.raises(ValueError, match="overflow must be one of"):
        vm.run(assemble("HALT", N32), overflow="raise")


@pytest.mark.parametrize("engine", ["vm", "soft"])
def test_an_argument_out_of_range_is_named_as_an_argument(engine):
    f = ncl.compile(gcd, config=N32)
    with pytest.raises(ValueError) as err:
        f.execute(12, 40, engine=engine)
    assert str(err.value) == ("gcd() argument b must be an int in 0..31 (the machine's values, MachineConfig.n=32), "
                              "got 40")
    with pytest.raises(ValueError, match="argument a must be an int in 0..31"):
        f(-1, 3)
    with pytest.raises(ValueError, match="takes 2 argument"):
        f.trace(1)


def predecessor(x):
    return x + (-1)


def test_a_negative_constant_is_its_residue():
    # Constants are reduced modulo n (docs/compiler.md): x + (-1) adds 31 at n=32, which "error" reports.
    assert ncl.compile(predecessor, config=N32)(5) == 4
    with pytest.raises(OverflowError, match="5 \\+ 31 = 36"):
        ncl.compile(predecessor, config=N32, overflow="error")(5)
