// Row-level CPU code of the table ALU mixture, shared by its kernels (alu.cpp) and the whole-run machine
// kernel (machine.cpp): the row scratch, the running sums, and one row's forward mixture.
#pragma once

#include <vector>

#include "ncl/alu.h"

namespace ncl {

// Scratch for one row: operands and running sums in the accumulation type.
template <typename A> struct RowScratch {
  std::vector<A> x, y, px, qx, py, qy, g, pgx, qgx, pgy, qgy;
  std::vector<int32_t> sx, sy;  // operand supports (alu::support)
  explicit RowScratch(int64_t n)
      : x(n), y(n), px(n), qx(n), py(n), qy(n), g(n), pgx(n), qgx(n), pgy(n), qgy(n), sx(n), sy(n) {}
};

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

// One row of the forward mixture: out[c] = Σ_k coef_k op_k(x, y)[c], skipping ops by alu::active_ops. The
// structured ops come from alu::structured_out; the pair ops scatter the outer product over the operands'
// supports (alu::support), each pair into the targets of the active ops only.
template <typename T, typename A>
void mix_row(RowScratch<A>& s, const T* x, const T* y, const A* coef, A* out) {
  const int64_t n = static_cast<int64_t>(s.x.size());
  const unsigned mask = alu::active_ops(coef);
  const alu::Row<A> r = load_row<T, A>(s, x, y, nullptr, n);
  for (int64_t c = 0; c < n; ++c) out[c] = alu::structured_out(c, r, coef, mask & ~alu::kPairMask);
  if (!(mask & alu::kPairMask)) return;
  A cpair[alu::kNumPair];
  for (int k = 0; k < alu::kNumPair; ++k) cpair[k] = mask & (1u << k) ? coef[k] : A(0);
  const int64_t nx = alu::support(r.x, n, s.sx.data()), ny = alu::support(r.y, n, s.sy.data());
  for (int64_t jj = 0; jj < ny; ++jj) {
    const int64_t j = s.sy[jj];
    alu::PairTargets t(n, j);
    for (int64_t ii = 0; ii < nx; ++ii) {
      t.move_to(s.sx[ii]);
      const A p = r.x[t.i] * r.y[j];
      for (int k = 0; k < alu::kNumPair; ++k) out[t.t[k]] += cpair[k] * p;
    }
  }
}

}  // namespace ncl
