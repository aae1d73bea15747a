// CUDA kernels of the memory ops. Arithmetic comes from ncl/memory.h, shared with the CPU kernels.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "ncl/memory.h"
#include "launch.cuh"
#include "reduce.cuh"

namespace ncl {
namespace {

using cuda::block_reduce;
using cuda::Max;
using cuda::Sum;
using cuda::warp_reduce;



inline unsigned cdiv(int64_t a, int64_t b) { return static_cast<unsigned>((a + b - 1) / b); }
// Threads for a kernel that strides one row of length D: a multiple of 32, at most kThreads.
inline unsigned row_threads(int64_t D) { return static_cast<unsigned>(std::min<int64_t>(kThreads, (D + 31) / 32 * 32)); }

// out[b,h,d] = Σ_i w[b,h,i] m[b,i,d]; grid (B*H, ceil(D/kThreads)).
template <typename T>
__global__ void soft_read_fwd_kernel(const T* __restrict__ m, const T* __restrict__ w, T* __restrict__ out,
                                     int64_t N, int64_t D, int64_t H) {
  using A = acc_t<T>;
  const int64_t bh = blockIdx.x, b = bh / H;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  const T* wr = w + bh * N;
  const T* mb = m + b * N * D + d;
  A acc = A(0);
  for (int64_t i = 0; i < N; ++i) acc += static_cast<A>(wr[i]) * static_cast<A>(mb[i * D]);
  out[bh * D + d] = static_cast<T>(acc);
}

// grad_bank[b,i,d] = Σ_h w[b,h,i] g[b,h,d]; grid (B*N, ceil(D/kThreads)).
template <typename T>
__global__ void soft_read_grad_bank_kernel(const T* __restrict__ g, const T* __restrict__ w, T* __restrict__ gm,
                                           int64_t N, int64_t D, int64_t H) {
  using A = acc_t<T>;
  const int64_t row = blockIdx.x, b = row / N, i = row % N;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  A acc = A(0);
  for (int64_t h = 0; h < H; ++h) acc += static_cast<A>(w[(b * H + h) * N + i]) * static_cast<A>(g[(b * H + h) * D + d]);
  gm[row * D + d] = static_cast<T>(acc);
}

// grad_w[b,h,i] = <g[b,h], m[b,i]>; one warp per (b,h,i).
template <typename T>
__global__ void soft_read_grad_weights_kernel(const T* __restrict__ g, const T* __restrict__ m, T* __restrict__ gw,
                                              int64_t N, int64_t D, int64_t H, int64_t rows) {
  using A = acc_t<T>;
  const int64_t r = static_cast<int64_t>(blockIdx.x) * kWarps + (threadIdx.x >> 5);
  if (r >= rows) return;
  const int lane = threadIdx.x & 31;
  const int64_t bh = r / N, i = r % N, b = bh / H;
  const T* gr = g + bh * D;
  const T* mr = m + (b * N + i) * D;
  A s = A(0);
  for (int64_t d = lane; d < D; d += 32) s += static_cast<A>(gr[d]) * static_cast<A>(mr[d]);
  s = warp_reduce(s, Sum());
  if (lane == 0) gw[r] = static_cast<T>(s);
}

// One block per bank row (b,i); threads stride over D.
template <typename T>
__global__ void soft_write_fwd_kernel(const T* __restrict__ m, const T* __restrict__ w, const T* __restrict__ v,
                                      const T* __restrict__ gate, T* __restrict__ out, int64_t N, int64_t D) {
  using A = acc_t<T>;
  const int64_t r = blockIdx.x, b = r / N;
  const A a = static_cast<A>(gate[b]) * static_cast<A>(w[r]);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x)
    out[r * D + d] = static_cast<T>(soft_write_value<A>(static_cast<A>(m[r * D + d]), a, static_cast<A>(v[b * D + d])));
}

// Per bank row: grad_bank, grad_w[r] = gate·Σ_d g(v−m), and gate's gradient accumulated in fp32.
template <typename T>
__global__ void soft_write_bwd_rows_kernel(const T* __restrict__ g, const T* __restrict__ m, const T* __restrict__ w,
                                           const T* __restrict__ v, const T* __restrict__ gate, T* __restrict__ gm,
                                           T* __restrict__ gw, float* __restrict__ ggate_acc, int64_t N, int64_t D) {
  using A = acc_t<T>;
  __shared__ A scratch[32];
  const int64_t r = blockIdx.x, b = r / N;
  const A wi = static_cast<A>(w[r]), gate_b = static_cast<A>(gate[b]), a = gate_b * wi;
  A da = A(0);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    const auto gr = soft_write_value_grad<A>(static_cast<A>(g[r * D + d]), static_cast<A>(m[r * D + d]), a,
                                             static_cast<A>(v[b * D + d]));
    gm[r * D + d] = static_cast<T>(gr.m);
    da += gr.a;
  }
  da = block_reduce(da, A(0), scratch, Sum());
  if (threadIdx.x == 0) {
    gw[r] = static_cast<T>(gate_b * da);
    atomicAdd(ggate_acc + b, static_cast<float>(wi * da));
  }
}

