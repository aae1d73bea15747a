// CPU kernels of the table ALU mixture. Parallel over batch rows; each row is loaded once into
// accumulation-type scratch, and every op is computed from the structure in ncl/alu.h: no n×n table and no
// per-op output is ever stored.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../ops.h"
#include "isa.h"
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
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      RowScratch<A> s(n);
      std::vector<A> acc(n);
      for (int64_t b = b0; b < b1; ++b) {
        A coef[alu::kNumOps];
        for (int k = 0; k < alu::kNumOps; ++k) coef[k] = static_cast<A>(cp[b * alu::kNumOps + k]);
        mix_row<scalar_t, A, /*kMulUnits=*/true>(s, xp + b * n, yp + b * n, coef, acc.data());
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
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      RowScratch<A> s(n);
      for (int64_t b = b0; b < b1; ++b) {
        A coef[alu::kNumOps], gcoef[alu::kNumOps];
        for (int k = 0; k < alu::kNumOps; ++k) coef[k] = static_cast<A>(cp[b * alu::kNumOps + k]);
        mix_row_backward<scalar_t, A>(s, xp + b * n, yp + b * n, gp + b * n, coef, s.gx.data(), s.gy.data(), gcoef);
        for (int64_t i = 0; i < n; ++i) {
          gxp[b * n + i] = static_cast<scalar_t>(s.gx[i]);
          gyp[b * n + i] = static_cast<scalar_t>(s.gy[i]);
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
