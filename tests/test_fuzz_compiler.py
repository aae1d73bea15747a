"""Fuzzing the compiler: random programs of the supported subset run on the VM as CPython runs them (in Z_n),
and unsupported constructs anywhere in a function give a ``CompileError`` naming their line.

The programs come from a grammar of the subset (docs/compiler.md): int parameters and locals, ``+ - * // %``,
comparisons (chains too), ``and or not``, unary ``-``, ``x if c else y``, ``min``/``max``, ``if/elif/else``,
bounded ``while`` loops with ``break``/``continue``, ``for i in range(...)``, ``return``, ``x op= e``, ``a, b = x,
y``, calls to helpers (one returning a pair) and the tape ``mem[i]``. Each is written to a module file (the
compiler reads the source with ``inspect``), imported and compiled.

The oracle is CPython on the same source with the machine's arithmetic (docs/compiler.md, "Arithmetic is the
machine's"): an AST rewrite makes every constant ``c % n``, ``+ - *`` wrap modulo n, ``//`` and ``%`` by 0 give
0, ``not x`` give 0 or 1, tape addresses fold modulo C, and a bare ``return`` or the end of a function return
0. Every value then stays in 0..n-1, where comparisons, ``and``/``or`` and ``min``/``max`` mean the same on both.

Examples per test scale with the hypothesis profile (``NCL_THOROUGH=1``: 10×, tests/conftest.py).
"""

from __future__ import annotations

import ast
import importlib.util
import itertools
import random
import sys

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import ncl
from ncl.compiler import CompileError

CONFIGS = [ncl.MachineConfig(n=16, cells=8, registers=8, stack=32),
           ncl.MachineConfig(n=7, cells=4, registers=8, stack=32),
           ncl.MachineConfig(n=32, cells=8, registers=6, stack=32)]
#: Inputs each compiled program runs on.
RUNS = 3
_counter = itertools.count()


def examples(n: int) -> int:
    """``n`` examples in CI; the profile's multiple of it under ``NCL_THOROUGH=1``."""
    return n * settings.default.max_examples // 100


def fuzz(n: int) -> settings:
    return settings(max_examples=examples(n), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                           HealthCheck.filter_too_much])


# --- the grammar --------------------------------------------------------------------------------------------

