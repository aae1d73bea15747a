// CUDA kernels of the table ALU mixture: one block per batch row, the row's operands and running sums in
// shared memory, arithmetic from ncl/alu.h (shared with the CPU kernels). MUL, DIV and MOD scatter the outer
// product into a shared-memory accumulator with shared atomics; nothing per-op reaches global memory.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "ncl/alu.h"
#include "launch.cuh"
#include "reduce.cuh"

namespace ncl {
namespace {

using cuda::block_reduce;
using cuda::Sum;

// Shared arrays of n floats: x y px qx py qy acc (forward); + g pgx qgx pgy qgy (backward).
constexpr int kFwdArrays = 7;
constexpr int kBwdArrays = 11;
// 48 KiB of dynamic shared memory without opting in: 11 arrays of 1024 floats fit.
constexpr int64_t kMaxN = 1024;


// Exclusive prefix p[c] = Σ_{i<c} a_i b_i and strict suffix q[c] = Σ_{i>c} a_i b_i (b null: b_i = 1).
// O(n) per thread: for n <= 1024 this costs no more than the O(n²) ops it feeds.
__device__ void running_sums(const float* a, const float* b, float* p, float* q, int64_t n) {
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) {
    float lo = 0.f, hi = 0.f;
    for (int64_t i = 0; i < n; ++i) {
      const float v = b ? a[i] * b[i] : a[i];
      if (i < c) lo += v;
      if (i > c) hi += v;
    }
    p[c] = lo;
    q[c] = hi;
  }
}

// Loads one row into shared memory and fills the row view; every thread gets the same view.
template <typename T>
__device__ alu::Row<float> load_row(float* sm, const T* x, const T* y, const T* g, int64_t n, float* scratch) {
  float *xs = sm, *ys = sm + n, *px = sm + 2 * n, *qx = sm + 3 * n, *py = sm + 4 * n, *qy = sm + 5 * n;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    xs[i] = static_cast<float>(x[i]);
    ys[i] = static_cast<float>(y[i]);
  }
  float *gs = nullptr, *pgx = nullptr, *qgx = nullptr, *pgy = nullptr, *qgy = nullptr;
  if (g) {
    gs = sm + 7 * n; pgx = sm + 8 * n; qgx = sm + 9 * n; pgy = sm + 10 * n; qgy = sm + 6 * n;
    for (int64_t i = threadIdx.x; i < n; i += blockDim.x) gs[i] = static_cast<float>(g[i]);
  }
  __syncthreads();
  running_sums(xs, nullptr, px, qx, n);
  running_sums(ys, nullptr, py, qy, n);
  if (g) {
    running_sums(xs, gs, pgx, qgx, n);
    running_sums(ys, gs, pgy, qgy, n);
  }
  __syncthreads();
  float sx = 0.f, sy = 0.f, peq = 0.f, plt = 0.f;
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    sx += xs[i];
    sy += ys[i];
    peq += xs[i] * ys[i];
    plt += xs[i] * qy[i];
  }
  alu::Row<float> r{};
  r.n = n;
  r.x = xs; r.y = ys; r.px = px; r.qx = qx; r.py = py; r.qy = qy;
  r.g = gs; r.pgx = pgx; r.qgx = qgx; r.pgy = pgy; r.qgy = qgy;
  r.sx = block_reduce(sx, 0.f, scratch, Sum());
  r.sy = block_reduce(sy, 0.f, scratch, Sum());
  r.peq = block_reduce(peq, 0.f, scratch, Sum());
  r.plt = block_reduce(plt, 0.f, scratch, Sum());
  return r;
}

template <typename T>
__global__ void alu_mix_fwd_kernel(const T* __restrict__ x, const T* __restrict__ y, const T* __restrict__ coeffs,
                                   T* __restrict__ out, int64_t n) {
  extern __shared__ float sm[];
  __shared__ float scratch[32];
  const int64_t b = blockIdx.x;
  float coef[alu::kNumOps];
  for (int k = 0; k < alu::kNumOps; ++k) coef[k] = static_cast<float>(coeffs[b * alu::kNumOps + k]);
  const unsigned mask = alu::active_ops(coef);  // the same in every thread: the skips are block-uniform
  const alu::Row<float> r = load_row<T>(sm, x + b * n, y + b * n, nullptr, n, scratch);
  float* acc = sm + 6 * n;
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) acc[c] = alu::structured_out(c, r, coef, mask);
  if (mask & alu::kGeneralMask) {
    __syncthreads();
    const float cm = mask & (1u << alu::MUL) ? coef[alu::MUL] : 0.f;
    const float cd = mask & (1u << alu::DIV) ? coef[alu::DIV] : 0.f;
    const float cr = mask & (1u << alu::MOD) ? coef[alu::MOD] : 0.f;
    for (int64_t t = threadIdx.x; t < n * n; t += blockDim.x) {
      const int64_t i = t / n, j = t % n;
      const float p = r.x[i] * r.y[j];
      if (p == 0.f) continue;  // adds nothing; sharp operands have one nonzero pair, and the atomics contend
      if (cm != 0.f) atomicAdd(acc + alu::mul_index(i, j, n), cm * p);
      if (cd != 0.f) atomicAdd(acc + alu::div_index(i, j), cd * p);
      if (cr != 0.f) atomicAdd(acc + alu::mod_index(i, j), cr * p);
    }
  }
  __syncthreads();
  for (int64_t c = threadIdx.x; c < n; c += blockDim.x) out[b * n + c] = static_cast<T>(acc[c]);
}

