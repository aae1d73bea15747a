// Unit tests of csrc/include/ncl/alu.h: the integer semantics of each op, and the structured forward and
// backward formulas against the plain table definitions (sums over all pairs (i, j) through apply_op).
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "ncl/alu.h"

using namespace ncl;
using namespace ncl::alu;

namespace {

std::mt19937_64 rng(99);

void test_integer_semantics() {
  const int64_t n = 8;
  NCL_CHECK(apply_op(ADD, 5, 6, n) == 3);
  NCL_CHECK(apply_op(SUB, 2, 5, n) == 5);
  NCL_CHECK(apply_op(MUL, 3, 5, n) == 7);
  NCL_CHECK(apply_op(DIV, 7, 2, n) == 3);
  NCL_CHECK(apply_op(DIV, 7, 0, n) == 0);  // division by zero gives 0
  NCL_CHECK(apply_op(MOD, 7, 3, n) == 1);
  NCL_CHECK(apply_op(MOD, 7, 0, n) == 0);
  NCL_CHECK(apply_op(EQ, 4, 4, n) == 1 && apply_op(NE, 4, 4, n) == 0);
  NCL_CHECK(apply_op(LT, 3, 4, n) == 1 && apply_op(LT, 4, 4, n) == 0 && apply_op(LE, 4, 4, n) == 1);
  NCL_CHECK(apply_op(MIN, 3, 6, n) == 3 && apply_op(MAX, 3, 6, n) == 6);
  NCL_CHECK(apply_op(AND, 2, 5, n) == 1 && apply_op(AND, 2, 0, n) == 0);  // logical, not bitwise (2 & 5 = 0)
  NCL_CHECK(apply_op(OR, 0, 0, n) == 0 && apply_op(OR, 0, 3, n) == 1);
  NCL_CHECK(apply_op(INC, 7, 0, n) == 0 && apply_op(DEC, 0, 0, n) == 7);
  NCL_CHECK(apply_op(NOT, 0, 0, n) == 1 && apply_op(NOT, 3, 0, n) == 0);
  NCL_CHECK(std::string(op_name(0)) == "ADD" && std::string(op_name(kNumOps - 1)) == "NOT");
}

struct RowData {
  std::vector<double> x, y, g, px, qx, py, qy, pgx, qgx, pgy, qgy;
  Row<double> r{};
};

// Fills the running sums exactly as the kernels define them.
void build(RowData& d, int64_t n) {
  for (auto* v : {&d.px, &d.qx, &d.py, &d.qy, &d.pgx, &d.qgx, &d.pgy, &d.qgy}) v->assign(n, 0.0);
  double sx = 0, sy = 0, peq = 0, plt = 0;
  for (int64_t c = 0; c < n; ++c) {
    for (int64_t i = 0; i < n; ++i) {
      if (i < c) d.px[c] += d.x[i], d.py[c] += d.y[i], d.pgx[c] += d.x[i] * d.g[i], d.pgy[c] += d.y[i] * d.g[i];
      if (i > c) d.qx[c] += d.x[i], d.qy[c] += d.y[i], d.qgx[c] += d.x[i] * d.g[i], d.qgy[c] += d.y[i] * d.g[i];
    }
    sx += d.x[c], sy += d.y[c], peq += d.x[c] * d.y[c];
  }
  for (int64_t i = 0; i < n; ++i) plt += d.x[i] * d.qy[i];
  d.r = Row<double>{n, d.x.data(), d.y.data(), d.px.data(), d.qx.data(), d.py.data(), d.qy.data(), sx, sy, peq, plt,
                    d.g.data(), d.pgx.data(), d.qgx.data(), d.pgy.data(), d.qgy.data()};
}

// Structured forward (+ the general scatter), both gradient formulas and the structured ops' coefficient gradients
// equal the table definitions, for each op alone, on signed random operands (nothing assumes distributions).
void test_against_tables(int64_t n) {
  std::uniform_real_distribution<double> u(-1, 1);
  RowData d;
  d.x.resize(n), d.y.resize(n), d.g.resize(n);
  for (int64_t i = 0; i < n; ++i) d.x[i] = u(rng), d.y[i] = u(rng), d.g[i] = u(rng);
  build(d, n);
  double dx[kNumOps], dy[kNumOps];
  for (int k = 0; k < kNumOps; ++k) {
    const bool binary = k < kNumBinary;
    double coef[kNumOps] = {};
    coef[k] = 1.0;
    std::vector<double> table(n, 0.0), out(n, 0.0);
    for (int64_t i = 0; i < n; ++i)
      for (int64_t j = 0; j < (binary ? n : 1); ++j) table[apply_op(k, i, j, n)] += d.x[i] * (binary ? d.y[j] : 1.0);
    for (int64_t c = 0; c < n; ++c) out[c] = structured_out(c, d.r, coef, active_ops(coef));
    if (k == MUL || k == DIV || k == MOD)
      for (int64_t i = 0; i < n; ++i)
        for (int64_t j = 0; j < n; ++j) {
          const int64_t t = k == MUL ? mul_index(i, j, n) : k == DIV ? div_index(i, j) : mod_index(i, j);
          out[t] += d.x[i] * d.y[j];
        }
    for (int64_t c = 0; c < n; ++c) NCL_CHECK_NEAR(out[c], table[c], 1e-12);
    if (k >= kNumPair) {  // the coefficient's gradient <g, op_k(x, y)>
      double gcoef[kNumOps], want = 0;
      structured_coef_grads(d.r, gcoef);
      for (int64_t c = 0; c < n; ++c) want += d.g[c] * table[c];
      NCL_CHECK_NEAR(gcoef[k], want, 1e-12);
    }
    for (int64_t i = 0; i < n; ++i) {
      grad_x_terms(i, d.r, dx);
      double want = 0;
      for (int64_t j = 0; j < (binary ? n : 1); ++j) want += (binary ? d.y[j] : 1.0) * d.g[apply_op(k, i, j, n)];
      NCL_CHECK_NEAR(dx[k], want, 1e-12);
    }
    if (!binary) continue;
    for (int64_t j = 0; j < n; ++j) {
      grad_y_terms(j, d.r, dy);
      double want = 0;
      for (int64_t i = 0; i < n; ++i) want += d.x[i] * d.g[apply_op(k, i, j, n)];
      NCL_CHECK_NEAR(dy[k], want, 1e-12);
    }
  }
}

void test_skip_mask() {
  double coef[kNumOps];
  for (auto& c : coef) c = 1e-13;
  coef[MUL] = 1.0;
  NCL_CHECK(active_ops(coef) == (1u << MUL));
  coef[ADD] = 1e-11;  // above 2^-40 of the largest: kept
  NCL_CHECK(active_ops(coef) == ((1u << MUL) | (1u << ADD)));
  for (auto& c : coef) c = 0.0;
  NCL_CHECK(active_ops(coef) == 0u);
}

}  // namespace

int main() {
  test_integer_semantics();
  for (int64_t n : {2, 3, 8, 13, 16}) test_against_tables(n);
  test_skip_mask();
  if (ncl_test::failures) std::printf("%d failures\n", ncl_test::failures);
  else std::printf("alu tests passed\n");
  return ncl_test::failures ? 1 : 0;
}
