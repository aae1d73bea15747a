// Unit tests of the shared math in csrc/include/ncl/: closed forms against central finite differences.
#include <cstdio>
#include <random>
#include <vector>

#include "check.h"
#include "ncl/memory.h"

using namespace ncl;

namespace {

std::mt19937_64 rng(1234);
double uniform(double lo, double hi) { return std::uniform_real_distribution<double>(lo, hi)(rng); }

void test_soft_write_grad() {
  for (int t = 0; t < 100; ++t) {
    const double g = uniform(-2, 2), m = uniform(-2, 2), a = uniform(0, 1), v = uniform(-2, 2), h = 1e-6;
    const auto gr = soft_write_value_grad<double>(g, m, a, v);
    NCL_CHECK_NEAR(gr.m, g * (soft_write_value(m + h, a, v) - soft_write_value(m - h, a, v)) / (2 * h), 1e-8);
    NCL_CHECK_NEAR(gr.a, g * (soft_write_value(m, a + h, v) - soft_write_value(m, a - h, v)) / (2 * h), 1e-8);
    NCL_CHECK_NEAR(gr.v, g * (soft_write_value(m, a, v + h) - soft_write_value(m, a, v - h)) / (2 * h), 1e-8);
  }
  NCL_CHECK_NEAR(soft_write_value(3.0, 1.0, 7.0), 7.0, 0);  // a hard write replaces the value
  NCL_CHECK_NEAR(soft_write_value(3.0, 0.0, 7.0), 3.0, 0);
}

double cosine_of(const std::vector<double>& k, const std::vector<double>& m) {
  const int64_t D = static_cast<int64_t>(k.size());
  return eps_cosine(dot<double>(k.data(), m.data(), D), std::sqrt(dot<double>(k.data(), k.data(), D)),
                    std::sqrt(dot<double>(m.data(), m.data(), D)));
}

// d cos / dk and d cos / dm from cosine_alpha and cosine_self_scale, against finite differences.
void test_cosine_grad() {
  const int D = 7;
  for (int t = 0; t < 20; ++t) {
    std::vector<double> k(D), m(D);
    for (int d = 0; d < D; ++d) k[d] = uniform(-1, 1), m[d] = uniform(-1, 1);
    const double kn = std::sqrt(dot<double>(k.data(), k.data(), D)), mn = std::sqrt(dot<double>(m.data(), m.data(), D));
    const double dt = dot<double>(k.data(), m.data(), D), dcos = uniform(-2, 2), h = 1e-6;
    const double alpha = cosine_alpha(dcos, kn, mn);
    const double kscale = cosine_self_scale(alpha * dt, kn), mscale = cosine_self_scale(alpha * dt, mn);
    for (int d = 0; d < D; ++d) {
      auto kp = k, km = k, mp = m, mm = m;
      kp[d] += h, km[d] -= h, mp[d] += h, mm[d] -= h;
      NCL_CHECK_NEAR(alpha * m[d] - kscale * k[d], dcos * (cosine_of(kp, m) - cosine_of(km, m)) / (2 * h), 1e-7);
      NCL_CHECK_NEAR(alpha * k[d] - mscale * m[d], dcos * (cosine_of(k, mp) - cosine_of(k, mm)) / (2 * h), 1e-7);
    }
  }
}

void test_softmax_grad() {
  const int N = 5;
  std::vector<double> z(N), g(N), p(N);
  for (int i = 0; i < N; ++i) z[i] = uniform(-3, 3), g[i] = uniform(-1, 1);
  auto softmax = [&](const std::vector<double>& x, int i) {
    double s = 0;
    for (double v : x) s += std::exp(v);
    return std::exp(x[i]) / s;
  };
  for (int i = 0; i < N; ++i) p[i] = softmax(z, i);
  const double gp = dot<double>(g.data(), p.data(), N), h = 1e-6;
  for (int j = 0; j < N; ++j) {
    auto zp = z, zm = z;
    zp[j] += h, zm[j] -= h;
    double fd = 0;
    for (int i = 0; i < N; ++i) fd += g[i] * (softmax(zp, i) - softmax(zm, i)) / (2 * h);
    NCL_CHECK_NEAR(softmax_grad(p[j], g[j], gp), fd, 1e-7);
  }
}

void test_zero_vectors_are_finite() {
  NCL_CHECK(inv_or_zero(0.0) == 0.0);
  NCL_CHECK(std::isfinite(cosine_self_scale(1.5, 0.0)));
  NCL_CHECK(std::isfinite(eps_cosine(0.0, 0.0, 0.0)));
  NCL_CHECK_NEAR(inv_or_zero(4.0f), 0.25f, 0);
}

}  // namespace

int main() {
  test_soft_write_grad();
  test_cosine_grad();
  test_softmax_grad();
  test_zero_vectors_are_finite();
  std::printf("math tests: %d failure(s)\n", ncl_test::failures);
  return ncl_test::failures == 0 ? 0 : 1;
}
