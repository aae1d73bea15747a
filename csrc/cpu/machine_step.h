// One machine step of one sample on CPU (docs/design.md §3 steps 1-8 and the halting accumulation), shared by the
// whole-run kernel's forward (machine.cpp) and its backward (machine_bwd.cpp), which recomputes steps.
#pragma once

#include <algorithm>
#include <utility>
#include <vector>

#include "alu_row.h"
#include "ncl/halting.h"
#include "ncl/machine.h"
#include "ncl/memory.h"
#include "ncl/stack.h"

namespace ncl {
namespace machine_cpu {

// The floor of the divisor that normalises the written value (docs/design.md §3 step 4; VALUE_MASS_FLOOR in
// ncl_kernels/machine/step.py). The value's mass is 1 up to rounding wherever the write matters; on a line that
// writes (almost) nothing (w ≈ 0, a halted sample, the ALU skipped) it can be anything, even ~0 or negative, and
// a NORM_EPS floor would amplify it by up to 1/NORM_EPS past the gate w.
constexpr double kValueMassFloor = 0.5;

struct Sizes {
  int64_t L, O, K, n, C, S;
};

// The program's fields, shared by every sample: op (L,O), a b d (L,K), imm (L,n), tgt (L,L). `lines`, when set,
// holds control::line_ops of every row of op (all_line_ops), which every step would otherwise re-sum from the
// O opcode weights of each of the L lines.
template <typename A> struct Fields {
  const A *op, *a, *b, *d, *imm, *tgt;
  const control::LineOps<A>* lines = nullptr;
  control::LineOps<A> line(int64_t l, int64_t O) const {
    return lines ? lines[l] : control::line_ops<A>(op + l * O);
  }
};

template <typename A> std::vector<control::LineOps<A>> all_line_ops(const A* op, int64_t L, int64_t O) {
  std::vector<control::LineOps<A>> out(L);
  for (int64_t l = 0; l < L; ++l) out[l] = control::line_ops<A>(op + l * O);
  return out;
}

// The rows of the state that steps overwrite, each kept just before it is: the backward's tape. Walking the steps
// back, undo() puts each step's state before it back in place, so the backward reads one state buffer, which stays
// in cache, instead of a snapshot per step (a snapshot copies the whole (C, n) memory, 64 KB at C = n = 128, where
// a sharp step writes one row of it).
//
// A soft write m' = m + a (v - m) with |a| ≤ kInvertMax is not kept: undo() inverts it, m = (m' - a v) / (1 - a),
// from a and one copy of v a step (keep_value). A soft step writes every row of the memory with a ~ 1/C, and
// copying each row out and back was a fifth of the soft backward (benchmarks/RESULTS.md). The inverse is not exact:
// it adds about ε·(|m'| + |a v|) / (1 - a) a row, and over a chunk of k steps each earlier error grows by at most
// (1 - kInvertMax)^-k (1.7 at k = 16), so the state the backward reads is within a few k·ε of the forward's.
// Rows written with a larger |a| (a sharp write) are copied, where the inverse would amplify rounding.
template <typename A> struct UndoLog {
  static constexpr double kInvertMax = 1.0 / 32;
  // An entry: a row copied (value_at == kCopy), a copy of a written value (row null), or a write to invert
  // (value_at: the offset of its value in `saved`). Copies fill `saved` last in, first out.
  static constexpr int64_t kCopy = -1;
  struct Entry {
    A* row;
    int64_t W;
    A a;
    int64_t value_at;
  };
  std::vector<A> saved;
  std::vector<Entry> rows;
  void keep(A* row, int64_t W) {
    rows.push_back({row, W, A(0), kCopy});
    saved.insert(saved.end(), row, row + W);
  }
  static bool invertible(A a) { return std::abs(a) <= static_cast<A>(kInvertMax); }
  // Whether the memory pass writes a row with weight a (write_thr as in step_sample) that the walk back inverts
  // instead of restoring it from the log: the one test the forward's pass and the backward's memory adjoint share.
  static bool inverted_write(A a, A write_thr) { return std::abs(a) > write_thr && invertible(a); }
  // Keeps the value v (W) that the writes kept by keep_write then read; returns its offset.
  int64_t keep_value(const A* v, int64_t W) {
    const int64_t at = static_cast<int64_t>(saved.size());
    rows.push_back({nullptr, W, A(0), at});
    saved.insert(saved.end(), v, v + W);
    return at;
  }
  // Keeps `row`, about to become row + a (v - row): inverted by undo() when invertible(a), else copied. value_at is
  // v's copy here, shared by the rows that one value writes: made at the first row that needs it (-1 before).
  void keep_write(A* row, int64_t W, A a, const A* v, int64_t& value_at) {
    if (!invertible(a)) return keep(row, W);
    if (value_at < 0) value_at = keep_value(v, W);
    rows.push_back({row, W, a, value_at});
  }
  // row <- (row - a v) / (1 - a): the state before the write row + a (v - row), up to rounding.
  static void invert(A* row, int64_t W, A a, const A* v) {
    const A inv = A(1) / (A(1) - a);
    NCL_PRAGMA(omp simd)
    for (int64_t j = 0; j < W; ++j) row[j] = (row[j] - a * v[j]) * inv;
  }
  size_t mark() const { return rows.size(); }
  // Restores every row kept since mark m, latest first (a row kept twice gets its older copy).
  void undo(size_t m) {
    while (rows.size() > m) {
      const Entry e = rows.back();
      rows.pop_back();
      if (e.row && e.value_at != kCopy) {
        invert(e.row, e.W, e.a, saved.data() + e.value_at);
        continue;
      }
      if (e.row) std::copy(saved.end() - e.W, saved.end(), e.row);
      saved.resize(saved.size() - e.W);
    }
  }
  void clear() { saved.clear(), rows.clear(); }
};

// One sample's carry, updated in place: ip (L), reg (K,n), mem (C,n), dstk (S,n), dsp (S), rstk (S,L),
// rsp (S), acc_reg (K,n), acc_mem (C,n), expected, faults. With `undo` set, a step keeps every part of the state
// (the first seven) that it overwrites there first.
template <typename A> struct Carry {
  A *ip, *reg, *mem, *dstk, *dsp, *rstk, *rsp, *acc_reg, *acc_mem, *expected, *faults;
  UndoLog<A>* undo = nullptr;
};

// The carry's first accumulator: tensors 0..6 are the state, 7..10 (acc_reg, acc_mem, expected, faults) the
// accumulators, whose gradients pass through every step unchanged.
constexpr int kFirstAccumulator = 7;

// Elements per sample of each of the 11 carry tensors, in that order (the batch stride of each).
struct CarryStrides {
  int64_t s[11];
  explicit CarryStrides(const Sizes& z)
      : s{z.L, z.K * z.n, z.C * z.n, z.S * z.n, z.S, z.S * z.L, z.S, z.K * z.n, z.C * z.n, 1, 1} {}
  int64_t operator[](int i) const { return s[i]; }
};

template <typename A> struct Workspace {
  std::vector<A> e, alpha, beta, delta, z, x, y, chi, load, pop, value, coef, new_ip, moved, jumped, ret_to,
      ret_item, ptr;
  // The step's scalars, kept for the backward: the running mass ρ, ALU weight sum (w before the clamp),
  // halted mass, RET and return-stack masses, e_CALL clamped, and the written value's mass before it is
  // normalised (`value` holds the normalised row).
  A rho, wsum, halted, ret_mass, ret_total, e_call, vsum;
  // Whether every memory row the step wrote is one the backward inverts (UndoLog::invertible): not recorded.
  bool memory_invertible = true;
  RowScratch<A> alu;
  explicit Workspace(const Sizes& s)
      : e(s.O), alpha(s.K), beta(s.K), delta(s.K), z(s.n), x(s.n), y(s.n), chi(s.C), load(s.n), pop(s.n),
        value(s.n), coef(s.O), new_ip(s.L), moved(s.L), jumped(s.L), ret_to(s.L), ret_item(s.L), ptr(s.S),
        alu(s.n) {}
  // The intermediates the backward reads, as one flat record (save/load), so that it need not recompute.
  std::vector<std::vector<A>*> recorded() {
    return {&e, &alpha, &beta, &delta, &z, &x, &y, &chi, &load, &pop, &value, &coef, &jumped, &ret_to, &ret_item};
  }
  static constexpr int kScalars = 7;
  int64_t record_size() {
    int64_t size = kScalars;
    for (auto* v : recorded()) size += static_cast<int64_t>(v->size());
    return size;
  }
  void save(A* dst) {
    for (auto* v : recorded()) dst = std::copy(v->begin(), v->end(), dst);
    const A scalars[kScalars] = {rho, wsum, halted, ret_mass, ret_total, e_call, vsum};
    std::copy(scalars, scalars + kScalars, dst);
  }
  void load_from(const A* src) {
    for (auto* v : recorded()) {
      std::copy(src, src + v->size(), v->begin());
      src += v->size();
    }
    rho = src[0], wsum = src[1], halted = src[2], ret_mass = src[3], ret_total = src[4], e_call = src[5],
    vsum = src[6];
  }
};

// Negligible weights. A step of a sharp program spreads leaks of about e^-β (9.4e-14 at β = 30) over every weight:
// the address χ over every memory cell, the write and halting masses, the stack pointers, the ip over lines the
// program never reaches. In float the kernels treat a weight w as 0 when |w| ≤ negligible<A>(R)·scale, R the number
// of rows it weighs in one sum and negligible<A>(R) = 2^-30 / R. The scale is 1 for the weights that are
// distributions (the address, the stack pointers) and the running mass ρ for those that are a share of it (the
// ip's lines, the write and halting masses): a halted sample's ρ is ~1e-10, its fields are renormalised by 1/ρ, and
// its steps still shape its gradients. A read Σ_r w_r row_r then drops at most 2^-30 · scale · max|row| in all, and
// a write row + a(v - row) moves no entry by more than 2^-30 · scale · |v - row| (the state holds distributions:
// entries in [0, 1]). That is under the fp32 rounding of a step's large entries, and at 1,000 steps under 1e-6, a
// twentieth of the fp32 test tolerance. Without it every step streamed all C rows of the memory and every slot of
// both stacks to add ~1e-13. In double only exact zeros are skipped (a row weighed 0 adds ±0), so the float64
// kernels stay the tests' exact oracle.
//
// What this does change: the leaks themselves. A sample that halts keeps running on them (ρ ~ 1e-10), and its
// fields' gradients, renormalised by 1/ρ, then depend on leak-level values, which the float kernels no longer
// carry exactly. Where the loss reads the run (its readouts, the ponder cost) the gradients still match the
// reference (tests/test_machine_fused.py); under arbitrary gradients on a halted sample's ip they do not.
template <typename A> A negligible(int64_t rows) {
  return sizeof(A) < sizeof(double) ? A(9.313225746154785e-10 / static_cast<double>(rows)) : A(0);
}
template <typename A> bool matters(A w, A threshold) { return std::abs(w) > threshold; }

// out[j] = Σ_r w_r bank[r, j] over R rows of width W: soft_read of one row of weights, weights |w_r| ≤ thr skipped.
template <typename A> void read_rows(const A* w, const A* bank, int64_t R, int64_t W, A thr, A* out) {
  std::fill(out, out + W, A(0));
  for (int64_t r = 0; r < R; ++r) {
    const A wr = w[r];
    if (!matters(wr, thr)) continue;
    const A* row = bank + r * W;
    for (int64_t j = 0; j < W; ++j) out[j] += wr * row[j];
  }
}

// bank[r] <- bank[r] + gate·w_r (v - bank[r]): soft_write of one sample, writes with |gate·w_r| ≤ thr skipped;
// each row written is kept in `undo` first, if set, with v's copy at value_at (UndoLog::keep_write).
template <typename A>
void write_rows(A* bank, const A* w, const A* v, A gate, int64_t R, int64_t W, A thr, UndoLog<A>* undo,
                int64_t& value_at) {
  for (int64_t r = 0; r < R; ++r) {
    const A a = gate * w[r];
    if (!matters(a, thr)) continue;
    A* row = bank + r * W;
    if (undo) undo->keep_write(row, W, a, v, value_at);
    for (int64_t j = 0; j < W; ++j) row[j] = soft_write_value(row[j], a, v[j]);
  }
}

// One pass over a bank for a read, a write and the halting accumulation, which would otherwise stream the
// (C, n) memory three times a step: read[j] += w_r bank[r, j] (the state at the start of the step), then
// bank[r] <- bank[r] + gate·w_r (v - bank[r]), then, if kAccumulate, acc[r] += h·bank[r] (the state after).
// Negligible reads and writes are skipped as in read_rows and write_rows. Of the rows written, `undo` keeps those it
// cannot invert (UndoLog::invertible) and no others: the backward's memory adjoint (machine_bwd.cpp, step_backward)
// inverts each of those rows itself in the pass that reads it, where a separate undo pass streamed the memory once
// more a step. Returns whether every row written was invertible.
template <bool kAccumulate, typename A>
bool read_write_accumulate(A* bank, A* acc, const A* w, A gate, const A* v, A h, int64_t R, int64_t W, A* read,
                           A read_thr, A write_thr, UndoLog<A>* undo) {
  std::fill(read, read + W, A(0));
  bool invertible = true;
  for (int64_t r = 0; r < R; ++r) {
    const A wr = w[r], a = gate * wr;
    A* row = bank + r * W;
    if (matters(a, write_thr) && !UndoLog<A>::inverted_write(a, write_thr)) {
      invertible = false;
      if (undo) undo->keep(row, W);
    }
    if (matters(wr, read_thr) && matters(a, write_thr)) {
      for (int64_t j = 0; j < W; ++j) {
        read[j] += wr * row[j];
        row[j] = soft_write_value(row[j], a, v[j]);
        if constexpr (kAccumulate) acc[r * W + j] = halting::accumulate(acc[r * W + j], h, row[j]);
      }
      continue;
    }
    if (matters(wr, read_thr))
      for (int64_t j = 0; j < W; ++j) read[j] += wr * row[j];
    if (matters(a, write_thr))  // |a| ≤ |gate|·|w_r|: with gate > 1 a row can be written and not read
      for (int64_t j = 0; j < W; ++j) row[j] = soft_write_value(row[j], a, v[j]);
    if constexpr (kAccumulate)  // acc is null in the backward's tape pass, which does not accumulate
      for (int64_t j = 0; j < W; ++j) acc[r * W + j] = halting::accumulate(acc[r * W + j], h, row[j]);
  }
  return invertible;
}

// stack_update of one sample in place, writes with |u·up(p)_s| ≤ write_thr skipped and slots written kept in `undo`
// (the pointer is the caller's to keep); returns (overflow, underflow) = (u p_{S-1}, o p_0).
template <typename A>
std::pair<A, A> update_stack(A* slots, A* p, A u, A o, const A* item, int64_t S, int64_t W, A* tmp, A write_thr,
                             UndoLog<A>* undo) {
  const std::pair<A, A> faults{u * p[S - 1], o * p[0]};
  int64_t item_at = -1;  // the item's copy in `undo`, one for every slot it writes
  for (int64_t s = 0; s < S; ++s) {
    const A raised = stack::up_at<A>(p, s, S);
    tmp[s] = stack::new_pointer(p[s], raised, stack::down_at<A>(p, s, S), u, o);
    write_rows(slots + s * W, &raised, item, u, 1, W, write_thr, undo, item_at);
  }
  std::copy(tmp, tmp + S, p);
  return faults;
}

// The running mass Σ ip, and whether every entry of ip is exactly 0 (`frozen`). A frozen sample's step is the identity
// on a finite state: every weight read off the ip is 0, so each write and accumulation adds 0·(...), and the new ip
// is 0 again (up to the sign of a zero). The kernels skip those steps; the backward still applies their adjoints,
// which are not the identity (the ip's gradient flows through the program's transitions whatever the mass).
template <typename A> A running_mass(const A* ip, int64_t L, bool& frozen) {
  A mass = A(0);
  bool live = false;
  for (int64_t l = 0; l < L; ++l) mass += ip[l], live |= ip[l] != A(0);
  frozen = !live;
  return mass;
}

// The run's finish on one sample after its last step t (ncl/machine/run.py, finish): the mass still running,
// ρ = Σ ip, is read out as if it halted there, acc_reg += ρ·reg, acc_mem += ρ·mem, expected += t·ρ. Done here, on
// the state the sample's thread has in cache, it saves the run a halting_accumulate op: a pass over the batch's
// registers and memory and their fresh (B, C, n) copies, each way.
template <typename A> void read_out_running(const Carry<A>& c, const Sizes& z, A t) {
  bool frozen;
  const A rho = running_mass(c.ip, z.L, frozen);
  for (int64_t i = 0; i < z.K * z.n; ++i) c.acc_reg[i] = halting::accumulate(c.acc_reg[i], rho, c.reg[i]);
  for (int64_t i = 0; i < z.C * z.n; ++i) c.acc_mem[i] = halting::accumulate(c.acc_mem[i], rho, c.mem[i]);
  *c.expected = halting::expected_steps(*c.expected, t, rho);
}

// Whether step_sample computes the step's ALU mixture row: some ALU op's weight e_k is above alu::kSkipRel. Else the
// line is no ALU op and the row is 0 (step._AluMixSkippingRows), and so are the operands' gradients through it.
template <typename A> bool alu_row_computed(const A* e) {
  A alu_max = A(0);
  for (int k = 0; k < alu::kNumOps; ++k) alu_max = std::max(alu_max, std::abs(e[machine::kAluFirst + k]));
  return alu_max > A(alu::kSkipRel);
}

// One step t of one sample (docs/design.md §3 steps 1-8 and the halting accumulation). With c.acc_reg and c.acc_mem
// null the halting mixtures are left alone (the backward's tape pass, which does not need them). The step's ALU
// mixture row (n; the value before CONST, MOV, LOAD and POP are added) is copied to alu_out when it is set, and
// with kAluFromTape read from alu_in instead of computed: the forward keeps the rows, so that the backward's tape
// pass, which runs the same steps on the same states, does not compute them again (on dense rows they were most
// of its cost). The copy is the same row bit for bit. Likewise load_in, when set, is the step's LOAD read (n), and
// the memory is then neither read nor written: the backward's tape pass of a sample whose memory writes the walk
// back inverts from the memory after the chunk (machine_bwd.cpp); load_out gets that row in the forward.
//
// kAluFromTape (the backward's tape pass, to which machine_run_bwd always gives the forward's rows; alu_in is read
// only then): the code that computes a row is not compiled in. The tape pass is one flattened AVX2 function with the
// walk back (isa.h); with the ALU forward's code in it, run or not, GCC compiled the walk back differently, and every
// change to that code moved the backward's speed (benchmarks/RESULTS.md). Without it, the forward's rows take MUL
// through the units of Z/n (mix_row's kMulUnits) as the alu_mix op does, and the backward does not change.
template <typename A, bool kAluFromTape = false>
void step_sample(const Fields<A>& f, const Sizes& z, const Carry<A>& c, Workspace<A>& w, int64_t t, A norm_eps,
                 const A* alu_in = nullptr, A* alu_out = nullptr, const A* load_in = nullptr,
                 A* load_out = nullptr) {
  const int64_t L = z.L, O = z.O, K = z.K, n = z.n, C = z.C, S = z.S;
  // 1. Fields: e keeps the running mass ρ; the register and immediate fields are renormalised by it.
  std::fill(w.e.begin(), w.e.end(), A(0));
  for (auto* v : {&w.alpha, &w.beta, &w.delta, &w.z}) std::fill(v->begin(), v->end(), A(0));
  // Negligible weights (above): a line's mass and the write masses relative to the running mass ρ.
  A rho = A(0);
  for (int64_t l = 0; l < L; ++l) rho += c.ip[l];
  const A line_thr = negligible<A>(L) * std::abs(rho), write_thr = negligible<A>(1) * std::abs(rho);
  for (int64_t l = 0; l < L; ++l) {
    const A p = c.ip[l];
    if (!matters(p, line_thr)) continue;
    for (int64_t k = 0; k < O; ++k) w.e[k] += p * f.op[l * O + k];
    for (int64_t k = 0; k < K; ++k) {
      w.alpha[k] += p * f.a[l * K + k];
      w.beta[k] += p * f.b[l * K + k];
      w.delta[k] += p * f.d[l * K + k];
    }
    for (int64_t j = 0; j < n; ++j) w.z[j] += p * f.imm[l * n + j];
  }
  const A inv_rho = A(1) / std::max(rho, norm_eps);
  for (auto* v : {&w.alpha, &w.beta, &w.delta, &w.z})
    for (auto& q : *v) q *= inv_rho;

  // 2. Operands, the address and POP (all from the state at the start of the step).
  read_rows(w.alpha.data(), c.reg, K, n, negligible<A>(K), w.x.data());
  read_rows(w.beta.data(), c.reg, K, n, negligible<A>(K), w.y.data());
  std::fill(w.chi.begin(), w.chi.end(), A(0));
  for (int64_t j0 = 0; j0 < n; j0 += C)  // χ_c = Σ_{j ≡ c (mod C)} x_j, block by block (no division a j)
    for (int64_t j = j0; j < std::min(j0 + C, n); ++j) w.chi[j - j0] += w.x[j];
  read_rows(c.dsp, c.dstk, S, n, negligible<A>(S), w.pop.data());

  // 7-8. Control and the halting mass, from the ip and return stack at the start of the step.
  const A chi0 = w.x[0];
  read_rows(c.rsp, c.rstk, S, L, negligible<A>(S), w.ret_to.data());
  A ret_mass = A(0), halt_mass = A(0), ret_total = A(0);
  for (int64_t l = 0; l < L; ++l) {
    const control::LineOps<A> o = f.line(l, O);
    w.jumped[l] = control::jumped(o, c.ip[l], chi0);
    w.moved[l] = control::moved_on(o, c.ip[l], chi0);
    ret_mass += c.ip[l] * o.ret;
    halt_mass += c.ip[l] * o.halt;
    ret_total += w.ret_to[l];
  }
  for (int64_t m = 0; m < L; ++m) w.new_ip[m] = (m > 0 ? w.moved[m - 1] : A(0)) + ret_mass * w.ret_to[m];
  for (int64_t l = 0; l < L; ++l) {
    const A jl = w.jumped[l];
    // Exact zeros only: dropping a halted sample's negligible jumps moved its fp32 gradients by 3 % (its fields'
    // 1/ρ amplifies where the ip's mass goes).
    if (jl == A(0)) continue;
    const A* row = f.tgt + l * L;
    for (int64_t m = 0; m < L; ++m) w.new_ip[m] += jl * row[m];
  }
  const A halted = halt_mass + w.moved[L - 1] + ret_mass * (A(1) - ret_total);
  w.rho = rho, w.halted = halted, w.ret_mass = ret_mass, w.ret_total = ret_total;
  // The return address of a CALL on line l is line l+1 (no mass if l is the last line).
  const A e_call = std::max(w.e[machine::kCall], A(0));
  const A call_div = std::max(e_call, norm_eps);
  w.e_call = e_call;
  w.ret_item[0] = A(0);
  for (int64_t l = 1; l < L; ++l) w.ret_item[l] = c.ip[l - 1] * f.op[(l - 1) * O + machine::kCall] / call_div;

  // 5. Memory: LOAD reads it, STORE writes it (address from a, value from b), and the halting mixture
  //    accumulates it, in one pass (LOAD and the address are known before the write).
  // A step with negligible halting mass (every step but the last of a sharp program) leaves the halting mixtures
  // alone: their (C, n) accumulation was most of a sharp step.
  const bool accumulate = matters(halted, write_thr);
  if (load_in) {
    std::copy(load_in, load_in + n, w.load.begin());
    w.memory_invertible = true;  // nothing written
  }
  else if (c.acc_mem && accumulate)
    w.memory_invertible = read_write_accumulate<true>(c.mem, c.acc_mem, w.chi.data(), w.e[machine::kStore],
                                                      w.y.data(), halted, C, n, w.load.data(), negligible<A>(C),
                                                      write_thr, c.undo);
  else
    w.memory_invertible = read_write_accumulate<false>(c.mem, c.acc_mem, w.chi.data(), w.e[machine::kStore],
                                                       w.y.data(), halted, C, n, w.load.data(), negligible<A>(C),
                                                       write_thr, c.undo);
  if (load_out) std::copy(w.load.begin(), w.load.end(), load_out);

  // 3. ALU and the value written: w = Σ value-op weights (clamped at 0), c = e / w.
  A wsum = A(0);
  for (int64_t k = 0; k < O; ++k)
    if (machine::is_value_op(static_cast<int>(k))) wsum += w.e[k];
  const A gate = std::max(wsum, A(0));
  w.wsum = wsum;
  const A wdiv = std::max(gate, norm_eps);
  for (int64_t k = 0; k < O; ++k) w.coef[k] = w.e[k] / wdiv;
  A* value = w.value.data();
  if constexpr (kAluFromTape) {
    std::copy(alu_in, alu_in + n, value);
  } else if (alu_row_computed(w.e.data())) {
    mix_row<A, A, /*kMulUnits=*/true>(w.alu, w.x.data(), w.y.data(), w.coef.data() + machine::kAluFirst, value);
  } else {
    std::fill(value, value + n, A(0));  // a line that is no ALU op (step._AluMixSkippingRows)
  }
  if (alu_out) std::copy(value, value + n, alu_out);
  const A cc = w.coef[machine::kConst], cm = w.coef[machine::kMov], cl = w.coef[machine::kLoad],
          cp = w.coef[machine::kPop];
  for (int64_t j = 0; j < n; ++j) value[j] = value[j] + cc * w.z[j] + cm * w.x[j] + cl * w.load[j] + cp * w.pop[j];
  // The value written is normalised to mass 1 (docs/design.md §3 step 4): the bilinear ops' output mass is the
  // product of their operands', so without it a register's rounding error in mass can grow geometrically.
  A vsum = A(0);
  for (int64_t j = 0; j < n; ++j) vsum += value[j];
  w.vsum = vsum;
  const A vdiv = std::max(vsum, A(kValueMassFloor));
  for (int64_t j = 0; j < n; ++j) value[j] = value[j] / vdiv;

  // 4. Registers (and their halting mixture), 6. both stacks.
  int64_t value_at = -1;
  write_rows(c.reg, w.delta.data(), value, gate, K, n, write_thr, c.undo, value_at);
  if (c.acc_reg && accumulate)
    for (int64_t i = 0; i < K * n; ++i) c.acc_reg[i] = halting::accumulate(c.acc_reg[i], halted, c.reg[i]);
  if (c.undo) {  // both pointers and the ip are rewritten whole
    c.undo->keep(c.dsp, S);
    c.undo->keep(c.rsp, S);
    c.undo->keep(c.ip, L);
  }
  const auto d_faults = update_stack(c.dstk, c.dsp, w.e[machine::kPush], w.e[machine::kPop], w.x.data(), S, n,
                                     w.ptr.data(), write_thr, c.undo);
  const auto r_faults = update_stack(c.rstk, c.rsp, e_call, w.e[machine::kRet], w.ret_item.data(), S, L, w.ptr.data(),
                                     write_thr, c.undo);
  std::copy(w.new_ip.begin(), w.new_ip.end(), c.ip);
  *c.faults = *c.faults + (d_faults.first + d_faults.second + r_faults.first);
  *c.expected = halting::expected_steps(*c.expected, static_cast<A>(t), halted);
}

}  // namespace machine_cpu
}  // namespace ncl
