"""Lowering expressions to IR: values, constants (folded modulo n, like the machine), conditions as jumps, and
calls.

``ExpressionLowering`` holds the state of lowering one function (the code so far, its virtual registers, variables
and callees) and lowers its expressions; ``lowering`` adds the statements on top.
"""

from __future__ import annotations

import ast

from ncl_kernels.isa import BINARY_FUNCS

from .frontend import ParsedFunction
from .ir import Callee, Ins, Resolver
from .syntax import BAD_OPS, BINOPS, CMPOPS, assigned_names, describe


class ExpressionLowering:
    """
    The state of lowering one function, and the lowering of its expressions.

    Args:
        parsed: The function.
        resolve: Maps called names to callees (see ``ir.Resolver``).
        n: The machine's value range; integer constants are taken modulo n.
    """

    def __init__(self, parsed: ParsedFunction, resolve: Resolver, n: int) -> None:
        self.f = parsed
        self.consts: dict[int, int] = {}  # constant -> register holding it, inside loops (hoisted by the loops)
        self.resolve = resolve
        self.n = n
        self.code: list[Ins] = []
        self.count = 0
        self.names: dict[int, str] = {}
        self.vars: dict[str, int] = {}
        self.label_count = 0
        self.line = parsed.node.lineno
        self.callees: dict[str, Callee] = {}
        # Python's rule: a name assigned anywhere in the function is local to it.
        self.locals = assigned_names(parsed.node.body) | set(parsed.params)
        self.params = [self.var(name, parsed.node) for name in parsed.params]

    # --- helpers -------------------------------------------------------------------------------------------

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
        raise self.error(f"global variables are not supported ({node.id!r}); only the tape mem and module-level "
                         "int constants are", node)

    def global_constant(self, node: ast.Name) -> int | None:
        """A module-level int (not a bool, not shadowed by a local) read by name, or None: a named constant
        such as a tape symbol, folded modulo n like a literal. Its value is taken at compile time."""
        if node.id in self.locals or node.id in self.f.pyfunc.__code__.co_freevars:
            return None
        value = self.f.bindings.get(node.id)
        if type(value) is int:  # bool is an int subclass but is not a named constant
            return value % self.n
        return None

    # --- expressions ---------------------------------------------------------------------------------------

    def value(self, node: ast.expr) -> int:
        """Evaluates an expression; returns the virtual register holding it (a variable's own, for names)."""
        if isinstance(node, ast.Name) and self.global_constant(node) is None:
            return self.load_name(node)
        c = self.constant(node)
        if c is not None and c in self.consts:
            return self.consts[c]
        t = self.new()
        self.compute(node, t)
        return t

    def constant(self, node: ast.expr) -> int | None:
        """The value of a constant expression, folded modulo n like the machine, or None."""
        if isinstance(node, ast.Constant):
            if isinstance(node.value, bool) or isinstance(node.value, int):
                return int(node.value) % self.n
            raise self.unsupported(node)
        if isinstance(node, ast.Name):
            return self.global_constant(node)
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
