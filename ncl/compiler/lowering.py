"""Lowering a Python function (its ``ast``) to IR on virtual registers.

Every Python local is one virtual register for the whole function; every intermediate value gets a fresh one.
``regalloc`` later maps them onto the machine's registers by liveness. Anything outside the subset of DESIGN §4
raises ``CompileError`` at the line of the offending construct.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass, field
from typing import Callable, Union

from ncl.machine.opcodes import BINARY_FUNCS

from .frontend import ParsedFunction
from .ir import Ins
from .syntax import BAD_OPS, BINOPS, CMPOPS, assigned_names, describe, operand_constants, reads_outside


@dataclass(frozen=True)
class Callee:
    """
    A function a call resolves to.

    Args:
        key: Its unique key in the program being built (the linker turns it into a label).
        name: Its Python name.
        params: How many arguments it takes.
        results: How many values it returns (1, or 2 for a pair in r0 and r1).
    """

    key: str
    name: str
    params: int
    results: int


#: A resolver maps a called name (and the call node, for errors) to a Callee, or to "MIN"/"MAX" for the builtins.
Resolver = Callable[[str, ast.Call], Union[Callee, str]]


@dataclass
class LoweredFunction:
    """
    One function in IR.

    Args:
        parsed: The source it came from.
        code: The IR, starting with the ``entry`` pseudo-instruction.
        params: The parameters' virtual registers, in order (they arrive in r1, r2, ...).
        names: Virtual register -> Python variable name (temporaries are absent).
        callees: Every function it calls, by key.
        registers: How many virtual registers it uses.
        hoisted: Whether loop constants were hoisted into registers before their loops.
        without_hoisting: Lowers the function again with no hoisting (fewer live values, more steps).
    """

    parsed: ParsedFunction
    code: list[Ins]
    params: list[int]
    names: dict[int, str]
    callees: dict[str, Callee] = field(default_factory=dict)
    registers: int = 0
    hoisted: bool = False
    without_hoisting: Callable[[], "LoweredFunction"] | None = None


def lower(parsed: ParsedFunction, resolve: Resolver, n: int, hoist: bool = True) -> LoweredFunction:
    """
    Lowers one parsed function to IR.

    Args:
        parsed: The function.
        resolve: Maps called names to callees (see ``Resolver``).
        n: The machine's value range; integer constants are taken modulo n.
        hoist: Load the constants a loop needs into registers once, before the loop, instead of with a CONST
            at each use (fewer steps an iteration, more live values).

    Returns:
        The LoweredFunction.

    Raises:
        CompileError: For anything outside the subset, with its line number.
    """
    fn = _Lowering(parsed, resolve, n, hoist).run()
    if hoist:
        fn.without_hoisting = lambda: lower(parsed, resolve, n, hoist=False)
    return fn


class _Lowering:
    """The state of lowering one function: the code so far, the variables and the enclosing loops."""

    def __init__(self, parsed: ParsedFunction, resolve: Resolver, n: int, hoist: bool) -> None:
        self.f = parsed
        self.hoist = hoist
        self.consts: dict[int, int] = {}  # constant -> register holding it, inside loops
        self.resolve = resolve
        self.n = n
        self.code: list[Ins] = []
        self.count = 0
        self.names: dict[int, str] = {}
        self.vars: dict[str, int] = {}
        self.loops: list[tuple[str, str]] = []  # (continue label, break label)
        self.label_count = 0
        self.line = parsed.node.lineno
        self.callees: dict[str, Callee] = {}
        # Python's rule: a name assigned anywhere in the function is local to it.
        self.locals = assigned_names(parsed.node.body) | set(parsed.params)
        self.params = [self.var(name, parsed.node) for name in parsed.params]

    # --- helpers -------------------------------------------------------------------------------------------

    def run(self) -> LoweredFunction:
        node = self.f.node
        self.emit("entry", defs=tuple(self.params))
        body = node.body
        if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                and isinstance(body[0].value.value, str):
            body = body[1:]  # the docstring
        self.block(body)
        # Falling off the end returns 0 (Python would return None), so r0 is always defined.
        self.line = getattr(node, "end_lineno", None) or self.line
        self.emit("ret", uses=tuple(self.zero() for _ in range(self.f.results)))
        return LoweredFunction(self.f, self.code, self.params, self.names, self.callees, self.count, self.hoist)

    def new(self, name: str | None = None) -> int:
        vreg = self.count
        self.count += 1
        if name is not None:
            self.names[vreg] = name
        return vreg

    def emit(self, kind: str, **fields) -> None:
        self.code.append(Ins(kind, line=self.line, **fields))

    def label(self, kind: str) -> str:
        self.label_count += 1
        return f".{kind}{self.label_count}"

    def place(self, label: str) -> None:
        self.emit("label", target=label)

    def zero(self) -> int:
        t = self.new()
        self.emit("const", defs=(t,), imm=0)
        return t

    def error(self, message: str, node: ast.AST):
        return self.f.error(message, node)

    def unsupported(self, node: ast.AST):
        return self.error(f"{describe(node)} are not supported", node)

    def var(self, name: str, node: ast.AST) -> int:
        """The virtual register of a local variable (for writing)."""
        if name == "mem":
            raise self.error("mem is the tape and cannot be assigned; write a cell with mem[i] = v", node)
        if name not in self.vars:
            self.vars[name] = self.new(name)
        return self.vars[name]

    def load_name(self, node: ast.Name) -> int:
        """The virtual register holding a variable (for reading)."""
        if node.id in self.locals:
            return self.var(node.id, node)
        if node.id == "mem":
            raise self.error("mem is the tape; read a cell with mem[i]", node)
        if node.id in self.f.pyfunc.__code__.co_freevars:
            raise self.error(f"closure variables are not supported ({node.id!r} comes from an enclosing "
                             "function)", node)
        raise self.error(f"global variables are not supported ({node.id!r}); only the tape mem is global", node)

    # --- statements ----------------------------------------------------------------------------------------

    def block(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self.line = stmt.lineno
            method = getattr(self, f"stmt_{type(stmt).__name__}", None)
            if method is None:
                raise self.unsupported(stmt)
            method(stmt)

    def stmt_Pass(self, stmt: ast.Pass) -> None:
        pass

    def stmt_Expr(self, stmt: ast.Expr) -> None:
        if isinstance(stmt.value, ast.Call):
            self.call(stmt.value, defs=())
        elif isinstance(stmt.value, ast.Constant):
            raise self.unsupported(stmt.value)
        else:
            raise self.error("expression statements other than calls are not supported", stmt)

    def stmt_Assign(self, stmt: ast.Assign) -> None:
        if len(stmt.targets) > 1:
            raise self.error("chained assignment (a = b = ...) is not supported", stmt)
        self.assign(stmt.targets[0], stmt.value)

    def stmt_AnnAssign(self, stmt: ast.AnnAssign) -> None:
        if stmt.value is not None:  # a bare annotation declares nothing the machine needs
            self.assign(stmt.target, stmt.value)

    def assign(self, target: ast.expr, value: ast.expr) -> None:
        if isinstance(target, ast.Name):
            self.compute(value, self.var(target.id, target))
        elif isinstance(target, ast.Subscript):
            v = self.value(value)  # Python evaluates the right-hand side first
            self.emit("store", uses=(self.address(target), v))
        elif isinstance(target, ast.Tuple):
            self.unpack(target, value)
        else:
            raise self.error(f"assignment to {describe(target)} is not supported", target)

    def unpack(self, target: ast.Tuple, value: ast.expr) -> None:
        """``a, b = x, y`` (simultaneous) and ``q, r = f(...)`` (a function returning a pair)."""
        for elt in target.elts:
            if not isinstance(elt, ast.Name):
                raise self.error("only plain names can be unpacked into", elt)
        names = [elt.id for elt in target.elts]
        if isinstance(value, ast.Tuple):
            if len(value.elts) != len(names):
                raise self.error(f"cannot unpack {len(value.elts)} values into {len(names)} names", value)
            values = []
            for i, elt in enumerate(value.elts):
                v = self.value(elt)
                # A variable assigned earlier in this statement must be read before that assignment.
                if isinstance(elt, ast.Name) and elt.id in names[:i]:
                    t = self.new()
                    self.emit("mov", defs=(t,), uses=(v,))
                    v = t
                values.append(v)
            for elt, v in zip(target.elts, values):
                self.emit("mov", defs=(self.var(elt.id, elt),), uses=(v,))
        elif isinstance(value, ast.Call):
            callee = self.target(value)
            if not isinstance(callee, Callee) or callee.results != len(names):
                got = 1 if not isinstance(callee, Callee) else callee.results
                raise self.error(f"cannot unpack {got} result(s) into {len(names)} names", value)
            defs = tuple(self.var(elt.id, elt) for elt in target.elts)
            if len(set(defs)) != len(defs):
                raise self.error("the same name appears twice in an unpacking", target)
            self.call(value, defs)
        else:
            raise self.error("only a tuple or a call returning a pair can be unpacked", value)

    def stmt_AugAssign(self, stmt: ast.AugAssign) -> None:
        op = self.binop(stmt.op, stmt)
        if isinstance(stmt.target, ast.Name):
            dst = self.var(stmt.target.id, stmt.target)
            self.arith(op, stmt.target, stmt.value, dst)
        elif isinstance(stmt.target, ast.Subscript):
            address = self.address(stmt.target)
            old = self.new()
            self.emit("load", defs=(old,), uses=(address,))
            new = self.new()
            self.emit("bin", op=op, defs=(new,), uses=(old, self.value(stmt.value)))
            self.emit("store", uses=(address, new))
        else:
            raise self.error(f"assignment to {describe(stmt.target)} is not supported", stmt.target)

    def stmt_If(self, stmt: ast.If) -> None:
        orelse, end = self.label("else"), self.label("endif")
        self.cond_jump(stmt.test, orelse, False)
        self.block(stmt.body)
        if stmt.orelse:
            self.line = stmt.lineno
            self.emit("jmp", target=end)
            self.place(orelse)
            self.block(stmt.orelse)
            self.place(end)
        else:
            self.place(orelse)

    def stmt_While(self, stmt: ast.While) -> None:
        if stmt.orelse:
            raise self.error("while ... else is not supported", stmt)
        top, cond, end = self.label("while"), self.label("test"), self.label("endwhile")
        known = self.constant(stmt.test)
        if known is not None and not known:
            return  # never runs
        hoisted = self.hoist_constants([stmt.test, *stmt.body])
        if known is None:
            self.emit("jmp", target=cond)  # the test sits at the bottom: one jump a loop, not two an iteration
        self.place(top)
        self.loops.append((cond if known is None else top, end))
        self.block(stmt.body)
        self.loops.pop()
        self.line = stmt.lineno
        self.place(cond)
        if known is None:
            self.cond_jump(stmt.test, top, True)
        else:
            self.emit("jmp", target=top)
        self.place(end)
        self.forget_constants(hoisted)

    def stmt_For(self, stmt: ast.For) -> None:
        if stmt.orelse:
            raise self.error("for ... else is not supported", stmt)
        if not isinstance(stmt.target, ast.Name):
            raise self.error("a for loop needs one plain loop variable", stmt.target)
        it = stmt.iter
        if not (isinstance(it, ast.Call) and isinstance(it.func, ast.Name) and it.func.id == "range"
                and not it.keywords and 1 <= len(it.args) <= 2
                and not any(isinstance(a, ast.Starred) for a in it.args)):
            raise self.error("for loops must run over range(a) or range(a, b) (no step, no other iterables)", it)
        name = stmt.target.id
        start = it.args[0] if len(it.args) == 2 else ast.copy_location(ast.Constant(0), it)
        stop = it.args[-1]
        in_body = assigned_names(stmt.body)
        # Count in the loop variable itself unless the body changes it or someone reads it outside the loop
        # (Python leaves it at the last value, b-1, while the counter ends at b).
        hidden = name in in_body or reads_outside(self.f.node, name, stmt.body)
        ivar = self.var(name, stmt.target)
        counter = self.new() if hidden else ivar

        def bound() -> int:
            if isinstance(stop, ast.Name) and stop.id != name and stop.id not in in_body:
                return self.load_name(stop)  # fixed during the loop: no copy needed
            if self.constant(stop) is not None:
                return self.value(stop)  # read-only: a hoisted constant's register will do
            t = self.new()
            self.compute(stop, t)
            return t

        if self.constant(start) is not None or isinstance(start, ast.Name):
            end = bound()
            self.compute(start, counter)
        else:
            first = self.value(start)  # Python evaluates a before b
            end = bound()
            self.emit("mov", defs=(counter,), uses=(first,))
        top, step, cond, done = (self.label(k) for k in ("for", "next", "test", "endfor"))
        hoisted = self.hoist_constants(stmt.body)
        self.emit("jmp", target=cond)
        self.place(top)
        if hidden:
            self.emit("mov", defs=(ivar,), uses=(counter,))
        self.loops.append((step, done))
        self.block(stmt.body)
        self.loops.pop()
        self.line = stmt.lineno
        self.place(step)
        self.emit("un", op="INC", defs=(counter,), uses=(counter,))
        self.place(cond)
        t = self.new()
        self.emit("bin", op="LT", defs=(t,), uses=(counter, end))
        self.emit("jnz", uses=(t,), target=top)
        self.place(done)
        self.forget_constants(hoisted)

    def stmt_Break(self, stmt: ast.Break) -> None:
        if not self.loops:
            raise self.error("break outside a loop", stmt)
        self.emit("jmp", target=self.loops[-1][1])

    def stmt_Continue(self, stmt: ast.Continue) -> None:
        if not self.loops:
            raise self.error("continue outside a loop", stmt)
        self.emit("jmp", target=self.loops[-1][0])

    def stmt_Return(self, stmt: ast.Return) -> None:
        if stmt.value is None:
            values = tuple(self.zero() for _ in range(self.f.results))
        elif isinstance(stmt.value, ast.Tuple):
            values = tuple(self.value(elt) for elt in stmt.value.elts)
        else:
            values = (self.value(stmt.value),)
        self.emit("ret", uses=values)

    # --- expressions ---------------------------------------------------------------------------------------

    def value(self, node: ast.expr) -> int:
        """Evaluates an expression; returns the virtual register holding it (a variable's own, for names)."""
        if isinstance(node, ast.Name):
            return self.load_name(node)
        c = self.constant(node)
        if c is not None and c in self.consts:
            return self.consts[c]
        t = self.new()
        self.compute(node, t)
        return t

    def hoist_constants(self, nodes: list[ast.AST]) -> list[int]:
        """Loads the constants a loop will need as operands into registers, before the loop.

        Returns the constants newly hoisted (the caller forgets them after the loop). A constant hoisted but
        never used costs one CONST, which dead-code elimination removes.
        """
        if not self.hoist:
            return []
        # A register live across a call costs a PUSH and a POP a call, more than the CONST it saves.
        if any(isinstance(sub, ast.Call) and not (isinstance(sub.func, ast.Name) and sub.func.id in ("min", "max"))
               for node in nodes for sub in ast.walk(node)):
            return []
        added = []
        for c in operand_constants(nodes, self.constant):
            if c not in self.consts:
                t = self.new()
                self.emit("const", defs=(t,), imm=c)
                self.consts[c] = t
                added.append(c)
        return added

    def forget_constants(self, added: list[int]) -> None:
        for c in added:
            del self.consts[c]

    def constant(self, node: ast.expr) -> int | None:
        """The value of a constant expression, folded modulo n like the machine, or None."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or isinstance(node.value, int):
                return int(node.value) % self.n
            raise self.unsupported(node)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd, ast.Not)):
            c = self.constant(node.operand)
            if c is None:
                return None
            return {ast.USub: -c % self.n, ast.UAdd: c, ast.Not: int(c == 0)}[type(node.op)]
        if isinstance(node, ast.BinOp) and type(node.op) in BINOPS:
            a, b = self.constant(node.left), self.constant(node.right)
            if a is not None and b is not None:
                return BINARY_FUNCS[BINOPS[type(node.op)]](a, b, self.n)
        return None

    def compute(self, node: ast.expr, dst: int) -> None:
        """Evaluates an expression into ``dst``; ``dst`` is written only by the last instruction of each path."""
        c = self.constant(node)
        if c is not None:
            self.emit("const", defs=(dst,), imm=c)
        elif isinstance(node, ast.Name):
            self.emit("mov", defs=(dst,), uses=(self.load_name(node),))
        elif isinstance(node, ast.BinOp):
            self.arith(self.binop(node.op, node), node.left, node.right, dst)
        elif isinstance(node, ast.UnaryOp):
            self.unary(node, dst)
        elif isinstance(node, ast.Compare):
            self.compare(node, dst)
        elif isinstance(node, ast.BoolOp):
            self.boolop(node, dst)
        elif isinstance(node, ast.IfExp):
            orelse, end = self.label("else"), self.label("endif")
            self.cond_jump(node.test, orelse, False)
            self.compute(node.body, dst)
            self.emit("jmp", target=end)
            self.place(orelse)
            self.compute(node.orelse, dst)
            self.place(end)
        elif isinstance(node, ast.Call):
            self.call(node, defs=(dst,))
        elif isinstance(node, ast.Subscript):
            self.emit("load", defs=(dst,), uses=(self.address(node),))
        else:
            raise self.unsupported(node)

    def binop(self, op: ast.operator, node: ast.AST) -> str:
        if type(op) in BINOPS:
            return BINOPS[type(op)]
        raise self.error(f"{BAD_OPS.get(type(op), type(op).__name__)} is not supported", node)

    def arith(self, op: str, left: ast.expr, right: ast.expr, dst: int) -> None:
        # x + 1, 1 + x and x - 1 need no constant register.
        if op == "ADD" and self.constant(right) == 1 or op == "SUB" and self.constant(right) == 1:
            self.emit("un", op="INC" if op == "ADD" else "DEC", defs=(dst,), uses=(self.value(left),))
        elif op == "ADD" and self.constant(left) == 1:
            self.emit("un", op="INC", defs=(dst,), uses=(self.value(right),))
        else:
            a = self.value(left)
            self.emit("bin", op=op, defs=(dst,), uses=(a, self.value(right)))

    def unary(self, node: ast.UnaryOp, dst: int) -> None:
        if isinstance(node.op, ast.Not):
            self.emit("un", op="NOT", defs=(dst,), uses=(self.value(node.operand),))
        elif isinstance(node.op, ast.USub):
            x = self.value(node.operand)
            self.emit("bin", op="SUB", defs=(dst,), uses=(self.zero(), x))
        elif isinstance(node.op, ast.UAdd):
            self.compute(node.operand, dst)
        else:
            raise self.error(f"{BAD_OPS.get(type(node.op), type(node.op).__name__)} is not supported", node)

    def comparison(self, op: ast.cmpop, a: int, b: int, dst: int, node: ast.AST) -> None:
        if type(op) not in CMPOPS:
            raise self.error(f"{BAD_OPS.get(type(op), type(op).__name__)} is not supported", node)
        name, swap = CMPOPS[type(op)]
        self.emit("bin", op=name, defs=(dst,), uses=(b, a) if swap else (a, b))

    def compare(self, node: ast.Compare, dst: int) -> None:
        """``a < b`` gives 0 or 1; a chain ``a < b < c`` stops at the first false link, like Python."""
        if len(node.ops) == 1:
            a = self.value(node.left)
            self.comparison(node.ops[0], a, self.value(node.comparators[0]), dst, node)
            return
        r, end = self.new(), self.label("chain")
        current = self.value(node.left)
        for i, (op, right) in enumerate(zip(node.ops, node.comparators)):
            following = self.value(right)
            self.comparison(op, current, following, r, node)
            if i < len(node.ops) - 1:
                self.emit("jz", uses=(r,), target=end)
            current = following
        self.place(end)
        self.emit("mov", defs=(dst,), uses=(r,))

    def boolop(self, node: ast.BoolOp, dst: int) -> None:
        """``a and b`` / ``a or b`` with Python's value (the deciding operand) and short-circuit."""
        r, end = self.new(), self.label("bool")
        for i, operand in enumerate(node.values):
            self.compute(operand, r)
            if i < len(node.values) - 1:
                self.emit("jz" if isinstance(node.op, ast.And) else "jnz", uses=(r,), target=end)
        self.place(end)
        self.emit("mov", defs=(dst,), uses=(r,))

    def address(self, node: ast.Subscript) -> int:
        """The register holding the cell index of ``mem[i]``."""
        if not (isinstance(node.value, ast.Name) and node.value.id == "mem" and "mem" not in self.locals):
            raise self.error("indexing is only supported on the tape, mem[i] (lists are not supported)", node)
        if isinstance(node.slice, (ast.Slice, ast.Tuple)):
            raise self.error("slices of the tape are not supported; index one cell, mem[i]", node)
        return self.value(node.slice)

    def cond_jump(self, node: ast.expr, label: str, when: bool) -> None:
        """Jumps to ``label`` if the truth of ``node`` is ``when``; falls through otherwise."""
        known = self.constant(node)
        if known is not None:
            if bool(known) == when:
                self.emit("jmp", target=label)
            return
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            self.cond_jump(node.operand, label, not when)
        elif isinstance(node, ast.BoolOp):
            # and: all true; or: any true. Short-circuit through a local skip label.
            decisive = not isinstance(node.op, ast.And)  # the operand truth that decides the whole
            if decisive == when:
                for operand in node.values:
                    self.cond_jump(operand, label, when)
            else:
                skip = self.label("skip")
                for operand in node.values[:-1]:
                    self.cond_jump(operand, skip, decisive)
                self.cond_jump(node.values[-1], label, when)
                self.place(skip)
        elif isinstance(node, ast.Compare) and len(node.ops) == 1 and self.zero_test(node, label, when):
            pass
        else:
            v = self.value(node)
            self.emit("jnz" if when else "jz", uses=(v,), target=label)

    def zero_test(self, node: ast.Compare, label: str, when: bool) -> bool:
        """``x == 0``, ``x != 0`` and ``x > 0`` (values are never negative) jump on x itself; True if done."""
        op, left, right = node.ops[0], node.left, node.comparators[0]
        if self.constant(right) == 0 and self.constant(left) is None:
            x, nonzero = left, {ast.Eq: False, ast.NotEq: True, ast.Gt: True}.get(type(op))
        elif self.constant(left) == 0 and self.constant(right) is None:
            x, nonzero = right, {ast.Eq: False, ast.NotEq: True, ast.Lt: True}.get(type(op))
        else:
            return False
        if nonzero is None:
            return False
        v = self.value(x)
        self.emit("jnz" if nonzero == when else "jz", uses=(v,), target=label)
        return True

    def target(self, node: ast.Call) -> Callee | str:
        """What a call resolves to: a Callee, or "MIN"/"MAX"."""
        if not isinstance(node.func, ast.Name):
            raise self.error(f"calls through {describe(node.func)} are not supported; call functions by name",
                             node)
        if node.keywords:
            raise self.error("keyword arguments are not supported", node)
        for arg in node.args:
            if isinstance(arg, ast.Starred):
                raise self.unsupported(arg)
        name = node.func.id
        if name in self.locals:
            raise self.error(f"{name!r} is a local variable, not a function", node)
        if name == "range":
            raise self.error("range() is only supported as the iterable of a for loop", node)
        return self.resolve(name, node)

    def call(self, node: ast.Call, defs: tuple[int, ...]) -> None:
        callee = self.target(node)
        if isinstance(callee, str):  # min / max
            if len(node.args) < 2:
                raise self.error(f"{callee.lower()}() needs two or more values (iterables are not supported)",
                                 node)
            if not defs:
                raise self.error(f"the result of {callee.lower()}() is unused", node)
            acc = self.value(node.args[0])
            for i, arg in enumerate(node.args[1:], start=2):
                out = defs[0] if i == len(node.args) else self.new()
                self.emit("bin", op=callee, defs=(out,), uses=(acc, self.value(arg)))
                acc = out
            return
        args = tuple(self.value(arg) for arg in node.args)  # errors inside the arguments come first
        if len(args) != callee.params:
            raise self.error(f"{callee.name}() takes {callee.params} argument(s), got {len(args)}", node)
        if len(defs) == 1 and callee.results != 1:
            raise self.error(f"{callee.name}() returns {callee.results} values; unpack them: "
                             "a, b = f(...)", node)
        self.callees[callee.key] = callee
        self.emit("call", defs=defs, uses=args, target=callee.key)
