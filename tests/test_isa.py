"""The instruction set is stated once: the C++ header is generated from ncl_kernels.isa, and the other tables
(the ALU's op order, the control grouping, the kernels' constants) are read from it."""

from pathlib import Path

from ncl_kernels import isa

HEADER = Path(__file__).resolve().parent.parent / "csrc" / "include" / "ncl" / "opcodes.h"


def test_the_c_header_is_generated_from_the_table():
    assert HEADER.read_text() == isa.c_header(), (
        "csrc/include/ncl/opcodes.h is stale: run `python -m ncl_kernels.isa > csrc/include/ncl/opcodes.h`")


def test_the_header_numbers_every_opcode():
    text = HEADER.read_text()
    for i, name in enumerate(isa.OPCODES):
        assert f"  k{name.capitalize()} = {i}" in text
    assert f"kNumOpcodes = {len(isa.OPCODES)};" in text
    assert "enum Op : int { " + ", ".join(isa.ALU_OPS) + " };" in text


def test_groups_partition_the_table():
    assert set(isa.SEQUENTIAL_OPS) | set(isa.CONTROL_OPS) == set(isa.OPCODES)
    assert not set(isa.SEQUENTIAL_OPS) & set(isa.CONTROL_OPS)
    assert isa.OPCODES[isa.ALU_SLICE] == isa.ALU_OPS
    assert set(isa.VALUE_OPS) <= set(isa.SEQUENTIAL_OPS)


def test_fold_and_one_hot():
    v = isa.one_hot([3, 7], 8)
    assert v.tolist() == [[0, 0, 0, 1, 0, 0, 0, 0], [0, 0, 0, 0, 0, 0, 0, 1]]
    assert isa.fold(v, 4).tolist() == [[0, 0, 0, 1], [0, 0, 0, 1]]
    assert isa.fold(isa.one_hot([5], 6), 4).tolist() == [[0, 1, 0, 0]]
