// Unit tests of csrc/cpu/mul_units.h: the units' layout is a permutation of 0..n-1 with the documented classes, and
// MUL's forward through it equals the plain sum over all pairs (i, j) of i·j mod n, in double, on signed random rows
// with zeros on part of y, for every power of two up to 256.
#include <random>
#include <vector>

#include "check.h"
#include "mul_units.h"

using namespace ncl;

namespace {

std::mt19937_64 rng(7);

std::vector<double> random_row(int64_t n, bool with_zeros) {
  std::normal_distribution<double> normal;
  std::vector<double> v(n);
  for (int64_t i = 0; i < n; ++i) v[i] = with_zeros && i % 3 == 1 ? 0.0 : normal(rng);
  return v;
}

void test_layout() {
  NCL_CHECK(UnitLayout(12).k == -1 && UnitLayout(1).k == -1 && UnitLayout(12).index.empty());
  for (int64_t n = 2; n <= 256; n *= 2) {
    const UnitLayout L(n);
    std::vector<int> seen(n, 0);
    for (const int32_t i : L.index) ++seen[i];
    for (int64_t i = 0; i < n; ++i) NCL_CHECK(seen[i] == 1);
    NCL_CHECK(L.index[n - 1] == 0 && L.offset[L.k] == n - 1);
    NCL_CHECK(L.pyramid_size < 2 * n);  // UnitScratch's bound
    for (int e = 0; e < L.k; ++e)  // class e: the indices with exactly e factors of 2
      for (int32_t p = L.offset[e]; p < L.offset[e + 1]; ++p)
        NCL_CHECK(L.index[p] % (1 << e) == 0 && (L.index[p] >> e) % 2 == 1);
  }
}

void test_forward() {
  for (int64_t n = 2; n <= 256; n *= 2) {
    UnitScratch<double> s(n);
    const auto x = random_row(n, false), y = random_row(n, true);
    std::vector<double> want(n, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < n; ++j) want[i * j % n] += x[i] * y[j];
    std::vector<double> out(n);
    for (int64_t i = 0; i < n; ++i) out[i] = x[(i + 1) % n];  // mul_units_forward adds to out
    mul_units_forward(s, x.data(), y.data(), out.data());
    for (int64_t i = 0; i < n; ++i) NCL_CHECK_NEAR(out[i], want[i] + x[(i + 1) % n], 1e-12);
  }
}

// The per-thread scratch follows the row length it is asked for.
void test_thread_scratch() {
  NCL_CHECK(unit_scratch<float>(8).layout.k == 3);
  NCL_CHECK(unit_scratch<float>(32).layout.k == 5 && unit_scratch<float>(32).acc.size() == 32);
  NCL_CHECK(&unit_scratch<float>(32) == &unit_scratch<float>(32));
}

}  // namespace

int main() {
  test_layout();
  test_forward();
  test_thread_scratch();
  if (ncl_test::failures == 0) std::printf("mul_units: all tests passed\n");
  return ncl_test::failures == 0 ? 0 : 1;
}
