// Row-level CPU code of the table ALU mixture, shared by its kernels (alu.cpp) and the whole-run machine
// kernel (machine.cpp): the row scratch, the running sums, and one row's forward mixture.
#pragma once

#include <algorithm>
#include <vector>

#include "alu_runs.h"
#include "mul_units.h"
#include "ncl/alu.h"
#include "pair_tables.h"

namespace ncl {

// Scratch for one row: operands and running sums in the accumulation type.
template <typename A> struct RowScratch {
  std::vector<A> x, y, px, qx, py, qy, g, pgx, qgx, pgy, qgy;
  std::vector<int32_t> sx, sy;  // operand supports (alu::support)
  std::vector<A> gy_pair, gx, gy;  // backward: the pair ops' dy, and the row's gradients
  std::vector<char> in_y;
  std::vector<A> fold, mul_acc;  // x folded modulo every divisor of n (PairTables::fold), and the dense forward's
                                 // MUL sums laid out the same way
  // MUL: coef · y_j and one j's gathered values (forward); g gathered for j, with g[0] again at n (backward)
  std::vector<A> mul_c, mul_v;
  std::vector<A> xx;  // x (forward) or g (backward) twice over, so that circulant indices need no wrap
  std::vector<double> prefix;  // x's prefix sums, for DIV's run sums
  std::vector<double> xg_prefix, div_diff, mod_head;  // the backward's DIV and MOD runs (Runs)
  std::vector<A> gy_rest;  // the backward's dy over every j, for the j outside y's support
  // The DIV and MOD runs (div_mod_runs, mod_fold): x with n + kRunLanes 0s past the row's end, the pair ops' part of
  // gx with kRunLanes of room, and n 1s then n + kRunLanes 0s (the lanes of a run of length j are 1s from n - j on).
  std::vector<A> x_pad, gx_pad, run_mask;
  std::vector<A> mod_f, mod_out;  // the dense forward's MOD: F_j (mod_fold), with room for the lanes past j; sums
  std::vector<A> circ_w;  // the dense forward's ADD and SUB as one circulant (pair_dense): its weights, and the j
  std::vector<int32_t> circ_j;  // where they are not 0
  const PairTables* pair_tables = nullptr;  // PairTables::of(n), looked up at first use (it takes a lock)
  const PairTables& tables() {
    if (!pair_tables) pair_tables = &PairTables::of(static_cast<int64_t>(x.size()));
    return *pair_tables;
  }
  explicit RowScratch(int64_t n)
      : x(n), y(n), px(n), qx(n), py(n), qy(n), g(n), pgx(n), qgx(n), pgy(n), qgy(n), sx(n), sy(n),
        gy_pair(n), gx(n), gy(n), in_y(n), mul_c(n), mul_v(n + 1), xx(2 * n), prefix(n + 1),
        xg_prefix(n + 1), div_diff(n + 1), mod_head(n + 1), gy_rest(n), x_pad(2 * n + kRunLanes),
        gx_pad(n + kRunLanes), run_mask(2 * n + kRunLanes, A(0)), mod_f(n + kRunLanes), mod_out(2 * n),
        circ_w(n), circ_j(n) {
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

// MUL's weights of a dense row, in s.mul_c: coef_MUL·y_j on y's support sy[0..ny), 0 elsewhere.
template <typename A>
A* mul_weights(RowScratch<A>& s, const alu::Row<A>& r, int64_t n, int64_t ny, const A* coef) {
  A* c = s.mul_c.data();
  std::fill(c, c + n, A(0));
  for (int64_t jj = 0; jj < ny; ++jj) c[s.sy[jj]] = coef[alu::MUL] * r.y[s.sy[jj]];
  return c;
}

// The pair ops' part of out on a dense x, over every i, for each j in y's support sy[0..ny): out[T_k(i, j)] +=
// coef_k·y_j·x_i for the ops set in `mask`, each along its table's structure, so that every loop vectorises:
//   ADD and SUB: one pass a j of the circulant out[c] += y_j (c_ADD x[(c - j) mod n] + c_SUB x[(c + j) mod n]),
//     reading x doubled (s.xx) so that no index wraps;
//   MUL: out[g·r] += c y_j F_m[source[r]], a gather from x folded modulo m = n / gcd(j, n) (PairTables); with
//     kMulUnits, when n is a power of two and y is dense, cyclic convolutions through the units of Z/n instead
//     (mul_units.h: no gathers);
//   DIV: out[q] += c y_j Σ_{q·j ≤ i < (q+1)·j} x_i, each run's sum a difference of x's prefix sums in double (in the
//     accumulation type, a difference would leave the rounding of the whole row's mass on entries that get ~0);
//   MOD: out[0..j) += c y_j x's runs of length j;
//   DIV and MOD by j = 0 give 0: out[0] += c y_0 Σx.
template <typename A, bool kMulUnits = false>
void pair_dense(RowScratch<A>& s, const alu::Row<A>& r, int64_t ny, const A* coef, unsigned mask, A* out) {
  const int64_t n = r.n;
  const A* x = r.x;
  auto on = [&](int k) { return (mask >> k) & 1u; };
  if (on(alu::ADD) || on(alu::SUB)) {
    std::copy(x, x + n, s.xx.begin());
    std::copy(x, x + n, s.xx.begin() + n);
    // SUB at j reads what ADD reads at n - j, so both are one circulant: out[c] += w_j x[(c - j) mod n] with
    // w_j = c_ADD y_j + c_SUB y_{(n - j) mod n}, over the j where w_j ≠ 0 (n passes of one product each, where
    // y's support took two a j). Four j a pass: out is loaded and stored once for four products.
    const A ca = on(alu::ADD) ? coef[alu::ADD] : A(0), cs = on(alu::SUB) ? coef[alu::SUB] : A(0);
    A* w = s.circ_w.data();
    std::fill(w, w + n, A(0));
    for (int64_t jj = 0; jj < ny; ++jj) {
      const int64_t j = s.sy[jj];
      w[j] += ca * r.y[j];
      w[(n - j) % n] += cs * r.y[j];
    }
    int32_t* js = s.circ_j.data();  // the j with w_j ≠ 0
    int64_t nw = 0;
    for (int64_t j = 0; j < n; ++j)
      if (w[j] != A(0)) js[nw++] = static_cast<int32_t>(j);
    int64_t jj = 0;
    for (; jj + 4 <= nw; jj += 4) {
      A a[4];
      const A* lo[4];
      for (int u = 0; u < 4; ++u) a[u] = w[js[jj + u]], lo[u] = s.xx.data() + n - js[jj + u];
      NCL_PRAGMA(omp simd)
      for (int64_t c = 0; c < n; ++c)
        out[c] += (a[0] * lo[0][c] + a[1] * lo[1][c]) + (a[2] * lo[2][c] + a[3] * lo[3][c]);
    }
    for (; jj < nw; ++jj) {
      const A a = w[js[jj]];
      const A* lo = s.xx.data() + n - js[jj];
      NCL_PRAGMA(omp simd)
      for (int64_t c = 0; c < n; ++c) out[c] += a * lo[c];
    }
  }
  if constexpr (kMulUnits) {
    if (on(alu::MUL) && n >= 2 && (n & (n - 1)) == 0 && ny * kDenseSupport > n) {  // n = 2^k
      mul_units_forward(unit_scratch<A>(n), x, mul_weights(s, r, n, ny, coef), out);
      mask &= ~(1u << alu::MUL);  // done
    }
  }
  if (on(alu::MUL)) {
    const PairTables& tab = s.tables();
    s.fold.resize(tab.fold_size);
    s.mul_acc.resize(tab.fold_size);
    tab.fold(x, s.fold.data());
    A* c = mul_weights(s, r, n, ny, coef);
    // j and n - j share one gather: i·(n - j) ≡ -(i·j) (mod n), so with v = F_m[source_j] the partner adds
    // v[(m - q) mod m] where j adds v[q] (both have the same gcd with n).
    // The j with g = gcd(j, n) > 1 add into out[g·q] for q < m: they go to acc_m (laid out as the folds), a
    // contiguous row a divisor that is spread into out once, where a strided update a j did not vectorise.
    A* v = s.mul_v.data();
    A* acc = s.mul_acc.data();
    std::fill(acc, acc + tab.fold_size, A(0));
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
        A* am = acc + tab.fold_offset[m];
        NCL_PRAGMA(omp simd)
        for (int64_t q = 1; q < m; ++q) am[q] += a * v[q] + b * v[m - q];
      }
    }
    for (const int32_t m : tab.divisors) {
      const int64_t g = n / m;
      const A* am = acc + tab.fold_offset[m];
      if (g > 1)
        for (int64_t q = 1; q < m; ++q) out[g * q] += am[q];
    }
  }
  if (on(alu::DIV) || on(alu::MOD)) {
    const A cd = on(alu::DIV) ? coef[alu::DIV] : A(0), cm = on(alu::MOD) ? coef[alu::MOD] : A(0);
    double* pre = s.prefix.data();
    // MOD's sums go to two rows, the even j's and the odd j's: every j updates out[0..j), and one row made each j's
    // update wait on the stores of the j before it.
    A* mod_out = s.mod_out.data();
    if (on(alu::MOD)) {
      std::copy(x, x + n, s.x_pad.begin());
      std::fill(s.x_pad.begin() + n, s.x_pad.end(), A(0));
      std::fill(mod_out, mod_out + 2 * n, A(0));
    }
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
        const A* f = mod_fold(s.x_pad.data(), n, j, s.mod_f.data());
        A* o = mod_out + (j & 1) * n;
        NCL_PRAGMA(omp simd)
        for (int64_t q = 0; q < j; ++q) o[q] += cy * f[q];
      }
    }
    if (on(alu::MOD))
      for (int64_t q = 0; q < n; ++q) out[q] += mod_out[q] + mod_out[n + q];
  }
}

