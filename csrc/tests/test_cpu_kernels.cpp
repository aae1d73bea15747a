// The CPU kernels against the same math written with ATen ops, in float64 on random inputs.
#include <ATen/ATen.h>

#include <cstdio>

#include "check.h"
#include "ops.h"

namespace {

double max_diff(const at::Tensor& a, const at::Tensor& b) { return (a - b).abs().max().item<double>(); }

void test_soft_read() {
  auto opt = at::TensorOptions().dtype(at::kDouble);
  auto bank = at::randn({3, 5, 7}, opt), w = at::rand({3, 2, 5}, opt), g = at::randn({3, 2, 7}, opt);
  NCL_CHECK_NEAR(max_diff(ncl::soft_read_fwd_cpu(bank, w), at::bmm(w, bank)), 0, 1e-12);
  auto [gb, gw] = ncl::soft_read_bwd_cpu(g, bank, w);
  NCL_CHECK_NEAR(max_diff(gb, at::bmm(w.transpose(1, 2), g)), 0, 1e-12);
  NCL_CHECK_NEAR(max_diff(gw, at::bmm(g, bank.transpose(1, 2))), 0, 1e-12);
}

void test_soft_write() {
  auto opt = at::TensorOptions().dtype(at::kDouble);
  auto bank = at::randn({3, 5, 7}, opt), w = at::rand({3, 5}, opt), v = at::randn({3, 7}, opt);
  auto gate = at::rand({3}, opt), g = at::randn({3, 5, 7}, opt);
  auto a = (gate.unsqueeze(1) * w).unsqueeze(2);
  auto diff = v.unsqueeze(1) - bank;
  NCL_CHECK_NEAR(max_diff(ncl::soft_write_fwd_cpu(bank, w, v, gate), bank + a * diff), 0, 1e-12);
  auto [gb, gw, gv, gg] = ncl::soft_write_bwd_cpu(g, bank, w, v, gate);
  auto da = (g * diff).sum(2);
  NCL_CHECK_NEAR(max_diff(gb, g * (1 - a)), 0, 1e-12);
  NCL_CHECK_NEAR(max_diff(gw, da * gate.unsqueeze(1)), 0, 1e-12);
  NCL_CHECK_NEAR(max_diff(gv, (g * a).sum(1)), 0, 1e-12);
  NCL_CHECK_NEAR(max_diff(gg, (da * w).sum(1)), 0, 1e-12);
}

void test_content_address() {
  auto opt = at::TensorOptions().dtype(at::kDouble);
  auto bank = at::randn({2, 6, 5}, opt), keys = at::randn({2, 3, 5}, opt), s = at::rand({2, 3}, opt) * 4;
  auto kn = keys.norm(2, -1, true) + 1e-6, mn = bank.norm(2, -1, true) + 1e-6;
  auto cos = at::bmm(keys / kn, (bank / mn).transpose(1, 2));
  auto out = at::softmax(s.unsqueeze(2) * cos, -1);
  auto fused = ncl::content_address_fwd_cpu(bank, keys, s);
  NCL_CHECK_NEAR(max_diff(fused, out), 0, 1e-12);
  // Strength's gradient has a closed form: Σ_i p_i (g_i − Σ_j g_j p_j) cos_i.
  auto g = at::randn({2, 3, 6}, opt);
  auto [gb, gk, gs] = ncl::content_address_bwd_cpu(g, fused, bank, keys, s);
  auto dz = out * (g - (g * out).sum(-1, true));
  NCL_CHECK_NEAR(max_diff(gs, (dz * cos).sum(-1)), 0, 1e-12);
  NCL_CHECK(gb.sizes() == bank.sizes() && gk.sizes() == keys.sizes());
}

}  // namespace

int main() {
  at::manual_seed(0);
  test_soft_read();
  test_soft_write();
  test_content_address();
  std::printf("cpu kernel tests: %d failure(s)\n", ncl_test::failures);
  return ncl_test::failures == 0 ? 0 : 1;
}
