// CPU kernels of the circuit ALU mixture. Parallel over batch rows; each thread keeps one row's wires, fold
// levels and accumulator in accumulation-type scratch (ncl/alu_circuit.h, stride 1), so no per-op output
// and no per-gate tensor ever reaches memory outside it.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <vector>

#include "../ops.h"
#include "isa.h"
#include "ncl/alu_circuit.h"

namespace ncl {

// Returns m = log2(n). The netlist is trusted to come from ncl_kernels.alu_circuit.netlist, but its wiring is
// checked here (O(G)): a wrong index would read outside the scratch.
int check_alu_circuit_inputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs,
                             const at::Tensor& gates, const at::Tensor& outputs, const char* op) {
  check_kernel_inputs({&x, &y, &coeffs}, op);
  TORCH_CHECK(x.dim() == 2 && y.sizes() == x.sizes(), op, ": x and y must be (B, n)");
  const int64_t n = x.size(1);
  TORCH_CHECK(n >= 2 && (n & (n - 1)) == 0, op, ": n must be a power of two >= 2");
  TORCH_CHECK(coeffs.dim() == 2 && coeffs.size(0) == x.size(0) && coeffs.size(1) == circuit::kNumOps, op,
              ": coeffs must be (B, ", circuit::kNumOps, ")");
  int m = 0;
  while ((int64_t(1) << m) < n) ++m;
  TORCH_CHECK(gates.scalar_type() == at::kInt && gates.dim() == 2 && gates.size(1) == 4 && gates.is_contiguous()
                  && gates.device() == x.device(),
              op, ": gates must be a contiguous int32 (G, 4) tensor on x's device");
  TORCH_CHECK(outputs.scalar_type() == at::kInt && outputs.dim() == 2 && outputs.size(0) == circuit::kNumOps
                  && outputs.size(1) == m && outputs.is_contiguous() && outputs.device() == x.device(), op,
              ": outputs must be a contiguous int32 (16, log2 n) tensor on x's device");
  if (x.device().is_cpu()) {
    const int32_t* gp = gates.data_ptr<int32_t>();
    const int64_t G = gates.size(0);
    for (int64_t g = 0; g < G; ++g) {
      const int32_t opc = gp[4 * g], in0 = gp[4 * g + 1], in1 = gp[4 * g + 2], out = gp[4 * g + 3];
      TORCH_CHECK(out == 2 * m + g, op, ": gate ", g, " must write wire ", 2 * m + g);
      TORCH_CHECK(opc == circuit::kConst || (opc >= 0 && opc < circuit::kConst && in0 >= 0 && in0 < out
                                             && in1 >= 0 && in1 < out), op, ": gate ", g, " is malformed");
    }
    const int32_t* op_bits = outputs.data_ptr<int32_t>();
    for (int64_t i = 0; i < outputs.numel(); ++i)
      TORCH_CHECK(op_bits[i] >= 0 && op_bits[i] < 2 * m + G, op, ": outputs must name wires");
  }
  return m;
}

at::Tensor alu_circuit_mix_fwd_cpu(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs,
                                   const at::Tensor& gates, const at::Tensor& outputs) {
  const int m = check_alu_circuit_inputs(x, y, coeffs, gates, outputs, "alu_circuit_mix_fwd");
  const int64_t B = x.size(0), n = x.size(1), G = gates.size(0), W = 2 * m + G;
  at::Tensor out = at::empty_like(x);
  NCL_DISPATCH_FLOATS(x.scalar_type(), "alu_circuit_mix_fwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *xp = x.data_ptr<scalar_t>(), *yp = y.data_ptr<scalar_t>(), *cp = coeffs.data_ptr<scalar_t>();
    scalar_t* op = out.data_ptr<scalar_t>();
    const int32_t *gp = gates.data_ptr<int32_t>(), *outs = outputs.data_ptr<int32_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> scratch(circuit::fwd_slots(W, n));
      for (int64_t b = b0; b < b1; ++b)
        circuit::forward_row<A, scalar_t>(xp + b * n, yp + b * n, cp + b * circuit::kNumOps, op + b * n, n, m, gp,
                                          G, outs, W, scratch.data(), 1);
    });
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> alu_circuit_mix_bwd_cpu(const at::Tensor& grad, const at::Tensor& x,
                                                                       const at::Tensor& y, const at::Tensor& coeffs,
                                                                       const at::Tensor& gates,
                                                                       const at::Tensor& outputs) {
  const int m = check_alu_circuit_inputs(x, y, coeffs, gates, outputs, "alu_circuit_mix_bwd");
  check_kernel_inputs({&grad, &x}, "alu_circuit_mix_bwd");
  TORCH_CHECK(grad.sizes() == x.sizes(), "alu_circuit_mix_bwd: grad must be (B, n)");
  const int64_t B = x.size(0), n = x.size(1), G = gates.size(0), W = 2 * m + G;
  at::Tensor gx = at::empty_like(x), gy = at::empty_like(y), gc = at::empty_like(coeffs);
  NCL_DISPATCH_FLOATS(x.scalar_type(), "alu_circuit_mix_bwd_cpu", [&] {
    using A = acc_t<scalar_t>;
    const scalar_t *gp = grad.data_ptr<scalar_t>(), *xp = x.data_ptr<scalar_t>(), *yp = y.data_ptr<scalar_t>(),
                   *cp = coeffs.data_ptr<scalar_t>();
    scalar_t *gxp = gx.data_ptr<scalar_t>(), *gyp = gy.data_ptr<scalar_t>(), *gcp = gc.data_ptr<scalar_t>();
    const int32_t *tape = gates.data_ptr<int32_t>(), *outs = outputs.data_ptr<int32_t>();
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      std::vector<A> scratch(circuit::bwd_slots(W, n));
      for (int64_t b = b0; b < b1; ++b)
        circuit::backward_row<A, scalar_t>(gp + b * n, xp + b * n, yp + b * n, cp + b * circuit::kNumOps,
                                           gxp + b * n, gyp + b * n, gcp + b * circuit::kNumOps, n, m, tape, G,
                                           outs, W, scratch.data(), 1);
    });
  });
  return {gx, gy, gc};
}

}  // namespace ncl
