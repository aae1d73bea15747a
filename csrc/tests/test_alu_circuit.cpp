// Unit tests of csrc/include/ncl/alu_circuit.h on a hand-written netlist (every gate kind, a constant, a
// wire read twice by one gate, output bits shared by several ops): the forward row against the product
// fold written out, the backward row against central finite differences, and a strided scratch (the CUDA
// kernels' (slots, B) layout) against stride 1.
#include <random>
#include <vector>

#include "check.h"
#include "ncl/alu_circuit.h"

using namespace ncl;
using namespace ncl::circuit;

namespace {

constexpr int kM = 2;
constexpr int64_t kN = 4;
// Wires 0,1 = a0,a1 and 2,3 = b0,b1; gate g writes wire 4 + g.
const std::vector<int32_t> kGates = {
    kMul, 0, 2, 4,    // a0·b0
    kConst, 1, 0, 5,  // 1
    kSub, 5, 1, 6,    // 1 − a1
    kAdd, 4, 6, 7,    // a0·b0 + 1 − a1
    kMul, 7, 7, 8,    // its square: one wire read twice
    kSub, 3, 8, 9,    // b1 − square
};
constexpr int64_t kNumGates = 6;
constexpr int64_t kNumWires = 2 * kM + kNumGates;

std::vector<int32_t> outputs() {
  std::vector<int32_t> out(kNumOps * kM);
  for (int k = 0; k < kNumOps; ++k) {
    out[k * kM] = 4 + k % 6;
    out[k * kM + 1] = 4 + (k + 3) % 6;
  }
  return out;
}

std::vector<double> wires(const double* x, const double* y) {
  double a[kM] = {}, b[kM] = {};
  for (int64_t v = 0; v < kN; ++v)
    for (int i = 0; i < kM; ++i)
      if ((v >> i) & 1) {
        a[i] += x[v];
        b[i] += y[v];
      }
  std::vector<double> w = {a[0], a[1], b[0], b[1], a[0] * b[0], 1.0, 1.0 - a[1]};
  w.push_back(w[4] + w[6]);
  w.push_back(w[7] * w[7]);
  w.push_back(w[3] - w[8]);
  return w;
}

// out[v] = Σ_k c_k Π_i (bit_i(v) ? p_ki : 1 − p_ki), written out.
std::vector<double> expected_out(const double* x, const double* y, const double* c) {
  const std::vector<double> w = wires(x, y);
  const std::vector<int32_t> outs = outputs();
  std::vector<double> out(kN, 0.0);
  for (int k = 0; k < kNumOps; ++k)
    for (int64_t v = 0; v < kN; ++v) {
      double prod = 1.0;
      for (int i = 0; i < kM; ++i) {
        const double p = w[outs[k * kM + i]];
        prod *= (v >> i) & 1 ? p : 1.0 - p;
      }
      out[v] += c[k] * prod;
    }
  return out;
}

double loss(const std::vector<double>& x, const std::vector<double>& y, const std::vector<double>& c,
            const std::vector<double>& g) {
  const std::vector<double> out = expected_out(x.data(), y.data(), c.data());
  double l = 0.0;
  for (int64_t v = 0; v < kN; ++v) l += g[v] * out[v];
  return l;
}

void test_forward_and_backward(int64_t stride) {
  std::mt19937_64 rng(7 + stride);
  std::uniform_real_distribution<double> u(0.05, 0.5);
  std::normal_distribution<double> normal(0.0, 1.0);
  std::vector<double> x(kN), y(kN), c(kNumOps), g(kN);
  for (auto& v : x) v = u(rng);
  for (auto& v : y) v = u(rng);
  for (auto& v : c) v = normal(rng);
  for (auto& v : g) v = normal(rng);
  const std::vector<int32_t> outs = outputs();

  std::vector<double> scratch(bwd_slots(kNumWires, kN) * stride);
  std::vector<double> out(kN);
  forward_row<double, double>(x.data(), y.data(), c.data(), out.data(), kN, kM, kGates.data(), kNumGates,
                              outs.data(), kNumWires, scratch.data(), stride);
  const std::vector<double> want = expected_out(x.data(), y.data(), c.data());
  for (int64_t v = 0; v < kN; ++v) NCL_CHECK_NEAR(out[v], want[v], 1e-14);

  std::vector<double> gx(kN), gy(kN), gc(kNumOps);
  backward_row<double, double>(g.data(), x.data(), y.data(), c.data(), gx.data(), gy.data(), gc.data(), kN, kM,
                               kGates.data(), kNumGates, outs.data(), kNumWires, scratch.data(), stride);
  const double h = 1e-6;
  auto fd = [&](std::vector<double>& t, size_t i) {
    const double keep = t[i];
    t[i] = keep + h;
    const double up = loss(x, y, c, g);
    t[i] = keep - h;
    const double down = loss(x, y, c, g);
    t[i] = keep;
    return (up - down) / (2 * h);
  };
  for (size_t v = 0; v < kN; ++v) {
    NCL_CHECK_NEAR(gx[v], fd(x, v), 1e-7);
    NCL_CHECK_NEAR(gy[v], fd(y, v), 1e-7);
  }
  for (size_t k = 0; k < kNumOps; ++k) NCL_CHECK_NEAR(gc[k], fd(c, k), 1e-7);
}

void test_hard_bits_fold_to_one_hot() {
  // Bits (1, 0) fold to e_1, and the fold's gradient needs no division by p or 1 − p.
  const double w[2] = {1.0, 0.0};
  const int32_t bits[2] = {0, 1};
  double t[2 * kN - 1];
  fold_levels(w, 1, bits, kM, t);
  for (int64_t v = 0; v < kN; ++v) NCL_CHECK(t[kN - 1 + v] == (v == 1 ? 1.0 : 0.0));
  const double g[kN] = {0.5, 2.0, -1.0, 3.0};
  double dw[2] = {0.0, 0.0}, adj[kN];
  const double gc = fold_backward(g, 1.0, w, dw, 1, bits, kM, t, adj);
  NCL_CHECK(gc == 2.0);
  NCL_CHECK(dw[0] == 2.0 - 0.5);  // ∂/∂p_0 at bit 1 = 0: g[1] − g[0]
  NCL_CHECK(dw[1] == 3.0 - 2.0);  // ∂/∂p_1 at bit 0 = 1: g[3] − g[1]
}

}  // namespace

int main() {
  test_forward_and_backward(1);
  test_forward_and_backward(3);  // the (slots, B) layout of the CUDA kernels, B = 3
  test_hard_bits_fold_to_one_hot();
  if (ncl_test::failures) std::printf("%d failures\n", ncl_test::failures);
  return ncl_test::failures ? 1 : 0;
}
