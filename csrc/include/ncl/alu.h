// Per-element math of the table ALU mixture (ncl_kernels.alu_mix), shared by the CPU (csrc/cpu/alu.cpp) and
// CUDA (csrc/cuda/alu.cu) kernels, so the CPU tests check the arithmetic the GPU runs.
//
// The op:  out[c] = Σ_k coef_k · op_k(x, y)[c],  op_k(x, y)[c] = Σ_{i,j: T_k(i,j)=c} x_i y_j  (binary k),
//                                                 op_k(x)[c]    = Σ_{i: T_k(i)=c} x_i         (unary k).
// The op order is ALU_OPS of ncl_kernels/isa.py (enum alu::Op, generated into ncl/opcodes.h).
//
// Structure used instead of n×n tables (docs/design.md §3 "Where the time goes"):
//   ADD, SUB           circular convolution / correlation, O(n) per output;
//   EQ NE LT LE        two numbers per row, peq = Σ x_i y_i and plt = Σ_i x_i Σ_{j>i} y_j;
//   MIN MAX            O(1) per output from prefix / suffix sums;
//   AND OR NOT         x[0], y[0] and the row sums;  INC DEC: rolls;
//   MUL DIV MOD        the only ops that need the general table T(i,j), computed on the fly.
// Nothing assumes x and y are distributions: sx = Σ x and sy = Σ y appear explicitly.
#pragma once

#include "ncl/common.h"
#include "ncl/opcodes.h"

