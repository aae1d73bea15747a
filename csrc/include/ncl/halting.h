// Per-element math of the halting accumulation (docs/design.md §3 step 8), shared by the CPU kernels
// (csrc/cpu/halting.cpp) and the CUDA kernels (csrc/cuda/halting.cu). Notation as in
// ncl_kernels/halting/reference.py.
#pragma once

#include "ncl/common.h"

namespace ncl {
namespace halting {

// One readout element of the halting mixture: acc + h r.
template <typename A> NCL_HOST_DEVICE A accumulate(A acc, A h, A r) { return acc + h * r; }

// Expected steps: E + t h.
template <typename A> NCL_HOST_DEVICE A expected_steps(A e, A t, A h) { return e + t * h; }

// h's gradient: Σ g_acc·r over both readouts, plus t g_E.
template <typename A> NCL_HOST_DEVICE A h_grad(A readout_dot, A t, A g_expected) { return readout_dot + t * g_expected; }

}  // namespace halting
}  // namespace ncl