// grad_values[b,d] = gate_b Σ_i w[b,i] g[b,i,d]; grid (B, ceil(D/kThreads)).
template <typename T>
__global__ void soft_write_bwd_values_kernel(const T* __restrict__ g, const T* __restrict__ w,
                                             const T* __restrict__ gate, T* __restrict__ gv, int64_t N, int64_t D) {
  using A = acc_t<T>;
  const int64_t b = blockIdx.x;
  const int64_t d = static_cast<int64_t>(blockIdx.y) * blockDim.x + threadIdx.x;
  if (d >= D) return;
  A acc = A(0);
  for (int64_t i = 0; i < N; ++i) acc += static_cast<A>(w[b * N + i]) * static_cast<A>(g[(b * N + i) * D + d]);
  gv[b * D + d] = static_cast<T>(static_cast<A>(gate[b]) * acc);
}

// |x| for one row, reduced over the block; every thread gets it.
template <typename T, typename A>
__device__ A block_norm(const T* __restrict__ x, int64_t D, A* scratch) {
  A s = A(0);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) s += static_cast<A>(x[d]) * static_cast<A>(x[d]);
  return sqrt(block_reduce(s, A(0), scratch, Sum()));
}

// <k, m_i> and |m_i| by one warp; every lane gets both.
template <typename T, typename A>
__device__ void warp_dot_and_norm(const T* __restrict__ k, const T* __restrict__ mi, int64_t D, A& dt, A& mnorm) {
  dt = A(0);
  A mm = A(0);
  for (int64_t d = threadIdx.x & 31; d < D; d += 32) {
    const A x = static_cast<A>(mi[d]);
    dt += static_cast<A>(k[d]) * x;
    mm += x * x;
  }
  dt = warp_reduce(dt, Sum());
  mnorm = sqrt(warp_reduce(mm, Sum()));
}

// Forward: logits z (fp32 workspace), then a block softmax.
template <typename T>
__global__ void content_address_fwd_kernel(const T* __restrict__ m, const T* __restrict__ keys,
                                           const T* __restrict__ strength, float* __restrict__ z, T* __restrict__ out,
                                           int64_t N, int64_t D, int64_t H) {
  using A = float;
  __shared__ A scratch[32];
  const int64_t bh = blockIdx.x, b = bh / H;
  const A beta = static_cast<A>(strength[bh]);
  float* zr = z + bh * N;
  const T* k = keys + bh * D;
  const A knorm = block_norm<T, A>(k, D, scratch);
  const int lane = threadIdx.x & 31;
  for (int64_t i = threadIdx.x >> 5; i < N; i += blockDim.x >> 5) {
    A dt, mnorm;
    warp_dot_and_norm<T, A>(k, m + (b * N + i) * D, D, dt, mnorm);
    if (lane == 0) zr[i] = beta * eps_cosine<A>(dt, knorm, mnorm);
  }
  __syncthreads();  // lane 0 of each warp wrote zr; the softmax reads it all
  A mx = -INFINITY;
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) mx = fmaxf(mx, zr[i]);
  mx = block_reduce(mx, A(-INFINITY), scratch, Max());
  A total = A(0);
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) total += (zr[i] = expf(zr[i] - mx));
  total = block_reduce(total, A(0), scratch, Sum());
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) out[bh * N + i] = static_cast<T>(zr[i] / total);
}

