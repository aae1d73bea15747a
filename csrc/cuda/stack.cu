// CUDA kernels of the soft stack update: one block per batch row (a stack is S x W, a few thousand values),
// arithmetic from ncl/stack.h, shared with the CPU kernels.
#include <ATen/Dispatch.h>
#include <ATen/cuda/CUDAContext.h>
#include <c10/cuda/CUDAGuard.h>

#include "../ops.h"
#include "ncl/stack.h"
#include "launch.cuh"
#include "reduce.cuh"

namespace ncl {
namespace {

using cuda::block_reduce;
using cuda::Sum;
using cuda::warp_reduce;



// Dynamic shared memory: up(p) for the forward; up(p), down(p), da, dr, dd for the backward (S floats each).
template <typename T>
__global__ void stack_update_fwd_kernel(const T* __restrict__ m, const T* __restrict__ p, const T* __restrict__ pu,
                                        const T* __restrict__ po, const T* __restrict__ it, T* __restrict__ om,
                                        T* __restrict__ op, T* __restrict__ ov, T* __restrict__ un, int64_t S,
                                        int64_t W) {
  extern __shared__ float raised[];
  const int64_t b = blockIdx.x;
  const T* pb = p + b * S;
  const float u = static_cast<float>(pu[b]), o = static_cast<float>(po[b]);
  for (int64_t s = threadIdx.x; s < S; s += blockDim.x) {
    const float r = stack::up_at<float>(pb, s, S);
    raised[s] = r;
    op[b * S + s] = static_cast<T>(stack::new_pointer<float>(static_cast<float>(pb[s]), r,
                                                             stack::down_at<float>(pb, s, S), u, o));
  }
  if (threadIdx.x == 0) {
    ov[b] = static_cast<T>(u * static_cast<float>(pb[S - 1]));
    un[b] = static_cast<T>(o * static_cast<float>(pb[0]));
  }
  __syncthreads();
  const T* ib = it + b * W;
  for (int64_t e = threadIdx.x; e < S * W; e += blockDim.x) {
    const int64_t s = e / W, d = e - s * W;
    om[b * S * W + e] = static_cast<T>(
        soft_write_value<float>(static_cast<float>(m[b * S * W + e]), u * raised[s], static_cast<float>(ib[d])));
  }
}

template <typename T>
__global__ void stack_update_bwd_kernel(const T* __restrict__ gm, const T* __restrict__ gp, const T* __restrict__ go,
                                        const T* __restrict__ gu, const T* __restrict__ m, const T* __restrict__ p,
                                        const T* __restrict__ pu, const T* __restrict__ po, const T* __restrict__ it,
                                        T* __restrict__ dm, T* __restrict__ dp, T* __restrict__ dpush,
                                        T* __restrict__ dpop, T* __restrict__ di, int64_t S, int64_t W) {
  extern __shared__ float sh[];
  float *raised = sh, *lowered = sh + S, *da = sh + 2 * S, *dr = sh + 3 * S, *dd = sh + 4 * S;
  __shared__ float scratch[32];
  const int64_t b = blockIdx.x;
  const T* pb = p + b * S;
  const T* gpb = gp + b * S;
  const T* ib = it + b * W;
  const float u = static_cast<float>(pu[b]), o = static_cast<float>(po[b]);
  for (int64_t s = threadIdx.x; s < S; s += blockDim.x) {
    raised[s] = stack::up_at<float>(pb, s, S);
    lowered[s] = stack::down_at<float>(pb, s, S);
  }
  __syncthreads();
  // One warp per slot row: the slot gradient, and the row's coefficient gradient da_s by a warp reduction.
  const int lane = threadIdx.x & 31;
  for (int64_t s = threadIdx.x >> 5; s < S; s += kWarps) {
    const float a = u * raised[s];
    const int64_t row = (b * S + s) * W;
    float acc = 0.f;
    for (int64_t d = lane; d < W; d += 32) {
      const auto g = soft_write_value_grad<float>(static_cast<float>(gm[row + d]), static_cast<float>(m[row + d]), a,
                                                  static_cast<float>(ib[d]));
      dm[row + d] = static_cast<T>(g.m);
      acc += g.a;
    }
    acc = warp_reduce(acc, Sum());
    if (lane == 0) da[s] = acc;
  }
  // The item's gradient: Σ_s g[s,d] a_s, one column per thread.
  for (int64_t d = threadIdx.x; d < W; d += blockDim.x) {
    float acc = 0.f;
    for (int64_t s = 0; s < S; ++s) acc += static_cast<float>(gm[(b * S + s) * W + d]) * (u * raised[s]);
    di[b * W + d] = static_cast<T>(acc);
  }
  __syncthreads();
  float du = 0.f, dop = 0.f;
  for (int64_t s = threadIdx.x; s < S; s += blockDim.x) {
    const float g_s = static_cast<float>(gpb[s]), ps = static_cast<float>(pb[s]);
    du += da[s] * raised[s] + g_s * (raised[s] - ps);
    dop += g_s * (lowered[s] - ps);
    dr[s] = u * (da[s] + g_s);
    dd[s] = o * g_s;
  }
  du = block_reduce(du, 0.f, scratch, Sum());  // its barriers also publish dr and dd
  dop = block_reduce(dop, 0.f, scratch, Sum());
  const float g_over = static_cast<float>(go[b]), g_under = static_cast<float>(gu[b]);
  for (int64_t j = threadIdx.x; j < S; j += blockDim.x)
    dp[b * S + j] = static_cast<T>(
        stack::pointer_grad<float>(dr, dd, static_cast<float>(gpb[j]), u, o, g_over, g_under, j, S));
  if (threadIdx.x == 0) {
    dpush[b] = static_cast<T>(du + g_over * static_cast<float>(pb[S - 1]));
    dpop[b] = static_cast<T>(dop + g_under * static_cast<float>(pb[0]));
  }
}

void check_stack_inputs_cuda(const at::Tensor& slots, const at::Tensor& ptr, const at::Tensor& push,
                             const at::Tensor& pop, const at::Tensor& item, const char* op) {
  check_kernel_inputs({&slots, &ptr, &push, &pop, &item}, op);
  TORCH_CHECK(slots.is_cuda(), op, ": the cuda backend needs CUDA tensors");
  TORCH_CHECK(slots.dim() == 3 && ptr.dim() == 2 && push.dim() == 1 && pop.dim() == 1 && item.dim() == 2, op,
              ": expected slots (B,S,W), ptr (B,S), push (B,), pop (B,), item (B,W)");
  TORCH_CHECK(slots.size(1) >= 2, op, ": a stack needs S >= 2 positions");
  TORCH_CHECK(ptr.size(0) == slots.size(0) && ptr.size(1) == slots.size(1) && item.size(1) == slots.size(2), op,
              ": shapes do not agree");
}

}  // namespace

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> stack_update_fwd_cuda(
    const at::Tensor& slots, const at::Tensor& ptr, const at::Tensor& push, const at::Tensor& pop,
    const at::Tensor& item) {
  check_stack_inputs_cuda(slots, ptr, push, pop, item, "stack_update_fwd");
  const c10::cuda::CUDAGuard guard(slots.device());
  const int64_t B = slots.size(0), S = slots.size(1), W = slots.size(2);
  at::Tensor new_slots = at::empty_like(slots), new_ptr = at::empty_like(ptr);
  at::Tensor over = at::empty_like(push), under = at::empty_like(pop);
  if (B == 0) return {new_slots, new_ptr, over, under};
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(slots.scalar_type(), "stack_update_fwd_cuda", [&] {
    stack_update_fwd_kernel<scalar_t><<<B, kThreads, S * sizeof(float), stream>>>(
        slots.data_ptr<scalar_t>(), ptr.data_ptr<scalar_t>(), push.data_ptr<scalar_t>(), pop.data_ptr<scalar_t>(),
        item.data_ptr<scalar_t>(), new_slots.data_ptr<scalar_t>(), new_ptr.data_ptr<scalar_t>(),
        over.data_ptr<scalar_t>(), under.data_ptr<scalar_t>(), S, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {new_slots, new_ptr, over, under};
}

std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> stack_update_bwd_cuda(
    const at::Tensor& grad_slots, const at::Tensor& grad_ptr, const at::Tensor& grad_overflow,
    const at::Tensor& grad_underflow, const at::Tensor& slots, const at::Tensor& ptr, const at::Tensor& push,
    const at::Tensor& pop, const at::Tensor& item) {
  check_stack_inputs_cuda(slots, ptr, push, pop, item, "stack_update_bwd");
  check_kernel_inputs({&slots, &grad_slots, &grad_ptr, &grad_overflow, &grad_underflow}, "stack_update_bwd");
  TORCH_CHECK(grad_slots.sizes() == slots.sizes() && grad_ptr.sizes() == ptr.sizes() &&
                  grad_overflow.sizes() == push.sizes() && grad_underflow.sizes() == pop.sizes(),
              "stack_update_bwd: each gradient must have its output's shape");
  const c10::cuda::CUDAGuard guard(slots.device());
  const int64_t B = slots.size(0), S = slots.size(1), W = slots.size(2);
  at::Tensor g_slots = at::empty_like(slots), g_ptr = at::empty_like(ptr), g_push = at::empty_like(push);
  at::Tensor g_pop = at::empty_like(pop), g_item = at::empty_like(item);
  if (B == 0) return {g_slots, g_ptr, g_push, g_pop, g_item};
  auto stream = at::cuda::getCurrentCUDAStream();
  NCL_DISPATCH_GPU_FLOATS(slots.scalar_type(), "stack_update_bwd_cuda", [&] {
    stack_update_bwd_kernel<scalar_t><<<B, kThreads, 5 * S * sizeof(float), stream>>>(
        grad_slots.data_ptr<scalar_t>(), grad_ptr.data_ptr<scalar_t>(), grad_overflow.data_ptr<scalar_t>(),
        grad_underflow.data_ptr<scalar_t>(), slots.data_ptr<scalar_t>(), ptr.data_ptr<scalar_t>(),
        push.data_ptr<scalar_t>(), pop.data_ptr<scalar_t>(), item.data_ptr<scalar_t>(), g_slots.data_ptr<scalar_t>(),
        g_ptr.data_ptr<scalar_t>(), g_push.data_ptr<scalar_t>(), g_pop.data_ptr<scalar_t>(),
        g_item.data_ptr<scalar_t>(), S, W);
  });
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return {g_slots, g_ptr, g_push, g_pop, g_item};
}

}  // namespace ncl
