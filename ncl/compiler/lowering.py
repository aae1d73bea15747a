"""Lowering a Python function (its ``ast``) to IR on virtual registers: the function and its statements.

Every Python local is one virtual register for the whole function; every intermediate value gets a fresh one.
``regalloc`` later maps them onto the machine's registers by liveness. Anything outside the subset of
docs/design.md §4 raises ``CompileError`` at the line of the offending construct. Expressions are lowered by
``expressions``.
"""

from __future__ import annotations

import ast

from .expressions import ExpressionLowering
from .frontend import ParsedFunction
from .ir import Callee, LoweredFunction, Resolver
from .syntax import assigned_names, describe, operand_constants, reads_outside


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


class _Lowering(ExpressionLowering):
    """Lowering one function: its statements, with the enclosing loops and the constants hoisted before them."""

    def __init__(self, parsed: ParsedFunction, resolve: Resolver, n: int, hoist: bool) -> None:
        super().__init__(parsed, resolve, n)
        self.hoist = hoist
        self.loops: list[tuple[str, str]] = []  # (continue label, break label)

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

    # --- loop constants ------------------------------------------------------------------------------------

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
