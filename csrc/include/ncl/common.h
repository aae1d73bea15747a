// Definitions shared by every kernel, CPU and CUDA alike. Torch-free so the C++ unit tests can use it.
#pragma once

#include <cmath>
#include <cstdint>

#if defined(__CUDACC__) || defined(__HIPCC__)
#define NCL_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define NCL_HOST_DEVICE inline
#endif

// Lets the host compiler vectorise a float reduction (reassociating it), as -ffast-math would for the whole
// file. Needs -fopenmp-simd (implied by -fopenmp); a no-op in device code and for compilers without it.
#define NCL_PRAGMA(x) _Pragma(#x)
#if defined(__CUDA_ARCH__)
#define NCL_SIMD_SUM(var)
#define NCL_SIMD_MAX(var)
#else
#define NCL_SIMD_SUM(var) NCL_PRAGMA(omp simd reduction(+ : var))
// The same for a running maximum `var = a > var ? a : var`, which GCC does not vectorise without it (a NaN `a`
// would not be ignored in every lane order).
#define NCL_SIMD_MAX(var) NCL_PRAGMA(omp simd reduction(max : var))
#endif

// Inlined wherever it is called, so that it is compiled into each ISA copy of its caller (csrc/cpu/isa.h).
#if defined(__GNUC__) || defined(__clang__)
#define NCL_ALWAYS_INLINE __attribute__((always_inline)) inline
#else
#define NCL_ALWAYS_INLINE inline
#endif
// Never inlined: kept out of the one large function that isa.h's `flatten` makes of a kernel (the baseline copy runs).
#if defined(__GNUC__) || defined(__clang__)
#define NCL_NOINLINE __attribute__((noinline))
#else
#define NCL_NOINLINE
#endif

namespace ncl {

// Accumulation type: fp32 for fp32/fp16/bf16 storage, fp64 for fp64 (docs/design.md §2 numerics).
template <typename T> struct AccumulateType { using type = float; };
template <> struct AccumulateType<double> { using type = double; };
template <typename T> using acc_t = typename AccumulateType<T>::type;

// 1/x, or 0 where x == 0: the subgradient torch uses for d|x|/dx at x = 0.
template <typename A> NCL_HOST_DEVICE A inv_or_zero(A x) { return x > A(0) ? A(1) / x : A(0); }

// Σ_j a[j*sa] * b[j*sb] accumulated in A.
template <typename A, typename T, typename U>
NCL_HOST_DEVICE A dot(const T* a, const U* b, int64_t n, int64_t sa = 1, int64_t sb = 1) {
  A s = A(0);
  NCL_SIMD_SUM(s)
  for (int64_t j = 0; j < n; ++j) s += static_cast<A>(a[j * sa]) * static_cast<A>(b[j * sb]);
  return s;
}

}  // namespace ncl