template <typename T>
__global__ void alu_mix_bwd_kernel(const T* __restrict__ grad, const T* __restrict__ x, const T* __restrict__ y,
                                   const T* __restrict__ coeffs, T* __restrict__ gx, T* __restrict__ gy,
                                   T* __restrict__ gc, int64_t n) {
  extern __shared__ float sm[];
  __shared__ float scratch[32];
  const int64_t b = blockIdx.x;
  float coef[alu::kNumOps], gcoef[alu::kNumOps], d[alu::kNumOps];
  for (int k = 0; k < alu::kNumOps; ++k) {
    coef[k] = static_cast<float>(coeffs[b * alu::kNumOps + k]);
    gcoef[k] = 0.f;
  }
  const alu::Row<float> r = load_row<T>(sm, x + b * n, y + b * n, grad + b * n, n, scratch);
  for (int64_t i = threadIdx.x; i < n; i += blockDim.x) {
    alu::grad_x_terms(i, r, d);
    float acc = 0.f;
    for (int k = 0; k < alu::kNumOps; ++k) {
      acc += coef[k] * d[k];
      gcoef[k] += r.x[i] * d[k];  // L_k = Σ_i x_i ∂L_k/∂x_i (bilinear)
    }
    gx[b * n + i] = static_cast<T>(acc);
  }
  for (int64_t j = threadIdx.x; j < n; j += blockDim.x) {
    alu::grad_y_terms(j, r, d);
    float acc = 0.f;
    for (int k = 0; k < alu::kNumBinary; ++k) acc += coef[k] * d[k];
    gy[b * n + j] = static_cast<T>(acc);
  }
  for (int k = 0; k < alu::kNumOps; ++k) {
    const float v = block_reduce(gcoef[k], 0.f, scratch, Sum());
    if (threadIdx.x == 0) gc[b * alu::kNumOps + k] = static_cast<T>(v);
  }
}

void check_alu_inputs_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs, const char* op) {
  check_kernel_inputs({&x, &y, &coeffs}, op);
  TORCH_CHECK(x.dim() == 2 && y.sizes() == x.sizes(), op, ": x and y must be (B, n)");
  TORCH_CHECK(x.size(1) >= 2 && x.size(1) <= kMaxN, op, ": n must be in [2, ", kMaxN, "] on CUDA");
  TORCH_CHECK(coeffs.dim() == 2 && coeffs.size(0) == x.size(0) && coeffs.size(1) == alu::kNumOps, op,
              ": coeffs must be (B, ", alu::kNumOps, ")");
}

unsigned threads_for(int64_t n) { return static_cast<unsigned>(std::min<int64_t>(kThreads, (n + 31) / 32 * 32)); }

}  // namespace

at::Tensor alu_mix_fwd_cuda(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs) {
  check_alu_inputs_cuda(x, y, coeffs, "alu_mix_fwd");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor out = at::empty_like(x);
  if (B == 0) return out;
  auto stream = at::cuda::getCurrentCUDAStream();
  // The general scatter strides over n² pairs: use a full block for it whatever n is.
  NCL_DISPATCH_GPU_FLOATS(x.scalar_type(), "alu_mix_fwd_cuda", [&] {
    alu_mix_fwd_kernel<scalar_t><<<B, kThreads, kFwdArrays * n * sizeof(float), stream>>>(
        x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(), out.data_ptr<scalar_t>(), n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

std::tuple<at::Tensor, at::Tensor, at::Tensor> alu_mix_bwd_cuda(const at::Tensor& grad, const at::Tensor& x,
                                                                const at::Tensor& y, const at::Tensor& coeffs) {
  check_alu_inputs_cuda(x, y, coeffs, "alu_mix_bwd");
  check_kernel_inputs({&grad, &x}, "alu_mix_bwd");
  TORCH_CHECK(grad.sizes() == x.sizes(), "alu_mix_bwd: grad must be (B, n)");
  const c10::cuda::CUDAGuard guard(x.device());
  const int64_t B = x.size(0), n = x.size(1);
  at::Tensor gx = at::empty_like(x), gy = at::empty_like(y), gc = at::empty_like(coeffs);
  if (B == 0) return {gx, gy, gc};
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(x.scalar_type(), "alu_mix_bwd_cuda", [&] {
    alu_mix_bwd_kernel<scalar_t><<<B, threads_for(n), kBwdArrays * n * sizeof(float), stream>>>(
        grad.data_ptr<scalar_t>(), x.data_ptr<scalar_t>(), y.data_ptr<scalar_t>(), coeffs.data_ptr<scalar_t>(),
        gx.data_ptr<scalar_t>(), gy.data_ptr<scalar_t>(), gc.data_ptr<scalar_t>(), n);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {gx, gy, gc};
}

}  // namespace ncl
