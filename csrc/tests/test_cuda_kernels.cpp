// The CUDA kernels against the CPU kernels. Exits 77 (skipped by ctest) without a GPU.
#include <ATen/ATen.h>
#include <ATen/Context.h>

#include <cstdio>

#include "check.h"
#include "ops.h"

namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a.cpu() - b).abs().max().item<double>(); }

}  // namespace

int main() {
  if (!at::hasCUDA()) {
    std::printf("no CUDA device: skipped\n");
    return 77;
  }
  at::manual_seed(0);
  auto opt = at::TensorOptions().dtype(at::kFloat);
  auto bank = at::randn({4, 33, 65}, opt), w = at::rand({4, 3, 33}, opt), keys = at::randn({4, 3, 65}, opt);
  auto ww = at::rand({4, 33}, opt), v = at::randn({4, 65}, opt), gate = at::rand({4}, opt), s = at::rand({4, 3}, opt);
  auto cu = [](const at::Tensor& t) { return t.cuda(); };
  NCL_CHECK_NEAR(max_diff(ncl::soft_read_fwd_cuda(cu(bank), cu(w)), ncl::soft_read_fwd_cpu(bank, w)), 0, 1e-5);
  NCL_CHECK_NEAR(max_diff(ncl::soft_write_fwd_cuda(cu(bank), cu(ww), cu(v), cu(gate)),
                      ncl::soft_write_fwd_cpu(bank, ww, v, gate)), 0, 1e-5);
  NCL_CHECK_NEAR(max_diff(ncl::content_address_fwd_cuda(cu(bank), cu(keys), cu(s)),
                      ncl::content_address_fwd_cpu(bank, keys, s)), 0, 1e-5);
  std::printf("cuda kernel tests: %d failure(s)\n", ncl_test::failures);
  return ncl_test::failures == 0 ? 0 : 1;
}
