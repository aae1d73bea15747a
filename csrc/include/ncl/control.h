// Per-line math of the control step (docs/design.md §3 step 7, halting mass of step 8), shared by the CPU kernels
// (csrc/cpu/control.cpp) and the CUDA kernels (csrc/cuda/control.cu). Notation as in
// ncl_kernels/control/reference.py: line ℓ has ip mass ip_ℓ and opcode weights op[ℓ, k]; c = χ0 is the
// probability that operand a is 0.
#pragma once

#include "ncl/common.h"
#include "ncl/opcodes.h"

namespace ncl {
namespace control {

// Opcode columns (ncl/opcodes.h, generated from ncl_kernels/isa.py). The control ops are HALT and
// JMP..RET; every other op is sequential (its mass moves to the next line).
constexpr int kNumOps = isa::kNumOpcodes;
constexpr int kHalt = isa::kHalt, kJmp = isa::kJmp, kJz = isa::kJz, kJnz = isa::kJnz, kCall = isa::kCall,
              kRet = isa::kRet;
static_assert(kJz == kJmp + 1 && kJnz == kJmp + 2 && kCall == kJmp + 3 && kRet == kJmp + 4 && kRet + 1 == kNumOps,
              "is_sequential and line_ops assume the control ops JMP..RET close the opcode table");
NCL_HOST_DEVICE bool is_sequential(int k) { return k != kHalt && k < kJmp; }

// One line's opcode weights, grouped as the control step uses them.
template <typename A> struct LineOps { A seq, halt, jmp, jz, jnz, call, ret; };

template <typename A, typename T> NCL_HOST_DEVICE LineOps<A> line_ops(const T* row) {
  LineOps<A> r{A(0), static_cast<A>(row[kHalt]), static_cast<A>(row[kJmp]), static_cast<A>(row[kJz]),
               static_cast<A>(row[kJnz]), static_cast<A>(row[kCall]), static_cast<A>(row[kRet])};
  for (int k = 0; k < kJmp; ++k)
    if (k != kHalt) r.seq += static_cast<A>(row[k]);
  return r;
}

// Mass that jumps to the line's target: JMP, CALL, JZ taken (c), JNZ taken (1 - c).
template <typename A> NCL_HOST_DEVICE A jumped(const LineOps<A>& o, A ip, A c) {
  return ip * (o.jmp + o.call + c * o.jz + (A(1) - c) * o.jnz);
}
// Mass that moves on to the next line: sequential ops, JZ not taken, JNZ not taken.
template <typename A> NCL_HOST_DEVICE A moved_on(const LineOps<A>& o, A ip, A c) {
  return ip * (o.seq + (A(1) - c) * o.jz + c * o.jnz);
}

// d(output)/d(q_k) for one line and opcode k, given J = Σ_m tgt[ℓ,m] g_m (what a jump from ℓ receives),
// D = g_{ℓ+1} (or g_h on the last line: what moving on receives), dR (what RET mass receives) and g_h.
// The gradient of op[ℓ,k] is Σ_b ip_{b,ℓ} times this, that of ip_ℓ is Σ_k op[ℓ,k] times it.
template <typename A> NCL_HOST_DEVICE A op_coef(int k, A J, A D, A dR, A gh, A c) {
  switch (k) {
    case kHalt: return gh;
    case kJmp:
    case kCall: return J;
    case kJz: return c * J + (A(1) - c) * D;
    case kJnz: return (A(1) - c) * J + c * D;
    case kRet: return dR;
    default: return D;
  }
}

template <typename A> NCL_HOST_DEVICE A ip_grad(const LineOps<A>& o, A J, A D, A dR, A gh, A c) {
  return o.halt * gh + (o.jmp + o.call) * J + o.jz * (c * J + (A(1) - c) * D) + o.jnz * ((A(1) - c) * J + c * D) +
         o.ret * dR + o.seq * D;
}

// This line's share of dL/dχ0: ip (op_JZ - op_JNZ)(J - D).
template <typename A> NCL_HOST_DEVICE A chi_grad(const LineOps<A>& o, A ip, A J, A D) {
  return ip * (o.jz - o.jnz) * (J - D);
}

}  // namespace control
}  // namespace ncl
