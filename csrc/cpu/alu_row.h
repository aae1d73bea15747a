// Row-level CPU code of the table ALU mixture, shared by its kernels (alu.cpp) and the whole-run machine
// kernel (machine.cpp): the row scratch, the running sums, and one row's forward mixture.
#pragma once

#include <algorithm>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <numeric>
#include <vector>

#include "ncl/alu.h"

namespace ncl {

// The tables of the pair ops whose targets are not runs (MUL, DIV, MOD), as gathers: the loops over every i or every
// j (pair_column, mix_row_backward) would otherwise step or divide one index at a time and run scalar; a gather
// vectorises, a scatter does not (AVX2).
//   backward: target[j·n + i] = i·j mod n (symmetric), quot[i·n + j] = i / j and rem[i·n + j] = i mod j (0 at j = 0,
//   as DIV and MOD by 0), so that g[T(i, j)] over every i, or over every j, is one gather;
//   forward: out[i·j mod n] += c·x_i is a scatter. With g = gcd(j, n) and m = n / g, i·j mod n = g·(i·(j/g) mod m)
//   depends on i mod m only, and i ↦ i·(j/g) is a bijection of Z_m, so the forward is a gather too:
//   out[g·r] += c·F_m[source[offset[j] + r]] for r < m, where F_m[s] = Σ_{i ≡ s (mod m)} x_i is x folded modulo m
//   (fold_offset[m] places F_m in one buffer, for every m that divides n).
struct PairTables {
  int64_t n;
  std::vector<int32_t> target, quot, rem, source, offset, step, fold_offset, divisors;
  int64_t fold_size = 0;
  explicit PairTables(int64_t n_)
      : n(n_), target(n_ * n_), quot(n_ * n_), rem(n_ * n_), offset(n_), step(n_), fold_offset(n_ + 1, -1) {
    for (int64_t j = 0; j < n; ++j)
      for (int64_t i = 0; i < n; ++i) {
        target[j * n + i] = static_cast<int32_t>(i * j % n);
        quot[i * n + j] = static_cast<int32_t>(j ? i / j : 0);
        rem[i * n + j] = static_cast<int32_t>(j ? i % j : 0);
      }
    for (int64_t m = 1; m <= n; ++m)
      if (n % m == 0) {
        divisors.push_back(static_cast<int32_t>(m));
        fold_offset[m] = static_cast<int32_t>(fold_size);
        fold_size += m;
      }
    for (int64_t j = 0; j < n; ++j) {
      const int64_t g = std::gcd(j, n), m = n / g;  // gcd(0, n) = n: j = 0 sends every i to 0
      step[j] = static_cast<int32_t>(g);
      offset[j] = static_cast<int32_t>(source.size());
      source.resize(source.size() + m);
      for (int64_t i = 0; i < m; ++i) source[offset[j] + i * (j / g) % m] = static_cast<int32_t>(i);
    }
  }
  // F_m for every m dividing n, of the row x (length n), into fold (fold_size).
  template <typename A> void fold(const A* x, A* out) const {
    for (const int32_t m : divisors) {
      A* f = out + fold_offset[m];
      std::fill(f, f + m, A(0));
      for (int64_t i0 = 0; i0 < n; i0 += m)
        for (int64_t s = 0; s < m; ++s) f[s] += x[i0 + s];
    }
  }
  // The tables of size n, built once per process and kept (3n² + O(n log n) ints: 240 KB at n = 128).
  static const PairTables& of(int64_t n) {
    static std::mutex lock;
    static std::map<int64_t, std::unique_ptr<PairTables>> built;
    const std::lock_guard<std::mutex> hold(lock);
    auto& t = built[n];
    if (!t) t = std::make_unique<PairTables>(n);
    return *t;
  }
};

// Scratch for one row: operands and running sums in the accumulation type.
template <typename A> struct RowScratch {
  std::vector<A> x, y, px, qx, py, qy, g, pgx, qgx, pgy, qgy;
  std::vector<int32_t> sx, sy;  // operand supports (alu::support)
  std::vector<A> dpair, gy_pair, gx, gy;  // backward: pair-op terms, and the row's gradients
  std::vector<char> in_y;
  std::vector<A> fold;  // x folded modulo every divisor of n (PairTables::fold), for the dense forward's MUL
  std::vector<A> gy_rest;  // the backward's dy over every j, for the j outside y's support
  const PairTables* pair_tables = nullptr;  // PairTables::of(n), looked up at first use (it takes a lock)
  const PairTables& tables() {
    if (!pair_tables) pair_tables = &PairTables::of(static_cast<int64_t>(x.size()));
    return *pair_tables;
  }
  explicit RowScratch(int64_t n)
      : x(n), y(n), px(n), qx(n), py(n), qy(n), g(n), pgx(n), qgx(n), pgy(n), qgy(n), sx(n), sy(n),
        dpair(alu::kNumPair * n), gy_pair(n), gx(n), gy(n), in_y(n), gy_rest(n) {}
};

// mix_row sums the pair ops over every i once x's support is more than n / kDenseSupport entries.
constexpr int64_t kDenseSupport = 8;

// Exclusive prefix p[c] = Σ_{i<c} a_i b_i and strict suffix q[c] = Σ_{i>c} a_i b_i (b = nullptr: b_i = 1).
template <typename A> A running_sums(const A* a, const A* b, A* p, A* q, int64_t n) {
  A s = A(0);
  for (int64_t i = 0; i < n; ++i) {
    p[i] = s;
    s += b ? a[i] * b[i] : a[i];
  }
  A t = A(0);
  for (int64_t i = n - 1; i >= 0; --i) {
    q[i] = t;
    t += b ? a[i] * b[i] : a[i];
  }
  return s;
}

// Loads row b of x, y (and g) and fills the row view.
template <typename T, typename A>
alu::Row<A> load_row(RowScratch<A>& s, const T* x, const T* y, const T* g, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    s.x[i] = static_cast<A>(x[i]);
    s.y[i] = static_cast<A>(y[i]);
  }
  alu::Row<A> r{};
  r.n = n;
  r.x = s.x.data(); r.y = s.y.data(); r.px = s.px.data(); r.qx = s.qx.data(); r.py = s.py.data();
  r.qy = s.qy.data();
  r.sx = running_sums<A>(r.x, nullptr, s.px.data(), s.qx.data(), n);
  r.sy = running_sums<A>(r.y, nullptr, s.py.data(), s.qy.data(), n);
  A peq = A(0), plt = A(0);
  for (int64_t i = 0; i < n; ++i) {
    peq += r.x[i] * r.y[i];
    plt += r.x[i] * r.qy[i];
  }
  r.peq = peq;
  r.plt = plt;
  if (g) {
    for (int64_t i = 0; i < n; ++i) s.g[i] = static_cast<A>(g[i]);
    r.g = s.g.data();
    running_sums<A>(r.x, r.g, s.pgx.data(), s.qgx.data(), n);
    running_sums<A>(r.y, r.g, s.pgy.data(), s.qgy.data(), n);
    r.pgx = s.pgx.data(); r.qgx = s.qgx.data(); r.pgy = s.pgy.data(); r.qgy = s.qgy.data();
  }
  return r;
}

