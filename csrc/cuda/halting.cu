// CUDA kernels of the halting accumulation: elementwise forward over both readouts; the backward reduces
// each sample's h gradient over its readouts, one block per sample. Math from ncl/halting.h.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "ncl/halting.h"
#include "launch.cuh"
#include "reduce.cuh"

namespace ncl {
namespace {

using cuda::block_reduce;
using cuda::Sum;



// Grid (B, tiles): each block strides its sample's registers then memory; block (b, 0) also updates E_b.
template <typename T>
__global__ void halting_fwd_kernel(const T* __restrict__ ar, const T* __restrict__ am, const T* __restrict__ pe,
                                   const T* __restrict__ r, const T* __restrict__ m, const T* __restrict__ ph,
                                   T* __restrict__ orr, T* __restrict__ om, T* __restrict__ oe, float t, int64_t NR,
                                   int64_t NM) {
  const int64_t b = blockIdx.x;
  const float hb = static_cast<float>(ph[b]);
  const int64_t stride = static_cast<int64_t>(gridDim.y) * blockDim.x;
  for (int64_t i = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x; i < NR + NM; i += stride) {
    if (i < NR) {
      const int64_t k = b * NR + i;
      orr[k] = static_cast<T>(halting::accumulate(static_cast<float>(ar[k]), hb, static_cast<float>(r[k])));
    } else {
      const int64_t k = b * NM + (i - NR);
      om[k] = static_cast<T>(halting::accumulate(static_cast<float>(am[k]), hb, static_cast<float>(m[k])));
    }
  }
  if (blockIdx.y == 0 && threadIdx.x == 0)
    oe[b] = static_cast<T>(halting::expected_steps(static_cast<float>(pe[b]), t, hb));
}

template <typename T>
__global__ void halting_bwd_kernel(const T* __restrict__ gr, const T* __restrict__ gm, const T* __restrict__ ge,
                                   const T* __restrict__ r, const T* __restrict__ m, const T* __restrict__ ph,
                                   T* __restrict__ dr, T* __restrict__ dm, T* __restrict__ dh, float t, int64_t NR,
                                   int64_t NM) {
  __shared__ float scratch[32];
  const int64_t b = blockIdx.x;
  const float hb = static_cast<float>(ph[b]);
  float s = 0.f;
  for (int64_t i = threadIdx.x; i < NR; i += blockDim.x) {
    const float g = static_cast<float>(gr[b * NR + i]);
    dr[b * NR + i] = static_cast<T>(hb * g);
    s += g * static_cast<float>(r[b * NR + i]);
  }
  for (int64_t i = threadIdx.x; i < NM; i += blockDim.x) {
    const float g = static_cast<float>(gm[b * NM + i]);
    dm[b * NM + i] = static_cast<T>(hb * g);
    s += g * static_cast<float>(m[b * NM + i]);
  }
  s = block_reduce(s, 0.f, scratch, Sum());
  if (threadIdx.x == 0) dh[b] = static_cast<T>(halting::h_grad(s, t, static_cast<float>(ge[b])));
}

void check_halting_inputs_cuda(const at::Tensor& acc_reg, const at::Tensor& acc_mem, const at::Tensor& expected,
                               const at::Tensor& reg, const at::Tensor& mem, const at::Tensor& h, const char* op) {
  check_kernel_inputs({&acc_reg, &acc_mem, &expected, &reg, &mem, &h}, op);
  TORCH_CHECK(reg.is_cuda(), op, ": the cuda backend needs CUDA tensors");
  TORCH_CHECK(reg.sizes() == acc_reg.sizes() && mem.sizes() == acc_mem.sizes() && reg.dim() == 3 && mem.dim() == 3 &&
                  expected.dim() == 1 && h.dim() == 1 && mem.size(0) == reg.size(0) &&
                  expected.size(0) == reg.size(0) && h.size(0) == reg.size(0),
              op, ": shapes do not agree");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor> halting_accumulate_fwd_cuda(
    const at::Tensor& acc_reg, const at::Tensor& acc_mem, const at::Tensor& expected, const at::Tensor& reg,
    const at::Tensor& mem, const at::Tensor& h, double t) {
  check_halting_inputs_cuda(acc_reg, acc_mem, expected, reg, mem, h, "halting_accumulate_fwd");
  const c10::cuda::CUDAGuard guard(reg.device());
  const int64_t B = reg.size(0);
  at::Tensor out_reg = at::empty_like(acc_reg), out_mem = at::empty_like(acc_mem), out_e = at::empty_like(expected);
  if (B == 0) return {out_reg, out_mem, out_e};
  const int64_t NR = reg.numel() / B, NM = mem.numel() / B;
  const dim3 grid(static_cast<unsigned>(B), static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>(64, (NR + NM + kThreads - 1) / kThreads))));
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(reg.scalar_type(), "halting_accumulate_fwd_cuda", [&] {
    halting_fwd_kernel<scalar_t><<<grid, kThreads, 0, stream>>>(
        acc_reg.data_ptr<scalar_t>(), acc_mem.data_ptr<scalar_t>(), expected.data_ptr<scalar_t>(),
        reg.data_ptr<scalar_t>(), mem.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), out_reg.data_ptr<scalar_t>(),
        out_mem.data_ptr<scalar_t>(), out_e.data_ptr<scalar_t>(), static_cast<float>(t), NR, NM);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {out_reg, out_mem, out_e};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> halting_accumulate_bwd_cuda(
    const at::Tensor& grad_acc_reg, const at::Tensor& grad_acc_mem, const at::Tensor& grad_expected,
    const at::Tensor& acc_reg, const at::Tensor& acc_mem, const at::Tensor& expected, const at::Tensor& reg,
    const at::Tensor& mem, const at::Tensor& h, double t) {
  check_halting_inputs_cuda(acc_reg, acc_mem, expected, reg, mem, h, "halting_accumulate_bwd");
  check_kernel_inputs({&reg, &grad_acc_reg, &grad_acc_mem, &grad_expected}, "halting_accumulate_bwd");
  TORCH_CHECK(grad_acc_reg.sizes() == reg.sizes() && grad_acc_mem.sizes() == mem.sizes() &&
                  grad_expected.sizes() == expected.sizes(),
              "halting_accumulate_bwd: each gradient must have its output's shape");
  const c10::cuda::CUDAGuard guard(reg.device());
  const int64_t B = reg.size(0);
  // The accumulators' gradients pass through in the autograd Function (_oplib.py OpSpec.passthrough).
  at::Tensor g_reg = at::empty_like(reg), g_mem = at::empty_like(mem), g_h = at::empty_like(h);
  if (B == 0) return {g_reg, g_mem, g_h};
  const int64_t NR = reg.numel() / B, NM = mem.numel() / B;
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(reg.scalar_type(), "halting_accumulate_bwd_cuda", [&] {
    halting_bwd_kernel<scalar_t><<<B, kThreads, 0, stream>>>(
        grad_acc_reg.data_ptr<scalar_t>(), grad_acc_mem.data_ptr<scalar_t>(), grad_expected.data_ptr<scalar_t>(),
        reg.data_ptr<scalar_t>(), mem.data_ptr<scalar_t>(), h.data_ptr<scalar_t>(), g_reg.data_ptr<scalar_t>(),
        g_mem.data_ptr<scalar_t>(), g_h.data_ptr<scalar_t>(), static_cast<float>(t), NR, NM);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_reg, g_mem, g_h};
}

}  // namespace ncl
