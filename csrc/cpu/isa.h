// Run-time choice of the vector ISA for the CPU hot loops.
//
// The extension is built for baseline x86-64 (SSE2, 4 floats per instruction) so that one wheel runs on
// every x86-64 CPU. The machine kernels spend their time in element loops over the memory bank and the
// ALU rows, which AVX2+FMA runs about twice as fast (docs/machine.md). `with_best_isa(body)` runs `body`
// through a copy compiled for AVX2+FMA when the CPU has them: the copy is a function with
// target("avx2,fma") and `flatten`, so `body` and everything it calls is inlined into it and compiled for
// that target. Elsewhere (other CPUs, other compilers) it calls `body` as it is.
//
// `isa::parallel_for` is at::parallel_for with each thread's share run through `with_best_isa`; every CPU
// kernel uses it.
//
// NCL_CPU_ISA=baseline in the environment forces the baseline copy (read on every call, so tests and
// benchmarks can compare the two in one process).
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define NCL_X86_ISA_DISPATCH 1
#endif

namespace ncl::isa {

#ifdef NCL_X86_ISA_DISPATCH
template <typename F>
__attribute__((target("avx2,fma"), flatten)) void run_avx2_fma(F& body) {
  body();
}
#endif

// The ISA `with_best_isa` uses now: "avx2+fma" or "baseline".
inline const char* best_isa() {
#ifdef NCL_X86_ISA_DISPATCH
  const char* forced = std::getenv("NCL_CPU_ISA");
  if (forced && std::strcmp(forced, "baseline") == 0) return "baseline";
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  if (has) return "avx2+fma";
#endif
  return "baseline";
}

template <typename F>
void with_best_isa(F&& body) {
#ifdef NCL_X86_ISA_DISPATCH
  if (best_isa()[0] == 'a') {
    run_avx2_fma(body);
    return;
  }
#endif
  body();
}

template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& body) {
  at::parallel_for(begin, end, grain, [&](int64_t b0, int64_t b1) { with_best_isa([&] { body(b0, b1); }); });
}

}  // namespace ncl::isa
