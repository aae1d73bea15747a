// Warp and block reductions used by the CUDA kernels.
#pragma once

namespace ncl {
namespace cuda {

struct Sum {
  template <typename A> __device__ A operator()(A a, A b) const { return a + b; }
};
struct Max {
  template <typename A> __device__ A operator()(A a, A b) const { return a > b ? a : b; }
};

template <typename A, typename Op> __device__ __forceinline__ A warp_reduce(A v, Op op) {
  for (int offset = 16; offset > 0; offset >>= 1) v = op(v, __shfl_xor_sync(0xffffffffu, v, offset));
  return v;
}

// Every thread of the block gets the result. `scratch` holds at least 32 values.
template <typename A, typename Op> __device__ __forceinline__ A block_reduce(A v, A identity, A* scratch, Op op) {
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, warps = (blockDim.x + 31) >> 5;
  v = warp_reduce(v, op);
  __syncthreads();  // the previous call may still be reading scratch
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = threadIdx.x < warps ? scratch[threadIdx.x] : identity;
  if (warp == 0) v = warp_reduce(v, op);
  if (threadIdx.x == 0) scratch[0] = v;
  __syncthreads();
  return scratch[0];
}

}  // namespace cuda
}  // namespace ncl