// Backward, per (b,h): α_hi and α_hi·dot_hi into fp32 workspaces, grad_strength, and grad_keys.
template <typename T>
__global__ void content_address_bwd_keys_kernel(const T* __restrict__ g, const T* __restrict__ p,
                                                const T* __restrict__ m, const T* __restrict__ keys,
                                                const T* __restrict__ strength, float* __restrict__ alpha,
                                                float* __restrict__ alpha_dot, T* __restrict__ gk, T* __restrict__ gs,
                                                int64_t N, int64_t D, int64_t H) {
  using A = float;
  __shared__ A scratch[32];
  const int64_t bh = blockIdx.x, b = bh / H;
  const T* gr = g + bh * N;
  const T* pr = p + bh * N;
  const T* k = keys + bh * D;
  const T* mb = m + b * N * D;
  const A beta = static_cast<A>(strength[bh]);
  A gp = A(0);
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) gp += static_cast<A>(gr[i]) * static_cast<A>(pr[i]);
  gp = block_reduce(gp, A(0), scratch, Sum());
  float* al = alpha + bh * N;
  float* ad = alpha_dot + bh * N;
  const A knorm = block_norm<T, A>(k, D, scratch);
  const int lane = threadIdx.x & 31;
  A dbeta = A(0);  // per-thread partial: only lane 0 of each warp adds to it
  for (int64_t i = threadIdx.x >> 5; i < N; i += blockDim.x >> 5) {
    A dt, mnorm;
    warp_dot_and_norm<T, A>(k, mb + i * D, D, dt, mnorm);
    if (lane == 0) {
      const A dz = softmax_grad<A>(static_cast<A>(pr[i]), static_cast<A>(gr[i]), gp);
      dbeta += dz * eps_cosine<A>(dt, knorm, mnorm);
      const A a = cosine_alpha<A>(dz * beta, knorm, mnorm);
      al[i] = a;
      ad[i] = a * dt;
    }
  }
  __syncthreads();  // al and ad were written by lane 0 of each warp; every thread reads them below
  dbeta = block_reduce(dbeta, A(0), scratch, Sum());
  A kself = A(0);
  for (int64_t i = threadIdx.x; i < N; i += blockDim.x) kself += ad[i];
  kself = block_reduce(kself, A(0), scratch, Sum());
  if (threadIdx.x == 0) gs[bh] = static_cast<T>(dbeta);
  const A ks = cosine_self_scale<A>(kself, knorm);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    A acc = -ks * static_cast<A>(k[d]);
    for (int64_t i = 0; i < N; ++i) acc += al[i] * static_cast<A>(mb[i * D + d]);
    gk[bh * D + d] = static_cast<T>(acc);
  }
}

// Backward, per bank row (b,i): grad_bank = Σ_h α_hi k_h − m_i·self(m_i).
template <typename T>
__global__ void content_address_bwd_bank_kernel(const T* __restrict__ m, const T* __restrict__ keys,
                                                const float* __restrict__ alpha, const float* __restrict__ alpha_dot,
                                                T* __restrict__ gm, int64_t N, int64_t D, int64_t H) {
  using A = float;
  __shared__ A scratch[32];
  const int64_t r = blockIdx.x, b = r / N, i = r % N;
  const T* mi = m + r * D;
  const A mnorm = block_norm<T, A>(mi, D, scratch);
  A mself = A(0);
  for (int64_t h = 0; h < H; ++h) mself += alpha_dot[(b * H + h) * N + i];
  const A ms = cosine_self_scale<A>(mself, mnorm);
  for (int64_t d = threadIdx.x; d < D; d += blockDim.x) {
    A acc = -ms * static_cast<A>(mi[d]);
    for (int64_t h = 0; h < H; ++h) acc += alpha[(b * H + h) * N + i] * static_cast<A>(keys[(b * H + h) * D + d]);
    gm[r * D + d] = static_cast<T>(acc);
  }
}