class Gen:
    """Draws the source of one function of the subset, line by line (``lines``, 4-space indents).

    ``vars``: names that may be read; ``assignable``: names that may be written (never a while counter);
    ``helpers``: (name, params, results) of the functions it may call.
    """

    def __init__(self, draw, n: int, helpers: list[tuple[str, int, int]], loops: bool, results: int = 1):
        self.draw, self.n, self.helpers, self.loops_allowed, self.results = draw, n, helpers, loops, results
        self.lines: list[str] = []
        self.whiles = 0
        self.loop_depth = 0  # loops nest at most two deep, so that a run stays within ~n^2 iterations

    def pick(self, options):
        return self.draw(st.sampled_from(options))

    def chance(self, k: int) -> bool:
        """True one time in k."""
        return self.draw(st.integers(0, k - 1)) == 0

    def const(self) -> str:
        kind = self.draw(st.integers(0, 9))
        if kind < 7:
            return str(self.draw(st.integers(0, self.n - 1)))
        if kind == 7:
            return str(self.draw(st.integers(0, 1000)))
        return self.pick(["True", "False"])

    def expr(self, vars: list[str], depth: int, calls: bool = True) -> str:
        if depth <= 0 or self.chance(3):
            return self.pick(vars) if vars and not self.chance(3) else self.const()
        d = depth - 1
        kinds = ["bin", "bin", "bin", "cmp", "chain", "bool", "not", "neg", "ifexp", "minmax", "mem"]
        if calls and any(r == 1 for _, _, r in self.helpers):
            kinds.append("call")
        kind = self.pick(kinds)
        if kind == "bin":
            op = self.pick(["+", "-", "*", "//", "%", "+", "-"])
            return f"({self.expr(vars, d, calls)} {op} {self.expr(vars, d, calls)})"
        if kind == "cmp":
            op = self.pick(["==", "!=", "<", "<=", ">", ">="])
            return f"({self.expr(vars, d, calls)} {op} {self.expr(vars, d, calls)})"
        if kind == "chain":
            a, b, c = (self.expr(vars, d - 1, calls) for _ in range(3))
            return f"({a} {self.pick(['<', '<=', '=='])} {b} {self.pick(['<', '!=', '>='])} {c})"
        if kind == "bool":
            op = self.pick(["and", "or"])
            return f"({self.expr(vars, d, calls)} {op} {self.expr(vars, d, calls)})"
        if kind == "not":
            return f"(not {self.expr(vars, d, calls)})"
        if kind == "neg":
            return f"(-{self.expr(vars, d, calls)})"
        if kind == "ifexp":
            return f"({self.expr(vars, d, calls)} if {self.expr(vars, d, calls)} else {self.expr(vars, d, calls)})"
        if kind == "minmax":
            args = ", ".join(self.expr(vars, d, calls) for _ in range(self.draw(st.integers(2, 3))))
            return f"{self.pick(['min', 'max'])}({args})"
        if kind == "mem":
            return f"mem[{self.expr(vars, d, calls)}]"
        name, params, _ = self.pick([h for h in self.helpers if h[2] == 1])
        return f"{name}({', '.join(self.expr(vars, d, calls) for _ in range(params))})"

    def emit(self, indent: int, text: str) -> None:
        self.lines.append("    " * indent + text)

    def block(self, indent: int, vars: list[str], assignable: list[str], depth: int, loop: bool,
              count: int | None = None) -> None:
        for _ in range(count if count is not None else self.draw(st.integers(1, 3))):
            self.statement(indent, vars, assignable, depth, loop)

    def statement(self, indent: int, vars, assignable, depth: int, loop: bool) -> None:
        kinds = ["assign", "assign", "assign", "aug", "store", "augstore", "pass", "swap"]
        if depth > 0:
            kinds += ["if", "if"] + (["for", "for", "while"] if self.loops_allowed and self.loop_depth < 2 else [])
        if loop:
            kinds += ["break", "continue"]
        if self.helpers:
            kinds += ["callstmt"]
        if any(r == 2 for _, _, r in self.helpers) and len(assignable) >= 2:
            kinds += ["unpack"]
        kinds += ["return"]
        kind = self.pick(kinds)
        e = lambda d=2: self.expr(vars, d)  # noqa: E731
        if kind == "assign":
            self.emit(indent, f"{self.pick(assignable)} = {e()}")
        elif kind == "aug":
            self.emit(indent, f"{self.pick(assignable)} {self.pick(['+', '-', '*', '//', '%'])}= {e()}")
        elif kind == "store":
            self.emit(indent, f"mem[{e(1)}] = {e()}")
        elif kind == "augstore":
            self.emit(indent, f"mem[{e(1)}] {self.pick(['+', '-', '*', '//', '%'])}= {e()}")
        elif kind == "pass":
            self.emit(indent, "pass")
        elif kind == "swap" and len(assignable) >= 2:
            a, b = self.draw(st.permutations(assignable))[:2]
            self.emit(indent, f"{a}, {b} = {self.pick([b, e(1)])}, {self.pick([a, e(1)])}")
        elif kind == "swap":
            self.emit(indent, f"{assignable[0]} = {e()}")
        elif kind == "if":
            self.emit(indent, f"if {e()}:")
            self.block(indent + 1, vars, assignable, depth - 1, loop)
            for _ in range(self.draw(st.integers(0, 1))):
                self.emit(indent, f"elif {e()}:")
                self.block(indent + 1, vars, assignable, depth - 1, loop)
            if self.chance(2):
                self.emit(indent, "else:")
                self.block(indent + 1, vars, assignable, depth - 1, loop)
        elif kind == "for":
            var = self.pick(assignable)
            bounds = e(1) if self.chance(2) else f"{e(1)}, {e(1)}"
            self.emit(indent, f"for {var} in range({bounds}):")
            self.loop_depth += 1
            self.block(indent + 1, vars, assignable, depth - 1, True)
            self.loop_depth -= 1
        elif kind == "while":
            w = f"w{self.whiles}"
            self.whiles += 1
            self.emit(indent, f"{w} = 0")
            bound = self.draw(st.integers(1, 4))
            if self.chance(4):  # a constant test: no test is compiled, the loop leaves by break only
                self.emit(indent, f"while {self.pick(['True', '1'])}:")
                self.emit(indent + 1, f"{w} += 1")
                self.emit(indent + 1, f"if {w} > {bound}:")
                self.emit(indent + 2, "break")
            else:
                self.emit(indent, f"while {w} < {bound}{' and ' + e(1) if self.chance(3) else ''}:")
                self.emit(indent + 1, self.pick([f"{w} += 1", f"{w} = {w} + 1"]))
            self.loop_depth += 1
            self.block(indent + 1, vars + [w], assignable, depth - 1, True)
            self.loop_depth -= 1
        elif kind in ("break", "continue"):
            self.emit(indent, f"if {e(1)}:")
            self.emit(indent + 1, kind)
        elif kind == "callstmt":
            name, params, _ = self.pick(self.helpers)
            self.emit(indent, f"{name}({', '.join(e(1) for _ in range(params))})")
        elif kind == "unpack":
            name, params, _ = self.pick([h for h in self.helpers if h[2] == 2])
            a, b = self.draw(st.permutations(assignable))[:2]
            self.emit(indent, f"{a}, {b} = {name}({', '.join(e(1) for _ in range(params))})")
        elif kind == "return":
            value = e() if self.results == 1 else f"{e()}, {e(1)}"
            self.emit(indent, f"return {value}" if not self.chance(4) else "return")


