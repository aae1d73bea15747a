// MUL of the CPU ALU rows (alu_row.h) when n = 2^k, through the structure of Z/2^k: with i = 2^e·u and j = 2^f·w
// (u, w odd), i·j mod 2^k = 2^(e+f)·(u·w mod 2^m), m = k - e - f, and the odd residues mod 2^m are the group
// {±5^t : t < 2^(m-2)} ≅ C2 × C_(2^(m-2)) (m ≥ 2; one residue for m = 1). Rewritten in those coordinates (sign,
// exponent), MUL is a cyclic convolution for each pair of classes (e, f): passes of contiguous multiply-adds, about
// n²/2 of them in all, where the table form (PairTables) gathers up to n entries for every j, the gathers being most
// of its cost on AVX2. An operand's entries in class e depend on u mod 2^(k-e), and a pair (e, f) reads them mod
// 2^m: each class is folded to the pair's modulus first. The forward only, in the alu_mix op's rows and the
// whole-run machine kernel's forward (alu_row.h, mix_row's kMulUnits): the backward's correlations, written the same
// way, measured slower than the table form (benchmarks/RESULTS.md).
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <memory>
#include <vector>

#include "ncl/common.h"

namespace ncl {

// The units' layout of a row of length n = 2^k: position p holds index `index[p]`. Class e < k (the 2^e·u, u odd)
// takes positions [offset[e], offset[e + 1]) as sign[e] × period[e] (a, t): index 2^e·((-1)^a·5^t mod 2^(k-e)) at
// offset[e] + a·period[e] + t. Index 0 is the last position, class k (offset[k] = n - 1). The sign and period of a
// class are those of its modulus m = k - e: (2, 2^(m-2)) for m ≥ 2, (1, 1) for m = 1; class h of a product has the
// modulus of the pair (e, f) with e + f = h.
struct UnitLayout {
  static constexpr int kMaxLog = 30;
  int k = -1;  // log2 n, or -1 when n is not a power of two: the layout is then empty and unused
  std::vector<int32_t> index, offset, sign, period;
  // The folds of a row: class e folded to the modulus of class h ≥ e (sign[h] × period[h]) at level[e·k + h] of a
  // buffer of pyramid_size entries, each fold made from the one before it (h - 1) by one add an entry. Class e's own
  // level is its place in the layout (level[e·k + e] = offset[e]), so a row in the layout is the pyramid's start.
  std::vector<int32_t> level;
  int64_t pyramid_size = 0;
  explicit UnitLayout(int64_t n) {
    if (n < 2 || (n & (n - 1)) != 0 || n > (int64_t{1} << kMaxLog)) return;
    k = 0;
    while ((int64_t{1} << k) < n) ++k;
    index.resize(n);
    for (int e = 0, p = 0; e <= k; ++e) {
      const int m = k - e;
      offset.push_back(p);
      sign.push_back(m >= 2 ? 2 : 1);
      period.push_back(m >= 2 ? 1 << (m - 2) : 1);
      if (m == 0) {
        index[p++] = 0;
        continue;
      }
      const int64_t mod = int64_t{1} << m;
      for (int a = 0; a < sign[e]; ++a) {
        int64_t u = a ? mod - 1 : 1;  // (-1)^a
        for (int t = 0; t < period[e]; ++t, u = u * 5 % mod) index[p++] = static_cast<int32_t>(u << e);
      }
    }
    level.assign(static_cast<size_t>(k) * k, -1);
    pyramid_size = n;
    for (int e = 0; e < k; ++e) {
      level[e * k + e] = offset[e];
      for (int h = e + 1; h < k; ++h) {
        level[e * k + h] = static_cast<int32_t>(pyramid_size);
        pyramid_size += sign[h] * period[h];
      }
    }
  }
};

// What mul_units_forward works in for rows of n: the layout, the operands' pyramids (UnitLayout::level), x's twice
// over (each row doubled, at twice the offsets) as the source of cyclic_block, and the result in the layout. A
// pyramid has fewer than 2n entries (class e's levels, fewer than 2^(k-e)).
template <typename A> struct UnitScratch {
  UnitLayout layout;
  std::vector<A> px, py, px2, acc;
  explicit UnitScratch(int64_t n) : layout(n), px(2 * n), py(2 * n), px2(4 * n), acc(n) {}
};

// The calling thread's UnitScratch for rows of n, kept between calls (a few KB a thread; built again when n
// changes). Neither a RowScratch member nor in PairTables: either changed the whole-run machine kernels' code, which
// never use it, and they measured slower (benchmarks/RESULTS.md).
template <typename A> UnitScratch<A>& unit_scratch(int64_t n) {
  thread_local std::unique_ptr<UnitScratch<A>> scratch;
  if (!scratch || static_cast<int64_t>(scratch->acc.size()) != n) scratch = std::make_unique<UnitScratch<A>>(n);
  return *scratch;
}

namespace units {

// The group convolution of one class: out[r] += Σ_b cyclic(src2[r ^ b], w[b]) for the sign rows r, b < S, each of
// length T (src2's rows doubled, 2T), every weight taken (the rows are dense). Blocks of W entries of out[r] are
// summed in registers over every (b, t), in P = 64 / W partial sums (8 AVX2 vectors of floats, for the adds'
// latency): passes of four t over out in memory waited on their own stores. Below T = 8, plain loops on
// a T fixed at compile time.
template <int W, typename A> void lane_block(A* out, const A* src2, const A* w, int S, int64_t T) {
  constexpr int P = 64 / W;  // T, a power of two ≥ W, is a multiple of both
  for (int r = 0; r < S; ++r)
    for (int64_t c0 = 0; c0 < T; c0 += W) {
      A acc[P][W] = {};
      for (int b = 0; b < S; ++b) {
        const A* src = src2 + (r ^ b) * 2 * T + c0 + T;
        const A* wb = w + b * T;
        for (int64_t t = 0; t < T; t += P)
          for (int p = 0; p < P; ++p) {
            const A wt = wb[t + p];
            const A* sp = src - t - p;
            NCL_PRAGMA(omp simd)
            for (int l = 0; l < W; ++l) acc[p][l] += wt * sp[l];
          }
      }
      for (int l = 0; l < W; ++l) {
        A total = A(0);
        for (int p = 0; p < P; ++p) total += acc[p][l];
        out[r * T + c0 + l] += total;
      }
    }
}
template <int kT, typename A> void small_block(A* out, const A* src2, const A* w, int S) {
  for (int r = 0; r < S; ++r)
    for (int b = 0; b < S; ++b) {
      const A* src = src2 + (r ^ b) * 2 * kT;
      for (int t = 0; t < kT; ++t)
        for (int c = 0; c < kT; ++c) out[r * kT + c] += w[b * kT + t] * src[c - t + kT];
    }
}
template <typename A> void cyclic_block(A* out, const A* src2, const A* w, int S, int64_t T) {
  switch (T) {
    case 1: return small_block<1>(out, src2, w, S);
    case 2: return small_block<2>(out, src2, w, S);
    case 4: return small_block<4>(out, src2, w, S);
    case 8: return lane_block<8>(out, src2, w, S, T);
    case 16: return lane_block<16>(out, src2, w, S, T);
    default: return lane_block<32>(out, src2, w, S, T);
  }
}

// v[p] = row[index[p]]: the row in the layout (the start of its pyramid).
template <typename A> void gather(const UnitLayout& L, const A* row, A* v) {
  const int64_t n = static_cast<int64_t>(L.index.size());
  for (int64_t p = 0; p < n; ++p) v[p] = row[L.index[p]];
}

// The rest of v's pyramid from its start (the row in the layout): level h of class e from level h - 1, the halves of
// each sign row added (T_h = T_(h-1) / 2), or at modulus 2 the two signs' entries.
template <typename A> void fold_pyramid(const UnitLayout& L, A* v) {
  const int k = L.k;
  for (int e = 0; e < k; ++e)
    for (int h = e + 1; h < k; ++h) {
      const A* from = v + L.level[e * k + h - 1];
      A* to = v + L.level[e * k + h];
      const int64_t T = L.period[h];
      if (L.sign[h] < L.sign[h - 1]) {
        to[0] = from[0] + from[1];
        continue;
      }
      for (int a = 0; a < L.sign[h]; ++a) {
        NCL_PRAGMA(omp simd)
        for (int64_t t = 0; t < T; ++t) to[a * T + t] = from[a * 2 * T + t] + from[a * 2 * T + T + t];
      }
    }
}

// The S rows of length T at v, each twice over at v2 (loops: memmove calls for rows of 1-32 entries were a tenth of
// these functions' time).
template <typename A> void double_sign_rows(const A* v, A* v2, int S, int64_t T) {
  for (int a = 0; a < S; ++a)
    for (int64_t t = 0; t < T; ++t) v2[2 * a * T + t] = v2[2 * a * T + T + t] = v[a * T + t];
}

// v2 = each sign row of v's pyramid twice over (v2's offsets are twice v's: a level of S × T takes S × 2T).
template <typename A> void double_rows(const UnitLayout& L, const A* v, A* v2) {
  const int k = L.k;
  for (int e = 0; e < k; ++e)
    for (int h = e; h < k; ++h) {
      const int64_t at = L.level[e * k + h], T = L.period[h];
      double_sign_rows(v + at, v2 + 2 * at, L.sign[h], T);
    }
}

// Each class's mass, classes 0..k (k: index 0), as suffix[f] = Σ_{f' ≥ f} mass[f'], from a folded pyramid: class e's
// mass is its fold at modulus 2 (level k - 1, one entry).
template <typename A> std::array<A, UnitLayout::kMaxLog + 2> suffix_masses(const UnitLayout& L, const A* v) {
  std::array<A, UnitLayout::kMaxLog + 2> suffix{};
  const int k = L.k;
  suffix[k] = v[L.offset[k]];
  for (int e = k - 1; e >= 0; --e) suffix[e] = v[L.level[e * k + k - 1]] + suffix[e + 1];
  return suffix;
}

}  // namespace units

// MUL's forward over every i and j, n = 2^k: out[i·j mod n] += x_i·y_j, y holding MUL's weight (coef·y). Class pair
// (e, f) with e + f = h < k adds the group convolution of x's class e and y's class f, both folded to class h's
// modulus, into class h; the pairs with e + f ≥ k (and index 0) multiply to 0: out[0] += their masses' products.
template <typename A> void mul_units_forward(UnitScratch<A>& s, const A* x, const A* y, A* out) {
  const UnitLayout& L = s.layout;
  const int k = L.k;
  const int64_t n = int64_t{1} << k;
  units::gather(L, x, s.px.data());
  units::gather(L, y, s.py.data());
  units::fold_pyramid(L, s.px.data());
  units::fold_pyramid(L, s.py.data());
  units::double_rows(L, s.px.data(), s.px2.data());
  std::fill(s.acc.begin(), s.acc.end(), A(0));
  for (int h = 0; h < k; ++h)
    for (int e = 0; e <= h; ++e)
      units::cyclic_block(s.acc.data() + L.offset[h], s.px2.data() + 2 * L.level[e * k + h],
                          s.py.data() + L.level[(h - e) * k + h], L.sign[h], L.period[h]);
  const auto mx = units::suffix_masses(L, s.px.data()), my = units::suffix_masses(L, s.py.data());
  A zero = A(0);  // Σ_{e + f ≥ k} mass_x[e]·mass_y[f]
  for (int e = 0; e <= k; ++e) zero += (mx[e] - mx[e + 1]) * my[k - e];
  out[0] += zero;
  for (int64_t p = 0; p + 1 < n; ++p) out[L.index[p]] += s.acc[p];
}

}  // namespace ncl
