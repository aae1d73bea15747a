"""CompileError: every unsupported construct is named, at its source line (the line marked ``# <-``)."""

from __future__ import annotations

import inspect

import pytest

import ncl

CFG = ncl.MachineConfig(n=32, cells=16, registers=8, stack=16)
LIMIT = [3]  # a global list: only module-level ints are named constants


def uses_float(a):
    return a * 0.5  # <-


def uses_string(a):
    b = a + 1
    s = "text"  # <-
    return b


def uses_list(a):
    xs = [a, a]  # <-
    return a


def uses_comprehension(a):
    return a + sum([i for i in range(a)])  # <-


def uses_generator(a):
    return sum(i for i in range(a))  # <-


def make_closure():
    k = 3

    def uses_closure(a):
        return a + k  # <-

    return uses_closure


def nested_function(a):
    def inner(b):  # <-
        return b

    return a


def uses_lambda(a):
    f = lambda x: x  # noqa: E731  # <-
    return a


def uses_global(a):
    return a + LIMIT  # <-


def crowded(a, b, c, d, e, f, g):
    h = a * b
    i = h + c  # <-
    return a + b + c + d + e + f + g + h + i


def true_division(a, b):
    return a / b  # <-


def power(a):
    return a ** 2  # <-


def bitwise(a, b):
    return a & b  # <-


def attribute_call(a):
    return a.bit_length()  # <-


def keyword_call(a):
    return helper_two(a, b=1)  # <-


def helper_two(a, b):
    return a + b


def unknown_call(a):
    return no_such_function(a)  # noqa: F821  # <-


def wrong_arity(a):
    return helper_two(a)  # <-


def maybe_unassigned(k):
    for i in range(k):
        last = i
    return last  # <-


def over_a_list(a):
    for x in (1, 2, 3):  # <-
        a += x
    return a


def range_with_step(a):
    for i in range(0, a, 2):  # <-
        pass
    return a


def assigns_the_tape(a):
    mem = a  # <-
    return a


def tape_without_index(a):
    return mem  # noqa: F821  # <-


def tape_slice(a):
    return mem[0:a]  # noqa: F821  # <-


def while_else(a):
    while a:
        a -= 1
    else:  # noqa
        a = 3
    return a


def try_statement(a):
    try:  # <-
        a += 1
    except ValueError:
        pass
    return a


def subscript_param(a):
    return a[0]  # <-


def unpack_non_pair(a):
    x, y = a  # <-
    return x


def returns_pair(a):
    return a, a


def pair_as_value(a):
    return returns_pair(a) + 1  # <-


def none_value(a):
    return None  # <-


def is_operator(a, b):
    return a is b  # <-


def with_default(a, b=2):  # <-
    return a


def star_args(*args):  # <-
    return 0


def too_many_params(a, b, c, d, e, f, g, h):  # <-
    return a


def marked_line(fn) -> int:
    """The file line of the ``# <-`` marker in fn's source (or of its while line, for while/else)."""
    lines, first = inspect.getsourcelines(fn)
    for i, text in enumerate(lines):
        if text.rstrip().endswith("# <-"):
            return first + i
    for i, text in enumerate(lines):
        if text.strip().startswith("while"):
            return first + i
    raise AssertionError(f"no marker in {fn.__name__}")


CASES = [
    (uses_float, (), "floats"),
    (uses_string, (), "strings"),
    (uses_list, (), "lists"),
    (uses_comprehension, (), "list comprehensions"),
    (uses_generator, (), "generator expressions"),
    (make_closure(), (), "closure"),
    (nested_function, (), r"nested functions \(closures\)"),
    (uses_lambda, (), r"lambdas \(closures\)"),
    (uses_global, (), "global variables"),
    (crowded, (), "too many live locals"),
    (true_division, (), "true division"),
    (power, (), r"'\*\*'"),
    (bitwise, (), "bitwise"),
    (attribute_call, (), "attribute"),
    (keyword_call, (helper_two,), "keyword arguments"),
    (unknown_call, (), "unknown function no_such_function"),
    (wrong_arity, (helper_two,), r"takes 2 argument\(s\), got 1"),
    (maybe_unassigned, (), "'last' may be used before it is assigned"),
    (over_a_list, (), "range"),
    (range_with_step, (), "no step"),
    (assigns_the_tape, (), "mem is the tape"),
    (tape_without_index, (), "mem is the tape"),
    (tape_slice, (), "slices"),
    (while_else, (), "while ... else"),
    (try_statement, (), "try statements"),
    (subscript_param, (), "only supported on the tape"),
    (unpack_non_pair, (), "only a tuple or a call"),
    (pair_as_value, (returns_pair,), "returns 2 values"),
    (none_value, (), "None"),
    (is_operator, (), "'is'"),
    (with_default, (), "default parameter"),
    (star_args, (), r"\*args"),
    (too_many_params, (), "8 parameters do not fit"),
]


@pytest.mark.parametrize("fn,helpers,message", CASES, ids=[c[0].__name__ for c in CASES])
def test_compile_error_names_the_construct_and_line(fn, helpers, message):
    with pytest.raises(ncl.CompileError, match=message) as info:
        ncl.compile(fn, *helpers, config=CFG)
    err = info.value
    assert err.lineno == marked_line(fn), str(err)
    assert err.filename == __file__
    assert f":{err.lineno}:" in str(err)  # the line number is in the message, not only an attribute
    assert err.function == fn.__name__


def test_crowded_fits_with_more_registers():
    """The same function compiles once the machine has registers for all its live values."""
    compiled = ncl.compile(crowded, config=ncl.MachineConfig(n=32, cells=16, registers=10, stack=16))
    assert compiled.execute(1, 2, 3, 4, 5, 6, 7, engine="vm").value == crowded(1, 2, 3, 4, 5, 6, 7) % 32


def test_not_a_function():
    with pytest.raises(ncl.CompileError, match="Python functions"):
        ncl.compile(len)
    with pytest.raises(ncl.CompileError, match="lambda"):
        ncl.compile(lambda a: a)


def test_two_functions_with_one_name():
    def helper_two(a):  # noqa: F811 - deliberately the same name as the module's helper_two
        return a

    with pytest.raises(ncl.CompileError, match="two functions are named 'helper_two'"):
        ncl.compile(keyword_call, helper_two, globals()["helper_two"])


def test_bad_config():
    with pytest.raises(TypeError, match="MachineConfig"):
        ncl.compile(uses_float, config={"n": 32})


def test_compile_error_is_exported():
    assert ncl.CompileError is ncl.compiler.CompileError
    assert issubclass(ncl.compiler.ExecutionError, RuntimeError)


BASE = 10  # a module-level int: folded as a named constant


def uses_named_constant(a):
    mem[a] = BASE
    return a * BASE + BASE


def test_module_level_int_is_a_named_constant():
    f = ncl.compile(uses_named_constant, config=ncl.MachineConfig(n=128, cells=16, stack=16))
    result = f.execute(3, engine="vm")
    assert result.value == 40 and result.mem[3] == 10