@st.composite
def programs(draw) -> tuple[str, ncl.MachineConfig, list[str]]:
    """``(source, config, names)``: a module whose last function is the one compiled; names of all, in order."""
    config = draw(st.sampled_from(CONFIGS))
    helpers: list[tuple[str, int, int]] = []
    chunks = []
    for k in range(draw(st.integers(0, 2))):
        params = ["p", "q"][:draw(st.integers(1, 2))]
        kind = draw(st.sampled_from(["h", "h", "pair", "rec"]))
        results = 2 if kind == "pair" else 1
        name = f"{kind}{k}"
        gen = Gen(draw, config.n, list(helpers), loops=False, results=results)
        if kind == "rec":  # recursion, at most 4 deep
            gen.emit(1, f"if p < 1 or p > {draw(st.integers(1, 4))}:")
            gen.emit(2, f"return {gen.expr(params, 1, calls=False)}")
            args = ", ".join(["p - 1"] + [gen.expr(params, 1, calls=False) for _ in params[1:]])
            gen.emit(1, f"t = {name}({args}) {gen.pick(['+', '*', '-'])} {gen.expr(params, 1, calls=False)}")
        else:
            gen.emit(1, f"t = {gen.expr(params, 2)}")
        gen.block(1, params + ["t"], params + ["t"], depth=1, loop=False)
        if results == 2:
            gen.emit(1, f"return {gen.expr(params + ['t'], 2)}, {gen.expr(params + ['t'], 1)}")
        chunks.append([f"def {name}({', '.join(params)}):", *gen.lines])
        helpers.append((name, len(params), results))
    params = ["a", "b", "c"][:draw(st.integers(1, 3))]
    locals_ = ["x", "y", "i", "j"][:draw(st.integers(1, 4))]
    gen = Gen(draw, config.n, helpers, loops=True)
    for name in locals_:
        gen.emit(1, f"{name} = {gen.expr(params, 1, calls=False)}")
    gen.block(1, params + locals_, params + locals_, depth=3, loop=False, count=draw(st.integers(1, 6)))
    if draw(st.booleans()):
        gen.emit(1, f"return {gen.expr(params + locals_, 2)}")
    chunks.append([f"def f({', '.join(params)}):", *gen.lines])
    source = "\n\n\n".join("\n".join(chunk) for chunk in chunks) + "\n"
    return source, config, [chunk[0][4:chunk[0].index("(")] for chunk in chunks]


# --- running the source: the compiler, and CPython in Z_n ------------------------------------------------------

@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz_compiler")


def load(workdir, source: str):
    """Write ``source`` to a fresh module file and import it (``inspect`` needs the file for the source)."""
    name = f"ncl_fuzz_{next(_counter)}"
    path = workdir / f"{name}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    finally:
        del sys.modules[name]
    return module, str(path)