void check_cuda_dtype(const at::Tensor& t, const char* op) {
  TORCH_CHECK(t.scalar_type() != at::kDouble, op, ": the cuda backend takes float32, float16 or bfloat16");
}

}  // namespace

at::Tensor soft_read_fwd_cuda(const at::Tensor& bank, const at::Tensor& weights) {
  check_kernel_inputs({&bank, &weights}, "soft_read_fwd");
  check_cuda_dtype(bank, "soft_read_fwd");
  const c10::cuda::CUDAGuard guard(bank.device());
  // In fp32 a read is a batched matrix product, and cuBLAS ran it 2-4x faster than the loops below on an H200
  // (benchmarks/RESULTS.md, "The first GPU run"), as BLAS does on the CPU; the loops serve fp16/bf16.
  if (bank.scalar_type() == at::kFloat) return at::bmm(weights, bank);
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = weights.size(1);
  at::Tensor out = at::empty({B, H, D}, bank.options());
  if (out.numel() == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(bank.scalar_type(), "soft_read_fwd_cuda", [&] {
    soft_read_fwd_kernel<scalar_t><<<dim3(B * H, cdiv(D, kThreads)), kThreads, 0, stream>>>(
        bank.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N, D, H);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor> soft_read_bwd_cuda(const at::Tensor& grad, const at::Tensor& bank,
                                                      const at::Tensor& weights) {
  check_kernel_inputs({&grad, &bank, &weights}, "soft_read_bwd");
  check_cuda_dtype(bank, "soft_read_bwd");
  const c10::cuda::CUDAGuard guard(bank.device());
  if (bank.scalar_type() == at::kFloat) {
    return {at::bmm(weights.transpose(1, 2), grad), at::bmm(grad, bank.transpose(1, 2))};
  }
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = weights.size(1);
  at::Tensor g_bank = at::empty_like(bank), g_w = at::empty_like(weights);
  if (bank.numel() == 0 || weights.numel() == 0) return {g_bank.zero_(), g_w.zero_()};
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(bank.scalar_type(), "soft_read_bwd_cuda", [&] {
    soft_read_grad_bank_kernel<scalar_t><<<dim3(B * N, cdiv(D, kThreads)), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), g_bank.data_ptr<scalar_t>(), N, D, H);
    soft_read_grad_weights_kernel<scalar_t><<<cdiv(B * H * N, kWarps), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), bank.data_ptr<scalar_t>(), g_w.data_ptr<scalar_t>(), N, D, H, B * H * N);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_bank, g_w};
}

at::Tensor soft_write_fwd_cuda(const at::Tensor& bank, const at::Tensor& weights, const at::Tensor& values,
                               const at::Tensor& gate) {
  check_kernel_inputs({&bank, &weights, &values, &gate}, "soft_write_fwd");
  check_cuda_dtype(bank, "soft_write_fwd");
  const c10::cuda::CUDAGuard guard(bank.device());
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2);
  at::Tensor out = at::empty_like(bank);
  if (out.numel() == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(bank.scalar_type(), "soft_write_fwd_cuda", [&] {
    soft_write_fwd_kernel<scalar_t><<<B * N, row_threads(D), 0, stream>>>(
        bank.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), values.data_ptr<scalar_t>(),
        gate.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), N, D);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> soft_write_bwd_cuda(
    const at::Tensor& grad, const at::Tensor& bank, const at::Tensor& weights, const at::Tensor& values,
    const at::Tensor& gate) {
  check_kernel_inputs({&grad, &bank, &weights, &values, &gate}, "soft_write_bwd");
  check_cuda_dtype(bank, "soft_write_bwd");
  const c10::cuda::CUDAGuard guard(bank.device());
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2);
  at::Tensor g_bank = at::empty_like(bank), g_w = at::empty_like(weights), g_v = at::empty_like(values);
  at::Tensor g_gate_acc = at::zeros({B}, bank.options().dtype(at::kFloat));
  if (bank.numel() == 0) return {g_bank, g_w.zero_(), g_v.zero_(), g_gate_acc.to(gate.scalar_type())};
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(bank.scalar_type(), "soft_write_bwd_cuda", [&] {
    soft_write_bwd_rows_kernel<scalar_t><<<B * N, row_threads(D), 0, stream>>>(
        grad.data_ptr<scalar_t>(), bank.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(),
        values.data_ptr<scalar_t>(), gate.data_ptr<scalar_t>(), g_bank.data_ptr<scalar_t>(),
        g_w.data_ptr<scalar_t>(), g_gate_acc.data_ptr<float>(), N, D);
    soft_write_bwd_values_kernel<scalar_t><<<dim3(B, cdiv(D, kThreads)), kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), weights.data_ptr<scalar_t>(), gate.data_ptr<scalar_t>(),
        g_v.data_ptr<scalar_t>(), N, D);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_bank, g_w, g_v, g_gate_acc.to(gate.scalar_type())};
}

