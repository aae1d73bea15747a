// The DIV and MOD ops' runs for the CPU ALU rows (alu_row.h): i / j and i mod j are constant and contiguous,
// respectively, along the runs i ∈ [qj, (q + 1)j), so the dense loops over them need no gather.
#pragma once

#include <algorithm>
#include <cstdint>

#include "ncl/alu.h"
#include "pair_tables.h"

namespace ncl {

// The width of the chunks the DIV and MOD runs are cut into (mod_fold, div_mod_runs): one AVX2 vector of floats.
constexpr int64_t kRunLanes = 8;

// F[q] = Σ_{i ≡ q (mod J)} x_i for q < J < kRunLanes, J fixed at compile time: x added in blocks of
// P = kRunLanes·J entries (a multiple of J, so a block keeps the residues) into P accumulators that stay in registers,
// then the P folded to J. A run of length J a pass was a loop of J scalar adds: its overhead was the pass.
template <int J, typename A> void fold_small(const A* x, int64_t n, A* F) {
  constexpr int64_t P = kRunLanes * J;
  A acc[P] = {};
  int64_t t = 0;
  for (; t + P <= n; t += P) {
    NCL_PRAGMA(omp simd)
    for (int64_t l = 0; l < P; ++l) acc[l] += x[t + l];
  }
  for (int64_t l = 0; t + l < n; ++l) acc[l] += x[t + l];
  for (int64_t q = 0; q < J; ++q) {
    A f = A(0);
    for (int64_t k = 0; k < kRunLanes; ++k) f += acc[q + k * J];
    F[q] = f;
  }
}

// acc[l] (=, or += with kAdd) Σ_{g < G} x[g·j + l] for l < lanes: G of MOD's runs at once.
template <int G, bool kAdd, typename A> void add_runs(const A* x, int64_t j, int64_t lanes, A* acc) {
  NCL_PRAGMA(omp simd)
  for (int64_t l = 0; l < lanes; ++l) {
    A v = kAdd ? acc[l] : A(0);
    for (int g = 0; g < G; ++g) v += x[g * j + l];
    acc[l] = v;
  }
}

// MOD's runs: f[q] = Σ_{i ≡ q (mod j)} x_i for q < j ≥ 1, x with n + kRunLanes zeros past n, f with room for
// kRunLanes - 1 entries past j. From j = kRunLanes on, the runs [tj, (t + 1)j) are added lane-wise four at a time,
// in whole chunks of kRunLanes: the lanes past j land on entries of f that are never read, and past n read the
// padding's zeros, so no run has a remainder loop. One run a pass, the loop overheads of the n ln n runs a row were
// most of MOD's forward.
template <typename A> const A* mod_fold(const A* x, int64_t n, int64_t j, A* f) {
  switch (j) {
    case 1: fold_small<1>(x, n, f); return f;
    case 2: fold_small<2>(x, n, f); return f;
    case 3: fold_small<3>(x, n, f); return f;
    case 4: fold_small<4>(x, n, f); return f;
    case 5: fold_small<5>(x, n, f); return f;
    case 6: fold_small<6>(x, n, f); return f;
    case 7: fold_small<7>(x, n, f); return f;
    default: break;
  }
  const int64_t lanes = (j + kRunLanes - 1) / kRunLanes * kRunLanes, runs = (n + j - 1) / j;
  int64_t t = 0;
  for (; t + 4 <= runs; t += 4)
    t ? add_runs<4, true>(x + t * j, j, lanes, f) : add_runs<4, false>(x, j, lanes, f);
  switch (runs - t) {
    case 1: t ? add_runs<1, true>(x + t * j, j, lanes, f) : add_runs<1, false>(x, j, lanes, f); break;
    case 2: t ? add_runs<2, true>(x + t * j, j, lanes, f) : add_runs<2, false>(x, j, lanes, f); break;
    case 3: t ? add_runs<3, true>(x + t * j, j, lanes, f) : add_runs<3, false>(x, j, lanes, f); break;
    default: break;
  }
  return f;
}

// From this j on, the backward reads DIV's and MOD's g[i / j] and g[i mod j] as runs (div_mod_backward): one AVX2
// vector of floats. Soft fwd+bwd of `ncl bench machine`, one thread: ALU backward with runs from j = 2, 4 or 8
// within noise of each other, 15 ms a call less than gathers at every j (benchmarks/RESULTS.md).
constexpr int64_t kRunMinJ = 8;

// The buffers of div_mod_runs (RowScratch): x and gx (the one the pair ops update) padded by kRunLanes past
// n, g twice over (2n), RowScratch::run_mask, x's and x·g's prefix sums in double (n + 1), and two difference
// arrays in double (n + 1) that mix_row_backward sums into gx once a row: div_diff (DIV's part of gx) and
// mod_head (the coefficient of g[i] in MOD's part, from the runs q = 0).
template <typename A> struct Runs {
  const A *x_pad, *gg, *mask;
  const double *prefix, *xg_prefix;
  A* gx_pad;
  double *div_diff, *mod_head;
};

// DIV's and MOD's backward at one j ≥ kRunMinJ, along the runs i ∈ [qj, (q + 1)j): gx[i] += c_div g[q] + c_mod
// g[i - qj], s_div = Σ_q g[q] Σ_{i in run q} x_i and s_mod = Σ_i x_i g[i mod j].
// - DIV's part of gx is a step function of i: it goes into div_diff as its steps, c_div (g[q] - g[q - 1]) at qj,
//   O(n / j) a j, and s_div's run sums are differences of x's prefix sums, as in the forward's DIV.
// - On the first run (i < j) MOD's part is c_mod g[i]: mod_head gets +c_mod at 0 and -c_mod at j, and that run's
//   share of s_mod is x·g's prefix sum at j. Only the runs q ≥ 1 (about half the pairs) are passes over i.
// - Those runs are cut into whole chunks of kRunLanes with the lanes past j masked (the mask is 0 there, and x and
//   gx have room past n), so no run has a remainder loop or a horizontal sum of its own: there are about
//   n ln(n / kRunMinJ) runs a row (364 at n = 128), and their loop overheads and per-run reductions were a sixth of
//   the soft run's backward (benchmarks/RESULTS.md). A masked lane adds 0 to the next run's first entries, which
//   that run then updates. The odd runs go first, then the even ones: a run's first chunk, loaded right after the
//   chunk stores of the run before it that overlap it by a few lanes, waited for them (a store-forwarding stall).
template <typename A>
void div_mod_runs(const Runs<A>& rb, const A* gs, int64_t n, int64_t j, A c_div, A c_mod, A& s_div, A& s_mod) {
  const int64_t runs = (n + j - 1) / j;
  double sd = 0.0;
  for (int64_t q = 0; q < runs; ++q) {
    const int64_t i0 = q * j, end = std::min(i0 + j, n);
    rb.div_diff[i0] += static_cast<double>(c_div) * (static_cast<double>(gs[q]) - (q ? gs[q - 1] : 0.0));
    sd += static_cast<double>(gs[q]) * (rb.prefix[end] - rb.prefix[i0]);
  }
  rb.mod_head[0] += c_mod;
  rb.mod_head[j] -= c_mod;
  const A* mask = rb.mask + n - j;  // 1 on lanes r < j, 0 on the next kRunLanes
  A acc[kRunLanes] = {};
  for (int64_t first = 1; first <= 2; ++first)
    for (int64_t q = first; q < runs; q += 2) {
      const int64_t i0 = q * j, chunks = (std::min(j, n - i0) + kRunLanes - 1) / kRunLanes;
      const A* xb = rb.x_pad + i0;
      A* gb = rb.gx_pad + i0;
      for (int64_t c = 0; c < chunks; ++c) {
        const int64_t r0 = c * kRunLanes;
        NCL_PRAGMA(omp simd)
        for (int64_t l = 0; l < kRunLanes; ++l) {
          const A gr = mask[r0 + l] * rb.gg[r0 + l];  // a lane past n reads g[r - n]: finite, times 0
          gb[r0 + l] += c_mod * gr;
          acc[l] += xb[r0 + l] * gr;
        }
      }
    }
  A sm = static_cast<A>(rb.xg_prefix[j]);
  for (int64_t l = 0; l < kRunLanes; ++l) sm += acc[l];
  s_div = static_cast<A>(sd);
  s_mod = sm;
}

// DIV's and MOD's backward at one j: gx[i] += c_div g[i / j] + c_mod g[i mod j], s_div = Σ_i x_i g[i / j] and
// s_mod = Σ_i x_i g[i mod j]. From kRunMinJ on along the runs (div_mod_runs): g[i / j] is g[q] over i ∈ [qj,
// (q + 1)j) and g[i mod j] is g[0..j) again on each run, so both are contiguous loops with no gather (a gather of 8
// floats is 8 loads and inserts); below it, gathered from the tables.
template <typename A>
void div_mod_backward(const PairTables& tab, const A* xs, const A* gs, int64_t n, int64_t j, A c_div, A c_mod,
                      const Runs<A>& runs, A* gx, A* sum) {
  if (j >= kRunMinJ) {
    div_mod_runs(runs, gs, n, j, c_div, c_mod, sum[alu::DIV], sum[alu::MOD]);
    return;
  }
  const int32_t *tq = tab.quot_t.data() + j * n, *tr = tab.rem_t.data() + j * n;
  A s_div = A(0), s_mod = A(0);
  NCL_PRAGMA(omp simd reduction(+ : s_div, s_mod))
  for (int64_t i = 0; i < n; ++i) {
    const A xi = xs[i], gd = gs[tq[i]], gr = gs[tr[i]];
    gx[i] += c_div * gd + c_mod * gr;
    s_div += xi * gd, s_mod += xi * gr;
  }
  sum[alu::DIV] = s_div, sum[alu::MOD] = s_mod;
}

}  // namespace ncl