class ZnOracle(ast.NodeTransformer):
    """Rewrites a module so that CPython computes what the machine computes (the module docstring)."""

    OPS = {ast.Add: "_add", ast.Sub: "_sub", ast.Mult: "_mul", ast.FloorDiv: "_div", ast.Mod: "_mod"}

    def __init__(self, results: dict[str, int]):
        self.results = results

    @staticmethod
    def call(name: str, *args: ast.expr) -> ast.Call:
        return ast.Call(ast.Name(name, ast.Load()), list(args), [])

    def visit_FunctionDef(self, node):
        self.current = node.name
        self.generic_visit(node)
        zero = [ast.Constant(0)] * self.results[node.name]
        node.body.append(ast.Return(zero[0] if len(zero) == 1 else ast.Tuple(zero, ast.Load())))
        return node

    def visit_Return(self, node):
        self.generic_visit(node)
        if node.value is None:
            zero = [ast.Constant(0)] * self.results[self.current]
            node.value = zero[0] if len(zero) == 1 else ast.Tuple(zero, ast.Load())
        return node

    def visit_Constant(self, node):
        return self.call("_c", node) if isinstance(node.value, (int, bool)) else node

    def visit_BinOp(self, node):
        self.generic_visit(node)
        return self.call(self.OPS[type(node.op)], node.left, node.right)

    def visit_UnaryOp(self, node):
        self.generic_visit(node)
        if isinstance(node.op, ast.USub):
            return self.call("_sub", self.call("_c", ast.Constant(0)), node.operand)
        if isinstance(node.op, ast.Not):
            return self.call("_not", node.operand)
        return node

    def visit_Compare(self, node):
        self.generic_visit(node)
        return self.call("int", node)

    def visit_Subscript(self, node):
        self.generic_visit(node)
        node.slice = self.call("_addr", node.slice)
        return node

    def visit_AugAssign(self, node):
        self.generic_visit(node)
        op = ast.Name(self.OPS[type(node.op)], ast.Load())
        if isinstance(node.target, ast.Name):  # x op= e: x is read before e is evaluated
            return ast.Assign([node.target], self.call(op.id, ast.Name(node.target.id, ast.Load()), node.value))
        # mem[i] op= e: i, then the old cell, then e, then the store (Python's order, and the compiler's)
        thunk = ast.Lambda(ast.arguments([], [], None, [], [], None, []), node.value)
        return ast.Expr(self.call("_augmem", node.target.slice, op, thunk))


def oracle(source: str, config: ncl.MachineConfig, results: dict[str, int]) -> dict:
    """The namespace of ``source`` rewritten by :class:`ZnOracle`, with its helpers and a tape ``mem``."""
    n, cells = config.n, config.cells
    tree = ZnOracle(results).visit(ast.parse(source))
    ast.fix_missing_locations(tree)
    ns: dict = {"mem": [0] * cells}

    def augmem(address, op, thunk):
        old = ns["mem"][address]
        ns["mem"][address] = op(old, thunk())

    ns.update(_c=lambda c: int(c) % n, _add=lambda a, b: (a + b) % n, _sub=lambda a, b: (a - b) % n,
              _mul=lambda a, b: (a * b) % n, _div=lambda a, b: a // b if b else 0,
              _mod=lambda a, b: a % b if b else 0, _not=lambda a: int(not a), _addr=lambda i: i % cells,
              _augmem=augmem)
    exec(compile(tree, "<oracle>", "exec"), ns)  # noqa: S102  (our own generated code)
    return ns


def results_of(source: str) -> dict[str, int]:
    """How many values each function returns (2 for ``return a, b``)."""
    out = {}
    for fn in ast.parse(source).body:
        pairs = any(isinstance(r, ast.Return) and isinstance(r.value, ast.Tuple) for r in ast.walk(fn))
        out[fn.name] = 2 if pairs else 1
    return out


def function_lines(source: str, name: str) -> range:
    fn = next(node for node in ast.parse(source).body if node.name == name)
    return range(fn.lineno, fn.end_lineno + 1)


# --- the properties -------------------------------------------------------------------------------------------

@fuzz(120)
@given(program=programs(), seed=st.integers(0, 2**32 - 1))
def test_supported_programs_run_as_cpython_runs_them(workdir, program, seed):
    source, config, names = program
    module, path = load(workdir, source)
    fns = [getattr(module, name) for name in names]
    try:
        compiled = ncl.compile(fns[-1], *fns[:-1], config=config)
    except CompileError as exc:
        # The one limit a program of the subset may hit: more live values than registers (no spilling).
        assert "too many live" in exc.message, f"{exc}\n{source}"
        assert exc.filename == path and exc.lineno in function_lines(source, exc.function), f"{exc}\n{source}"
        event("too many live values")
        return
    event(f"compiled, {len(source.splitlines()) // 10 * 10}+ lines")
    ns = oracle(source, config, results_of(source))
    rng = random.Random(seed)
    for _ in range(RUNS):
        args = [rng.randrange(config.n) for _ in compiled.params]
        tape = [rng.randrange(config.n) for _ in range(config.cells)]
        ns["mem"][:] = tape
        want = ns["f"](*args)
        got = compiled.execute(*args, mem=list(tape), engine="vm")
        assert (got.value, got.mem) == (want, ns["mem"]), \
            f"f{tuple(args)} with mem={tape}: VM {got.value}, {got.mem}; CPython {want}, {ns['mem']}\n{source}"


