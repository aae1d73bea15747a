// Row-level CPU code of the table ALU mixture, shared by its kernels (alu.cpp) and the whole-run machine
// kernel (machine.cpp): the row scratch, the running sums, and one row's forward mixture.
#pragma once

#include <algorithm>
#include <vector>

#include "ncl/alu.h"
#include "pair_tables.h"

namespace ncl {

// The width of the chunks the backward's DIV and MOD runs are cut into (div_mod_runs): one AVX2 vector of floats.
constexpr int64_t kRunLanes = 8;

// Scratch for one row: operands and running sums in the accumulation type.
template <typename A> struct RowScratch {
  std::vector<A> x, y, px, qx, py, qy, g, pgx, qgx, pgy, qgy;
  std::vector<int32_t> sx, sy;  // operand supports (alu::support)
  std::vector<A> gy_pair, gx, gy;  // backward: the pair ops' dy, and the row's gradients
  std::vector<char> in_y;
  std::vector<A> fold;  // x folded modulo every divisor of n (PairTables::fold), for the dense forward's MUL
  // MUL: coef · y_j and one j's gathered values (forward); g gathered for j and for its partner (backward)
  std::vector<A> mul_c, mul_v;
  std::vector<A> xx;  // x (forward) or g (backward) twice over, so that circulant indices need no wrap
  std::vector<double> prefix;  // x's prefix sums, for DIV's run sums
  std::vector<double> xg_prefix, div_diff, mod_head;  // the backward's DIV and MOD runs (Runs)
  std::vector<A> gy_rest;  // the backward's dy over every j, for the j outside y's support
  // The backward's DIV and MOD runs (div_mod_runs): x and the pair ops' part of gx with kRunLanes of room past the
  // row's end, and n 1s then n + kRunLanes 0s (the lanes of a run of length j are 1s from n - j on).
  std::vector<A> x_pad, gx_pad, run_mask;
  const PairTables* pair_tables = nullptr;  // PairTables::of(n), looked up at first use (it takes a lock)
  const PairTables& tables() {
    if (!pair_tables) pair_tables = &PairTables::of(static_cast<int64_t>(x.size()));
    return *pair_tables;
  }
  explicit RowScratch(int64_t n)
      : x(n), y(n), px(n), qx(n), py(n), qy(n), g(n), pgx(n), qgx(n), pgy(n), qgy(n), sx(n), sy(n),
        gy_pair(n), gx(n), gy(n), in_y(n), mul_c(n), mul_v(n), xx(2 * n), prefix(n + 1),
        xg_prefix(n + 1), div_diff(n + 1), mod_head(n + 1), gy_rest(n), x_pad(n + kRunLanes),
        gx_pad(n + kRunLanes), run_mask(2 * n + kRunLanes, A(0)) {
    std::fill(run_mask.begin(), run_mask.begin() + n, A(1));
  }
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

// Loads row b of x, y (and g) and fills the row view. Without g_sums the running sums of x·g and y·g are not
// computed (only MIN's and MAX's gradients read them): the row's pgx, qgx, pgy and qgy then point at px, qx, py and
// qy, finite values for a caller that multiplies them by a zero coefficient. Without scans (a forward row whose
// active ops are all pair ops, which read only x, y and sx) only the totals sx and sy are computed: the running
// sums and peq, plt (serial chains of adds, and only the structured ops read them) are left unset.
template <typename T, typename A>
alu::Row<A> load_row(RowScratch<A>& s, const T* x, const T* y, const T* g, int64_t n, bool g_sums = true,
                     bool scans = true) {
  for (int64_t i = 0; i < n; ++i) {
    s.x[i] = static_cast<A>(x[i]);
    s.y[i] = static_cast<A>(y[i]);
  }
  alu::Row<A> r{};
  r.n = n;
  r.x = s.x.data(); r.y = s.y.data(); r.px = s.px.data(); r.qx = s.qx.data(); r.py = s.py.data();
  r.qy = s.qy.data();
  if (!g && !scans) {
    A sx = A(0), sy = A(0);
    NCL_PRAGMA(omp simd reduction(+ : sx, sy))
    for (int64_t i = 0; i < n; ++i) sx += r.x[i], sy += r.y[i];
    r.sx = sx, r.sy = sy;
    return r;
  }
  A total[4];
  if (g) {
    for (int64_t i = 0; i < n; ++i) s.g[i] = static_cast<A>(g[i]);
    r.g = s.g.data();
  }
  if (g && g_sums) {
    r.pgx = s.pgx.data(); r.qgx = s.qgx.data(); r.pgy = s.pgy.data(); r.qgy = s.qgy.data();
    running_sums<A, 4>({{r.x, r.y, r.x, r.y}, {nullptr, nullptr, r.g, r.g}, {s.px.data(), s.py.data(), s.pgx.data(),
                        s.pgy.data()}, {s.qx.data(), s.qy.data(), s.qgx.data(), s.qgy.data()}}, n, total);
  } else {
    running_sums<A, 2>({{r.x, r.y}, {nullptr, nullptr}, {s.px.data(), s.py.data()}, {s.qx.data(), s.qy.data()}}, n,
                       total);
    r.pgx = r.px, r.qgx = r.qx, r.pgy = r.py, r.qgy = r.qy;
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
    A* c = s.mul_c.data();  // coef_MUL · y_j on y's support, 0 elsewhere
    std::fill(c, c + n, A(0));
    for (int64_t jj = 0; jj < ny; ++jj) c[s.sy[jj]] = coef[alu::MUL] * r.y[s.sy[jj]];
    // j and n - j share one gather: i·(n - j) ≡ -(i·j) (mod n), so with v = F_m[source_j] the partner adds
    // v[(m - q) mod m] where j adds v[q] (both have the same gcd with n).
    A* v = s.mul_v.data();
    for (int64_t j = 0; 2 * j <= n; ++j) {
      const int64_t partner = (n - j) % n;
      const A a = c[j], b = partner != j ? c[partner] : A(0);
      if (a == A(0) && b == A(0)) continue;
      const int64_t g = tab.step[j], m = n / g;
      const int32_t* src = tab.source.data() + tab.offset[j];
      const A* f = g == 1 ? x : s.fold.data() + tab.fold_offset[m];  // F_n = x
      NCL_PRAGMA(omp simd)
      for (int64_t q = 0; q < m; ++q) v[q] = f[src[q]];
      out[0] += a * v[0] + b * v[0];
      if (g == 1) {
        NCL_PRAGMA(omp simd)
        for (int64_t q = 1; q < n; ++q) out[q] += a * v[q] + b * v[n - q];
      } else {
        for (int64_t q = 1; q < m; ++q) out[g * q] += a * v[q] + b * v[m - q];
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
  const unsigned mask = alu::active_ops(coef), structured = mask & ~alu::kPairMask;
  const alu::Row<A> r = load_row<T, A>(s, x, y, nullptr, n, /*g_sums=*/false, /*scans=*/structured != 0u);
  if (structured)
    for (int64_t c = 0; c < n; ++c) out[c] = alu::structured_out(c, r, coef, structured);
  else
    std::fill(out, out + n, A(0));
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

// From this j on, the backward reads DIV's and MOD's g[i / j] and g[i mod j] as runs (pair_backward_at): one AVX2
// vector of floats. Soft fwd+bwd of `ncl bench machine`, one thread: ALU backward with runs from j = 2, 4 or 8
// within noise of each other, 15 ms a call less than gathers at every j (benchmarks/RESULTS.md).
constexpr int64_t kRunMinJ = 8;

// The buffers of div_mod_runs (RowScratch): x and gx (the one pair_backward_at updates) padded by kRunLanes past
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

// The pair ops' backward at one j in y's support, over every i: gx[i] += Σ_k cy_k g[T_k(i, j)] with cy_k = coef_k·y_j,
// and sum[k] = Σ_i x_i g[T_k(i, j)]. One pass for ADD (g[(i + j) mod n], from g doubled: no wrap), SUB
// (g[(i - j) mod n]) and MUL (gmul[i] = g[i·j mod n], gathered by the caller); DIV and MOD gather from theirs in that
// pass (kGatherDivMod) or, for j ≥ kRunMinJ, read g as runs (div_mod_runs): g[i / j] is g[q] over i ∈ [qj, (q + 1)j)
// and g[i mod j] is g[0..j) again on each run, so both are contiguous loops with no gather (a gather of 8 floats is 8
// loads and inserts). The five ops' ∂L_k/∂x are not kept apart: only their mixture gx is needed (the coefficients'
// gradients come from the sums, mix_row_backward), and one row updated a pass where there were five was the pass's
// stores.
template <bool kGatherDivMod, typename A>
void pair_backward_at(const PairTables& tab, const A* xs, const A* gs, const A* gg, const A* gmul, int64_t n, int64_t j,
                      const A* cy, A* gx, const Runs<A>& runs, A* sum) {
  const A *g_add = gg + j, *g_sub = gg + n - j;
  const int32_t *tq = tab.quot_t.data() + j * n, *tr = tab.rem_t.data() + j * n;
  const A c_add = cy[alu::ADD], c_sub = cy[alu::SUB], c_mul = cy[alu::MUL], c_div = cy[alu::DIV],
          c_mod = cy[alu::MOD];
  A s_add = A(0), s_sub = A(0), s_mul = A(0), s_div = A(0), s_mod = A(0);
  NCL_PRAGMA(omp simd reduction(+ : s_add, s_sub, s_mul, s_div, s_mod))
  for (int64_t i = 0; i < n; ++i) {
    const A xi = xs[i], ga = g_add[i], gb = g_sub[i], gm = gmul[i];
    A d = c_add * ga + c_sub * gb + c_mul * gm;
    s_add += xi * ga, s_sub += xi * gb, s_mul += xi * gm;
    if constexpr (kGatherDivMod) {
      const A gd = gs[tq[i]], gr = gs[tr[i]];
      d += c_div * gd + c_mod * gr;
      s_div += xi * gd, s_mod += xi * gr;
    }
    gx[i] += d;
  }
  if constexpr (!kGatherDivMod) div_mod_runs(runs, gs, n, j, c_div, c_mod, s_div, s_mod);
  sum[alu::ADD] = s_add, sum[alu::SUB] = s_sub, sum[alu::MUL] = s_mul, sum[alu::DIV] = s_div, sum[alu::MOD] = s_mod;
}

// One row of the backward: gx = ∂L/∂x, gy = ∂L/∂y (length n) and gcoef = ∂L/∂coef (16) for the upstream
// gradient g. Every op's gcoef is computed (gcoef_k = <g, op_k(x, y)> does not depend on coef_k, nor vanish with it);
// gx and gy are Σ_k coef_k (∂L_k/∂x, ∂L_k/∂y), and the parts whose coefficients are all exactly 0 are skipped (a
// caller that skipped ops in the forward passes their coefficients as 0: machine_bwd.cpp).
// NCL_ALWAYS_INLINE: `flatten` (isa.h) did not inline it ("function not inlinable", -fopt-info-inline-missed, GCC 12),
// so the AVX2 copies of the kernels called the baseline SSE2 copy of the ALU's backward. The kernels' objects have
// no calls out of their AVX2 copies into ncl code now (objdump -dr, docs/machine.md).
template <typename T, typename A>
NCL_ALWAYS_INLINE void mix_row_backward(RowScratch<A>& s, const T* x, const T* y, const T* g, const A* coef, A* gx,
                                        A* gy, A* gcoef) {
  const int64_t n = static_cast<int64_t>(s.x.size());
  auto any_coef = [&](int first, int last) {
    for (int k = first; k < last; ++k)
      if (coef[k] != A(0)) return true;
    return false;
  };
  // MIN's and MAX's gradients are the only readers of the running sums of x·g and y·g.
  const bool min_max = coef[alu::MIN] != A(0) || coef[alu::MAX] != A(0);
  const alu::Row<A> r = load_row<T, A>(s, x, y, g, n, min_max);
  // The pair ops. dx_k[i] = Σ_j y_j g[T_k(i,j)] is needed at every i (it is the gradient of mass that x
  // does not have), but only over j in supp(y); dy_k[j] likewise at every j, over i in supp(x). For j in
  // supp(y) the sums run over every i, for the other j over every j at once along the rows i in supp(x) of the
  // tables; both vectorise (gathers).
  const int64_t nx = alu::support(r.x, n, s.sx.data()), ny = alu::support(r.y, n, s.sy.data());
  std::fill(s.in_y.begin(), s.in_y.end(), 0);
  // The pair ops' part of gx first, in s.gx_pad (pair_backward_at), the others' added at the end.
  A* gxp = s.gx_pad.data();
  std::fill(s.gx_pad.begin(), s.gx_pad.end(), A(0));
  std::copy(r.x, r.x + n, s.x_pad.begin());
  std::fill(s.x_pad.begin() + n, s.x_pad.end(), A(0));
  // The prefix sums in double (two chains of dependent adds) are read by div_mod_runs only: j >= kRunMinJ.
  if (ny > 0 && s.sy[ny - 1] >= kRunMinJ) {
    s.prefix[0] = s.xg_prefix[0] = 0.0;
    for (int64_t i = 0; i < n; ++i) {
      s.prefix[i + 1] = s.prefix[i] + static_cast<double>(r.x[i]);
      s.xg_prefix[i + 1] = s.xg_prefix[i] + static_cast<double>(r.x[i]) * static_cast<double>(r.g[i]);
    }
  }
  std::fill(s.div_diff.begin(), s.div_diff.end(), 0.0);
  std::fill(s.mod_head.begin(), s.mod_head.end(), 0.0);
  const Runs<A> runs{s.x_pad.data(), s.xx.data(), s.run_mask.data(), s.prefix.data(), s.xg_prefix.data(), gxp,
                     s.div_diff.data(), s.mod_head.data()};
  A gcoef_pair[alu::kNumPair] = {};  // Σ_{j in supp(y)} y_j sum_k(j) = <g, op_k(x, y)>
  const A* xs = r.x;
  const A* gs = r.g;
  const PairTables& tab = s.tables();
  std::copy(gs, gs + n, s.xx.begin());
  std::copy(gs, gs + n, s.xx.begin() + n);
  for (int64_t jj = 0; jj < ny; ++jj) s.in_y[s.sy[jj]] = 1;
  auto backward_at = [&](int64_t j, const A* gmul) {
    A sum[alu::kNumPair], cy[alu::kNumPair];  // sum_k = Σ_i x_i g[T_k(i, j)]
    for (int k = 0; k < alu::kNumPair; ++k) cy[k] = coef[k] * r.y[j];
    if (j >= kRunMinJ)
      pair_backward_at<false>(tab, xs, gs, s.xx.data(), gmul, n, j, cy, gxp, runs, sum);
    else
      pair_backward_at<true>(tab, xs, gs, s.xx.data(), gmul, n, j, cy, gxp, runs, sum);
    A gyj = A(0);
    for (int k = 0; k < alu::kNumPair; ++k) {
      gyj += coef[k] * sum[k];
      gcoef_pair[k] += r.y[j] * sum[k];
    }
    s.gy_pair[j] = gyj;
  };
  // MUL's g[i·j mod n] is gathered once for j and its partner n - j, which reads it reversed: (n - j)·i ≡ j·(n - i)
  // (mod n). Each partner runs right after j (ascending j otherwise), a fixed order, so runs repeat bit for bit.
  A *g_mul = s.mul_v.data(), *g_partner = s.mul_c.data();
  for (int64_t jj = 0; jj < ny; ++jj) {
    const int64_t j = s.sy[jj], partner = (n - j) % n;
    if (partner < j && s.in_y[partner]) continue;  // ran right after its partner
    const int32_t* tm = tab.target.data() + j * n;
    NCL_PRAGMA(omp simd)
    for (int64_t i = 0; i < n; ++i) g_mul[i] = gs[tm[i]];
    backward_at(j, g_mul);
    if (partner == j || !s.in_y[partner]) continue;
    g_partner[0] = g_mul[0];
    for (int64_t i = 1; i < n; ++i) g_partner[i] = g_mul[n - i];
    backward_at(partner, g_partner);
  }
  // The other j: dy[j] = Σ_{i in supp(x)} x_i Σ_k coef_k g[T_k(i, j)], over every j at once along row i of each
  // table (the j in supp(y) are computed above, and their entries here are dropped).
  if (ny < n && any_coef(0, alu::kNumPair)) {
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
  } else {
    for (int64_t j = 0; j < n; ++j)
      if (!s.in_y[j]) s.gy_pair[j] = A(0);
  }
  // gx[i] += Σ_k coef_k d_k[i] over the structured ops. Their gcoef_k come from structured_coef_grads, not from
  // <x, d_k>: keeping the eleven d_k rows for those dots was a quarter of the sharp run's forward+backward (a store
  // of each d_k[i], then eleven passes over them). One loop with gcoef as an `omp simd` array reduction, once
  // inlined into the AVX2 copy, had made the whole run's backward slower (one thread, interleaved: soft 113-116
  // against 94-110 ms, sharp 33 against 27).
  double div_part = 0.0, mod_coef = 0.0;  // div_mod_runs' difference arrays, summed
  for (int64_t i = 0; i < n; ++i) {
    div_part += s.div_diff[i];
    mod_coef += s.mod_head[i];
    gxp[i] += static_cast<A>(div_part + mod_coef * static_cast<double>(gs[i]));
  }
  if (any_coef(alu::kNumPair, alu::kNumOps)) {
    NCL_PRAGMA(omp simd)
    for (int64_t i = 0; i < n; ++i) {
      A d[alu::kNumOps];
      alu::grad_x_structured(i, r, d);
      A acc = gxp[i];
      for (int k = alu::kNumPair; k < alu::kNumOps; ++k) acc += coef[k] * d[k];
      gx[i] = acc;
    }
  } else {
    std::copy(gxp, gxp + n, gx);
  }
  for (int k = 0; k < alu::kNumPair; ++k) gcoef[k] = gcoef_pair[k];
  alu::structured_coef_grads(r, gcoef);
  if (any_coef(alu::kNumPair, alu::kNumBinary)) {
    NCL_PRAGMA(omp simd)
    for (int64_t j = 0; j < n; ++j) {
      A d[alu::kNumOps];
      alu::grad_y_structured(j, r, d);
      A acc = s.gy_pair[j];
      for (int k = alu::kNumPair; k < alu::kNumBinary; ++k) acc += coef[k] * d[k];
      gy[j] = acc;
    }
  } else {
    std::copy(s.gy_pair.begin(), s.gy_pair.end(), gy);
  }
}

}  // namespace ncl