// The pair ops' part of out for one operand entry y_j, over every i: out[T_k(i, j)] += coef_k·y_j·x_i for the
// active pair ops `active[0..na)`, along the structure of each table (mix_row_backward's runs): ADD and SUB shift x
// in two contiguous runs, MOD adds x's runs of length j to out[0..j), DIV adds each run's sum to one entry, MUL
// gathers from x folded modulo n / gcd(j, n) (`mul`, and `fold` = mul->fold(x); unread when MUL is not active).
// sx = Σ x.
template <typename A>
void pair_column(const A* x, A sx, int64_t n, int64_t j, A yj, const A* coef, const int* active,
                 int na, const PairTables* mul, const A* fold, A* out) {
  for (int q = 0; q < na; ++q) {
    const int k = active[q];
    const A cy = coef[k] * yj;
    if (k == alu::ADD) {  // out[i + j (mod n)] += cy x_i
      NCL_PRAGMA(omp simd)
      for (int64_t i = 0; i < n - j; ++i) out[i + j] += cy * x[i];
      NCL_PRAGMA(omp simd)
      for (int64_t i = n - j; i < n; ++i) out[i + j - n] += cy * x[i];
    } else if (k == alu::SUB) {  // out[i - j (mod n)] += cy x_i
      NCL_PRAGMA(omp simd)
      for (int64_t i = 0; i < j; ++i) out[i + n - j] += cy * x[i];
      NCL_PRAGMA(omp simd)
      for (int64_t i = j; i < n; ++i) out[i - j] += cy * x[i];
    } else if (k == alu::MUL) {  // out[g·r] += cy F_m[source[r]], g = gcd(j, n), m = n / g (PairTables)
      const int64_t g = mul->step[j], m = n / g;
      const int32_t* src = mul->source.data() + mul->offset[j];
      if (g == 1) {  // F_n = x
        NCL_PRAGMA(omp simd)
        for (int64_t r = 0; r < n; ++r) out[r] += cy * x[src[r]];
      } else {
        const A* f = fold + mul->fold_offset[m];
        for (int64_t r = 0; r < m; ++r) out[g * r] += cy * f[src[r]];
      }
    } else if (j == 0) {  // DIV and MOD by 0 give 0
      out[0] += cy * sx;
    } else if (k == alu::DIV) {  // out[i / j] += cy x_i: one entry per run of j (summed, not prefix
      // differences, which would leave fp32 rounding noise of the whole row's mass on entries that get ~0)
      for (int64_t i0 = 0, q2 = 0; i0 < n; i0 += j, ++q2) {
        const int64_t len = std::min(j, n - i0);
        const A* xb = x + i0;
        A run = A(0);
        NCL_SIMD_SUM(run)
        for (int64_t r = 0; r < len; ++r) run += xb[r];
        out[q2] += cy * run;
      }
    } else {  // MOD
      for (int64_t i0 = 0; i0 < n; i0 += j) {
        const int64_t len = std::min(j, n - i0);
        const A* xb = x + i0;
        NCL_PRAGMA(omp simd)
        for (int64_t r = 0; r < len; ++r) out[r] += cy * xb[r];
      }
    }
  }
}

