// Opcode numbers the whole-run machine kernel needs (csrc/cpu/machine.cpp), as ncl.machine.opcodes.OPCODES
// numbers them: tests/test_machine_run_kernel.py checks every one against that table through
// ncl_kernels._C.MACHINE_OPCODES. The control ops' numbers are control.h's.
#pragma once

#include "ncl/control.h"

namespace ncl {
namespace machine {

constexpr int kConst = 2, kMov = 3, kAluFirst = 4, kLoad = 20, kStore = 21, kPush = 22, kPop = 23;
constexpr int kCall = control::kCall, kRet = control::kRet;
// The value-producing ops, whose weights sum to w (DESIGN §3 step 3): CONST MOV, the 16 ALU ops, LOAD, POP.
NCL_HOST_DEVICE bool is_value_op(int k) { return (k >= kConst && k <= kLoad) || k == kPop; }

}  // namespace machine
}  // namespace ncl
