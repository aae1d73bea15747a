// Per-row math of the circuit ALU mixture (ncl_kernels.alu_circuit_mix), shared by the CPU
// (csrc/cpu/alu_circuit.cpp) and CUDA (csrc/cuda/alu_circuit.cu) kernels.
//
// The op, for one row with n = 2^m:
//   a_i = Σ_v bit_i(v) x_v,  b_i = Σ_v bit_i(v) y_v                       (to_bits: bit marginals)
//   w   = netlist(a, b)                                                    (every gate of every op)
//   P_k[v] = Π_s (bit_s(v) ? w[o_ks] : 1 − w[o_ks]),  o_ks = outputs[k][s] (from_bits: product fold)
//   out[v] = Σ_k c_k P_k[v]
// The netlist is the straight-line program of ncl_kernels/alu_circuit/circuits.py recorded once in Python
// (ncl_kernels/alu_circuit/netlist.py): gates (opcode, in0, in1, out) over wires in topological order, wires
// 0..m-1 the bits of a and m..2m-1 those of b. Gate opcodes here equal netlist.ADD, SUB, MUL, CONST (tested).
//
// Scratch arrays are strided (element i of a row at p[i * s]): s = 1 for one row in a CPU thread's scratch,
// s = B for the CUDA kernels' (slots, B) layout, where consecutive threads (rows) touch consecutive words.
#pragma once

#include <cstdint>

#include "ncl/common.h"
#include "ncl/opcodes.h"

