// Opcode numbers the whole-run machine kernel needs (csrc/cpu/machine.cpp), from ncl/opcodes.h (generated
// from ncl_kernels/isa.py). The control ops' numbers are control.h's.
#pragma once

#include "ncl/control.h"

namespace ncl {
namespace machine {

constexpr int kConst = isa::kConst, kMov = isa::kMov, kAluFirst = isa::kAluFirst, kLoad = isa::kLoad,
              kStore = isa::kStore, kPush = isa::kPush, kPop = isa::kPop;
static_assert(kAluFirst == kMov + 1 && kLoad == kAluFirst + isa::kNumAluOps,
              "is_value_op assumes CONST MOV, the ALU ops and LOAD are contiguous");
constexpr int kCall = control::kCall, kRet = control::kRet;
// The value-producing ops, whose weights sum to w (docs/design.md §3 step 3): CONST MOV, the 16 ALU ops, LOAD, POP.
NCL_HOST_DEVICE bool is_value_op(int k) { return (k >= kConst && k <= kLoad) || k == kPop; }

}  // namespace machine
}  // namespace ncl
