// The CPU ALU rows alone (csrc/cpu/alu_row.h), without torch: `rows` dense rows (softmax operands, as the soft
// inputs of `ncl bench machine`), forward (mix_row: MUL by the tables, as the machine kernels, and by the units of
// Z/n, as the alu_mix op, `units`) and backward (mix_row_backward), each pair op weighted alone, then all five, then
// every op. Prints the median and the range of `repeats` timings of all the rows, in ms, one
// thread. Each figure includes the row's loads and running sums, which do not depend on the op.
//
//   cmake -S . -B build/cmake && cmake --build build/cmake --target ncl_alu_rows_bench
//   build/cmake/ncl_alu_rows_bench [n=128] [rows=2048] [repeats=9]
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "alu_row.h"

int main(int argc, char** argv) {
  using ncl::alu::kNumOps;
  const int64_t n = argc > 1 ? std::atol(argv[1]) : 128, rows = argc > 2 ? std::atol(argv[2]) : 2048;
  const int repeats = argc > 3 ? std::atoi(argv[3]) : 9;
  std::mt19937 rng(1);
  std::normal_distribution<float> normal;
  std::vector<float> x(rows * n), y(rows * n), g(rows * n), out(n), gx(n), gy(n), gcoef(kNumOps);
  auto softmax = [&](float* v) {
    float total = 0;
    for (int64_t i = 0; i < n; ++i) total += v[i] = std::exp(normal(rng));
    for (int64_t i = 0; i < n; ++i) v[i] /= total;
  };
  for (int64_t r = 0; r < rows; ++r) {
    softmax(&x[r * n]);
    softmax(&y[r * n]);
    for (int64_t i = 0; i < n; ++i) g[r * n + i] = normal(rng);
  }
  ncl::RowScratch<float> s(n);
  double sink = 0;  // keeps the results live
  auto time_ms = [&](auto&& body) {
    std::vector<double> t(repeats);
    for (auto& ms : t) {
      const auto start = std::chrono::steady_clock::now();
      for (int64_t r = 0; r < rows; ++r) body(r);
      ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    }
    std::sort(t.begin(), t.end());
    return t;
  };
  std::printf("n = %ld, %ld rows, %d repeats: median (min-max) ms\n", static_cast<long>(n), static_cast<long>(rows),
              repeats);
  const char* names[] = {"ADD", "SUB", "MUL", "DIV", "MOD", "pair ops", "every op"};
  for (int which = 0; which < 7; ++which) {
    float coef[kNumOps] = {};
    for (int k = 0; k < kNumOps; ++k)
      coef[k] = which < 5 ? (k == which ? 1.0f : 0.0f) : which == 5 ? (k < 5 ? 0.2f : 0.0f) : 1.0f / kNumOps;
    const auto fwd = time_ms([&](int64_t r) {
      ncl::mix_row<float, float>(s, &x[r * n], &y[r * n], coef, out.data());
      sink += out[r % n];
    });
    const auto fwd_units = time_ms([&](int64_t r) {  // MUL through the units of Z/n (power-of-two n)
      ncl::mix_row<float, float, /*kMulUnits=*/true>(s, &x[r * n], &y[r * n], coef, out.data());
      sink += out[r % n];
    });
    const auto bwd = time_ms([&](int64_t r) {
      ncl::mix_row_backward<float, float>(s, &x[r * n], &y[r * n], &g[r * n], coef, gx.data(), gy.data(),
                                          gcoef.data());
      sink += gx[r % n] + gy[r % n] + gcoef[r % kNumOps];
    });
    std::printf("%-9s forward %6.2f (%.2f-%.2f)  units %6.2f (%.2f-%.2f)  backward %6.2f (%.2f-%.2f)\n",
                names[which], fwd[repeats / 2], fwd.front(), fwd.back(), fwd_units[repeats / 2], fwd_units.front(),
                fwd_units.back(), bwd[repeats / 2], bwd.front(), bwd.back());
  }
  return std::isfinite(sink) ? 0 : 1;
}
