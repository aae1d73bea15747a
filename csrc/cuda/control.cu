// CUDA kernels of the control step. Forward: one block per sample. Backward: one block per sample for the
// per-sample gradients (writing the per-line J and D to an fp32 workspace), then one block per line for the
// program's op and tgt gradients, which sum over the batch (no atomics). Math from ncl/control.h.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "ncl/control.h"
#include "launch.cuh"
#include "reduce.cuh"

namespace ncl {
namespace {

using cuda::block_reduce;
using cuda::Sum;
using cuda::warp_reduce;

// Three shared arrays of L floats within the default 48 KiB of dynamic shared memory.
constexpr int64_t kMaxLines = 4096;


// top(rstk)_m = Σ_s rsp_s rstk[s, m] into out (threads stride over m).
template <typename T>
__device__ void return_to(const T* __restrict__ rstk, const T* __restrict__ rsp, int64_t S, int64_t L, float* out) {
  for (int64_t m = threadIdx.x; m < L; m += blockDim.x) {
    float acc = 0.f;
    for (int64_t s = 0; s < S; ++s) acc += static_cast<float>(rsp[s]) * static_cast<float>(rstk[s * L + m]);
    out[m] = acc;
  }
}

template <typename T>
__global__ void control_fwd_kernel(const T* __restrict__ ip, const T* __restrict__ op, const T* __restrict__ chi0,
                                   const T* __restrict__ tgt, const T* __restrict__ rstk, const T* __restrict__ rsp,
                                   T* __restrict__ new_ip, T* __restrict__ halted, int64_t L, int64_t S) {
  extern __shared__ float sh[];
  float *jump = sh, *move = sh + L, *ret_to = sh + 2 * L;
  __shared__ float scratch[32];
  const int64_t b = blockIdx.x;
  const float c = static_cast<float>(chi0[b]);
  float halt = 0.f, ret = 0.f;
  for (int64_t l = threadIdx.x; l < L; l += blockDim.x) {
    const float ipl = static_cast<float>(ip[b * L + l]);
    const auto o = control::line_ops<float>(op + l * control::kNumOps);
    jump[l] = control::jumped(o, ipl, c);
    move[l] = control::moved_on(o, ipl, c);
    halt += ipl * o.halt;
    ret += ipl * o.ret;
  }
  return_to(rstk + b * S * L, rsp + b * S, S, L, ret_to);
  halt = block_reduce(halt, 0.f, scratch, Sum());  // its barriers publish jump, move and ret_to
  ret = block_reduce(ret, 0.f, scratch, Sum());
  float ret_sum = 0.f;
  for (int64_t m = threadIdx.x; m < L; m += blockDim.x) {
    float acc = m > 0 ? move[m - 1] : 0.f;
    for (int64_t l = 0; l < L; ++l)
      if (jump[l] != 0.f) acc += jump[l] * static_cast<float>(tgt[l * L + m]);  // uniform branch: jump is shared
    new_ip[b * L + m] = static_cast<T>(acc + ret * ret_to[m]);
    ret_sum += ret_to[m];
  }
  ret_sum = block_reduce(ret_sum, 0.f, scratch, Sum());
  if (threadIdx.x == 0) halted[b] = static_cast<T>(halt + move[L - 1] + ret * (1.f - ret_sum));
}

template <typename T>
__global__ void control_bwd_sample_kernel(const T* __restrict__ gi, const T* __restrict__ gh, const T* __restrict__ ip,
                                          const T* __restrict__ op, const T* __restrict__ chi0,
                                          const T* __restrict__ tgt, const T* __restrict__ rstk,
                                          const T* __restrict__ rsp, T* __restrict__ dip, T* __restrict__ dchi,
                                          T* __restrict__ drstk, T* __restrict__ drsp, float* __restrict__ Jw,
                                          float* __restrict__ Dw, float* __restrict__ dRw, int64_t L, int64_t S) {
  extern __shared__ float sh[];
  float *g = sh, *ret_to = sh + L;
  __shared__ float scratch[32];
  const int64_t b = blockIdx.x;
  const float c = static_cast<float>(chi0[b]), g_h = static_cast<float>(gh[b]);
  for (int64_t m = threadIdx.x; m < L; m += blockDim.x) g[m] = static_cast<float>(gi[b * L + m]);
  return_to(rstk + b * S * L, rsp + b * S, S, L, ret_to);
  float g_ret = 0.f, ret_sum = 0.f;
  for (int64_t m = threadIdx.x; m < L; m += blockDim.x) {
    g_ret += static_cast<float>(gi[b * L + m]) * ret_to[m];
    ret_sum += ret_to[m];
  }
  g_ret = block_reduce(g_ret, 0.f, scratch, Sum());  // also publishes g and ret_to
  ret_sum = block_reduce(ret_sum, 0.f, scratch, Sum());
  const float dr = g_ret + g_h * (1.f - ret_sum);
  // One warp per line: J_l = <tgt[l], g> by a warp reduction, then the line's gradients.
  const int lane = threadIdx.x & 31;
  float dc = 0.f, ret = 0.f;
  for (int64_t l = threadIdx.x >> 5; l < L; l += kWarps) {
    float j = 0.f;
    for (int64_t m = lane; m < L; m += 32) j += static_cast<float>(tgt[l * L + m]) * g[m];
    j = warp_reduce(j, Sum());
    if (lane == 0) {
      const float ipl = static_cast<float>(ip[b * L + l]), d = l + 1 < L ? g[l + 1] : g_h;
      const auto o = control::line_ops<float>(op + l * control::kNumOps);
      Jw[b * L + l] = j;
      Dw[b * L + l] = d;
      dip[b * L + l] = static_cast<T>(control::ip_grad(o, j, d, dr, g_h, c));
      dc += control::chi_grad(o, ipl, j, d);
      ret += ipl * o.ret;
    }
  }
  dc = block_reduce(dc, 0.f, scratch, Sum());
  ret = block_reduce(ret, 0.f, scratch, Sum());
  if (threadIdx.x == 0) {
    dchi[b] = static_cast<T>(dc);
    dRw[b] = dr;
  }
  // top(rstk) receives ret (g_m − g_h); one warp per slot row.
  for (int64_t s = threadIdx.x >> 5; s < S; s += kWarps) {
    const float w = static_cast<float>(rsp[b * S + s]);
    const int64_t row = (b * S + s) * L;
    float acc = 0.f;
    for (int64_t m = lane; m < L; m += 32) {
      const float dret = ret * (g[m] - g_h);
      drstk[row + m] = static_cast<T>(w * dret);
      acc += static_cast<float>(rstk[row + m]) * dret;
    }
    acc = warp_reduce(acc, Sum());
    if (lane == 0) drsp[b * S + s] = static_cast<T>(acc);
  }
}

template <typename T>
__global__ void control_bwd_line_kernel(const T* __restrict__ gi, const T* __restrict__ gh, const T* __restrict__ ip,
                                        const T* __restrict__ op, const T* __restrict__ chi0,
                                        const float* __restrict__ Jw, const float* __restrict__ Dw,
                                        const float* __restrict__ dRw, T* __restrict__ dop, T* __restrict__ dtgt,
                                        int64_t B, int64_t L) {
  const int64_t l = blockIdx.x;
  const auto o = control::line_ops<float>(op + l * control::kNumOps);
  for (int64_t m = threadIdx.x; m < L; m += blockDim.x) {
    float acc = 0.f;
    for (int64_t b = 0; b < B; ++b)
      acc += control::jumped(o, static_cast<float>(ip[b * L + l]), static_cast<float>(chi0[b])) *
             static_cast<float>(gi[b * L + m]);
    dtgt[l * L + m] = static_cast<T>(acc);
  }
  for (int k = threadIdx.x; k < control::kNumOps; k += blockDim.x) {
    float acc = 0.f;
    for (int64_t b = 0; b < B; ++b)
      acc += static_cast<float>(ip[b * L + l]) * control::op_coef(k, Jw[b * L + l], Dw[b * L + l], dRw[b],
                                                                  static_cast<float>(gh[b]), static_cast<float>(chi0[b]));
    dop[l * control::kNumOps + k] = static_cast<T>(acc);
  }
}

void check_control_inputs_cuda(const at::Tensor& ip, const at::Tensor& op, const at::Tensor& chi0,
                               const at::Tensor& tgt, const at::Tensor& rstk, const at::Tensor& rsp, const char* name) {
  check_kernel_inputs({&ip, &op, &chi0, &tgt, &rstk, &rsp}, name);
  TORCH_CHECK(ip.is_cuda(), name, ": the cuda backend needs CUDA tensors");
  TORCH_CHECK(ip.dim() == 2 && op.dim() == 2 && chi0.dim() == 1 && tgt.dim() == 2 && rstk.dim() == 3 && rsp.dim() == 2,
              name, ": expected ip (B,L), op (L,O), chi0 (B,), tgt (L,L), rstk (B,S,L), rsp (B,S)");
  const int64_t L = ip.size(1);
  TORCH_CHECK(op.size(0) == L && op.size(1) == control::kNumOps && tgt.size(0) == L && tgt.size(1) == L &&
                  rstk.size(2) == L && rstk.size(1) == rsp.size(1),
              name, ": shapes do not agree");
  TORCH_CHECK(L <= kMaxLines, name, ": the cuda kernels hold at most ", kMaxLines, " lines, got ", L);
}

}  // namespace

std::tuple<at::Tensor, at::Tensor> control_fwd_cuda(const at::Tensor& ip, const at::Tensor& op, const at::Tensor& chi0,
                                                    const at::Tensor& tgt, const at::Tensor& rstk,
                                                    const at::Tensor& rsp) {
  check_control_inputs_cuda(ip, op, chi0, tgt, rstk, rsp, "control_fwd");
  const c10::cuda::CUDAGuard guard(ip.device());
  const int64_t B = ip.size(0), L = ip.size(1), S = rsp.size(1);
  at::Tensor new_ip = at::empty_like(ip), halted = at::empty_like(chi0);
  if (B == 0 || L == 0) return {new_ip, halted};
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(ip.scalar_type(), "control_fwd_cuda", [&] {
    control_fwd_kernel<scalar_t><<<B, kThreads, 3 * L * sizeof(float), stream>>>(
        ip.data_ptr<scalar_t>(), op.data_ptr<scalar_t>(), chi0.data_ptr<scalar_t>(), tgt.data_ptr<scalar_t>(),
        rstk.data_ptr<scalar_t>(), rsp.data_ptr<scalar_t>(), new_ip.data_ptr<scalar_t>(), halted.data_ptr<scalar_t>(),
        L, S);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {new_ip, halted};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> control_bwd_cuda(
    const at::Tensor& grad_ip, const at::Tensor& grad_halted, const at::Tensor& ip, const at::Tensor& op,
    const at::Tensor& chi0, const at::Tensor& tgt, const at::Tensor& rstk, const at::Tensor& rsp) {
  check_control_inputs_cuda(ip, op, chi0, tgt, rstk, rsp, "control_bwd");
  check_kernel_inputs({&ip, &grad_ip, &grad_halted}, "control_bwd");
  TORCH_CHECK(grad_ip.sizes() == ip.sizes() && grad_halted.sizes() == chi0.sizes(),
              "control_bwd: each gradient must have its output's shape");
  const c10::cuda::CUDAGuard guard(ip.device());
  const int64_t B = ip.size(0), L = ip.size(1), S = rsp.size(1);
  at::Tensor g_ip = at::empty_like(ip), g_op = at::zeros_like(op), g_chi = at::empty_like(chi0);
  at::Tensor g_tgt = at::zeros_like(tgt), g_rstk = at::empty_like(rstk), g_rsp = at::empty_like(rsp);
  if (B == 0 || L == 0) return {g_ip, g_op, g_chi, g_tgt, g_rstk, g_rsp};
  auto f32 = ip.options().dtype(at::kFloat);
  at::Tensor J = at::empty({B, L}, f32), D = at::empty({B, L}, f32), dR = at::empty({B}, f32);
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(ip.scalar_type(), "control_bwd_cuda", [&] {
    control_bwd_sample_kernel<scalar_t><<<B, kThreads, 2 * L * sizeof(float), stream>>>(
        grad_ip.data_ptr<scalar_t>(), grad_halted.data_ptr<scalar_t>(), ip.data_ptr<scalar_t>(),
        op.data_ptr<scalar_t>(), chi0.data_ptr<scalar_t>(), tgt.data_ptr<scalar_t>(), rstk.data_ptr<scalar_t>(),
        rsp.data_ptr<scalar_t>(), g_ip.data_ptr<scalar_t>(), g_chi.data_ptr<scalar_t>(), g_rstk.data_ptr<scalar_t>(),
        g_rsp.data_ptr<scalar_t>(), J.data_ptr<float>(), D.data_ptr<float>(), dR.data_ptr<float>(), L, S);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    control_bwd_line_kernel<scalar_t><<<L, kThreads, 0, stream>>>(
        grad_ip.data_ptr<scalar_t>(), grad_halted.data_ptr<scalar_t>(), ip.data_ptr<scalar_t>(),
        op.data_ptr<scalar_t>(), chi0.data_ptr<scalar_t>(), J.data_ptr<float>(), D.data_ptr<float>(),
        dR.data_ptr<float>(), g_op.data_ptr<scalar_t>(), g_tgt.data_ptr<scalar_t>(), B, L);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {g_ip, g_op, g_chi, g_tgt, g_rstk, g_rsp};
}

}  // namespace ncl
