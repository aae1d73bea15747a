// Per-element and per-row math of the memory ops (soft_read, soft_write, content_address).
// The CPU kernels (csrc/cpu/memory.cpp) and CUDA kernels (csrc/cuda/memory.cu) both call these, so the
// CPU tests check the arithmetic the GPU runs. Notation as in ncl_kernels/memory/reference.py.
#pragma once

#include "ncl/common.h"

namespace ncl {

// Added to every norm in content_address; must equal ncl_kernels.memory.reference.NORM_EPS (tested).
constexpr double kNormEps = 1e-6;

// soft_write, one element: m + a (v - m) with a = gate * weight.
template <typename A> NCL_HOST_DEVICE A soft_write_value(A m, A a, A v) { return m + a * (v - m); }

// Gradients of soft_write_value with respect to m, a and v, given the upstream gradient g.
template <typename A> struct SoftWriteGrad { A m, a, v; };
template <typename A> NCL_HOST_DEVICE SoftWriteGrad<A> soft_write_value_grad(A g, A m, A a, A v) {
  return {g * (A(1) - a), g * (v - m), g * a};
}

// Cosine similarity with eps added to each norm: dot / ((|k| + eps)(|m| + eps)).
template <typename A> NCL_HOST_DEVICE A eps_cosine(A dot, A knorm, A mnorm) {
  return dot / ((knorm + A(kNormEps)) * (mnorm + A(kNormEps)));
}

// Softmax backward for one entry: p_i (g_i - Σ_j g_j p_j).
template <typename A> NCL_HOST_DEVICE A softmax_grad(A p, A g, A gp_sum) { return p * (g - gp_sum); }

// content_address backward factorisation. With K = |k|+eps, M = |m|+eps, cos = dot/(K M) and
// dcos the gradient reaching cos, the chain rule gives
//   dk = Σ_i α_i m_i − k · (Σ_i α_i dot_i) / (K |k|)
//   dm_i = Σ_h α_hi k_h − m_i · (Σ_h α_hi dot_hi) / (M_i |m_i|)
// with α = dcos / (K M). The two halves share this shape, so one coefficient and one self-term serve both.
template <typename A> NCL_HOST_DEVICE A cosine_alpha(A dcos, A knorm, A mnorm) {
  return dcos / ((knorm + A(kNormEps)) * (mnorm + A(kNormEps)));
}
// Scale of the self term: (Σ α dot) / ((|x| + eps) |x|), zero for a zero vector.
template <typename A> NCL_HOST_DEVICE A cosine_self_scale(A alpha_dot_sum, A norm) {
  return alpha_dot_sum * inv_or_zero(norm) / (norm + A(kNormEps));
}

}  // namespace ncl
