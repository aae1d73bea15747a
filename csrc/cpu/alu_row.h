// Row-level CPU code of the table ALU mixture, shared by its kernels (alu.cpp) and the whole-run machine
// kernel (machine.cpp): the row scratch, the running sums, and one row's forward mixture.
#pragma once

#include <algorithm>
#include <vector>

#include "ncl/alu.h"
#include "pair_tables.h"

namespace ncl {

// Scratch for one row: operands and running sums in the accumulation type.
template <typename A> struct RowScratch {
  std::vector<A> x, y, px, qx, py, qy, g, pgx, qgx, pgy, qgy;
  std::vector<int32_t> sx, sy;  // operand supports (alu::support)
  std::vector<A> dpair, gy_pair, gx, gy;  // backward: pair-op terms, and the row's gradients
  std::vector<char> in_y;
  std::vector<A> fold;  // x folded modulo every divisor of n (PairTables::fold), for the dense forward's MUL
  std::vector<A> xx;  // x (forward) or g (backward) twice over, so that circulant indices need no wrap
  std::vector<double> prefix;  // x's prefix sums, for the dense forward's DIV
  std::vector<A> gy_rest;  // the backward's dy over every j, for the j outside y's support
  const PairTables* pair_tables = nullptr;  // PairTables::of(n), looked up at first use (it takes a lock)
  const PairTables& tables() {
    if (!pair_tables) pair_tables = &PairTables::of(static_cast<int64_t>(x.size()));
    return *pair_tables;
  }
  explicit RowScratch(int64_t n)
      : x(n), y(n), px(n), qx(n), py(n), qy(n), g(n), pgx(n), qgx(n), pgy(n), qgy(n), sx(n), sy(n),
        dpair(alu::kNumPair * n), gy_pair(n), gx(n), gy(n), in_y(n), xx(2 * n), prefix(n + 1), gy_rest(n) {}
};

// mix_row sums the pair ops over every i once x's support is more than n / kDenseSupport entries.
constexpr int64_t kDenseSupport = 8;

// Exclusive prefixes p_m[c] = Σ_{i<c} a_m[i] b_m[i] and strict suffixes q_m[c] = Σ_{i>c} a_m[i] b_m[i] (b_m null:
// b_m[i] = 1) of M rows at once, with each row's total in total[m]. One loop each way runs the M chains of dependent
// adds side by side (one row at a time waited on each add's latency); each sum still adds in index order.
template <typename A, int M> struct Scans {
  const A* a[M];
  const A* b[M];
  A* p[M];
  A* q[M];
};
template <typename A, int M> void running_sums(const Scans<A, M>& sc, int64_t n, A* total) {
  auto term = [&](int m, int64_t i) { return sc.b[m] ? sc.a[m][i] * sc.b[m][i] : sc.a[m][i]; };
  A s[M] = {};
  for (int64_t i = 0; i < n; ++i)
    for (int m = 0; m < M; ++m) {
      sc.p[m][i] = s[m];
      s[m] += term(m, i);
    }
  A t[M] = {};
  for (int64_t i = n - 1; i >= 0; --i)
    for (int m = 0; m < M; ++m) {
      sc.q[m][i] = t[m];
      t[m] += term(m, i);
    }
  for (int m = 0; m < M; ++m) total[m] = s[m];
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
  A total[4];
  if (g) {
    for (int64_t i = 0; i < n; ++i) s.g[i] = static_cast<A>(g[i]);
    r.g = s.g.data();
    r.pgx = s.pgx.data(); r.qgx = s.qgx.data(); r.pgy = s.pgy.data(); r.qgy = s.qgy.data();
    running_sums<A, 4>({{r.x, r.y, r.x, r.y}, {nullptr, nullptr, r.g, r.g}, {s.px.data(), s.py.data(), s.pgx.data(),
                        s.pgy.data()}, {s.qx.data(), s.qy.data(), s.qgx.data(), s.qgy.data()}}, n, total);
  } else {
    running_sums<A, 2>({{r.x, r.y}, {nullptr, nullptr}, {s.px.data(), s.py.data()}, {s.qx.data(), s.qy.data()}}, n,
                       total);
  }
  r.sx = total[0];
  r.sy = total[1];
  A peq = A(0), plt = A(0);
  for (int64_t i = 0; i < n; ++i) {
    peq += r.x[i] * r.y[i];
    plt += r.x[i] * r.qy[i];
  }
  r.peq = peq;
  r.plt = plt;
  return r;
}

// The pair ops' part of out on a dense x, over every i, for each j in y's support sy[0..ny): out[T_k(i, j)] +=
// coef_k·y_j·x_i for the ops set in `mask`, each along its table's structure, so that every loop vectorises:
//   ADD and SUB: one pass a j of the circulant out[c] += y_j (c_ADD x[(c - j) mod n] + c_SUB x[(c + j) mod n]),
//     reading x doubled (s.xx) so that no index wraps;
//   MUL: out[g·r] += c y_j F_m[source[r]], a gather from x folded modulo m = n / gcd(j, n) (PairTables);
//   DIV: out[q] += c y_j Σ_{q·j ≤ i < (q+1)·j} x_i, each run's sum a difference of x's prefix sums in double (in the
//     accumulation type, a difference would leave the rounding of the whole row's mass on entries that get ~0);
//   MOD: out[0..j) += c y_j x's runs of length j;
//   DIV and MOD by j = 0 give 0: out[0] += c y_0 Σx.
template <typename A>
void pair_dense(RowScratch<A>& s, const alu::Row<A>& r, int64_t ny, const A* coef, unsigned mask, A* out) {
  const int64_t n = r.n;
  const A* x = r.x;
  auto on = [&](int k) { return (mask >> k) & 1u; };
  if (on(alu::ADD) || on(alu::SUB)) {
    std::copy(x, x + n, s.xx.begin());
    std::copy(x, x + n, s.xx.begin() + n);
    const A ca = on(alu::ADD) ? coef[alu::ADD] : A(0), cs = on(alu::SUB) ? coef[alu::SUB] : A(0);
    for (int64_t jj = 0; jj < ny; ++jj) {
      const int64_t j = s.sy[jj];
      const A a = ca * r.y[j], b = cs * r.y[j];
      const A *lo = s.xx.data() + n - j, *hi = s.xx.data() + j;
      NCL_PRAGMA(omp simd)
      for (int64_t c = 0; c < n; ++c) out[c] += a * lo[c] + b * hi[c];
    }
  }
  if (on(alu::MUL)) {
    const PairTables& tab = s.tables();
    s.fold.resize(tab.fold_size);
    tab.fold(x, s.fold.data());
    for (int64_t jj = 0; jj < ny; ++jj) {
      const int64_t j = s.sy[jj], g = tab.step[j], m = n / g;
      const A cy = coef[alu::MUL] * r.y[j];
      const int32_t* src = tab.source.data() + tab.offset[j];
      if (g == 1) {  // F_n = x
        NCL_PRAGMA(omp simd)
        for (int64_t q = 0; q < n; ++q) out[q] += cy * x[src[q]];
      } else {
        const A* f = s.fold.data() + tab.fold_offset[m];
        for (int64_t q = 0; q < m; ++q) out[g * q] += cy * f[src[q]];
      }
    }
  }
  if (on(alu::DIV) || on(alu::MOD)) {
    const A cd = on(alu::DIV) ? coef[alu::DIV] : A(0), cm = on(alu::MOD) ? coef[alu::MOD] : A(0);
    double* pre = s.prefix.data();
    if (on(alu::DIV)) {
      pre[0] = 0.0;
      for (int64_t i = 0; i < n; ++i) pre[i + 1] = pre[i] + static_cast<double>(x[i]);
    }
    for (int64_t jj = 0; jj < ny; ++jj) {
      const int64_t j = s.sy[jj];
      if (j == 0) {
        out[0] += (cd + cm) * r.y[0] * r.sx;
        continue;
      }
      if (on(alu::DIV)) {
        const A cy = cd * r.y[j];
        for (int64_t i0 = 0, q = 0; i0 < n; i0 += j, ++q)
          out[q] += cy * static_cast<A>(pre[std::min(i0 + j, n)] - pre[i0]);
      }
      if (on(alu::MOD)) {
        const A cy = cm * r.y[j];
        for (int64_t i0 = 0; i0 < n; i0 += j) {
          const int64_t len = std::min(j, n - i0);
          const A* xb = x + i0;
          NCL_PRAGMA(omp simd)
          for (int64_t q = 0; q < len; ++q) out[q] += cy * xb[q];
        }
      }
    }
  }
}

// One row of the forward mixture: out[c] = Σ_k coef_k op_k(x, y)[c], skipping ops by alu::active_ops. The
// structured ops come from alu::structured_out. The pair ops run over the operands' supports (alu::support): for
// each j in supp(y), over the pairs (i in supp(x), j), each pair into the targets of the active ops only; or, when
// x is dense enough that a pass over every i costs less than stepping the targets along its support, over every i
// by pair_dense.
template <typename T, typename A>
void mix_row(RowScratch<A>& s, const T* x, const T* y, const A* coef, A* out) {
  const int64_t n = static_cast<int64_t>(s.x.size());
  const unsigned mask = alu::active_ops(coef);
  const alu::Row<A> r = load_row<T, A>(s, x, y, nullptr, n);
  for (int64_t c = 0; c < n; ++c) out[c] = alu::structured_out(c, r, coef, mask & ~alu::kPairMask);
  if (!(mask & alu::kPairMask)) return;
  const int64_t nx = alu::support(r.x, n, s.sx.data()), ny = alu::support(r.y, n, s.sy.data());
  // A pass over every i costs about n/8 vector operations an op; stepping costs ~10 a pair.
  if (nx * kDenseSupport > n) {
    pair_dense<A>(s, r, ny, coef, mask, out);
    return;
  }
  int active[alu::kNumPair], na = 0;  // the active pair ops: a sharp row has one
  for (int k = 0; k < alu::kNumPair; ++k)
    if (mask & (1u << k)) active[na++] = k;
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
  const alu::Row<A> r = load_row<T, A>(s, x, y, g, n);
  // The pair ops. dx_k[i] = Σ_j y_j g[T_k(i,j)] is needed at every i (it is the gradient of mass that x
  // does not have), but only over j in supp(y); dy_k[j] likewise at every j, over i in supp(x). For j in
  // supp(y) the sums run over every i, for the other j over every j at once along the rows i in supp(x) of the
  // tables; both vectorise (gathers).
  const int64_t nx = alu::support(r.x, n, s.sx.data()), ny = alu::support(r.y, n, s.sy.data());
  std::fill(s.in_y.begin(), s.in_y.end(), 0);
  std::fill(s.dpair.begin(), s.dpair.end(), A(0));
  const A* xs = r.x;
  const A* gs = r.g;
  const PairTables& tab = s.tables();
  std::copy(gs, gs + n, s.xx.begin());
  std::copy(gs, gs + n, s.xx.begin() + n);
  for (int64_t jj = 0; jj < ny; ++jj) {
    const int64_t j = s.sy[jj];
    s.in_y[j] = 1;
    const A yj = r.y[j];
    // One pass over every i for all five ops: ADD reads g[(i + j) mod n] and SUB g[(i - j) mod n] from g doubled
    // (no wrap), MUL, DIV and MOD gather from their tables' row j (PairTables). sum_k = Σ_i x_i g[T_k(i, j)].
    const A *g_add = s.xx.data() + j, *g_sub = s.xx.data() + n - j;
    const int32_t *tm = tab.target.data() + j * n, *tq = tab.quot_t.data() + j * n, *tr = tab.rem_t.data() + j * n;
    A* dk[alu::kNumPair];
    for (int k = 0; k < alu::kNumPair; ++k) dk[k] = s.dpair.data() + k * n;
    A s_add = A(0), s_sub = A(0), s_mul = A(0), s_div = A(0), s_mod = A(0);
    NCL_PRAGMA(omp simd reduction(+ : s_add, s_sub, s_mul, s_div, s_mod))
    for (int64_t i = 0; i < n; ++i) {
      const A xi = xs[i], ga = g_add[i], gb = g_sub[i], gm = gs[tm[i]], gd = gs[tq[i]], gr = gs[tr[i]];
      dk[alu::ADD][i] += yj * ga;
      dk[alu::SUB][i] += yj * gb;
      dk[alu::MUL][i] += yj * gm;
      dk[alu::DIV][i] += yj * gd;
      dk[alu::MOD][i] += yj * gr;
      s_add += xi * ga, s_sub += xi * gb, s_mul += xi * gm, s_div += xi * gd, s_mod += xi * gr;
    }
    const A sum[alu::kNumPair] = {s_add, s_sub, s_mul, s_div, s_mod};
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
  // Both loops vectorise (the 16 terms a row of d stay in registers; gc is a reduction).
  A gc[alu::kNumOps] = {};
  NCL_PRAGMA(omp simd reduction(+ : gc[:alu::kNumOps]))
  for (int64_t i = 0; i < n; ++i) {
    A d[alu::kNumOps];
    alu::grad_x_structured(i, r, d);
    for (int k = 0; k < alu::kNumPair; ++k) d[k] = s.dpair[k * n + i];
    A acc = A(0);
    for (int k = 0; k < alu::kNumOps; ++k) {
      acc += coef[k] * d[k];
      gc[k] += r.x[i] * d[k];  // L_k is bilinear: L_k = Σ_i x_i ∂L_k/∂x_i
    }
    gx[i] = acc;
  }
  for (int k = 0; k < alu::kNumOps; ++k) gcoef[k] = gc[k];
  NCL_PRAGMA(omp simd)
  for (int64_t j = 0; j < n; ++j) {
    A d[alu::kNumOps];
    alu::grad_y_structured(j, r, d);
    A acc = s.gy_pair[j];
    for (int k = alu::kNumPair; k < alu::kNumBinary; ++k) acc += coef[k] * d[k];
    gy[j] = acc;
  }
}

}  // namespace ncl
