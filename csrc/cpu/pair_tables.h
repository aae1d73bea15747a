// The pair ops' index tables for the CPU ALU rows (alu_row.h), built once per n.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <vector>

#include "ncl/common.h"

namespace ncl {

// The tables of the pair ops whose targets are not runs (MUL, DIV, MOD), as gathers: the loops over every i or every
// j (pair_dense, mix_row_backward) would otherwise step or divide one index at a time and run scalar; a gather
// vectorises, a scatter does not (AVX2).
//   backward: target[j·n + i] = i·j mod n (symmetric), quot[i·n + j] = quot_t[j·n + i] = i / j and rem[i·n + j] =
//   rem_t[j·n + i] = i mod j (0 at j = 0, as DIV and MOD by 0), so that g[T(i, j)] over every i, or over every j,
//   is one gather;
//   forward: out[i·j mod n] += c·x_i is a scatter. With g = gcd(j, n) and m = n / g, i·j mod n = g·(i·(j/g) mod m)
//   depends on i mod m only, and i ↦ i·(j/g) is a bijection of Z_m, so the forward is a gather too:
//   out[g·r] += c·F_m[source[offset[j] + r]] for r < m, where F_m[s] = Σ_{i ≡ s (mod m)} x_i is x folded modulo m
//   (fold_offset[m] places F_m in one buffer, for every m that divides n).
struct PairTables {
  int64_t n;
  std::vector<int32_t> target, quot, rem, quot_t, rem_t, source, offset, step, fold_offset, fold_from, divisors;
  int64_t fold_size = 0;
  explicit PairTables(int64_t n_)
      : n(n_), target(n_ * n_), quot(n_ * n_), rem(n_ * n_), quot_t(n_ * n_), rem_t(n_ * n_), offset(n_), step(n_),
        fold_offset(n_ + 1, -1), fold_from(n_ + 1, -1) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) {
        target[j * n + i] = static_cast<int32_t>(i * j % n);
        quot[i * n + j] = quot_t[j * n + i] = static_cast<int32_t>(j ? i / j : 0);
        rem[i * n + j] = rem_t[j * n + i] = static_cast<int32_t>(j ? i % j : 0);
      }
    for (int64_t m = 1; m <= n; ++m)
      if (n % m == 0) {
        divisors.push_back(static_cast<int32_t>(m));
        fold_offset[m] = static_cast<int32_t>(fold_size);
        fold_size += m;
      }
    for (const int32_t m : divisors)
      for (const int32_t big : divisors)
        if (big > m && big % m == 0) {
          fold_from[m] = big;
          break;
        }
    for (int64_t j = 0; j < n; ++j) {
      const int64_t g = std::gcd(j, n), m = n / g;  // gcd(0, n) = n: j = 0 sends every i to 0
      step[j] = static_cast<int32_t>(g);
      offset[j] = static_cast<int32_t>(source.size());
      source.resize(source.size() + m);
      for (int64_t i = 0; i < m; ++i) source[offset[j] + i * (j / g) % m] = static_cast<int32_t>(i);
    }
  }
  // F_m for every m dividing n, of the row x (length n), into fold (fold_size). Each F_m is folded from
  // F_{fold_from[m]}, the smallest multiple of m among the divisors: x itself has about n·d(n) / 2 entries' worth of
  // short runs for the small m (255 runs at n = 128), a loop overhead each.
  template <typename A> void fold(const A* x, A* out) const {
    std::copy(x, x + n, out + fold_offset[n]);
    for (auto it = divisors.rbegin() + 1; it != divisors.rend(); ++it) {
      const int64_t m = *it, big = fold_from[m];
      A* f = out + fold_offset[m];
      const A* src = out + fold_offset[big];
      std::copy(src, src + m, f);
      for (int64_t i0 = m; i0 < big; i0 += m) {
        NCL_PRAGMA(omp simd)
        for (int64_t s = 0; s < m; ++s) f[s] += src[i0 + s];
      }
    }
  }
  // The tables of size n, built once per process and kept (5n² + O(n log n) ints: 370 KB at n = 128).
  static const PairTables& of(int64_t n) {
    static std::mutex lock;
    static std::map<int64_t, std::unique_ptr<PairTables>> built;
    const std::lock_guard<std::mutex> hold(lock);
    auto& t = built[n];
    if (!t) t = std::make_unique<PairTables>(n);
    return *t;
  }
};

}  // namespace ncl
