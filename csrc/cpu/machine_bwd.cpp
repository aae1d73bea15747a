// Backward of the whole-run machine kernel on CPU: the gradient of `count` steps (first+1 .. first+count),
// given the carry entering them and the gradient of the carry leaving them. Per sample, the steps are run
// once more (machine_step.h, the forward's own code), keeping each step's intermediates and the rows of the state
// it overwrites (UndoLog), then walked back, restoring each step's state before it in place and applying the
// step's adjoint: the hand-written reverse of ncl_kernels.machine.step.step + halting_accumulate. The fields'
// gradients are summed over samples and steps. tests/test_machine_run_kernel.py checks it against autograd through
// the fused step ops and the reference, and by gradcheck.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <memory>
#include <mutex>
#include <utility>
#include <vector>

#include "../ops.h"
#include "isa.h"
#include "machine_step.h"

namespace ncl {
namespace {

using namespace machine_cpu;

// Offsets of the state's parts in one flat buffer: ip reg mem dstk dsp rstk rsp.
struct Layout {
  int64_t off[8];
  explicit Layout(const Sizes& z) {
    const CarryStrides len(z);  // the state is the carry's first 7 tensors
    off[0] = 0;
    for (int i = 0; i < 7; ++i) off[i + 1] = off[i] + len[i];
  }
  int64_t size() const { return off[7]; }
};

// A state's parts inside a flat buffer.
template <typename A> struct View {
  A *ip, *reg, *mem, *dstk, *dsp, *rstk, *rsp;
  View(A* base, const Layout& l)
      : ip(base + l.off[0]), reg(base + l.off[1]), mem(base + l.off[2]), dstk(base + l.off[3]), dsp(base + l.off[4]),
        rstk(base + l.off[5]), rsp(base + l.off[6]) {}
};

// A field's nonzero entries row by row (CSR), found once per call: the jump targets are near one-hot, so the
// per-step product tgt · g_ip costs O(L) instead of O(L²) (an L of 700 lines made that product most of the
// backward). Only exact zeros are skipped, so every sum adds the same terms in the same order as the dense loop.
template <typename A> struct SparseRows {
  std::vector<int64_t> start, col;
  std::vector<A> val;
  SparseRows(const A* dense, int64_t rows, int64_t cols) : start(rows + 1, 0) {
    for (int64_t r = 0; r < rows; ++r) {
      for (int64_t c = 0; c < cols; ++c)
        if (dense[r * cols + c] != A(0)) {
          col.push_back(c);
          val.push_back(dense[r * cols + c]);
        }
      start[r + 1] = static_cast<int64_t>(col.size());
    }
  }
};

// Gradients of the fields, one set per thread, summed at the end. A thread that has every sample (one thread, the
// training default) adds straight into the call's zeroed outputs, which is the same sum (0 + x = x): the (L, L)
// jump-target gradient of a large library is megabytes, and zeroing, then adding a private copy of it cost more
// than some steps. Off (`on` false: a fixed library, as in training) it holds nothing and nothing adds to it.
template <typename A> struct FieldGrads {
  std::vector<A> own;  // moving it keeps its buffer, so the pointers below stay valid
  A *op = nullptr, *a = nullptr, *b = nullptr, *d = nullptr, *imm = nullptr, *tgt = nullptr;
  int64_t len[6];
  bool on;
  FieldGrads(const Sizes& z, const std::vector<at::Tensor>* out, bool on)
      : len{z.L * z.O, z.L * z.K, z.L * z.K, z.L * z.K, z.L * z.n, z.L * z.L}, on(on) {
    if (!on) return;
    A* part[6];
    if (out) {
      for (int i = 0; i < 6; ++i) part[i] = (*out)[i].data_ptr<A>();
    } else {
      int64_t total = 0;
      for (int i = 0; i < 6; ++i) total += len[i];
      own.assign(total, A(0));
      A* p = own.data();
      for (int i = 0; i < 6; ++i) part[i] = p, p += len[i];
    }
    op = part[0], a = part[1], b = part[2], d = part[3], imm = part[4], tgt = part[5];
  }
  bool owned() const { return on && !own.empty(); }
  const A* part(int i) const { return i == 0 ? op : i == 1 ? a : i == 2 ? b : i == 3 ? d : i == 4 ? imm : tgt; }
};

// For each line and each of its field rows op, a, b, d, imm: the column of the row's one nonzero entry, kNone
// (all zero) or kDense. The fields' backward dots each row with its adjoint for every line, mass or not (O + 3K + n
// terms a line, most of a step's backward at L = 1162); a compiled program's rows are one-hot, and a dot with
// one nonzero term is that term exactly (the other terms are ±0), so it is taken directly.
template <typename A> struct FieldRowNonzeros {
  static constexpr int32_t kNone = -1, kDense = -2;
  std::vector<int32_t> col;  // (L, 5)
  FieldRowNonzeros(const Fields<A>& f, const Sizes& z) : col(z.L * 5) {
    const A* rows[5] = {f.op, f.a, f.b, f.d, f.imm};
    const int64_t width[5] = {z.O, z.K, z.K, z.K, z.n};
    for (int64_t l = 0; l < z.L; ++l)
      for (int i = 0; i < 5; ++i) {
        int32_t c = kNone;
        for (int64_t k = 0; k < width[i]; ++k)
          if (rows[i][l * width[i] + k] != A(0)) c = c == kNone ? static_cast<int32_t>(k) : kDense;
        col[l * 5 + i] = c;
      }
  }
  // ⟨g, row⟩, with the row's nonzero structure `c`.
  static A dot(int32_t c, const A* g, const A* row, int64_t width) {
    if (c == kNone) return A(0);
    if (c == kDense) return ncl::dot<A>(g, row, width);
    return g[c] * row[c];
  }
};

// Local adjoints of one step's intermediates.
template <typename A> struct Adjoints {
  std::vector<A> e, coef, x, y, value, load, pop, chi, alpha, beta, delta, z, ret_item, ret_to, gx, gy;
  A readout_dot = A(0);  // Σ g_acc·r over both halting mixtures: the halting mass's gradient less t·g_E
  explicit Adjoints(const Sizes& s)
      : e(s.O), coef(s.O), x(s.n), y(s.n), value(s.n), load(s.n), pop(s.n), chi(s.C), alpha(s.K), beta(s.K),
        delta(s.K), z(s.n), ret_item(s.L), ret_to(s.L), gx(s.n), gy(s.n) {}
  void zero() {
    for (auto* v : {&e, &coef, &x, &y, &value, &load, &pop, &chi, &alpha, &beta, &delta, &z, &ret_item, &ret_to})
      std::fill(v->begin(), v->end(), A(0));
  }
};

template <typename A> A vdot(const A* a, const A* b, int64_t n) { return ncl::dot<A>(a, b, n); }

// Whether v[0..n) is all (±)0, without an early exit, so that it vectorises (std::all_of's did not, and the
// memory's accumulator gradient, (C, n) a sample, is scanned on every call).
template <typename A> bool all_zero(const A* v, int64_t n) {
  int nonzero = 0;
  NCL_PRAGMA(omp simd reduction(| : nonzero))
  for (int64_t j = 0; j < n; ++j) nonzero |= v[j] != A(0);
  return nonzero == 0;
}

// Adjoint of update_stack: slots' = slots + (u·up(p)_s)(item - slots), p' = (1-u-o)p + u·up(p) + o·down(p),
// and the fault masses u·p_{S-1} (gradient g_over) and o·p_0 (g_under). gs holds the slots' gradient after the
// step and is turned in place into the gradient before it; gp is written (the stack's adjoint is the first to
// reach the pointer's gradient, so the caller need not zero it); adds to g_item, and returns (g_u, g_o). The
// pointer's gradient is stack.h's, as in the stack_update kernels.
template <typename A>
std::pair<A, A> stack_backward(const A* slots, const A* p, A u, A o, const A* item, int64_t S, int64_t W, A* gs,
                               const A* gp_post, A g_over, A g_under, A* gp, A* g_item, A* tmp, A u_thr) {
  A gu = g_over * p[S - 1], go = g_under * p[0];
  A* dr = tmp;      // u (gradient of the slot write's coefficient + gradient of p'), reaching up(p)
  A* dd = tmp + S;  // o · gradient of p', reaching down(p)
  for (int64_t s = 0; s < S; ++s) {
    const A up = stack::up_at<A>(p, s, S), down = stack::down_at<A>(p, s, S), a = u * up;
    A* g = gs + s * W;
    const A* slot = slots + s * W;
    A ga = A(0);
    // A slot whose write a = u·up and whose write coefficient's gradient ga (it enters g_u times up and dr times u)
    // are negligible weights (machine_step.h; u_thr is the forward's write threshold, and in fp64 both are exact
    // zeros) is left alone: its gradient passes through (g·(1 - 0)). On a sharp machine without a PUSH (or CALL)
    // on the line that is every slot but the one above the pointer.
    if (matters(u, u_thr) || matters(up, negligible<A>(S))) {
      NCL_PRAGMA(omp simd reduction(+ : ga))
      for (int64_t j = 0; j < W; ++j) {
        const A gj = g[j];
        g[j] = gj * (A(1) - a);
        g_item[j] += a * gj;
        ga += gj * (item[j] - slot[j]);
      }
    }
    gu += ga * up + gp_post[s] * (up - p[s]);
    go += gp_post[s] * (down - p[s]);
    dr[s] = u * (ga + gp_post[s]);
    dd[s] = o * gp_post[s];
  }
  for (int64_t j = 0; j < S; ++j) gp[j] = stack::pointer_grad(dr, dd, gp_post[j], u, o, g_over, g_under, j, S);
  return {gu, go};
}

// The adjoint of one step. pre: the state before it; w: its intermediates (step_sample); gpost: the
// gradient of the state after it (without the halting accumulation's terms); gpre: the gradient of the state
// before it, its ip and reg zeroed, its pointers written (not added to), its mem and stack slots the same buffers
// as gpost's (updated in place). g_acc_reg, g_acc_mem, g_exp and g_faults are the gradients of the accumulators,
// which pass through every step unchanged; acc_mem_zero[c]: whether row c of g_acc_mem is all zero.
template <typename A>
void step_backward(const Fields<A>& f, const SparseRows<A>& tgt_rows, const FieldRowNonzeros<A>& nz, const Sizes& z,
                   const View<A>& pre, Workspace<A>& w, const View<A>& gpost, const View<A>& gpre, const A* g_acc_reg,
                   const A* g_acc_mem, const char* acc_mem_zero, A g_exp, A g_faults, int64_t t, A norm_eps,
                   Adjoints<A>& g, FieldGrads<A>& gf, std::vector<A>& tmp) {
  const int64_t L = z.L, O = z.O, K = z.K, n = z.n, C = z.C, S = z.S;
  g.zero();
  // Halting: expected += t·h here; acc += h·(state after the step) inside the register and memory loops,
  // which rebuild that state from the one before (so the tape need not keep it).
  const A h = w.halted;
  A readout_dot = A(0);

  // Stacks (faults = d_over + d_under + r_over, each with gradient g_faults).
  const A write_thr = negligible<A>(1) * std::abs(w.rho);  // the forward's (step_sample)
  auto d = stack_backward(pre.dstk, pre.dsp, w.e[machine::kPush], w.e[machine::kPop], w.x.data(), S, n, gpre.dstk,
                          gpost.dsp, g_faults, g_faults, gpre.dsp, g.x.data(), tmp.data(), write_thr);
  g.e[machine::kPush] += d.first;
  g.e[machine::kPop] += d.second;
  // The return stack's overflow is a fault; its underflow is not (RET with no address halts instead).
  auto r = stack_backward(pre.rstk, pre.rsp, w.e_call, w.e[machine::kRet], w.ret_item.data(), S, L, gpre.rstk,
                          gpost.rsp, g_faults, A(0), gpre.rsp, g.ret_item.data(), tmp.data(), write_thr);
  g.e[machine::kRet] += r.second;
  A g_call = r.first;  // reaching e_call = max(e_CALL, 0)
  // ret_item[l] = ip[l-1]·op[l-1, CALL] / max(e_call, eps).
  const A call_div = std::max(w.e_call, norm_eps);
  A g_div = A(0);
  for (int64_t l = 1; l < L; ++l) {
    const A gi = g.ret_item[l] / call_div;
    gpre.ip[l - 1] += gi * f.op[(l - 1) * O + machine::kCall];
    if (gf.on) gf.op[(l - 1) * O + machine::kCall] += gi * pre.ip[l - 1];
    g_div -= gi * w.ret_item[l];
  }
  if (w.e_call >= norm_eps) g_call += g_div;
  if (w.e[machine::kCall] >= A(0)) g.e[machine::kCall] += g_call;

  // Registers: reg' = reg + gate·δ_k (value - reg).
  const A gate = std::max(w.wsum, A(0));
  A g_gate = A(0);
  for (int64_t k = 0; k < K; ++k) {
    const A a = gate * w.delta[k];
    const A* gr = gpost.reg + k * n;
    const A* gacc = g_acc_reg + k * n;
    const A* reg = pre.reg + k * n;
    const A* value = w.value.data();
    A* g_reg = gpre.reg + k * n;
    A* g_value = g.value.data();
    A ga = A(0), ghk = A(0);
    NCL_PRAGMA(omp simd reduction(+ : ga, ghk))
    for (int64_t j = 0; j < n; ++j) {
      const A diff = value[j] - reg[j], grj = gr[j] + h * gacc[j];
      ghk += gacc[j] * (reg[j] + a * diff);
      g_reg[j] += grj * (A(1) - a);
      g_value[j] += a * grj;
      ga += grj * diff;
    }
    readout_dot += ghk;
    g_gate += ga * w.delta[k];
    g.delta[k] += ga * gate;
  }
  // value (w.value) = raw / max(Σ raw, floor): g_raw = (g_value - ⟨g_value, value⟩) / max(Σ raw, floor), the
  // projection only where the clamp is inactive.
  {
    const A floor = A(kValueMassFloor);
    const A vdiv = std::max(w.vsum, floor);
    const A proj = w.vsum >= floor ? vdot(g.value.data(), w.value.data(), n) : A(0);
    for (int64_t j = 0; j < n; ++j) g.value[j] = (g.value[j] - proj) / vdiv;
  }
  // raw = ALU mixture + c_CONST·z + c_MOV·x + c_LOAD·load + c_POP·pop.
  const A cc = w.coef[machine::kConst], cm = w.coef[machine::kMov], cl = w.coef[machine::kLoad],
          cp = w.coef[machine::kPop];
  g.coef[machine::kConst] += vdot(g.value.data(), w.z.data(), n);
  g.coef[machine::kMov] += vdot(g.value.data(), w.x.data(), n);
  g.coef[machine::kLoad] += vdot(g.value.data(), w.load.data(), n);
  g.coef[machine::kPop] += vdot(g.value.data(), w.pop.data(), n);
  for (int64_t j = 0; j < n; ++j) {
    g.z[j] += cc * g.value[j];
    g.x[j] += cm * g.value[j];
    g.load[j] += cl * g.value[j];
    g.pop[j] += cp * g.value[j];
  }
  // The ALU's backward runs on every row, skipped in the forward or not (as _AluMixSkippingRows does): the ALU
  // coefficients' gradient ⟨g_value, op_k(x, y)⟩ is not 0 where they are. Only with g_value exactly 0 (a line that
  // writes no value: gate w = 0) is every term it adds a product with 0, and then it is skipped. The operands'
  // gradients are those of the row the forward computed (step_sample): none on a row it skipped, and on the others
  // only the ops alu::active_ops kept; the rest go in with coefficient 0, so mix_row_backward skips their passes.
  if (std::any_of(g.value.begin(), g.value.end(), [](A v) { return v != A(0); })) {
    const A* coef = w.coef.data() + machine::kAluFirst;
    const unsigned computed = alu_row_computed(w.e.data()) ? alu::active_ops(coef) : 0u;
    A fwd_coef[alu::kNumOps], gcoef[alu::kNumOps];  // the coefficients of the ops the forward computed, else 0
    for (int k = 0; k < alu::kNumOps; ++k) fwd_coef[k] = (computed >> k) & 1u ? coef[k] : A(0);
    mix_row_backward<A, A>(w.alu, w.x.data(), w.y.data(), g.value.data(), fwd_coef, g.gx.data(), g.gy.data(),
                           gcoef);
    for (int64_t j = 0; j < n; ++j) {
      g.x[j] += g.gx[j];
      g.y[j] += g.gy[j];
    }
    for (int k = 0; k < alu::kNumOps; ++k) g.coef[machine::kAluFirst + k] += gcoef[k];
  }

  // Memory: mem' = mem + e_STORE·χ_c (y - mem); load = Σ_c χ_c mem_c. The memory's gradient is updated in place
  // (gpre.mem = gpost.mem). A row is left alone, its gradient passing through, when all its terms are negligible
  // weights (machine_step.h, "Negligible weights"): no halting readout on it (its g_acc_mem row is zero), χ_c
  // negligible (the write a = e_STORE·χ_c, the load's term χ_c·g_load and the STORE weight's term χ_c·ga), and
  // neither a STORE nor a LOAD on the line (χ_c's own gradient e_STORE·ga + ⟨g_load, mem_c⟩, which every row
  // needs when there is one). The LOAD's test is its weight e_LOAD, not c_LOAD = e_LOAD / w: on a line that writes
  // no value w is a leak too and c_LOAD can be O(1), but g_load = c_LOAD·g_value and g_value carries the gate w,
  // so |g_load| is of the order of e_LOAD times the registers' gradient. On a sharp program that is every row of
  // the steps that do not touch memory; in fp64 it takes exact zeros.
  //
  // Rows the forward wrote softly (UndoLog::invertible) still hold the state after the step here: the tape pass did
  // not keep them (read_write_accumulate), and each is inverted to the state before it in the pass that reads it,
  // m = (m' - a y) / (1 - a), as UndoLog::undo would, and written back for the steps before this one.
  const A es = w.e[machine::kStore];
  const bool rows_needed = matters(es, write_thr) || matters(w.e[machine::kLoad], write_thr);
  const A* y = w.y.data();
  A g_store = A(0);
  // One row's adjoint; kAcc: its g_acc_mem row is not all zero; kInverted: the row holds the state after the step.
  auto row_adjoint = [&]<bool kAcc, bool kInverted>(int64_t c, A chi, A a) {
    const A* gm = gpost.mem + c * n;
    const A* gacc = g_acc_mem + c * n;
    A* mem = pre.mem + c * n;
    A* g_mem = gpre.mem + c * n;  // the same row as gm: each entry is read, then written
    const A* g_load = g.load.data();
    A* g_y = g.y.data();
    const A inv = A(1) / (A(1) - a);
    A ga = A(0), gl = A(0), ghc = A(0);
    NCL_PRAGMA(omp simd reduction(+ : ga, gl, ghc))
    for (int64_t j = 0; j < n; ++j) {
      A m, gmj = gm[j];
      if constexpr (kInverted) {
        const A after = mem[j];
        m = (after - a * y[j]) * inv;
        mem[j] = m;
        if constexpr (kAcc) ghc += gacc[j] * after;
      } else {
        m = mem[j];
        if constexpr (kAcc) ghc += gacc[j] * soft_write_value(m, a, y[j]);
      }
      if constexpr (kAcc) gmj += h * gacc[j];
      g_mem[j] = gmj * (A(1) - a) + chi * g_load[j];
      g_y[j] += a * gmj;
      ga += gmj * (y[j] - m);
      gl += g_load[j] * m;
    }
    readout_dot += ghc;
    g.chi[c] += es * ga + gl;
    g_store += chi * ga;
  };
  // A row that only χ_c's gradient needs (a STORE or LOAD on the line, but no readout on the row, χ_c negligible
  // and the row not written) is only read: its gradient passes through and the STORE's and LOAD's terms of
  // g_χ_c are two dot products, without the full adjoint's stores (every row but the addressed one of a sharp
  // LOAD or STORE step). The STORE's term goes with its weight e_STORE: without a STORE it is a leak.
  const bool store = matters(es, write_thr);
  for (int64_t c = 0; c < C; ++c) {
    const A chi = w.chi[c], a = es * chi;
    const bool inverted = UndoLog<A>::inverted_write(a, write_thr);  // the forward's test
    const bool passes = acc_mem_zero[c] && !matters(chi, negligible<A>(C));
    if (passes && !rows_needed) {
      if (inverted) UndoLog<A>::invert(pre.mem + c * n, n, a, y);
      continue;
    }
    if (passes && !matters(a, write_thr)) {
      const A *gm = gpost.mem + c * n, *mem = pre.mem + c * n, *g_load = g.load.data();
      A ga = A(0), gl = A(0);
      if (store) {
        NCL_PRAGMA(omp simd reduction(+ : ga, gl))
        for (int64_t j = 0; j < n; ++j) {
          ga += gm[j] * (y[j] - mem[j]);
          gl += g_load[j] * mem[j];
        }
      } else {
        NCL_SIMD_SUM(gl)
        for (int64_t j = 0; j < n; ++j) gl += g_load[j] * mem[j];
      }
      g.chi[c] += es * ga + gl;
      continue;
    }
    if (acc_mem_zero[c])
      inverted ? row_adjoint.template operator()<false, true>(c, chi, a)
               : row_adjoint.template operator()<false, false>(c, chi, a);
    else
      inverted ? row_adjoint.template operator()<true, true>(c, chi, a)
               : row_adjoint.template operator()<true, false>(c, chi, a);
  }
  g.e[machine::kStore] += g_store;

  // c = e / max(w, eps), w = max(Σ value-op weights, 0).
  const A wdiv = std::max(gate, norm_eps);
  A g_wdiv = A(0);
  for (int64_t k = 0; k < O; ++k) {
    g.e[k] += g.coef[k] / wdiv;
    g_wdiv -= g.coef[k] * w.coef[k] / wdiv;
  }
  if (gate >= norm_eps) g_gate += g_wdiv;
  if (w.wsum >= A(0))
    for (int64_t k = 0; k < O; ++k)
      if (machine::is_value_op(static_cast<int>(k))) g.e[k] += g_gate;

  // Control and halting mass (control.h's per-line formulas).
  g.readout_dot = readout_dot;
  const A gh = halting::h_grad(readout_dot, static_cast<A>(t), g_exp);
  const A* g_ip = gpost.ip;
  const A chi0 = w.x[0];
  A dR = gh * (A(1) - w.ret_total), g_chi0 = A(0);
  for (int64_t m = 0; m < L; ++m) {
    dR += w.ret_to[m] * g_ip[m];
    g.ret_to[m] = w.ret_mass * (g_ip[m] - gh);
  }
  for (int64_t l = 0; l < L; ++l) {
    A J = A(0);
    for (int64_t q = tgt_rows.start[l]; q < tgt_rows.start[l + 1]; ++q) J += tgt_rows.val[q] * g_ip[tgt_rows.col[q]];
    const A jl = w.jumped[l];
    if (gf.on && jl != A(0)) {  // no mass jumped from line l: its row's gradient gets nothing this step
      A* g_row = gf.tgt + l * L;
      for (int64_t m = 0; m < L; ++m) g_row[m] += jl * g_ip[m];
    }
    const A D = l < L - 1 ? g_ip[l + 1] : gh;
    const control::LineOps<A> o = f.line(l, O);
    gpre.ip[l] += control::ip_grad(o, J, D, dR, gh, chi0);
    if (pre.ip[l] == A(0)) continue;  // both terms below are products with ip_l: ±0
    g_chi0 += control::chi_grad(o, pre.ip[l], J, D);
    if (!gf.on) continue;
    for (int k = 0; k < O; ++k) gf.op[l * O + k] += pre.ip[l] * control::op_coef(k, J, D, dR, gh, chi0);
  }
  // ret_to = rspᵀ rstk. Without RET mass its adjoint is ±0 everywhere and these (S, L) passes add nothing.
  if (w.ret_mass != A(0)) {
    for (int64_t s = 0; s < S; ++s) {
      gpre.rsp[s] += vdot(g.ret_to.data(), pre.rstk + s * L, L);
      if (pre.rsp[s] == A(0)) continue;
      for (int64_t m = 0; m < L; ++m) gpre.rstk[s * L + m] += pre.rsp[s] * g.ret_to[m];
    }
  }
  g.x[0] += g_chi0;

  // POP read, the address fold, the operands. Without a POP on the line (e_POP negligible: g_pop = c_POP·g_value,
  // of the order of e_POP, as g_load above) the POP read's adjoint is negligible: the (S, n) passes are skipped.
  const A* g_pop = g.pop.data();
  const int64_t popped_slots = matters(w.e[machine::kPop], write_thr) ? S : 0;
  for (int64_t s = 0; s < popped_slots; ++s) {
    gpre.dsp[s] += vdot(g_pop, pre.dstk + s * n, n);
    A* g_slot = gpre.dstk + s * n;
    const A p = pre.dsp[s];
    if (p == A(0)) continue;
    for (int64_t j = 0; j < n; ++j) g_slot[j] += p * g_pop[j];
  }
  for (int64_t j0 = 0; j0 < n; j0 += C)  // x_j's gradient from χ_{j mod C}, block by block (step_sample)
    for (int64_t j = j0; j < std::min(j0 + C, n); ++j) g.x[j] += g.chi[j - j0];
  const A *g_x = g.x.data(), *g_y = g.y.data();
  for (int64_t k = 0; k < K; ++k) {
    const A* reg = pre.reg + k * n;
    A* g_reg = gpre.reg + k * n;
    const A al = w.alpha[k], be = w.beta[k];
    g.alpha[k] = vdot(g_x, reg, n);
    g.beta[k] = vdot(g_y, reg, n);
    if (al == A(0) && be == A(0)) continue;
    for (int64_t j = 0; j < n; ++j) g_reg[j] += al * g_x[j] + be * g_y[j];
  }

  // Fields: e = ipᵀop; α, β, δ, z = (ipᵀ field) / max(ρ, eps).
  const A rc = std::max(w.rho, norm_eps), inv_rho = A(1) / rc;
  const A g_inv = (vdot(g.alpha.data(), w.alpha.data(), K) + vdot(g.beta.data(), w.beta.data(), K) +
                   vdot(g.delta.data(), w.delta.data(), K) + vdot(g.z.data(), w.z.data(), n)) * rc;
  const A g_rho = w.rho >= norm_eps ? -g_inv * inv_rho * inv_rho : A(0);
  for (auto* v : {&g.alpha, &g.beta, &g.delta, &g.z})
    for (auto& q : *v) q *= inv_rho;
  for (int64_t l = 0; l < L; ++l) {
    const A p = pre.ip[l];
    const int32_t* c = nz.col.data() + l * 5;
    using Nz = FieldRowNonzeros<A>;
    A gi = g_rho + Nz::dot(c[0], g.e.data(), f.op + l * O, O) + Nz::dot(c[1], g.alpha.data(), f.a + l * K, K) +
           Nz::dot(c[2], g.beta.data(), f.b + l * K, K) + Nz::dot(c[3], g.delta.data(), f.d + l * K, K) +
           Nz::dot(c[4], g.z.data(), f.imm + l * n, n);
    gpre.ip[l] += gi;
    if (p == A(0) || !gf.on) continue;  // a line without mass adds nothing to its fields' gradients
    for (int64_t k = 0; k < O; ++k) gf.op[l * O + k] += p * g.e[k];
    for (int64_t k = 0; k < K; ++k) {
      gf.a[l * K + k] += p * g.alpha[k];
      gf.b[l * K + k] += p * g.beta[k];
      gf.d[l * K + k] += p * g.delta[k];
    }
    for (int64_t j = 0; j < n; ++j) gf.imm[l * n + j] += p * g.z[j];
  }
}

// The adjoint of the run's finish (read_out_running, machine_step.h) at step t on the state `fin` leaving the run:
// g_reg += ρ·g_acc_reg, g_mem += ρ·g_acc_mem and every line's ip gets ρ's gradient, ⟨g_acc, (reg, mem)⟩ + t·g_E
// (halting::h_grad). The accumulators' own gradients pass through, as through every step.
// NCL_NOINLINE: inlined into the backward's per-sample loop (isa.h's `flatten`), these few loops made the whole AVX2
// copy of the loop 5-8 % slower, even on calls that skip them (GCC 12; the register allocation of the one large
// function). Out of line it is the baseline copy, called once a sample on the run's last chunk: the one call from an
// AVX2 copy into ncl:: code that the kernels make on purpose.
template <typename A>
NCL_NOINLINE void read_out_running_backward(const View<A>& fin, const Sizes& z, const A* g_acc_reg,
                                            const A* g_acc_mem, A g_exp, A t, const View<A>& gpost) {
  bool frozen;
  const A rho = running_mass(fin.ip, z.L, frozen);
  const A readout = vdot(g_acc_reg, fin.reg, z.K * z.n) + vdot(g_acc_mem, fin.mem, z.C * z.n);
  const A g_rho = halting::h_grad(readout, t, g_exp);
  for (int64_t i = 0; i < z.K * z.n; ++i) gpost.reg[i] += rho * g_acc_reg[i];
  for (int64_t i = 0; i < z.C * z.n; ++i) gpost.mem[i] += rho * g_acc_mem[i];
  for (int64_t l = 0; l < z.L; ++l) gpost.ip[l] += g_rho;
}

// The adjoint of a frozen sample's step (running_mass) when the step after it was frozen too. The state's gradient
// passes through such a step unchanged (every read and write it makes has weight 0), and so the stacks' and the
// halting mixtures' terms of its adjoint are those of the step after it: only the ip's gradient changes, by
// control's adjoint and the fields' (e = ipᵀop), with gh = Σ g_acc·r + t·g_E. g and w hold what step_backward
// used and left at the latest frozen step: g.e (only the stacks' PUSH, POP, CALL and RET weights are nonzero) and
// g.readout_dot. g_ip: the ip's gradient after the step on entry, before it on return (what step_backward would
// write there: the terms it drops are products with the zero ip or the zero weights).
template <typename A>
void frozen_step_backward(const Fields<A>& f, const SparseRows<A>& tgt_rows, const FieldRowNonzeros<A>& nz,
                          const Sizes& z, const Workspace<A>& w, const Adjoints<A>& g, A g_exp, int64_t t, A* g_ip,
                          A* out) {
  const int64_t L = z.L, O = z.O;
  const A gh = halting::h_grad(g.readout_dot, static_cast<A>(t), g_exp);
  A dR = gh * (A(1) - w.ret_total);
  for (int64_t m = 0; m < L; ++m) dR += w.ret_to[m] * g_ip[m];
  for (int64_t l = 0; l < L; ++l) {
    A J = A(0);
    for (int64_t q = tgt_rows.start[l]; q < tgt_rows.start[l + 1]; ++q) J += tgt_rows.val[q] * g_ip[tgt_rows.col[q]];
    const A D = l < L - 1 ? g_ip[l + 1] : gh;
    out[l] = control::ip_grad(f.line(l, O), J, D, dR, gh, w.x[0]) +
             FieldRowNonzeros<A>::dot(nz.col[l * 5], g.e.data(), f.op + l * O, O);
  }
  std::copy(out, out + L, g_ip);
}

}  // namespace

std::vector<at::Tensor> machine_run_bwd_cpu(const at::Tensor& op, const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& d, const at::Tensor& imm, const at::Tensor& tgt,
                                            at::TensorList carry_in, at::TensorList grad_out, int64_t first,
                                            int64_t count, double norm_eps, bool field_grads,
                                            const std::optional<at::Tensor>& alu, const std::optional<at::Tensor>& load,
                                            const std::optional<at::Tensor>& invertible,
                                            const std::optional<at::Tensor>& mem_after, bool finish) {
  TORCH_CHECK(carry_in.size() == 11 && grad_out.size() == 11, "machine_run_bwd: the carry has 11 tensors");
  const at::Tensor& ip = carry_in[0];
  TORCH_CHECK(ip.scalar_type() == at::kFloat || ip.scalar_type() == at::kDouble,
              "machine_run_bwd: the machine state is float32 or float64");
  for (size_t i = 0; i < 11; ++i) {
    TORCH_CHECK(grad_out[i].sizes() == carry_in[i].sizes() && grad_out[i].scalar_type() == ip.scalar_type() &&
                    grad_out[i].device().is_cpu() && carry_in[i].device().is_cpu() &&
                    carry_in[i].scalar_type() == ip.scalar_type(),
                "machine_run_bwd: carry and gradient ", i, " must match (CPU, same shape and dtype)");
  }
  const Sizes z{ip.size(1), op.size(1), carry_in[1].size(1), carry_in[1].size(2), carry_in[2].size(1),
                carry_in[4].size(1)};
  TORCH_CHECK(z.O == control::kNumOps && op.size(0) == z.L, "machine_run_bwd: op must be (L, ", control::kNumOps, ")");
  const int64_t B = ip.size(0);
  if (alu.has_value())
    TORCH_CHECK(alu->dim() == 3 && alu->size(0) == B && alu->size(1) == count && alu->size(2) == z.n &&
                    alu->scalar_type() == ip.scalar_type() && alu->device().is_cpu(),
                "machine_run_bwd: alu must be the forward's (B, count, n) ALU rows in the carry's dtype");
  // Without the forward's ALU rows, the forward computes them first (halt_eps 0: every step of the chunk), so that
  // the tape pass never computes a row: it is compiled without that code (step_sample's kAluFromTape), and the
  // rows are the forward's bit for bit (its outputs: the 11 carry tensors, the step count, then the rows).
  // CheckpointedRun always passes them; this is for direct calls of the op.
  const at::Tensor alu_c = alu.has_value() ? alu->contiguous()
                                           : machine_run_fwd_cpu(op, a, b, d, imm, tgt, carry_in, first, count, 0.0,
                                                                 norm_eps, /*keep_tape=*/true, -1)[12];
  // The memory's part of the tape (machine_step.h, step_sample's load_in): all three or none.
  const bool memory_tape = load.has_value();
  TORCH_CHECK(memory_tape == invertible.has_value() && memory_tape == mem_after.has_value(),
              "machine_run_bwd: load, invertible and mem_after go together");
  if (memory_tape) {
    const auto& mem = carry_in[2];
    TORCH_CHECK(load->sizes() == at::IntArrayRef({B, count, z.n}) && invertible->sizes() == at::IntArrayRef({B}) &&
                    mem_after->sizes() == mem.sizes(),
                "machine_run_bwd: load must be (B, count, n), invertible (B,) and mem_after the memory's shape");
    for (const auto* t : {&*load, &*invertible, &*mem_after})
      TORCH_CHECK(t->scalar_type() == ip.scalar_type() && t->device().is_cpu(),
                  "machine_run_bwd: load, invertible and mem_after must be CPU tensors in the carry's dtype");
  }
  const at::Tensor load_c = memory_tape ? load->contiguous() : at::Tensor(),
                   invertible_c = memory_tape ? invertible->contiguous() : at::Tensor(),
                   mem_after_c = memory_tape ? mem_after->contiguous() : at::Tensor();
  const Layout lay(z);
  std::vector<at::Tensor> fc{op.contiguous(), a.contiguous(), b.contiguous(), d.contiguous(), imm.contiguous(),
                             tgt.contiguous()};
  std::vector<at::Tensor> cin, gout, gin;
  for (size_t i = 0; i < 11; ++i) {
    cin.push_back(carry_in[i].contiguous());
    gout.push_back(grad_out[i].contiguous());
    // The accumulators' (7..10) pass through every step unchanged: not returned (0 elements), the caller keeps
    // grad's. Copying them cost a fresh (B, C, n) tensor a chunk: 10-20 % of the sharp fwd+bwd (RESULTS.md).
    gin.push_back(i < kFirstAccumulator ? at::empty_like(cin[i], at::MemoryFormat::Contiguous)
                                        : at::empty({0}, cin[i].options()));
  }
  // Without field_grads the six are empty tensors, which the caller does not read.
  std::vector<at::Tensor> gfields;
  for (const auto& t : fc) gfields.push_back(field_grads ? at::zeros_like(t) : at::empty({0}, t.options()));
  AT_DISPATCH_FLOATING_TYPES(ip.scalar_type(), "machine_run_bwd_cpu", [&] {
    using A = scalar_t;
    const auto lines = all_line_ops(fc[0].data_ptr<A>(), z.L, z.O);
    const Fields<A> f{fc[0].data_ptr<A>(), fc[1].data_ptr<A>(), fc[2].data_ptr<A>(),
                      fc[3].data_ptr<A>(), fc[4].data_ptr<A>(), fc[5].data_ptr<A>(), lines.data()};
    const CarryStrides stride(z);
    const SparseRows<A> tgt_rows(f.tgt, z.L, z.L);
    const FieldRowNonzeros<A> nz(f, z);
    // Each thread's share of the field gradients, kept by the first sample of its range and added after the
    // parallel loop in sample order: added as the threads finish, three or more partials would sum in a different
    // order from run to run (floating-point addition is not associative), and repeated runs would differ.
    std::mutex mu;
    std::vector<std::pair<int64_t, FieldGrads<A>>> partials;
    const A eps = static_cast<A>(norm_eps);
    isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
      Workspace<A> w(z);
      Adjoints<A> g(z);
      FieldGrads<A> gf(z, b0 == 0 && b1 == B ? &gfields : nullptr, field_grads);
      const int64_t rec = w.record_size();
      // The tape: each step's intermediates (uninitialised: every record is written before it is read, and the
      // tape is megabytes at a large L) and, in `log`, the rows of the state it overwrote.
      std::unique_ptr<A[]> records(new A[std::max<int64_t>(count, 1) * rec]);
      UndoLog<A> log;
      std::vector<A> work(lay.size()), gbuf_a(lay.size()), gbuf_b(lay.size()), tmp(2 * z.S);
      std::vector<A*> record_at(std::max<int64_t>(count, 1));
      std::vector<size_t> mark_at(std::max<int64_t>(count, 1));
      std::vector<char> frozen_at(std::max<int64_t>(count, 1));
      std::vector<A> ip_out(z.L);
      std::vector<char> acc_mem_zero(z.C);
      // The gradients of the memory and both stacks' slots, updated in place by every step (step_backward): most
      // of their rows pass through a sharp step unchanged.
      std::vector<A> gmem(z.C * z.n), gdstk(z.S * z.n), grstk(z.S * z.L);
      A* in_place[7] = {nullptr, nullptr, gmem.data(), gdstk.data(), nullptr, grstk.data(), nullptr};
      A scalar_sink[2] = {A(0), A(0)};  // expected and faults: the tape pass does not need them
      for (int64_t bb = b0; bb < b1; ++bb) {
        // A frozen sample's steps (running_mass) leave its state as it is, so every one after the first shares
        // that step's record instead of running it again. A sample whose memory writes the walk back inverts
        // (step_backward) takes its LOAD reads from the forward and leaves the memory alone here: the walk back
        // starts from the memory after the chunk, which the forward returned, and its tape pass would only have
        // computed that memory again. That memory is copied in now, in place of the one entering the chunk, which
        // nothing would read.
        const bool skip_memory = memory_tape && invertible_c.data_ptr<A>()[bb] != A(0);
        A* work_p = work.data();
        for (int i = 0; i < 7; ++i) {
          const A* from = i == 2 && skip_memory ? mem_after_c.data_ptr<A>() : cin[i].data_ptr<A>();
          std::copy_n(from + bb * stride[i], lay.off[i + 1] - lay.off[i], work_p + lay.off[i]);
        }
        const View<A> wv(work_p, lay);
        const Carry<A> wc{wv.ip,  wv.reg,  wv.mem,  wv.dstk,     wv.dsp,          wv.rstk,
                          wv.rsp, nullptr, nullptr, scalar_sink, scalar_sink + 1, &log};
        log.clear();
        bool was_frozen = false;
        for (int64_t s = 0; s < count; ++s) {
          bool frozen;
          running_mass(wv.ip, z.L, frozen);
          frozen_at[s] = frozen;
          mark_at[s] = log.mark();
          if (frozen && was_frozen) {
            record_at[s] = record_at[s - 1];
            continue;
          }
          was_frozen = frozen;
          record_at[s] = records.get() + s * rec;
          const A* alu_row = alu_c.data_ptr<A>() + (bb * count + s) * z.n;
          const A* load_row = skip_memory ? load_c.data_ptr<A>() + (bb * count + s) * z.n : nullptr;
          step_sample<A, /*kAluFromTape=*/true>(f, z, wc, w, first + s + 1, eps, alu_row, nullptr, load_row);
          w.save(record_at[s]);
        }
        // Walk back. gpost starts as the gradient of the carry leaving the chunk.
        A* gpost_p = gbuf_a.data();
        A* gpre_p = gbuf_b.data();
        for (int i = 0; i < 7; ++i)
          std::copy_n(gout[i].data_ptr<A>() + bb * stride[i], lay.off[i + 1] - lay.off[i],
                      in_place[i] ? in_place[i] : gpost_p + lay.off[i]);
        const A* g_acc_reg = gout[7].data_ptr<A>() + bb * stride[7];
        const A* g_acc_mem = gout[8].data_ptr<A>() + bb * stride[8];
        for (int64_t c = 0; c < z.C; ++c)
          acc_mem_zero[c] = all_zero(g_acc_mem + c * z.n, z.n);
        // Both views' memory and slot gradients are the in-place buffers (their own parts go unused).
        auto grad_view = [&](A* base) {
          View<A> v(base, lay);
          v.mem = in_place[2], v.dstk = in_place[3], v.rstk = in_place[5];
          return v;
        };
        const A g_exp = gout[9].data_ptr<A>()[bb], g_faults = gout[10].data_ptr<A>()[bb];
        // The tape pass left the state leaving the chunk in work (a skip_memory sample's memory was that one from
        // the start), which the run's finish read out.
        if (finish)
          read_out_running_backward(wv, z, g_acc_reg, g_acc_mem, g_exp, static_cast<A>(first + count),
                                    grad_view(gpost_p));
        bool frozen_after = false;  // whether the step after this one (walked back already) was frozen
        for (int64_t s = count - 1; s >= 0; --s) {
          if (frozen_at[s] && frozen_after) {
            frozen_step_backward(f, tgt_rows, nz, z, w, g, g_exp, first + s + 1, gpost_p + lay.off[0], ip_out.data());
            continue;
          }
          frozen_after = frozen_at[s];
          log.undo(mark_at[s]);  // work holds the state before step s again
          w.load_from(record_at[s]);
          const View<A> pre(work_p, lay);
          std::fill(gpre_p, gpre_p + lay.off[2], A(0));  // ip, reg (the pointers are written, mem and slots in place)
          step_backward(f, tgt_rows, nz, z, pre, w, grad_view(gpost_p), grad_view(gpre_p), g_acc_reg, g_acc_mem,
                        acc_mem_zero.data(), g_exp, g_faults, first + s + 1, eps, g, gf, tmp);
          std::swap(gpost_p, gpre_p);
        }
        for (int i = 0; i < 7; ++i)
          std::copy_n(in_place[i] ? in_place[i] : gpost_p + lay.off[i], lay.off[i + 1] - lay.off[i],
                      gin[i].data_ptr<A>() + bb * stride[i]);
      }
      if (!gf.owned()) return;
      std::lock_guard<std::mutex> lock(mu);
      partials.emplace_back(b0, std::move(gf));
    });
    std::sort(partials.begin(), partials.end(), [](const auto& l, const auto& r) { return l.first < r.first; });
    for (auto& [first_sample, gf] : partials) {
      for (int i = 0; i < 6; ++i) {
        A* out = gfields[i].data_ptr<A>();
        const A* part = gf.part(i);
        for (int64_t j = 0; j < gf.len[i]; ++j) out[j] += part[j];
      }
    }
  });
  gfields.insert(gfields.end(), gin.begin(), gin.end());
  return gfields;
}

int64_t machine_tape_entry_size(int64_t L, int64_t K, int64_t n, int64_t C, int64_t S) {
  const Sizes z{L, control::kNumOps, K, n, C, S};
  Workspace<float> w(z);
  return Layout(z).size() + w.record_size();
}

}  // namespace ncl
