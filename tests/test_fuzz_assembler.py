"""Fuzzing the assembler: any text gives a Program or an ``AssemblyError`` with a line number, nothing else.

Three generators: random characters (any Unicode, and a biased alphabet of assembly characters), a grammar of
near-valid assembly (mnemonics from ``ncl_kernels.isa.OPCODES`` in any case, operands good and bad, labels,
comments, blank lines, CR LF), and valid programs with one line mutated (the error must name that line).
Examples per test scale with the hypothesis profile (``NCL_THOROUGH=1``: 10×, tests/conftest.py).
"""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ncl
from ncl.machine.instructions import OPERANDS
from ncl_kernels.isa import OPCODES


def examples(n: int) -> int:
    """``n`` examples in CI; the profile's multiple of it under ``NCL_THOROUGH=1``."""
    return n * settings.default.max_examples // 100


CONFIGS = st.builds(ncl.MachineConfig, n=st.integers(2, 300), cells=st.just(8),
                    registers=st.integers(1, 12), stack=st.just(4))
LABELS = st.sampled_from(["start", "loop", "end", "a", "b", ".L1", "$x", "_f.entry", "loop2", "HALT", "r1"])


def fuzz(n: int) -> settings:
    """The settings of a fuzz test: ``examples(n)`` examples, no deadline, big generated inputs allowed."""
    return settings(max_examples=examples(n), deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _line_range(text: str) -> range:
    """Lines as an editor counts them: ended by \\n, \\r\\n or \\r (not \\v, \\x85, \\u2028, ...)."""
    lines = re.split(r"\r\n|\r|\n", text)
    return range(1, len(lines) + (0 if len(lines) > 1 and not lines[-1] else 1))


def check(text: str, config: ncl.MachineConfig | None = None) -> ncl.Program | None:
    """The assembler's contract on ``text``: a Program, or an AssemblyError naming a line of the text."""
    try:
        program = ncl.assemble(text, config)
    except ncl.AssemblyError as exc:
        assert exc.line in _line_range(text), (exc.line, text)
        assert str(exc).startswith(f"line {exc.line}: "), str(exc)
        return None
    assert isinstance(program, ncl.Program) and program.length >= 1
    # What assembles disassembles to text that assembles to the same instructions.
    again = ncl.assemble(program.disassemble(), program.config)
    assert again.instructions() == program.instructions()
    return program


# --- random characters --------------------------------------------------------------------------------------

ASM_CHARS = st.sampled_from(list("rR0123456789[]:;,. \t\n\r-+xXabcHALTjmpJMPaddADDlabel$_") + ["\u00a0", "\u2028",
                                                                                                "\x0b", "\x85"])


@fuzz(150)
@given(text=st.text(max_size=200), config=st.none() | CONFIGS)
def test_random_unicode_text(text, config):
    check(text, config)


@fuzz(150)
@given(text=st.text(ASM_CHARS, max_size=300), config=st.none() | CONFIGS)
def test_random_assembly_characters(text, config):
    check(text, config)


# --- a grammar of near-valid assembly ---------------------------------------------------------------------

def _register_tokens(draw) -> str:
    return draw(st.one_of(
        st.integers(0, 20).map(lambda k: f"r{k}"), st.integers(0, 20).map(lambda k: f"R{k}"),
        st.sampled_from(["r", "r-1", "r+1", "rr1", "r1.0", "r 1", "x1", "r0x1", "r٣", "r¹", "r" + "9" * 5000,
                         "r" + "0" * 30 + "1", "[r1]", ""])))


def _operand(draw, form: str, labels: list[str]) -> str:
    good = draw(st.booleans())
    if form in ("d", "a", "b"):
        return _register_tokens(draw) if not good else f"r{draw(st.integers(0, 7))}"
    if form == "[a]":
        inner = _register_tokens(draw)
        return draw(st.sampled_from([f"[{inner}]", f"[ {inner} ]", inner, f"[{inner}", f"[[{inner}]]", "[]"]))
    if form == "imm":
        return draw(st.one_of(st.integers(-5, 300).map(str), st.integers(0, 255).map(hex),
                              st.sampled_from(["1e3", "1.5", "0b101", "0o7", "1_0", "--1", "+3", "", "x", "r1",
                                               "9" * 5000, "٣", "0x", " 7 "])))
    return draw(st.sampled_from(labels + ["undefined", "1abc", "r1", "", "a b", "[start]"]))


@st.composite
def near_valid(draw) -> str:
    labels = draw(st.lists(LABELS, max_size=4))
    lines = []
    for _ in range(draw(st.integers(0, 14))):
        parts = []
        for _ in range(draw(st.integers(0, 2)) if draw(st.integers(0, 3)) == 0 else 0):
            parts.append(draw(LABELS) + draw(st.sampled_from([":", " :", ":"])))
        kind = draw(st.integers(0, 9))
        if kind < 7:
            mnemonic = draw(st.sampled_from(OPCODES))
            forms = OPERANDS[mnemonic]
            mnemonic = draw(st.sampled_from([mnemonic, mnemonic.lower(), mnemonic.title(), mnemonic + "X",
                                             mnemonic[:-1], "FOO"]))
            ops = [_operand(draw, form, labels) for form in forms]
            if draw(st.integers(0, 5)) == 0:  # one operand too many or too few
                ops = ops[:-1] if ops and draw(st.booleans()) else ops + ["r1"]
            sep = draw(st.sampled_from([", ", ",", " , ", " "]))
            parts.append(mnemonic + (" " + sep.join(ops) if ops else ""))
        elif kind == 7:
            parts.append(draw(st.sampled_from(["", "   ", "\t"])))
        if draw(st.integers(0, 4)) == 0:
            parts.append("; " + draw(st.text(max_size=10)))
        lines.append(" ".join(parts))
    end = draw(st.sampled_from(["\n", "\r\n", "\n\n"]))
    return end.join(lines) + draw(st.sampled_from(["", "\n", "HALT", "\nHALT\n"]))


@fuzz(300)
@given(text=near_valid(), config=st.none() | CONFIGS)
def test_near_valid_assembly(text, config):
    check(text, config)


# --- valid programs, one line mutated -------------------------------------------------------------------------

CFG = ncl.MachineConfig(n=16, cells=8, registers=4, stack=4)


@st.composite
def valid_lines(draw) -> list[str]:
    """A valid program, one instruction a line, labels on lines of their own, ending in HALT."""
    count = draw(st.integers(1, 10))
    names = [f"l{i}" for i in range(count)]
    lines = []
    for i in range(count):
        lines.append(f"{names[i]}:")
        mnemonic = draw(st.sampled_from(OPCODES))
        ops = []
        for form in OPERANDS[mnemonic]:
            if form in ("d", "a", "b"):
                ops.append(f"r{draw(st.integers(0, CFG.registers - 1))}")
            elif form == "[a]":
                ops.append(f"[r{draw(st.integers(0, CFG.registers - 1))}]")
            elif form == "imm":
                ops.append(str(draw(st.integers(0, CFG.n - 1))))
            else:
                ops.append(draw(st.sampled_from(names)))
        lines.append(mnemonic + (" " + ", ".join(ops) if ops else ""))
    return lines + ["HALT"]


# Tokens a mutation may put on a line: no ':' or ';', so that it changes no label and starts no comment.
JUNK = st.sampled_from(["r9", "r-1", "[r1", "r1]", "16", "-1", "0x10", "1.5", "ADDD", "l99", "", "r" + "9" * 5000,
                        "[r0], r1", "r1, r2, r3, r0", "#", "@", "é", "\t"])


@fuzz(300)
@given(lines=valid_lines(), data=st.data())
def test_one_mutated_line_is_the_line_reported(lines, data):
    code = [i for i, line in enumerate(lines[:-1]) if not line.endswith(":")]
    victim = data.draw(st.sampled_from(code))
    tokens = re.split(r"(\s+|,)", lines[victim])
    k = data.draw(st.integers(0, len(tokens) - 1))
    how = data.draw(st.sampled_from(["replace", "insert", "delete"]))
    junk = data.draw(JUNK)
    if how == "replace":
        tokens[k] = junk
    elif how == "insert":
        tokens.insert(k, junk)
    else:
        del tokens[k]
    lines[victim] = "".join(tokens)
    text = "\n".join(lines)
    try:
        ncl.assemble(text, CFG)
    except ncl.AssemblyError as exc:
        assert exc.line == victim + 1, (str(exc), text)
    else:
        check(text, CFG)


def test_found_by_fuzzing():
    """What the fuzzers found. A register of more than 4300 digits raised int()'s ValueError instead of an
    AssemblyError (test_one_mutated_line_is_the_line_reported under NCL_THOROUGH=1); Unicode digits were read
    as registers and immediates (r\u0663 was r3) and Unicode mnemonics upper-cased into ASCII ones (PU\u017fH
    was PUSH); \\v, \\x1c, \\x85 and \\u2028 ended lines, so line numbers disagreed with an editor's."""
    cases = {
        "MOV r" + "9" * 5000 + ", r1": (1, "register r999"),
        "CONST r1, " + "9" * 5000: (1, "immediate 999"),
        "HALT\nMOV r\u0663, r1": (2, "expected a register"),
        "HALT\nCONST r1, \u0663": (2, "expected an integer immediate"),
        "HALT\nPU\u017fH r1": (2, "unknown instruction 'PU\u017fH'"),
        "HALT\u2028JMP x\nHALT": (1, "HALT takes 0 operand(s)"),  # \u2028 is a space, not a line break
        "NOP\x0b\r\nNOP\x85\rHALT\u2028\nFOO": (4, "unknown instruction 'FOO'"),
        "HALT\n\n": (None, None),
        "\n\n": (2, "no instructions"),
    }
    for text, (line, message) in cases.items():
        if line is None:
            assert check(text) is not None
            continue
        try:
            ncl.assemble(text)
        except ncl.AssemblyError as exc:
            assert exc.line == line and message in str(exc), (text[:40], str(exc)[:200])
        else:
            raise AssertionError(f"{text[:40]!r} assembled")
    assert ncl.assemble("CONST r1, 007\nCONST r2, 0x7f\nHALT").instructions()[1].imm == 127