// One row of the forward mixture: out[c] = Σ_k coef_k op_k(x, y)[c], skipping ops by alu::active_ops. The
// structured ops come from alu::structured_out. The pair ops run over the operands' supports (alu::support): for
// each j in supp(y), over the pairs (i in supp(x), j), each pair into the targets of the active ops only; or, when
// x is dense enough that a pass over every i costs less than stepping the targets along its support, over every i
// by pair_dense. kMulUnits: pair_dense's MUL through the units of Z/n where it applies (mul_units.h), as the alu_mix
// op's rows and the whole-run machine kernel's forward run it (the machine's backward never computes a row:
// machine_step.h, step_sample's kAluFromTape).
template <typename T, typename A, bool kMulUnits = false>
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
    pair_dense<A, kMulUnits>(s, r, ny, coef, mask, out);
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

// ADD's, SUB's and MUL's backward at j and at its partner p = n - j, in one pass over every i: gx[i] += Σ_k cy_k
// g[T_k(i, j)] + cp_k g[T_k(i, p)] and sum_k = Σ_i x_i g[T_k(i, j)], sum_p likewise. At p ADD reads g[(i - j) mod n],
// which SUB reads at j, and SUB reads ADD's, so both j share two rows of g (from g doubled: no wrap) and two sums;
// MUL reads gm (g[i·j mod n] for i ≤ n, gathered by the caller), p's MUL the same reversed, gm[n - i]. Without
// `paired` (p not in y's support, or p = j) cp is all 0 and is not read. Five rows a pass where two passes of j
// alone loaded eight.
template <typename A>
void add_sub_mul_backward(const A* xs, const A* gg, const A* gm, bool paired, int64_t n, int64_t j, const A* cy,
                          const A* cp, A* gx, A* sum, A* sum_p) {
  const A *g_add = gg + j, *g_sub = gg + n - j;
  const A c_a = cy[alu::ADD] + cp[alu::SUB], c_s = cy[alu::SUB] + cp[alu::ADD], c_m = cy[alu::MUL],
          c_p = cp[alu::MUL];
  A s_a = A(0), s_s = A(0), s_m = A(0), s_p = A(0);
  if (paired) {
    NCL_PRAGMA(omp simd reduction(+ : s_a, s_s, s_m, s_p))
    for (int64_t i = 0; i < n; ++i) {
      const A xi = xs[i], ga = g_add[i], gb = g_sub[i], gmi = gm[i], gpi = gm[n - i];
      gx[i] += (c_a * ga + c_s * gb) + (c_m * gmi + c_p * gpi);
      s_a += xi * ga, s_s += xi * gb, s_m += xi * gmi, s_p += xi * gpi;
    }
  } else {
    NCL_PRAGMA(omp simd reduction(+ : s_a, s_s, s_m))
    for (int64_t i = 0; i < n; ++i) {
      const A xi = xs[i], ga = g_add[i], gb = g_sub[i], gmi = gm[i];
      gx[i] += c_a * ga + c_s * gb + c_m * gmi;
      s_a += xi * ga, s_s += xi * gb, s_m += xi * gmi;
    }
  }
  sum[alu::ADD] = s_a, sum[alu::SUB] = s_s, sum[alu::MUL] = s_m;
  sum_p[alu::ADD] = s_s, sum_p[alu::SUB] = s_a, sum_p[alu::MUL] = s_p;
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
  // The pair ops' part of gx first, in s.gx_pad (add_sub_mul_backward, div_mod_backward), the others' added at the end.
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
  // The sums at j go to j's dy and to the coefficients' gradients.
  auto finish_at = [&](int64_t j, const A* sum) {
    A gyj = A(0);
    for (int k = 0; k < alu::kNumPair; ++k) {
      gyj += coef[k] * sum[k];
      gcoef_pair[k] += r.y[j] * sum[k];
    }
    s.gy_pair[j] = gyj;
  };
  // Each j in y's support runs with its partner n - j (when that is in the support too), in ascending order of the
  // smaller of the two, a fixed order, so runs repeat bit for bit. MUL's g[i·j mod n] is gathered once for both:
  // the partner reads it reversed, (n - j)·i ≡ j·(n - i) (mod n).
  A* g_mul = s.mul_v.data();
  for (int64_t jj = 0; jj < ny; ++jj) {
    const int64_t j = s.sy[jj], partner = (n - j) % n;
    if (partner < j && s.in_y[partner]) continue;  // ran with its partner
    const bool paired = partner != j && s.in_y[partner];
    // i·j mod n has period m = n / gcd(j, n) in i: m entries gathered, then doubled up to n + 1 (g_mul[n] = g[0]:
    // the partner reads g_mul[n - i] for every i).
    const int32_t* tm = tab.target.data() + j * n;
    const int64_t m = n / tab.step[j];
    NCL_PRAGMA(omp simd)
    for (int64_t i = 0; i < m; ++i) g_mul[i] = gs[tm[i]];
    for (int64_t len = m; len <= n; len *= 2) {  // inline: memmove calls were 4 % of the rows' backward (perf)
      const int64_t count = std::min(len, n + 1 - len);
      NCL_PRAGMA(omp simd)
      for (int64_t i = 0; i < count; ++i) g_mul[len + i] = g_mul[i];
    }
    A cy[alu::kNumPair], cp[alu::kNumPair] = {}, sum[alu::kNumPair], sum_p[alu::kNumPair];
    for (int k = 0; k < alu::kNumPair; ++k) {
      cy[k] = coef[k] * r.y[j];
      if (paired) cp[k] = coef[k] * r.y[partner];
    }
    add_sub_mul_backward(xs, s.xx.data(), g_mul, paired, n, j, cy, cp, gxp, sum, sum_p);
    div_mod_backward(tab, xs, gs, n, j, cy[alu::DIV], cy[alu::MOD], runs, gxp, sum);
    finish_at(j, sum);
    if (!paired) continue;
    div_mod_backward(tab, xs, gs, n, partner, cp[alu::DIV], cp[alu::MOD], runs, gxp, sum_p);
    finish_at(partner, sum_p);
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
