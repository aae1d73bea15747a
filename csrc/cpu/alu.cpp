// CPU kernels of the table ALU mixture. Parallel over batch rows; each row is loaded once into
// accumulation-type scratch, and every op is computed from the structure in ncl/alu.h: no n×n table and no
// per-op output is ever stored.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../ops.h"
#include "ncl/alu.h"

namespace ncl {
namespace {


void check_alu_inputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs, const char* op) {
  check_kernel_inputs({&x, &y, &coeffs}, op);
  TORCH_CHECK(x.dim() == 2 && y.sizes() == x.sizes(), op, ": x and y must be (B, n)");
  TORCH_CHECK(x.size(1) >= 2, op, ": n must be at least 2");
  TORCH_CHECK(coeffs.dim() == 2 && coeffs.size(0) == x.size(0) && coeffs.size(1) == alu::kNumOps, op,
              ": coeffs must be (B, ", alu::kNumOps, ")");
}

// Scratch for one row: operands and running sums in the accumulation type.
template <typename A> struct RowScratch {
  std::vector<A> x, y, px, qx, py, qy, g, pgx, qgx, pgy, qgy;
  explicit RowScratch(int64_t n)
      : x(n), y(n), px(n), qx(n), py(n), qy(n), g(n), pgx(n), qgx(n), pgy(n), qgy(n) {}
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

}  // namespace

at::Tensor alu_mix_fwd_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs) {
  check_alu_inputs(x, y, coeffs, "alu_mix_fwd");
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor out = at::empty_like(x);
  NCL_DISPATCH_FLOATS(x.scalar_type(), "alu_mix_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* cp = coeffs.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      RowScratch<A> s(n);
      std::vector<A> acc(n);
      for (int64_t b = b0; b < b1; ++b) {
        A coef[alu::kNumOps];
        for (int k = 0; k < alu::kNumOps; ++k) coef[k] = static_cast<A>(cp[b * alu::kNumOps + k]);
        const unsigned mask = alu::active_ops(coef);
        const alu::Row<A> r = load_row<scalar_t, A>(s, xp + b * n, yp + b * n, nullptr, n);
        for (int64_t c = 0; c < n; ++c) acc[c] = alu::structured_out(c, r, coef, mask);
        if (mask & alu::kGeneralMask) {
          // MUL, DIV, MOD: scatter the outer product once, each pair into its three targets.
          const A cm = mask & (1u << alu::MUL) ? coef[alu::MUL] : A(0);
          const A cd = mask & (1u << alu::DIV) ? coef[alu::DIV] : A(0);
          const A cr = mask & (1u << alu::MOD) ? coef[alu::MOD] : A(0);
          for (int64_t i = 0; i < n; ++i) {
            const A xi = r.x[i];
            int64_t prod = 0;  // i*j mod n, stepped by i (no multiply or modulo per pair)
            for (int64_t j = 0; j < n; ++j) {
              const A p = xi * r.y[j];
              acc[prod] += cm * p;
              acc[alu::div_index(i, j)] += cd * p;
              acc[alu::mod_index(i, j)] += cr * p;
              prod += i;
              if (prod >= n) prod -= n;
            }
          }
        }
        for (int64_t c = 0; c < n; ++c) op[b * n + c] = static_cast<scalar_t>(acc[c]);
      }
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> alu_mix_bwd_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                               const at::Tensor& y, const at::Tensor& coeffs) {
  check_alu_inputs(x, y, coeffs, "alu_mix_bwd");
  check_kernel_inputs({&grad, &x}, "alu_mix_bwd");
  TORCH_CHECK(grad.sizes() == x.sizes(), "alu_mix_bwd: grad must be (B, n)");
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor gx = at::empty_like(x), gy = at::empty_like(y), gc = at::empty_like(coeffs);
  NCL_DISPATCH_FLOATS(x.scalar_type(), "alu_mix_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t* xp = x.data_ptr<scalar_t>();
    const scalar_t* yp = y.data_ptr<scalar_t>();
    const scalar_t* gp = grad.data_ptr<scalar_t>();
    const scalar_t* cp = coeffs.data_ptr<scalar_t>();
    scalar_t *gxp = gx.data_ptr<scalar_t>(), *gyp = gy.data_ptr<scalar_t>(), *gcp = gc.data_ptr<scalar_t>();
    at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      RowScratch<A> s(n);
      for (int64_t b = b0; b < b1; ++b) {
        A coef[alu::kNumOps], gcoef[alu::kNumOps] = {}, d[alu::kNumOps];
        for (int k = 0; k < alu::kNumOps; ++k) coef[k] = static_cast<A>(cp[b * alu::kNumOps + k]);
        const alu::Row<A> r = load_row<scalar_t, A>(s, xp + b * n, yp + b * n, gp + b * n, n);
        for (int64_t i = 0; i < n; ++i) {
          alu::grad_x_terms(i, r, d);
          A acc = A(0);
          for (int k = 0; k < alu::kNumOps; ++k) {
            acc += coef[k] * d[k];
            gcoef[k] += r.x[i] * d[k];  // L_k is bilinear: L_k = Σ_i x_i ∂L_k/∂x_i
          }
          gxp[b * n + i] = static_cast<scalar_t>(acc);
        }
        for (int64_t j = 0; j < n; ++j) {
          alu::grad_y_terms(j, r, d);
          A acc = A(0);
          for (int k = 0; k < alu::kNumBinary; ++k) acc += coef[k] * d[k];
          gyp[b * n + j] = static_cast<scalar_t>(acc);
        }
        for (int k = 0; k < alu::kNumOps; ++k) gcp[b * alu::kNumOps + k] = static_cast<scalar_t>(gcoef[k]);
      }
    });
  });
  return {gx, gy, gc};
}

std::vector<std::string> alu_op_names() {
  std::vector<std::string> names;
  for (int k = 0; k < alu::kNumOps; ++k) names.emplace_back(alu::op_name(k));
  return names;
}

}  // namespace ncl
