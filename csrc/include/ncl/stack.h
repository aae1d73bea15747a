// Per-position math of the soft stack update (docs/design.md §3 step 6, docs/machine.md "Stacks"), shared by the
// CPU kernels (csrc/cpu/stack.cpp) and the CUDA kernels (csrc/cuda/stack.cu). Notation as in
// ncl_kernels/stack/reference.py: pointer p over S >= 2 positions, push u, pop o.
#pragma once

#include "ncl/common.h"
#include "ncl/memory.h"  // soft_write_value: a slot write is a soft_write with weights up(p), gate u

namespace ncl {
namespace stack {

// up(p)_s: p_{s-1}, 0 at the bottom, and the top saturates (p_{S-2} + p_{S-1}).
template <typename A, typename T> NCL_HOST_DEVICE A up_at(const T* p, int64_t s, int64_t S) {
  if (s == 0) return A(0);
  const A below = static_cast<A>(p[s - 1]);
  return s == S - 1 ? below + static_cast<A>(p[s]) : below;
}

// down(p)_s: p_{s+1}, the bottom saturates (p_0 + p_1), 0 at the top.
template <typename A, typename T> NCL_HOST_DEVICE A down_at(const T* p, int64_t s, int64_t S) {
  if (s == S - 1) return A(0);
  const A above = static_cast<A>(p[s + 1]);
  return s == 0 ? above + static_cast<A>(p[0]) : above;
}

// p'_s = (1 - u - o) p_s + u up(p)_s + o down(p)_s.
template <typename A> NCL_HOST_DEVICE A new_pointer(A p, A up, A down, A u, A o) {
  return (A(1) - u - o) * p + u * up + o * down;
}

// Adjoints of up and down: (up^T v)_j = v_{j+1} for j < S-1 and v_{S-1} at the top (the saturated term);
// (down^T v)_j = v_{j-1} for j > 0 and v_0 at the bottom. v_0 of an up-adjoint input never arrives
// (nothing moves up into position 0).
template <typename A> NCL_HOST_DEVICE A up_adjoint_at(const A* v, int64_t j, int64_t S) {
  return j < S - 1 ? v[j + 1] : v[S - 1];
}
template <typename A> NCL_HOST_DEVICE A down_adjoint_at(const A* v, int64_t j) { return j > 0 ? v[j - 1] : v[0]; }

// Gradient reaching p_j: the direct term (1 - u - o) g_j, the adjoints of up and down applied to
// dr = u (A + g) (A_s: the gradient of the slot write's coefficient a_s = u up(p)_s) and dd = o g, and the
// fault masses u p_{S-1} and o p_0.
template <typename A>
NCL_HOST_DEVICE A pointer_grad(const A* dr, const A* dd, A g_j, A u, A o, A g_over, A g_under, int64_t j, int64_t S) {
  A gp = (A(1) - u - o) * g_j + up_adjoint_at(dr, j, S) + down_adjoint_at(dd, j);
  if (j == S - 1) gp += g_over * u;
  if (j == 0) gp += g_under * o;
  return gp;
}

}  // namespace stack
}  // namespace ncl