namespace ncl {
namespace circuit {

enum Gate : int32_t { kAdd = 0, kSub = 1, kMul = 2, kConst = 3 };
constexpr int kNumOps = isa::kNumAluOps;  // ALU_OPS of ncl_kernels/isa.py

// Bit marginals of one row: p[i] = Σ_v bit_i(v) x_v, i < m.
template <typename A, typename T>
NCL_HOST_DEVICE void to_bits(const T* x, int64_t n, int m, A* p, int64_t s) {
  for (int i = 0; i < m; ++i) p[i * s] = A(0);
  for (int64_t v = 0; v < n; ++v) {
    const A xv = static_cast<A>(x[v]);
    for (int i = 0; i < m; ++i)
      if ((v >> i) & 1) p[i * s] += xv;
  }
}

// Adjoint of to_bits: dx_v = Σ_i bit_i(v) dp_i.
template <typename A> NCL_HOST_DEVICE A to_bits_grad(int64_t v, int m, const A* dp, int64_t s) {
  A acc = A(0);
  for (int i = 0; i < m; ++i)
    if ((v >> i) & 1) acc += dp[i * s];
  return acc;
}

// Evaluates every gate in order; the input wires must be set.
template <typename A> NCL_HOST_DEVICE void eval_gates(const int32_t* gates, int64_t num_gates, A* w, int64_t s) {
  for (int64_t g = 0; g < num_gates; ++g) {
    const int32_t op = gates[4 * g], in0 = gates[4 * g + 1], in1 = gates[4 * g + 2], out = gates[4 * g + 3];
    A v;
    if (op == kConst) {
      v = A(in0);  // in0 holds the integer constant, not a wire
    } else {
      const A a = w[in0 * s], b = w[in1 * s];
      v = op == kAdd ? a + b : op == kSub ? a - b : a * b;
    }
    w[out * s] = v;
  }
}

// Reverse sweep: adds each gate's output adjoint into its inputs' adjoints (dw zeroed, then seeded by the
// fold). A gate that reads one wire twice (a·a) gets both terms.
template <typename A>
NCL_HOST_DEVICE void gates_backward(const int32_t* gates, int64_t num_gates, const A* w, A* dw, int64_t s) {
  for (int64_t g = num_gates - 1; g >= 0; --g) {
    const int32_t op = gates[4 * g], in0 = gates[4 * g + 1], in1 = gates[4 * g + 2], out = gates[4 * g + 3];
    if (op == kConst) continue;
    const A d = dw[out * s];
    if (op == kMul) {
      dw[in0 * s] += d * w[in1 * s];
      dw[in1 * s] += d * w[in0 * s];
    } else {
      dw[in0 * s] += d;
      dw[in1 * s] += op == kAdd ? d : -d;
    }
  }
}

// The product fold of one op's bits, by doubling: level j (2^j entries, at t[(2^j − 1) s]) is the fold of
// bits 0..j−1, level 0 = [1], and level j+1 = [level_j · (1 − p_j), level_j · p_j] (values with bit j clear
// first: ncl.machine.alu_circuit.from_bits). O(2n) per op, and the backward needs every level.
template <typename A>
NCL_HOST_DEVICE void fold_levels(const A* w, int64_t s, const int32_t* bits, int m, A* t) {
  t[0] = A(1);
  for (int j = 0; j < m; ++j) {
    const int64_t h = int64_t(1) << j;
    const A p = w[bits[j] * s], q = A(1) - p;
    const A* cur = t + (h - 1) * s;
    A* nxt = t + (2 * h - 1) * s;
    for (int64_t u = 0; u < h; ++u) {
      const A c = cur[u * s];
      nxt[u * s] = c * q;
      nxt[(u + h) * s] = c * p;
    }
  }
}

// Backward of c · fold for one op: with adj = c·g (n entries, overwritten), returns <g, P> (the gradient of
// c) and adds ∂/∂p_j into dw at each output bit's wire. Level j+1 = [L·(1−p), L·p] gives
// ∂/∂p_j = Σ_u L[u] (adj[u+h] − adj[u]) and adj_L[u] = adj[u](1−p) + adj[u+h] p: no division, so exact on
// hard (0/1) bits.
template <typename A, typename T>
NCL_HOST_DEVICE A fold_backward(const T* g, A c, const A* w, A* dw, int64_t s, const int32_t* bits, int m,
                                const A* t, A* adj) {
  const int64_t n = int64_t(1) << m;
  const A* last = t + (n - 1) * s;
  A gc = A(0);
  for (int64_t v = 0; v < n; ++v) {
    const A gv = static_cast<A>(g[v]);
    gc += gv * last[v * s];
    adj[v * s] = c * gv;
  }
  for (int j = m - 1; j >= 0; --j) {
    const int64_t h = int64_t(1) << j;
    const A p = w[bits[j] * s], q = A(1) - p;
    const A* cur = t + (h - 1) * s;
    A dp = A(0);
    for (int64_t u = 0; u < h; ++u) {
      const A lo = adj[u * s], hi = adj[(u + h) * s];
      dp += cur[u * s] * (hi - lo);
      adj[u * s] = lo * q + hi * p;
    }
    dw[bits[j] * s] += dp;
  }
  return gc;
}

// One row's scratch: the wires, the fold levels (2n − 1 slots) and n slots for the output accumulator
// (forward) or the fold adjoint (backward); the backward also keeps the wires' adjoints.
NCL_HOST_DEVICE int64_t fwd_slots(int64_t num_wires, int64_t n) { return num_wires + 3 * n - 1; }
NCL_HOST_DEVICE int64_t bwd_slots(int64_t num_wires, int64_t n) { return 2 * num_wires + 3 * n - 1; }

// Forward of one row: out[v] = Σ_k c_k P_k[v]. `scratch` has fwd_slots(num_wires, n) slots of stride s;
// outputs is the (16, m) table of output wires.
template <typename A, typename T>
NCL_HOST_DEVICE void forward_row(const T* x, const T* y, const T* coef, T* out, int64_t n, int m,
                                 const int32_t* gates, int64_t num_gates, const int32_t* outputs,
                                 int64_t num_wires, A* scratch, int64_t s) {
  A* w = scratch;
  A* t = scratch + num_wires * s;
  A* acc = t + (2 * n - 1) * s;
  to_bits(x, n, m, w, s);
  to_bits(y, n, m, w + m * s, s);
  eval_gates(gates, num_gates, w, s);
  for (int64_t v = 0; v < n; ++v) acc[v * s] = A(0);
  const A* last = t + (n - 1) * s;
  for (int k = 0; k < kNumOps; ++k) {
    const A c = static_cast<A>(coef[k]);
    fold_levels(w, s, outputs + k * m, m, t);
    for (int64_t v = 0; v < n; ++v) acc[v * s] += c * last[v * s];
  }
  for (int64_t v = 0; v < n; ++v) out[v] = static_cast<T>(acc[v * s]);
}

// Backward of one row, recomputing the wires: gx, gy (n) and gc (16) from the output gradient g (n).
// `scratch` has bwd_slots(num_wires, n) slots of stride s.
template <typename A, typename T>
NCL_HOST_DEVICE void backward_row(const T* g, const T* x, const T* y, const T* coef, T* gx, T* gy, T* gc,
                                  int64_t n, int m, const int32_t* gates, int64_t num_gates,
                                  const int32_t* outputs, int64_t num_wires, A* scratch, int64_t s) {
  A* w = scratch;
  A* dw = scratch + num_wires * s;
  A* t = dw + num_wires * s;
  A* adj = t + (2 * n - 1) * s;
  to_bits(x, n, m, w, s);
  to_bits(y, n, m, w + m * s, s);
  eval_gates(gates, num_gates, w, s);
  for (int64_t i = 0; i < num_wires; ++i) dw[i * s] = A(0);
  for (int k = 0; k < kNumOps; ++k) {
    const int32_t* bits = outputs + k * m;
    fold_levels(w, s, bits, m, t);
    gc[k] = static_cast<T>(fold_backward(g, static_cast<A>(coef[k]), w, dw, s, bits, m, t, adj));
  }
  gates_backward(gates, num_gates, w, dw, s);
  for (int64_t v = 0; v < n; ++v) {
    gx[v] = static_cast<T>(to_bits_grad(v, m, dw, s));
    gy[v] = static_cast<T>(to_bits_grad(v, m, dw + m * s, s));
  }
}

}  // namespace circuit
}  // namespace ncl