# Unsupported constructs: (lines, index of the line the error must name). {i} is the indentation.
BAD_STATEMENTS = [
    (["x = 1.5"], 0), (["x = 'text'"], 0), (["x = b'bytes'"], 0), (["x = 2j"], 0), (["x = None"], 0),
    (["x = ..."], 0), (["x = [a, 1]"], 0), (["x = (a, 1)"], 0), (["x = {a: 1}"], 0), (["x = {a}"], 0),
    (["x = [k for k in range(3)]"], 0), (["x = sum(k for k in range(3))"], 0), (["x = f'{a}'"], 0),
    (["x = a / 2"], 0), (["x = a ** 2"], 0), (["x = a << 1"], 0), (["x = a & 1"], 0), (["x = a | 1"], 0),
    (["x = a ^ 1"], 0), (["x = ~a"], 0), (["x = a is a"], 0), (["x = a in mem"], 0), (["x = a.real"], 0),
    (["a.attr = 1"], 0), (["a.attr += 1"], 0), (["x = print(a)"], 0), (["x = abs(a)"], 0), (["x = min(a)"], 0),
    (["x = max(a, 1, key=a)"], 0), (["x = min(*mem)"], 0), (["x = mem"], 0), (["mem = 3"], 0),
    (["x = mem[1:2]"], 0), (["x = mem[1, 2]"], 0), (["x = (lambda: 1)()"], 0), (["x = lambda: 1"], 0),
    (["x = (y := 3)"], 0), (["x = undefined_name"], 0), (["x = len"], 0), (["x = a[0]"], 0),
    (["x = range(3)"], 0), (["a = b = 1"], 0), (["x += 1.5"], 0), (["x: float = 0.5"], 0), (["print(a)"], 0),
    (["a"], 0), (["'not a docstring'"], 0), (["x = (yield)"], 0), (["x = f(a, a, a, a, a)"], 0),
    (["x = f(a=1)"], 0), (["x, y = a, a, a"], 0), (["x, y = f(a, a, a)"], 0), (["mem[0], x = 1, 2"], 0),
    (["import os"], 0), (["from os import path"], 0), (["global gx"], 0), (["del x"], 0), (["assert a"], 0),
    (["raise ValueError(a)"], 0), (["x = a if a else 0.5"], 0), (["x = a < 1.0"], 0),
    (["for q in [1, 2]:", "{i}    pass"], 0), (["for q in range(1, 5, 2):", "{i}    pass"], 0),
    (["for q, r in range(3):", "{i}    pass"], 0),
    (["for q in range(3):", "{i}    pass", "{i}else:", "{i}    pass"], 0),
    (["while a < 0:", "{i}    a = 1", "{i}else:", "{i}    pass"], 0),
    (["try:", "{i}    pass", "{i}except ValueError:", "{i}    pass"], 0),
    (["with open('x') as fh:", "{i}    pass"], 0), (["class K:", "{i}    pass"], 0),
    (["def inner():", "{i}    return 1"], 0), (["match a:", "{i}    case 1:", "{i}        pass"], 0),
    (["if a:", "{i}    x = 0.5"], 1), (["while a < 3:", "{i}    a += 1", "{i}    x = 'no'"], 2),
    (["for q in range(a):", "{i}    mem[q] = [q]"], 1),
]


@fuzz(150)
@given(program=programs(), bad=st.sampled_from(BAD_STATEMENTS), data=st.data())
def test_unsupported_constructs_name_their_line(workdir, program, bad, data):
    source, config, names = program
    lines = source.splitlines()
    body = function_lines(source, "f")
    # Insert before a statement of f (any depth), at its indentation; the def line cannot be the target.
    snippet, target = bad
    # A string first in the body is the docstring, which is allowed.
    first = body.start + (2 if snippet[0].startswith("'") else 1)
    where = data.draw(st.sampled_from([k for k in range(first, body.stop)
                                       if not lines[k - 1].lstrip().startswith(("elif", "else"))]))
    indent = lines[where - 1][:len(lines[where - 1]) - len(lines[where - 1].lstrip())]
    lines[where - 1:where - 1] = [indent + snippet[0]] + [s.format(i=indent) for s in snippet[1:]]
    source = "\n".join(lines) + "\n"
    try:
        module, path = load(workdir, source)
    except SyntaxError:  # e.g. a 'global' after the name was used: not a program at all
        return
    fns = [getattr(module, name) for name in names]
    with pytest.raises(CompileError) as info:
        ncl.compile(fns[-1], *fns[:-1], config=config)
    exc = info.value
    event(exc.message.split(" (")[0][:40])
    line = where + target
    if snippet == ["mem = 3"]:  # mem is then a local of f: an earlier mem[i] is the first error
        line = min([k for k in body if "mem" in lines[k - 1]] + [line])
    assert (exc.lineno, exc.filename, exc.function) == (line, path, "f"), f"{exc}\n{source}"
    assert "too many live" not in exc.message and "before it is assigned" not in exc.message, f"{exc}\n{source}"
