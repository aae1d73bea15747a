// CUDA kernels of the circuit ALU mixture: one thread per batch row, running the row math of
// ncl/alu_circuit.h (shared with the CPU kernels). The netlist is a serial program per row, so rows are the
// parallelism; each row's wires, fold levels and accumulator live in a global fp32 scratch laid out
// (slots, B), so the threads of a warp touch consecutive words at every gate (coalesced, L1/L2 resident at
// the machine's sizes). Nothing per-op of size (B, 16, n) is ever stored.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "launch.cuh"
#include "ncl/alu_circuit.h"

namespace ncl {
namespace {

// Rows per block: small blocks, so that a machine-sized batch (B = 32..256) still spreads over several SMs.
constexpr int kRowsPerBlock = 64;

template <typename T>
__global__ void alu_circuit_fwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ coeffs,
                                       T* __restrict__ out, const int32_t* __restrict__ gates,
                                       const int32_t* __restrict__ outputs, float* __restrict__ scratch, int64_t B,
                                       int64_t n, int m, int64_t num_gates, int64_t num_wires) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  circuit::forward_row<float, T>(x + b * n, y + b * n, coeffs + b * circuit::kNumOps, out + b * n, n, m, gates,
                                 num_gates, outputs, num_wires, scratch + b, B);
}

template <typename T>
__global__ void alu_circuit_bwd_kernel(const T* __restrict__ grad, const T* __restrict__ x, const T* __restrict__ y,
                                       const T* __restrict__ coeffs, T* __restrict__ gx, T* __restrict__ gy,
                                       T* __restrict__ gc, const int32_t* __restrict__ gates,
                                       const int32_t* __restrict__ outputs, float* __restrict__ scratch, int64_t B,
                                       int64_t n, int m, int64_t num_gates, int64_t num_wires) {
  const int64_t b = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x;
  if (b >= B) return;
  circuit::backward_row<float, T>(grad + b * n, x + b * n, y + b * n, coeffs + b * circuit::kNumOps, gx + b * n,
                                  gy + b * n, gc + b * circuit::kNumOps, n, m, gates, num_gates, outputs, num_wires,
                                  scratch + b, B);
}

unsigned blocks_for(int64_t B) { return static_cast<unsigned>((B + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

at::Tensor alu_circuit_mix_fwd_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs,
                                    const at::Tensor& gates, const at::Tensor& outputs) {
  const int m = check_alu_circuit_inputs(x, y, coeffs, gates, outputs, "alu_circuit_mix_fwd");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1), G = gates.size(0), W = 2 * m + G;
  at::Tensor out = at::empty_like(x);
  if (B == 0) return out;
  at::Tensor scratch = at::empty({circuit::fwd_slots(W, n), B}, x.options().dtype(at::kFloat));
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(x.scalar_type(), "alu_circuit_mix_fwd_cuda", [&] {
    alu_circuit_fwd_kernel<scalar_t><<<blocks_for(B), kRowsPerBlock, 0, stream>>>(
        x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(),
        gates.data_ptr<int32_t>(), outputs.data_ptr<int32_t>(), scratch.data_ptr<float>(), B, n, m, G, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> alu_circuit_mix_bwd_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                                        const at::Tensor& y, const at::Tensor& coeffs,
                                                                        const at::Tensor& gates,
                                                                        const at::Tensor& outputs) {
  const int m = check_alu_circuit_inputs(x, y, coeffs, gates, outputs, "alu_circuit_mix_bwd");
  check_kernel_inputs({&grad, &x}, "alu_circuit_mix_bwd");
  TORCH_CHECK(grad.sizes() == x.sizes(), "alu_circuit_mix_bwd: grad must be (B, n)");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1), G = gates.size(0), W = 2 * m + G;
  at::Tensor gx = at::empty_like(x), gy = at::empty_like(y), gc = at::empty_like(coeffs);
  if (B == 0) return {gx, gy, gc};
  at::Tensor scratch = at::empty({circuit::bwd_slots(W, n), B}, x.options().dtype(at::kFloat));
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(x.scalar_type(), "alu_circuit_mix_bwd_cuda", [&] {
    alu_circuit_bwd_kernel<scalar_t><<<blocks_for(B), kRowsPerBlock, 0, stream>>>(
        grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(),
        gx.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(), gc.data_ptr<scalar_t>(), gates.data_ptr<int32_t>(),
        outputs.data_ptr<int32_t>(), scratch.data_ptr<float>(), B, n, m, G, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gx, gy, gc};
}

}  // namespace ncl
