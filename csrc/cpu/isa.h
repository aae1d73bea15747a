// Run-time choice of the vector ISA for the CPU hot loops.
//
// The extension is built for baseline x86-64 (SSE2, 4 floats per instruction) so that one wheel runs on
// every x86-64 CPU. The machine kernels spend their time in element loops over the memory bank and the
// ALU rows, which AVX2+FMA runs about twice as fast (docs/machine.md). `with_best_isa(body)` runs `body`
// through a copy compiled for AVX2+FMA when the CPU has them: the copy is a function with
// target("avx2,fma") and `flatten`, so `body` and everything it calls is inlined into it and compiled for
// that target. Elsewhere (other CPUs, other compilers) it calls `body` as it is.
//
// `isa::parallel_for` is at::parallel_for with each thread's share run through `with_best_isa` and with
// subnormal numbers flushed to zero (`FlushSubnormals`); every CPU kernel uses it.
//
// NCL_CPU_ISA=baseline in the environment forces the baseline copy, and NCL_CPU_SUBNORMALS=keep keeps
// subnormals (both read on every call, so tests and benchmarks can compare in one process).
#pragma once

#include <ATen/Parallel.h>

#include <cstdint>
#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(__CUDACC__)
#define NCL_X86_ISA_DISPATCH 1
#endif
#if defined(__x86_64__) && !defined(__CUDACC__)
#include <xmmintrin.h>
#define NCL_X86_MXCSR 1
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

// While alive, the calling thread's SSE/AVX arithmetic treats subnormal inputs as zero and flushes subnormal
// results to zero (MXCSR's DAZ and FTZ bits); the previous mode comes back on destruction, so torch's own
// arithmetic is untouched. Why: a sharp program leaks about 1e-13 into every weight (softmax at beta = 30), and
// products of leaks fall under the smallest normal float (1.2e-38) within a few steps. On Intel cores every
// subnormal operand or result takes a microcode assist of about a hundred cycles, which made the sharp
// backward four times slower there (benchmarks/RESULTS.md, "Subnormals"). The values flushed are far below
// every tolerance and skip threshold of the kernels (docs/machine.md, "Negligible weights").
class FlushSubnormals {
 public:
  FlushSubnormals() {
#ifdef NCL_X86_MXCSR
    const char* keep = std::getenv("NCL_CPU_SUBNORMALS");
    if (keep && std::strcmp(keep, "keep") == 0) return;
    saved_ = _mm_getcsr();
    active_ = true;
    _mm_setcsr(saved_ | kFtz | kDaz);
#endif
  }
  ~FlushSubnormals() {
#ifdef NCL_X86_MXCSR
    if (active_) _mm_setcsr(saved_);
#endif
  }
  FlushSubnormals(const FlushSubnormals&) = delete;
  FlushSubnormals& operator=(const FlushSubnormals&) = delete;

 private:
  static constexpr unsigned kFtz = 1u << 15;  // flush-to-zero: subnormal results become 0
  static constexpr unsigned kDaz = 1u << 6;   // denormals-are-zero: subnormal inputs read as 0
  unsigned saved_ = 0;
  bool active_ = false;
};

template <typename F>
void parallel_for(int64_t begin, int64_t end, int64_t grain, const F& body) {
  at::parallel_for(begin, end, grain, [&](int64_t b0, int64_t b1) {
    FlushSubnormals flush;
    with_best_isa([&] { body(b0, b1); });
  });
}

}  // namespace ncl::isa