namespace ncl {
namespace alu {

// The ops (enum Op) and their order are generated from ncl_kernels/isa.py, in ncl/opcodes.h.
constexpr int kNumBinary = isa::kNumBinary;
constexpr int kNumUnary = isa::kNumUnary;
constexpr int kNumOps = isa::kNumAluOps;

// An op is skipped in the forward pass when |coef_k| <= kSkipRel · max_k' |coef_k'| in its row. Every op's
// output has ℓ1 mass at most ‖x‖₁‖y‖₁ (or ‖x‖₁), as does the dominant term, so the skipped terms move the
// row by at most 16·2^-40 = 2^-36 of its ℓ1 mass: below fp32 resolution of the row's large entries. A
// sharp program (weights e^-30 ≈ 9.4e-14 relative) thus computes one op. Equals ncl_kernels.alu.SKIP_REL.
constexpr double kSkipRel = 9.094947017729282e-13;  // 2^-40

// Names in op order (ncl_kernels._C.alu_op_names, compared with ncl_kernels.isa.ALU_OPS by the tests).
inline const char* op_name(int k) {
  constexpr const char* names[kNumOps] = {"ADD", "SUB", "MUL", "DIV", "MOD", "EQ",  "NE",  "LT",
                                          "LE",  "MIN", "MAX", "AND", "OR",  "INC", "DEC", "NOT"};
  return k >= 0 && k < kNumOps ? names[k] : "";
}

// Integer semantics on Z_n (operands in 0..n-1): arithmetic mod n, DIV/MOD by 0 give 0, comparisons 0/1,
// AND/OR logical. Unary ops act on a.
NCL_HOST_DEVICE int64_t apply_op(int k, int64_t a, int64_t b, int64_t n) {
  switch (k) {
    case ADD: return (a + b) % n;
    case SUB: return ((a - b) % n + n) % n;
    case MUL: return (a * b) % n;
    case DIV: return b ? a / b : 0;
    case MOD: return b ? a % b : 0;
    case EQ: return a == b;
    case NE: return a != b;
    case LT: return a < b;
    case LE: return a <= b;
    case MIN: return a < b ? a : b;
    case MAX: return a < b ? b : a;
    case AND: return a != 0 && b != 0;
    case OR: return a != 0 || b != 0;
    case INC: return (a + 1) % n;
    case DEC: return (a + n - 1) % n;
    case NOT: return a == 0;
    default: return 0;
  }
}

// Bit k set: op k is computed in this row's forward pass (see kSkipRel).
template <typename A> NCL_HOST_DEVICE unsigned active_ops(const A* coef) {
  A mx = A(0);
  for (int k = 0; k < kNumOps; ++k) mx = fabs(coef[k]) > mx ? fabs(coef[k]) : mx;
  unsigned mask = 0;
  for (int k = 0; k < kNumOps; ++k)
    if (fabs(coef[k]) > A(kSkipRel) * mx) mask |= 1u << k;
  return mask;
}

// One row's operands and their running sums (all length n, accumulation type A):
//   px[c] = Σ_{i<c} x_i,  qx[c] = Σ_{i>c} x_i  (same for y);  for the backward also
//   pgx[c] = Σ_{i<c} x_i g_i,  qgx[c] = Σ_{i>c} x_i g_i  (same for y), with g the output gradient.
template <typename A> struct Row {
  int64_t n;
  const A *x, *y, *px, *qx, *py, *qy;
  A sx, sy, peq, plt;  // Σx, Σy, Σ_i x_i y_i, Σ_i x_i qy[i]
  const A *g, *pgx, *qgx, *pgy, *qgy;
};

// Σ_k coef_k op_k[c] over the structured ops (ADD, SUB and EQ..NOT) whose bit is set in `mask`.
template <typename A> NCL_HOST_DEVICE A structured_out(int64_t c, const Row<A>& r, const A* coef, unsigned mask) {
  const int64_t n = r.n;
  const A* x = r.x;
  const A* y = r.y;
  A out = A(0);
  if (mask & ((1u << ADD) | (1u << SUB))) {
    // ADD: Σ_i x_i y[(c-i) mod n];  SUB: Σ_i x_i y[(i-c) mod n]. One pass for both.
    A add = A(0), sub = A(0);
    for (int64_t i = 0; i < n; ++i) {
      const int64_t ja = c >= i ? c - i : c - i + n, js = i >= c ? i - c : i - c + n;
      add += x[i] * y[ja];
      sub += x[i] * y[js];
    }
    out += coef[ADD] * add + coef[SUB] * sub;
  }
  const A sxy = r.sx * r.sy, x0 = x[0], y0 = y[0];
  // Ops with 0/1 results put their mass p on 1 and the rest, sxy - p, on 0.
  A on_one = A(0), on_zero = A(0);
  auto flag = [&](int k, A p) {
    if (mask & (1u << k)) {
      on_one += coef[k] * p;
      on_zero += coef[k] * (sxy - p);
    }
  };
  flag(EQ, r.peq);
  flag(NE, sxy - r.peq);
  flag(LT, r.plt);
  flag(LE, r.plt + r.peq);
  flag(AND, (r.sx - x0) * (r.sy - y0));
  flag(OR, sxy - x0 * y0);
  if (mask & (1u << NOT)) {
    on_one += coef[NOT] * x0;
    on_zero += coef[NOT] * (r.sx - x0);
  }
  if (c == 1) out += on_one;
  if (c == 0) out += on_zero;
  // min(i,j) = c: i = c and j >= c, or j = c and i > c. max symmetric with prefixes.
  if (mask & (1u << MIN)) out += coef[MIN] * (x[c] * (y[c] + r.qy[c]) + y[c] * r.qx[c]);
  if (mask & (1u << MAX)) out += coef[MAX] * (x[c] * (y[c] + r.py[c]) + y[c] * r.px[c]);
  if (mask & (1u << INC)) out += coef[INC] * x[c == 0 ? n - 1 : c - 1];
  if (mask & (1u << DEC)) out += coef[DEC] * x[c == n - 1 ? 0 : c + 1];
  return out;
}

// The ops that need the general table: (MUL, DIV, MOD) targets of the pair (i, j).
NCL_HOST_DEVICE int64_t mul_index(int64_t i, int64_t j, int64_t n) { return (i * j) % n; }
NCL_HOST_DEVICE int64_t div_index(int64_t i, int64_t j) { return j ? i / j : 0; }
NCL_HOST_DEVICE int64_t mod_index(int64_t i, int64_t j) { return j ? i % j : 0; }
constexpr unsigned kGeneralMask = (1u << MUL) | (1u << DIV) | (1u << MOD);

// The support threshold of an operand of n entries accumulated in type A, relative to its largest entry. Dropping
// the entries at or below it changes any pair sum by at most n·thr·max|v|·‖w‖₁ ≤ n·thr·‖v‖₁‖w‖₁ (w the other
// operand). In float that is capped at 2^-26 of the scale ‖v‖₁‖w‖₁, a quarter of the fp32 rounding of the same
// sum (2^-24 of that scale): thr = 2^-26 / n, 2^-33 at n = 128. In double it is kSkipRel (2^-40), which keeps the
// dropped terms at 2^-33 of the scale at n = 128, the float64 tests' tolerance. A sharp program's leaks (weights
// e^-β ≈ 9.4e-14 at β = 30, fed back through every register write) pile up in the registers' other entries
// step by step; at 2^-40 they crossed the threshold within tens of steps (32 entries a register on average after 64
// steps of the benchmark's loop, and the pair ops became O(n²) again).
template <typename A> NCL_HOST_DEVICE A support_threshold(int64_t n) {
  return sizeof(A) < sizeof(double) ? A(1.4901161193847656e-08 / static_cast<double>(n)) : A(kSkipRel);
}

// Support of an operand: the indices i (ascending) with |v_i| > support_threshold · max|v|, written to idx; returns
// their count. The fused CPU kernels sum the pair ops (ADD SUB MUL DIV MOD) over supports only. On a sharp machine
// a register is one-hot up to ~1e-13 leaks, so a pair op costs O(n) instead of O(n²).
template <typename A> NCL_HOST_DEVICE int64_t support(const A* v, int64_t n, int32_t* idx) {
  A mx = A(0);
  NCL_SIMD_MAX(mx)
  for (int64_t i = 0; i < n; ++i) mx = fabs(v[i]) > mx ? fabs(v[i]) : mx;
  const A thr = support_threshold<A>(n) * mx;
  int64_t count = 0;
  for (int64_t i = 0; i < n; ++i)
    if (fabs(v[i]) > thr) idx[count++] = static_cast<int32_t>(i);
  return count;
}

// The pair ops' targets T_k(i, j) for a fixed j, stepped along i without a division per pair: moving i to
// i+1 adds 1 to ADD and SUB (mod n), j to MUL (mod n), and 1 to the remainder of i / j, which carries into
// the quotient. seek() jumps to any i; its quotients come from a floating reciprocal and one integer
// correction, because a hardware division per pair cost more than everything else in the kernel.
constexpr unsigned kPairMask = (1u << ADD) | (1u << SUB) | (1u << MUL) | (1u << DIV) | (1u << MOD);
constexpr int kNumPair = 5;  // ADD SUB MUL DIV MOD: the first five ops, target t[k] of op k

// floor(a / d) and a mod d for 0 <= a < 2^50 and d >= 1, given inv = fl(1/d): the product a·inv is then
// within one of the quotient, and one integer correction makes it exact.
NCL_HOST_DEVICE void divmod_by(int64_t a, int64_t d, double inv, int64_t& q, int64_t& r) {
  q = static_cast<int64_t>(static_cast<double>(a) * inv);
  r = a - q * d;
  if (r >= d) { ++q; r -= d; }
  if (r < 0) { --q; r += d; }
}

struct PairTargets {
  int64_t n, j, i = -2, t[kNumPair] = {};
  double inv_n, inv_j;
  NCL_HOST_DEVICE PairTargets(int64_t n_, int64_t j_)
      : n(n_), j(j_), inv_n(1.0 / static_cast<double>(n_)), inv_j(j_ ? 1.0 / static_cast<double>(j_) : 0.0) {}
  NCL_HOST_DEVICE void seek(int64_t i_new) {
    i = i_new;
    int64_t unused;
    t[ADD] = i + j >= n ? i + j - n : i + j;
    t[SUB] = i >= j ? i - j : i - j + n;
    divmod_by(i * j, n, inv_n, unused, t[MUL]);
    if (j) {
      divmod_by(i, j, inv_j, t[DIV], t[MOD]);
    } else {
      t[DIV] = t[MOD] = 0;
    }
  }
  // Moves to i_new: one step when it is the next index, else a seek.
  NCL_HOST_DEVICE void move_to(int64_t i_new) {
    if (i_new != i + 1) return seek(i_new);
    i = i_new;
    if (++t[ADD] == n) t[ADD] = 0;
    if (++t[SUB] == n) t[SUB] = 0;
    t[MUL] += j;
    if (t[MUL] >= n) t[MUL] -= n;
    if (j && ++t[MOD] == j) {
      t[MOD] = 0;
      ++t[DIV];
    }
  }
};

// Backward. With L_k = Σ_{i,j} x_i y_j g[T_k(i,j)] (or Σ_i x_i g[T_k(i)]), which is bilinear:
//   dx[i] = ∂L_k/∂x_i  for every op k (so grad_coef_k = Σ_i x_i dx_k[i] = L_k),
//   dy[j] = ∂L_k/∂y_j  for the binary ops.
// grad_x = Σ_k coef_k dx_k, grad_y = Σ_k coef_k dy_k. Every op is needed here, whatever its coefficient,
// because grad_coef_k = L_k does not vanish with coef_k.
//
// The O(1)-per-index terms of the ops after the pair ops (EQ..NOT); dx[0..kNumPair) is left alone.
template <typename A> NCL_HOST_DEVICE void grad_x_structured(int64_t i, const Row<A>& r, A* dx) {
  const int64_t n = r.n;
  const A* g = r.g;
  const A g0 = g[0], g1 = g[1], yi = r.y[i], sy = r.sy, y0 = r.y[0];
  const A ge = r.qy[i] + yi;  // Σ_{j>=i} y_j
  dx[EQ] = g1 * yi + g0 * (sy - yi);
  dx[NE] = g0 * yi + g1 * (sy - yi);
  dx[LT] = g1 * r.qy[i] + g0 * (sy - r.qy[i]);
  dx[LE] = g1 * ge + g0 * (sy - ge);
  dx[MIN] = r.pgy[i] + g[i] * ge;
  dx[MAX] = r.qgy[i] + g[i] * (r.py[i] + yi);
  dx[AND] = i == 0 ? g0 * sy : g1 * (sy - y0) + g0 * y0;
  dx[OR] = i == 0 ? g0 * y0 + g1 * (sy - y0) : g1 * sy;
  dx[INC] = g[i == n - 1 ? 0 : i + 1];
  dx[DEC] = g[i == 0 ? n - 1 : i - 1];
  dx[NOT] = i == 0 ? g1 : g0;
}

template <typename A> NCL_HOST_DEVICE void grad_y_structured(int64_t j, const Row<A>& r, A* dy) {
  const A* g = r.g;
  const A g0 = g[0], g1 = g[1], xj = r.x[j], sx = r.sx, x0 = r.x[0];
  const A le = r.px[j] + xj;  // Σ_{i<=j} x_i
  dy[EQ] = g1 * xj + g0 * (sx - xj);
  dy[NE] = g0 * xj + g1 * (sx - xj);
  dy[LT] = g1 * r.px[j] + g0 * (sx - r.px[j]);
  dy[LE] = g1 * le + g0 * (sx - le);
  dy[MIN] = r.pgx[j] + g[j] * (r.qx[j] + xj);
  dy[MAX] = r.qgx[j] + g[j] * le;
  dy[AND] = j == 0 ? g0 * sx : g1 * (sx - x0) + g0 * x0;
  dy[OR] = j == 0 ? g0 * x0 + g1 * (sx - x0) : g1 * sx;
}

// grad_coef_k = L_k = Σ_c g[c] op_k(x, y)[c] of the ops after the pair ops, from their outputs' structure
// (structured_out) instead of Σ_i x_i dx_k[i]: the 0/1 ops put mass p on 1 and sxy - p on 0, so theirs is
// g1·p + g0·(sxy - p), O(1); MIN, MAX, INC and DEC are one pass over c. Needs the row's running sums of x and y
// (not of x·g, y·g). gcoef[kNumPair..kNumOps) is written.
template <typename A> NCL_HOST_DEVICE void structured_coef_grads(const Row<A>& r, A* gcoef) {
  const int64_t n = r.n;
  const A *x = r.x, *y = r.y, *g = r.g;
  const A g0 = g[0], g1 = g[1], sxy = r.sx * r.sy, x0 = x[0], y0 = y[0];
  auto flag = [&](A p) { return g1 * p + g0 * (sxy - p); };
  gcoef[EQ] = flag(r.peq);
  gcoef[NE] = flag(sxy - r.peq);
  gcoef[LT] = flag(r.plt);
  gcoef[LE] = flag(r.plt + r.peq);
  gcoef[AND] = flag((r.sx - x0) * (r.sy - y0));
  gcoef[OR] = flag(sxy - x0 * y0);
  gcoef[NOT] = g1 * x0 + g0 * (r.sx - x0);
  A mn = A(0), mx = A(0), inc = A(0), dec = A(0);
  // The interior c; c = 0 and n - 1 wrap for INC and DEC.
  NCL_PRAGMA(omp simd reduction(+ : mn, mx, inc, dec))
  for (int64_t c = 1; c < n - 1; ++c) {
    mn += g[c] * (x[c] * (y[c] + r.qy[c]) + y[c] * r.qx[c]);
    mx += g[c] * (x[c] * (y[c] + r.py[c]) + y[c] * r.px[c]);
    inc += g[c] * x[c - 1];
    dec += g[c] * x[c + 1];
  }
  for (int64_t e = 0; e < 2; ++e) {
    const int64_t c = e ? n - 1 : 0;
    mn += g[c] * (x[c] * (y[c] + r.qy[c]) + y[c] * r.qx[c]);
    mx += g[c] * (x[c] * (y[c] + r.py[c]) + y[c] * r.px[c]);
    inc += g[c] * x[c == 0 ? n - 1 : c - 1];
    dec += g[c] * x[c == n - 1 ? 0 : c + 1];
  }
  gcoef[MIN] = mn, gcoef[MAX] = mx, gcoef[INC] = inc, gcoef[DEC] = dec;
}

// Every dx_k[i]: the pair ops by a dense sum over j (O(n)), the rest from grad_x_structured.
template <typename A> NCL_HOST_DEVICE void grad_x_terms(int64_t i, const Row<A>& r, A* dx) {
  A pair[kNumPair] = {};
  for (int64_t j = 0; j < r.n; ++j) {
    PairTargets t(r.n, j);
    t.seek(i);
    for (int k = 0; k < kNumPair; ++k) pair[k] += r.y[j] * r.g[t.t[k]];
  }
  for (int k = 0; k < kNumPair; ++k) dx[k] = pair[k];
  grad_x_structured(i, r, dx);
}

// Every dy_k[j] of the binary ops, as grad_x_terms.
template <typename A> NCL_HOST_DEVICE void grad_y_terms(int64_t j, const Row<A>& r, A* dy) {
  A pair[kNumPair] = {};
  PairTargets t(r.n, j);
  for (int64_t i = 0; i < r.n; ++i) {
    t.move_to(i);
    for (int k = 0; k < kNumPair; ++k) pair[k] += r.x[i] * r.g[t.t[k]];
  }
  for (int k = 0; k < kNumPair; ++k) dy[k] = pair[k];
  grad_y_structured(j, r, dy);
}

}  // namespace alu
}  // namespace ncl