// One row of the forward mixture: out[c] = Σ_k coef_k op_k(x, y)[c], skipping ops by alu::active_ops. The
// structured ops come from alu::structured_out. The pair ops run over the operands' supports (alu::support): for
// each j in supp(y), over the pairs (i in supp(x), j), each pair into the targets of the active ops only; or, when
// x is dense enough that a pass over every i costs less than stepping the targets along its support, over every i
// by pair_column.
template <typename T, typename A>
void mix_row(RowScratch<A>& s, const T* x, const T* y, const A* coef, A* out) {
  const int64_t n = static_cast<int64_t>(s.x.size());
  const unsigned mask = alu::active_ops(coef);
  const alu::Row<A> r = load_row<T, A>(s, x, y, nullptr, n);
  for (int64_t c = 0; c < n; ++c) out[c] = alu::structured_out(c, r, coef, mask & ~alu::kPairMask);
  if (!(mask & alu::kPairMask)) return;
  int active[alu::kNumPair], na = 0;  // the active pair ops: a sharp row has one
  for (int k = 0; k < alu::kNumPair; ++k)
    if (mask & (1u << k)) active[na++] = k;
  const int64_t nx = alu::support(r.x, n, s.sx.data()), ny = alu::support(r.y, n, s.sy.data());
  // A pass over every i costs about n/8 vector operations an op (n for MUL); stepping costs ~10 a pair.
  if (nx * kDenseSupport > n) {
    const PairTables* mul = nullptr;
    if (mask & (1u << alu::MUL)) {
      mul = &s.tables();
      s.fold.resize(mul->fold_size);
      mul->fold(r.x, s.fold.data());
    }
    for (int64_t jj = 0; jj < ny; ++jj) {
      const int64_t j = s.sy[jj];
      pair_column<A>(r.x, r.sx, n, j, r.y[j], coef, active, na, mul, s.fold.data(), out);
    }
    return;
  }
  for (int64_t jj = 0; jj < ny; ++jj) {
    const int64_t j = s.sy[jj];
    alu::PairTargets t(n, j);
    for (int64_t ii = 0; ii < nx; ++ii) {
      t.move_to(s.sx[ii]);
      const A p = r.x[t.i] * r.y[j];
      for (int q = 0; q < na; ++q) out[t.t[active[q]]] += coef[active[q]] * p;
    }
  }
}

