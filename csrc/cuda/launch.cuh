// Launch shapes and the dtype dispatch shared by every CUDA kernel file.
#pragma once

#include <ATen/Dispatch.h>

namespace ncl {

constexpr int kThreads = 256;
constexpr int kWarps = kThreads / 32;

}  // namespace ncl

// float64 is not a GPU type here (docs/design.md §2), so it is not instantiated.
#define NCL_DISPATCH_GPU_FLOATS(TYPE, NAME, ...)                                            \
  AT_DISPATCH_SWITCH(TYPE, NAME, AT_DISPATCH_CASE(at::kFloat, __VA_ARGS__)                  \
                                     AT_DISPATCH_CASE(at::kHalf, __VA_ARGS__)               \
                                         AT_DISPATCH_CASE(at::kBFloat16, __VA_ARGS__))
