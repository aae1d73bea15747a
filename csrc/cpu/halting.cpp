// CPU kernels of the halting accumulation. Parallel over the batch; one pass over each sample's readouts.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include "../ops.h"
#include "isa.h"
#include "ncl/halting.h"

namespace ncl {
namespace {


void check_halting_inputs(const at::Tensor& acc_reg, const at::Tensor& acc_mem, const at::Tensor& expected,
                          const at::Tensor& reg, const at::Tensor& mem, const at::Tensor& h, const char* op) {
  check_kernel_inputs({&acc_reg, &acc_mem, &expected, &reg, &mem, &h}, op);
  TORCH_CHECK(acc_reg.dim() == 3 && acc_mem.dim() == 3 && expected.dim() == 1 && h.dim() == 1, op,
              ": expected acc_reg (B,K,n), acc_mem (B,C,n), expected (B,), reg, mem, h (B,)");
  TORCH_CHECK(reg.sizes() == acc_reg.sizes() && mem.sizes() == acc_mem.sizes() && acc_mem.size(0) == acc_reg.size(0) &&
                  expected.size(0) == acc_reg.size(0) && h.size(0) == acc_reg.size(0),
              op, ": shapes do not agree");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> halting_accumulate_fwd_cpu(
    const at::Tensor& acc_reg, const at::Tensor& acc_mem, const at::Tensor& expected, const at::Tensor& reg,
    const at::Tensor& mem, const at::Tensor& h, double t) {
  check_halting_inputs(acc_reg, acc_mem, expected, reg, mem, h, "halting_accumulate_fwd");
  const int64_t B = reg.size(0), NR = reg.numel() / std::max<int64_t>(B, 1), NM = mem.numel() / std::max<int64_t>(B, 1);
  at::Tensor out_reg = at::empty_like(acc_reg), out_mem = at::empty_like(acc_mem), out_e = at::empty_like(expected);
  NCL_DISPATCH_FLOATS(reg.scalar_type(), "halting_accumulate_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *ar = acc_reg.data_ptr<scalar_t>(), *am = acc_mem.data_ptr<scalar_t>();
    const scalar_t *pe = expected.data_ptr<scalar_t>(), *r = reg.data_ptr<scalar_t>(), *m = mem.data_ptr<scalar_t>();
    const scalar_t* ph = h.data_ptr<scalar_t>();
    scalar_t *orr = out_reg.data_ptr<scalar_t>(), *om = out_mem.data_ptr<scalar_t>(), *oe = out_e.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const A hb = static_cast<A>(ph[b]);
        for (int64_t i = b * NR; i < (b + 1) * NR; ++i)
          orr[i] = static_cast<scalar_t>(halting::accumulate(static_cast<A>(ar[i]), hb, static_cast<A>(r[i])));
        for (int64_t i = b * NM; i < (b + 1) * NM; ++i)
          om[i] = static_cast<scalar_t>(halting::accumulate(static_cast<A>(am[i]), hb, static_cast<A>(m[i])));
        oe[b] = static_cast<scalar_t>(halting::expected_steps(static_cast<A>(pe[b]), static_cast<A>(t), hb));
      }
    });
  });
  return {out_reg, out_mem, out_e};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> halting_accumulate_bwd_cpu(
    const at::Tensor& grad_acc_reg, const at::Tensor& grad_acc_mem, const at::Tensor& grad_expected,
    const at::Tensor& acc_reg, const at::Tensor& acc_mem, const at::Tensor& expected, const at::Tensor& reg,
    const at::Tensor& mem, const at::Tensor& h, double t) {
  check_halting_inputs(acc_reg, acc_mem, expected, reg, mem, h, "halting_accumulate_bwd");
  check_kernel_inputs({&reg, &grad_acc_reg, &grad_acc_mem, &grad_expected}, "halting_accumulate_bwd");
  TORCH_CHECK(grad_acc_reg.sizes() == reg.sizes() && grad_acc_mem.sizes() == mem.sizes() &&
                  grad_expected.sizes() == expected.sizes(),
              "halting_accumulate_bwd: each gradient must have its output's shape");
  const int64_t B = reg.size(0), NR = reg.numel() / std::max<int64_t>(B, 1), NM = mem.numel() / std::max<int64_t>(B, 1);
  // The accumulators' gradients pass through unchanged; the autograd Function hands them on (_oplib.py
  // OpSpec.passthrough), since an op's outputs may not alias its inputs and copies cost a pass over memory.
  at::Tensor g_reg = at::empty_like(reg), g_mem = at::empty_like(mem), g_h = at::empty_like(h);
  NCL_DISPATCH_FLOATS(reg.scalar_type(), "halting_accumulate_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *gr = grad_acc_reg.data_ptr<scalar_t>(), *gm = grad_acc_mem.data_ptr<scalar_t>();
    const scalar_t *ge = grad_expected.data_ptr<scalar_t>(), *r = reg.data_ptr<scalar_t>(), *m = mem.data_ptr<scalar_t>();
    const scalar_t* ph = h.data_ptr<scalar_t>();
    scalar_t *dr = g_reg.data_ptr<scalar_t>(), *dm = g_mem.data_ptr<scalar_t>(), *dh = g_h.data_ptr<scalar_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      for (int64_t b = b0; b < b1; ++b) {
        const A hb = static_cast<A>(ph[b]);
        A s = A(0);
        NCL_SIMD_SUM(s)
        for (int64_t i = b * NR; i < (b + 1) * NR; ++i) {
          const A g = static_cast<A>(gr[i]);
          dr[i] = static_cast<scalar_t>(hb * g);
          s += g * static_cast<A>(r[i]);
        }
        NCL_SIMD_SUM(s)
        for (int64_t i = b * NM; i < (b + 1) * NM; ++i) {
          const A g = static_cast<A>(gm[i]);
          dm[i] = static_cast<scalar_t>(hb * g);
          s += g * static_cast<A>(m[i]);
        }
        dh[b] = static_cast<scalar_t>(halting::h_grad(s, static_cast<A>(t), static_cast<A>(ge[b])));
      }
    });
  });
  return {g_reg, g_mem, g_h};
}

}  // namespace ncl