// One row of the backward: gx = ∂L/∂x, gy = ∂L/∂y (length n) and gcoef = ∂L/∂coef (16) for the upstream
// gradient g. Every op is computed (gcoef_k = <g, op_k(x, y)> does not vanish with coef_k).
template <typename T, typename A>
void mix_row_backward(RowScratch<A>& s, const T* x, const T* y, const T* g, const A* coef, A* gx, A* gy,
                      A* gcoef) {
  const int64_t n = static_cast<int64_t>(s.x.size());
  A d[alu::kNumOps];
  for (int k = 0; k < alu::kNumOps; ++k) gcoef[k] = A(0);
  const alu::Row<A> r = load_row<T, A>(s, x, y, g, n);
  // The pair ops. dx_k[i] = Σ_j y_j g[T_k(i,j)] is needed at every i (it is the gradient of mass that x
  // does not have), but only over j in supp(y); dy_k[j] likewise at every j, over i in supp(x). For j in
  // supp(y) the sums run over every i, op by op, along the structure of each table (contiguous runs of g
  // for ADD, SUB, DIV and MOD, so they vectorise); for the other j, over the pairs (i in supp(x), j).
  const int64_t nx = alu::support(r.x, n, s.sx.data()), ny = alu::support(r.y, n, s.sy.data());
  std::fill(s.in_y.begin(), s.in_y.end(), 0);
  std::fill(s.dpair.begin(), s.dpair.end(), A(0));
  const A* xs = r.x;
  const A* gs = r.g;
  const PairTables& tab = s.tables();
  for (int64_t jj = 0; jj < ny; ++jj) {
    const int64_t j = s.sy[jj];
    s.in_y[j] = 1;
    const A yj = r.y[j];
    A sum[alu::kNumPair] = {};  // Σ_i x_i g[T_k(i, j)]
    A* dk[alu::kNumPair];
    for (int k = 0; k < alu::kNumPair; ++k) dk[k] = s.dpair.data() + k * n;
    // ADD: g[(i + j) mod n], SUB: g[(i - j) mod n], each two contiguous runs.
    for (int64_t part = 0; part < 2; ++part) {
      const int64_t lo = part ? n - j : 0, hi = part ? n : n - j, shift = part ? j - n : j;
      A acc = A(0);
      NCL_PRAGMA(omp simd reduction(+ : acc))
      for (int64_t i = lo; i < hi; ++i) {
        dk[alu::ADD][i] += yj * gs[i + shift];
        acc += xs[i] * gs[i + shift];
      }
      sum[alu::ADD] += acc;
      const int64_t slo = part ? j : 0, shi = part ? n : j, sshift = part ? -j : n - j;
      A acc2 = A(0);
      NCL_PRAGMA(omp simd reduction(+ : acc2))
      for (int64_t i = slo; i < shi; ++i) {
        dk[alu::SUB][i] += yj * gs[i + sshift];
        acc2 += xs[i] * gs[i + sshift];
      }
      sum[alu::SUB] += acc2;
    }
    // MUL: g[i·j mod n], one gather from PairTables::target (stepping i·j mod n was scalar, and as one chain of
    // dependent adds the backward's slowest loop on dense operands).
    {
      const int32_t* tj = tab.target.data() + j * n;
      A* dmul = dk[alu::MUL];
      A acc = A(0);
      NCL_PRAGMA(omp simd reduction(+ : acc))
      for (int64_t i = 0; i < n; ++i) {
        const A gt = gs[tj[i]];
        dmul[i] += yj * gt;
        acc += xs[i] * gt;
      }
      sum[alu::MUL] += acc;
    }
    // DIV: g[i / j] is constant on runs of j; MOD: g[i mod j] repeats g[0..j) on the same runs. j = 0: g[0].
    const int64_t run = j ? j : n;
    for (int64_t i0 = 0, q = 0; i0 < n; i0 += run, ++q) {
      const int64_t len = std::min(run, n - i0);
      const A gq = gs[j ? q : 0];
      A xsum = A(0), acc = A(0);
      A *dd = dk[alu::DIV] + i0, *dm = dk[alu::MOD] + i0;
      const A* xb = xs + i0;
      NCL_PRAGMA(omp simd reduction(+ : xsum, acc))
      for (int64_t q2 = 0; q2 < len; ++q2) {
        const A gm = j ? gs[q2] : gs[0];
        dd[q2] += yj * gq;
        dm[q2] += yj * gm;
        xsum += xb[q2];
        acc += xb[q2] * gm;
      }
      sum[alu::DIV] += gq * xsum;
      sum[alu::MOD] += acc;
    }
    A gyj = A(0);
    for (int k = 0; k < alu::kNumPair; ++k) gyj += coef[k] * sum[k];
    s.gy_pair[j] = gyj;
  }
  // The other j: dy[j] = Σ_{i in supp(x)} x_i Σ_k coef_k g[T_k(i, j)], over every j at once along row i of each
  // table (the j in supp(y) are computed above, and their entries here are dropped).
  if (ny < n) {
    A* rest = s.gy_rest.data();
    std::fill(rest, rest + n, A(0));
    for (int64_t ii = 0; ii < nx; ++ii) {
      const int32_t i = s.sx[ii], nn = static_cast<int32_t>(n);
      const A xi = xs[i];
      const int32_t *tm = tab.target.data() + i * n, *tq = tab.quot.data() + i * n, *tr = tab.rem.data() + i * n;
      NCL_PRAGMA(omp simd)
      for (int32_t j = 0; j < nn; ++j) {
        const int32_t ta = i + j >= nn ? i + j - nn : i + j, ts = i >= j ? i - j : i - j + nn;
        const A mixed = coef[alu::ADD] * gs[ta] + coef[alu::SUB] * gs[ts] + coef[alu::MUL] * gs[tm[j]] +
                        coef[alu::DIV] * gs[tq[j]] + coef[alu::MOD] * gs[tr[j]];
        rest[j] += xi * mixed;
      }
    }
    for (int64_t j = 0; j < n; ++j)
      if (!s.in_y[j]) s.gy_pair[j] = rest[j];
  }
  for (int64_t i = 0; i < n; ++i) {
    alu::grad_x_structured(i, r, d);
    for (int k = 0; k < alu::kNumPair; ++k) d[k] = s.dpair[k * n + i];
    A acc = A(0);
    for (int k = 0; k < alu::kNumOps; ++k) {
      acc += coef[k] * d[k];
      gcoef[k] += r.x[i] * d[k];  // L_k is bilinear: L_k = Σ_i x_i ∂L_k/∂x_i
    }
    gx[i] = acc;
  }
  for (int64_t j = 0; j < n; ++j) {
    alu::grad_y_structured(j, r, d);
    A acc = s.gy_pair[j];
    for (int k = alu::kNumPair; k < alu::kNumBinary; ++k) acc += coef[k] * d[k];
    gy[j] = acc;
  }
}

}  // namespace ncl
