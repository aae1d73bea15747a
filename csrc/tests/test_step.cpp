// Unit tests of the step math shared by the CPU and CUDA kernels: csrc/include/ncl/stack.h (the adjoints of
// the pointer moves against their forward definitions), ncl/control.h (the per-column gradient coefficients
// against the per-line ip gradient) and ncl/halting.h.
#include <random>
#include <vector>

#include "check.h"
#include "ncl/control.h"
#include "ncl/halting.h"
#include "ncl/stack.h"

using namespace ncl;

namespace {

std::mt19937_64 rng(7);
double uniform() { return std::uniform_real_distribution<double>(-1.0, 1.0)(rng); }

// <up(p), v> = <p, up^T v> and <down(p), v> = <p, down^T v> for random p and v, at every size S >= 2.
void test_pointer_move_adjoints() {
  for (int64_t S = 2; S <= 9; ++S) {
    std::vector<double> p(S), v(S);
    for (auto& x : p) x = uniform();
    for (auto& x : v) x = uniform();
    double up_v = 0, p_upt = 0, down_v = 0, p_downt = 0;
    for (int64_t s = 0; s < S; ++s) {
      up_v += stack::up_at<double>(p.data(), s, S) * v[s];
      down_v += stack::down_at<double>(p.data(), s, S) * v[s];
      p_upt += p[s] * stack::up_adjoint_at(v.data(), s, S);
      p_downt += p[s] * stack::down_adjoint_at(v.data(), s);
    }
    NCL_CHECK_NEAR(up_v, p_upt, 1e-12);
    NCL_CHECK_NEAR(down_v, p_downt, 1e-12);
  }
}

// The moves keep a pointer's mass (they saturate, nothing falls off), and up never reaches position 0.
void test_pointer_moves_keep_mass() {
  const int64_t S = 6;
  std::vector<double> p(S);
  for (auto& x : p) x = std::fabs(uniform());
  double total = 0, up_total = 0, down_total = 0;
  for (int64_t s = 0; s < S; ++s) {
    total += p[s];
    up_total += stack::up_at<double>(p.data(), s, S);
    down_total += stack::down_at<double>(p.data(), s, S);
  }
  NCL_CHECK_NEAR(up_total, total, 1e-12);
  NCL_CHECK_NEAR(down_total, total, 1e-12);
  NCL_CHECK(stack::up_at<double>(p.data(), 0, S) == 0.0);
  NCL_CHECK(stack::down_at<double>(p.data(), S - 1, S) == 0.0);
}

// Σ_k op[k] op_coef(k) = ip_grad, for random opcode rows; and the sequential set is every op but HALT, JMP..RET.
void test_control_coefficients() {
  int sequential = 0;
  for (int k = 0; k < control::kNumOps; ++k) sequential += control::is_sequential(k);
  NCL_CHECK(sequential == control::kNumOps - 6);
  NCL_CHECK(!control::is_sequential(control::kHalt) && !control::is_sequential(control::kRet) &&
            control::is_sequential(0) && control::is_sequential(control::kJmp - 1));
  for (int trial = 0; trial < 20; ++trial) {
    std::vector<double> row(control::kNumOps);
    for (auto& x : row) x = std::fabs(uniform());
    const double J = uniform(), D = uniform(), dR = uniform(), gh = uniform(), c = std::fabs(uniform());
    double sum = 0;
    for (int k = 0; k < control::kNumOps; ++k) sum += row[k] * control::op_coef(k, J, D, dR, gh, c);
    const auto o = control::line_ops<double>(row.data());
    NCL_CHECK_NEAR(sum, control::ip_grad(o, J, D, dR, gh, c), 1e-12);
    // Jumped and moved-on mass plus HALT and RET account for the whole line.
    const double ip = std::fabs(uniform());
    double all = 0;
    for (double x : row) all += x;
    NCL_CHECK_NEAR(control::jumped(o, ip, c) + control::moved_on(o, ip, c) + ip * (o.halt + o.ret), ip * all, 1e-12);
  }
}

void test_halting() {
  NCL_CHECK_NEAR(halting::accumulate(0.5, 0.25, 2.0), 1.0, 1e-15);
  NCL_CHECK_NEAR(halting::expected_steps(3.0, 4.0, 0.5), 5.0, 1e-15);
  NCL_CHECK_NEAR(halting::h_grad(1.5, 4.0, 0.25), 2.5, 1e-15);
}

}  // namespace

int main() {
  test_pointer_move_adjoints();
  test_pointer_moves_keep_mass();
  test_control_coefficients();
  test_halting();
  if (ncl_test::failures) std::printf("%d failures\n", ncl_test::failures);
  return ncl_test::failures ? 1 : 0;
}
