"""Facts about Python syntax the lowering needs: operator tables, names of unsupported constructs, and scans of
a function's AST (assigned names, reads outside a loop, the constants a loop will need)."""

from __future__ import annotations

import ast
from typing import Callable

from .errors import CompileError

#: Python arithmetic operator -> machine op.
BINOPS = {ast.Add: "ADD", ast.Sub: "SUB", ast.Mult: "MUL", ast.FloorDiv: "DIV", ast.Mod: "MOD"}
#: Comparison -> (machine op, whether the operands swap): the machine has LT and LE only.
CMPOPS = {ast.Eq: ("EQ", False), ast.NotEq: ("NE", False), ast.Lt: ("LT", False), ast.LtE: ("LE", False),
          ast.Gt: ("LT", True), ast.GtE: ("LE", True)}
#: Operators outside the subset -> how an error names them.
BAD_OPS = {ast.Div: "true division '/' (it gives floats; use //)", ast.Pow: "'**' (use a loop, or pow_mod)",
           ast.LShift: "bit shifts", ast.RShift: "bit shifts", ast.BitAnd: "bitwise '&' (use 'and')",
           ast.BitOr: "bitwise '|' (use 'or')", ast.BitXor: "bitwise '^'", ast.MatMult: "'@'",
           ast.Invert: "bitwise '~'", ast.Is: "'is'", ast.IsNot: "'is not'", ast.In: "'in'",
           ast.NotIn: "'not in'"}
#: Unsupported AST nodes -> how an error names them.
CONSTRUCTS = {
    ast.List: "lists", ast.Tuple: "tuples (only 'a, b = ...' and 'return a, b' take pairs)", ast.Dict: "dicts",
    ast.Set: "sets", ast.ListComp: "list comprehensions", ast.SetComp: "set comprehensions",
    ast.DictComp: "dict comprehensions", ast.GeneratorExp: "generator expressions",
    ast.Lambda: "lambdas (closures)", ast.Attribute: "attribute access", ast.JoinedStr: "f-strings (strings)",
    ast.Starred: "starred expressions", ast.Yield: "generators (yield)", ast.YieldFrom: "generators (yield)",
    ast.Await: "await", ast.NamedExpr: "assignment expressions (:=)", ast.Slice: "slices",
    ast.FunctionDef: "nested functions (closures)", ast.AsyncFunctionDef: "nested functions (closures)",
    ast.ClassDef: "classes", ast.With: "with statements", ast.AsyncWith: "with statements",
    ast.Try: "try statements", ast.Raise: "raise", ast.Assert: "assert", ast.Import: "import",
    ast.ImportFrom: "import", ast.Global: "global declarations (only the tape mem is global)",
    ast.Nonlocal: "nonlocal declarations (closures)", ast.Delete: "del", ast.AsyncFor: "async for",
}
#: Constant types outside the subset -> how an error names them.
CONSTANT_KINDS = {float: "floats", str: "strings", bytes: "bytes", complex: "complex numbers",
                  type(None): "None values", type(...): "'...'"}


def describe(node: ast.AST) -> str:
    """A readable name for an unsupported construct."""
    if isinstance(node, ast.Constant):
        return CONSTANT_KINDS.get(type(node.value), type(node.value).__name__)
    for kind, text in CONSTRUCTS.items():
        if isinstance(node, kind):
            return text
    return f"{type(node).__name__} {'statements' if isinstance(node, ast.stmt) else 'expressions'}"


def assigned_names(stmts: list[ast.stmt]) -> set[str]:
    """Every name a list of statements assigns (targets of =, op=, for), not looking into nested functions."""
    names = set()
    stack = list(stmts)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            stack.extend(ast.iter_child_nodes(node))
    return names


def operand_constants(nodes: list[ast.AST], constant: Callable[[ast.expr], int | None]) -> list[int]:
    """The constants that lowering ``nodes`` would load with a CONST as an operand, in first-use order.

    Skipped: the 1 of ``x + 1``/``x - 1`` (INC/DEC), the 0 of a single comparison (conditions jump on the value
    itself), and a constant assigned straight to a variable (that CONST is the assignment). Nested function
    bodies are not entered (they are errors anyway).
    """
    found: list[int] = []
    skip: set[int] = set()
    stack = list(reversed(nodes))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ClassDef)):
            continue
        if isinstance(node, ast.expr) and id(node) not in skip:
            try:
                c = constant(node)
            except CompileError:  # an unsupported constant: lowering reports it at its line
                c = None
            if c is not None:
                if c not in found:
                    found.append(c)
                continue
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.Add, ast.Sub)):
            if _is_one(node.right, constant):
                skip.add(id(node.right))
            if isinstance(node.op, ast.Add) and _is_one(node.left, constant):
                skip.add(id(node.left))
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, (ast.Add, ast.Sub)) \
                and _is_one(node.value, constant):
            skip.add(id(node.value))
        elif isinstance(node, ast.Compare) and len(node.ops) == 1:
            for side in (node.left, node.comparators[0]):
                if _is_zero(side, constant):
                    skip.add(id(side))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and isinstance(node.value, ast.expr) \
                and all(isinstance(t, ast.Name) for t in getattr(node, "targets", [getattr(node, "target", None)])):
            skip.add(id(node.value))
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "range":
            skip.update(id(a) for a in node.args[:1])  # a range start is computed into the counter once
        stack.extend(reversed(list(ast.iter_child_nodes(node))))
    return found


def _is_one(node: ast.expr, constant) -> bool:
    try:
        return constant(node) == 1
    except CompileError:
        return False


def _is_zero(node: ast.expr, constant) -> bool:
    try:
        return constant(node) == 0
    except CompileError:
        return False


def reads_outside(func: ast.FunctionDef, name: str, body: list[ast.stmt]) -> bool:
    """Whether ``name`` is read anywhere in ``func`` outside the statements ``body``."""
    inside = {id(node) for stmt in body for node in ast.walk(stmt)}
    return any(isinstance(node, ast.Name) and node.id == name and isinstance(node.ctx, ast.Load)
               and id(node) not in inside for node in ast.walk(func))
