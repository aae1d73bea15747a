// CPU kernels of the table ALU mixture. Parallel over batch rows; each row is loaded once into
// accumulation-type scratch, and every op is computed from the structure in ncl/alu.h: no n×n table and no
// per-op output is ever stored.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../ops.h"
#include "alu_row.h"

namespace ncl {
namespace {

void check_alu_inputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs, const char* op) {
  check_kernel_inputs({&x, &y, &coeffs}, op);
  TORCH_CHECK(x.dim() == 2 && y.sizes() == x.sizes(), op, ": x and y must be (B, n)");
  TORCH_CHECK(x.size(1) >= 2, op, ": n must be at least 2");
  TORCH_CHECK(coeffs.dim() == 2 && coeffs.size(0) == x.size(0) && coeffs.size(1) == alu::kNumOps, op,
              ": coeffs must be (B, ", alu::kNumOps, ")");
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
        mix_row<scalar_t, A>(s, xp + b * n, yp + b * n, coef, acc.data());
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
      std::vector<A> dpair(alu::kNumPair * n), gy_pair(n);
      std::vector<int32_t> all(n);
      std::vector<char> in_y(n);
      for (int64_t i = 0; i < n; ++i) all[i] = static_cast<int32_t>(i);
      for (int64_t b = b0; b < b1; ++b) {
        A coef[alu::kNumOps], gcoef[alu::kNumOps] = {}, d[alu::kNumOps];
        for (int k = 0; k < alu::kNumOps; ++k) coef[k] = static_cast<A>(cp[b * alu::kNumOps + k]);
        const alu::Row<A> r = load_row<scalar_t, A>(s, xp + b * n, yp + b * n, gp + b * n, n);
        // The pair ops. dx_k[i] = Σ_j y_j g[T_k(i,j)] is needed at every i (it is the gradient of mass that
        // x does not have), but only over j in supp(y); dy_k[j] likewise at every j, over i in supp(x). So
        // for j in supp(y) the pairs run over every i, feeding both; for other j, over supp(x) only.
        const int64_t nx = alu::support(r.x, n, s.sx.data()), ny = alu::support(r.y, n, s.sy.data());
        std::fill(in_y.begin(), in_y.end(), 0);
        for (int64_t jj = 0; jj < ny; ++jj) in_y[s.sy[jj]] = 1;
        std::fill(dpair.begin(), dpair.end(), A(0));
        for (int64_t j = 0; j < n; ++j) {
          const bool full = in_y[j];
          const int32_t* is = full ? all.data() : s.sx.data();
          const int64_t ni = full ? n : nx;
          const A yj = r.y[j];
          A gyj = A(0);
          alu::PairTargets t(n, j);
          for (int64_t ii = 0; ii < ni; ++ii) {
            t.move_to(is[ii]);
            const int64_t i = t.i;
            A mixed = A(0);
            for (int k = 0; k < alu::kNumPair; ++k) {
              const A gk = r.g[t.t[k]];
              mixed += coef[k] * gk;
              if (full) dpair[k * n + i] += yj * gk;
            }
            gyj += r.x[i] * mixed;
          }
          gy_pair[j] = gyj;
        }
        for (int64_t i = 0; i < n; ++i) {
          alu::grad_x_structured(i, r, d);
          for (int k = 0; k < alu::kNumPair; ++k) d[k] = dpair[k * n + i];
          A acc = A(0);
          for (int k = 0; k < alu::kNumOps; ++k) {
            acc += coef[k] * d[k];
            gcoef[k] += r.x[i] * d[k];  // L_k is bilinear: L_k = Σ_i x_i ∂L_k/∂x_i
          }
          gxp[b * n + i] = static_cast<scalar_t>(acc);
        }
        for (int64_t j = 0; j < n; ++j) {
          alu::grad_y_structured(j, r, d);
          A acc = gy_pair[j];
          for (int k = alu::kNumPair; k < alu::kNumBinary; ++k) acc += coef[k] * d[k];
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