at::Tensor content_address_fwd_cuda(const at::Tensor& bank, const at::Tensor& keys, const at::Tensor& strength) {
  check_kernel_inputs({&bank, &keys, &strength}, "content_address_fwd");
  check_cuda_dtype(bank, "content_address_fwd");
  const c10::cuda::CUDAGuard guard(bank.device());
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = keys.size(1);
  at::Tensor out = at::empty({B, H, N}, bank.options());
  if (out.numel() == 0) return out;
  at::Tensor z = at::empty({B, H, N}, bank.options().dtype(at::kFloat));
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(bank.scalar_type(), "content_address_fwd_cuda", [&] {
    content_address_fwd_kernel<scalar_t><<<B * H, kThreads, 0, stream>>>(
        bank.data_ptr<scalar_t>(), keys.data_ptr<scalar_t>(), strength.data_ptr<scalar_t>(), z.data_ptr<float>(),
        out.data_ptr<scalar_t>(), N, D, H);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> content_address_bwd_cuda(const at::Tensor& grad, const at::Tensor& out,
                                                                        const at::Tensor& bank, const at::Tensor& keys,
                                                                        const at::Tensor& strength) {
  check_kernel_inputs({&grad, &out, &bank, &keys, &strength}, "content_address_bwd");
  check_cuda_dtype(bank, "content_address_bwd");
  const c10::cuda::CUDAGuard guard(bank.device());
  const int64_t B = bank.size(0), N = bank.size(1), D = bank.size(2), H = keys.size(1);
  at::Tensor g_bank = at::zeros_like(bank), g_keys = at::zeros_like(keys), g_s = at::zeros_like(strength);
  if (out.numel() == 0 || D == 0) return {g_bank, g_keys, g_s};
  at::Tensor alpha = at::empty({B, H, N}, bank.options().dtype(at::kFloat));
  at::Tensor alpha_dot = at::empty_like(alpha);
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(bank.scalar_type(), "content_address_bwd_cuda", [&] {
    content_address_bwd_keys_kernel<scalar_t><<<B * H, kThreads, 0, stream>>>(
        grad.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), bank.data_ptr<scalar_t>(), keys.data_ptr<scalar_t>(),
        strength.data_ptr<scalar_t>(), alpha.data_ptr<float>(), alpha_dot.data_ptr<float>(),
        g_keys.data_ptr<scalar_t>(), g_s.data_ptr<scalar_t>(), N, D, H);
    content_address_bwd_bank_kernel<scalar_t><<<B * N, row_threads(D), 0, stream>>>(
        bank.data_ptr<scalar_t>(), keys.data_ptr<scalar_t>(), alpha.data_ptr<float>(), alpha_dot.data_ptr<float>(),
        g_bank.data_ptr<scalar_t>(), N, D, H);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_bank, g_keys, g_s};
}

}  // namespace ncl
