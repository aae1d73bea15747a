// Generated from ncl_kernels/isa.py by `python -m ncl_kernels.isa > csrc/include/ncl/opcodes.h`: do not edit.
// tests/test_isa.py fails when this file and the Python table differ.
#pragma once

namespace ncl {
namespace isa {

// Every opcode, numbered as the columns of a program's op field.
enum Opcode : int {
  kNop = 0,
  kHalt = 1,
  kConst = 2,
  kMov = 3,
  kAdd = 4,
  kSub = 5,
  kMul = 6,
  kDiv = 7,
  kMod = 8,
  kEq = 9,
  kNe = 10,
  kLt = 11,
  kLe = 12,
  kMin = 13,
  kMax = 14,
  kAnd = 15,
  kOr = 16,
  kInc = 17,
  kDec = 18,
  kNot = 19,
  kLoad = 20,
  kStore = 21,
  kPush = 22,
  kPop = 23,
  kJmp = 24,
  kJz = 25,
  kJnz = 26,
  kCall = 27,
  kRet = 28
};
constexpr int kNumOpcodes = 29;

// The ALU's ops, BINARY_OPS then UNARY_OPS: ALU op k is opcode kAluFirst + k.
constexpr int kAluFirst = kAdd;
constexpr int kNumBinary = 13;
constexpr int kNumUnary = 3;
constexpr int kNumAluOps = kNumBinary + kNumUnary;

}  // namespace isa

namespace alu {

// ALU op indices in coefficient order (the weights of alu_mix and alu_circuit_mix).
enum Op : int { ADD, SUB, MUL, DIV, MOD, EQ, NE, LT, LE, MIN, MAX, AND, OR, INC, DEC, NOT };

}  // namespace alu
}  // namespace ncl
