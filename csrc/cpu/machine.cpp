// The whole-run machine kernel on CPU: up to `count` steps of DESIGN §3 per call, each sample's state kept in
// its own loop (one at::parallel_for over the batch per call), no autograd. It computes exactly what
// ncl.machine.interpreter.step and ncl.machine.run.advance compute on the cpp backend, with the same
// per-element math (ncl/alu.h through alu_row.h, ncl/control.h, ncl/memory.h, ncl/stack.h, ncl/halting.h);
// only the order of some fp32 sums differs.
//
// Early exit is decided for the batch, as advance() does: a step runs unless every sample's running mass
// was below halt_eps before it. The samples run independently, so each runs all `count` steps and records
// its running mass before each; if the batch would have stopped at step s < count, the chunk is run again
// from its input for s steps (at most one extra chunk per run).
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "../ops.h"
#include "alu_row.h"
#include "ncl/halting.h"
#include "ncl/machine.h"
#include "ncl/memory.h"
#include "ncl/stack.h"

namespace ncl {
namespace {

struct Sizes {
  int64_t L, O, K, n, C, S;
};

// The program's fields, shared by every sample: op (L,O), a b d (L,K), imm (L,n), tgt (L,L).
template <typename A> struct Fields {
  const A *op, *a, *b, *d, *imm, *tgt;
};

// One sample's carry, updated in place: ip (L), reg (K,n), mem (C,n), dstk (S,n), dsp (S), rstk (S,L),
// rsp (S), acc_reg (K,n), acc_mem (C,n), expected, faults.
template <typename A> struct Carry {
  A *ip, *reg, *mem, *dstk, *dsp, *rstk, *rsp, *acc_reg, *acc_mem, *expected, *faults;
};

template <typename A> struct Workspace {
  std::vector<A> e, alpha, beta, delta, z, x, y, chi, load, pop, value, coef, new_ip, moved, jumped, ret_to,
      ret_item, ptr;
  RowScratch<A> alu;
  explicit Workspace(const Sizes& s)
      : e(s.O), alpha(s.K), beta(s.K), delta(s.K), z(s.n), x(s.n), y(s.n), chi(s.C), load(s.n), pop(s.n),
        value(s.n), coef(s.O), new_ip(s.L), moved(s.L), jumped(s.L), ret_to(s.L), ret_item(s.L), ptr(s.S),
        alu(s.n) {}
};

// out[j] = Σ_r w_r bank[r, j] over R rows of width W: soft_read of one row of weights.
template <typename A> void read_rows(const A* w, const A* bank, int64_t R, int64_t W, A* out) {
  std::fill(out, out + W, A(0));
  for (int64_t r = 0; r < R; ++r) {
    const A wr = w[r];
    const A* row = bank + r * W;
    for (int64_t j = 0; j < W; ++j) out[j] += wr * row[j];
  }
}

// bank[r] <- bank[r] + gate·w_r (v - bank[r]): soft_write of one sample.
template <typename A> void write_rows(A* bank, const A* w, const A* v, A gate, int64_t R, int64_t W) {
  for (int64_t r = 0; r < R; ++r) {
    const A a = gate * w[r];
    A* row = bank + r * W;
    for (int64_t j = 0; j < W; ++j) row[j] = soft_write_value(row[j], a, v[j]);
  }
}

// One pass over a bank for a read, a write and the halting accumulation, which would otherwise stream the
// (C, n) memory three times a step: read[j] += w_r bank[r, j] (the state at the start of the step), then
// bank[r] <- bank[r] + gate·w_r (v - bank[r]), then acc[r] += h·bank[r] (the state after the step).
template <typename A>
void read_write_accumulate(A* bank, A* acc, const A* w, A gate, const A* v, A h, int64_t R, int64_t W, A* read) {
  std::fill(read, read + W, A(0));
  for (int64_t r = 0; r < R; ++r) {
    const A wr = w[r], a = gate * wr;
    A* row = bank + r * W;
    A* acc_row = acc + r * W;
    for (int64_t j = 0; j < W; ++j) {
      read[j] += wr * row[j];
      row[j] = soft_write_value(row[j], a, v[j]);
      acc_row[j] = halting::accumulate(acc_row[j], h, row[j]);
    }
  }
}

// stack_update of one sample in place; returns (overflow, underflow) = (u p_{S-1}, o p_0).
template <typename A>
std::pair<A, A> update_stack(A* slots, A* p, A u, A o, const A* item, int64_t S, int64_t W, A* tmp) {
  const std::pair<A, A> faults{u * p[S - 1], o * p[0]};
  for (int64_t s = 0; s < S; ++s) {
    const A raised = stack::up_at<A>(p, s, S);
    tmp[s] = stack::new_pointer(p[s], raised, stack::down_at<A>(p, s, S), u, o);
    write_rows(slots + s * W, &raised, item, u, 1, W);
  }
  std::copy(tmp, tmp + S, p);
  return faults;
}

// One step t of one sample (DESIGN §3 steps 1-8 and the halting accumulation).
template <typename A>
void step_sample(const Fields<A>& f, const Sizes& z, const Carry<A>& c, Workspace<A>& w, int64_t t, A norm_eps) {
  const int64_t L = z.L, O = z.O, K = z.K, n = z.n, C = z.C, S = z.S;
  // 1. Fields: e keeps the running mass ρ; the register and immediate fields are renormalised by it.
  std::fill(w.e.begin(), w.e.end(), A(0));
  for (auto* v : {&w.alpha, &w.beta, &w.delta, &w.z}) std::fill(v->begin(), v->end(), A(0));
  A rho = A(0);
  for (int64_t l = 0; l < L; ++l) {
    const A p = c.ip[l];
    rho += p;
    if (p == A(0)) continue;
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
  read_rows(w.alpha.data(), c.reg, K, n, w.x.data());
  read_rows(w.beta.data(), c.reg, K, n, w.y.data());
  std::fill(w.chi.begin(), w.chi.end(), A(0));
  for (int64_t j = 0; j < n; ++j) w.chi[j % C] += w.x[j];
  read_rows(c.dsp, c.dstk, S, n, w.pop.data());

  // 7-8. Control and the halting mass, from the ip and return stack at the start of the step.
  const A chi0 = w.x[0];
  read_rows(c.rsp, c.rstk, S, L, w.ret_to.data());
  A ret_mass = A(0), halt_mass = A(0), ret_total = A(0);
  for (int64_t l = 0; l < L; ++l) {
    const control::LineOps<A> o = control::line_ops<A>(f.op + l * O);
    w.jumped[l] = control::jumped(o, c.ip[l], chi0);
    w.moved[l] = control::moved_on(o, c.ip[l], chi0);
    ret_mass += c.ip[l] * o.ret;
    halt_mass += c.ip[l] * o.halt;
    ret_total += w.ret_to[l];
  }
  for (int64_t m = 0; m < L; ++m) w.new_ip[m] = (m > 0 ? w.moved[m - 1] : A(0)) + ret_mass * w.ret_to[m];
  for (int64_t l = 0; l < L; ++l) {
    const A jl = w.jumped[l];
    if (jl == A(0)) continue;
    const A* row = f.tgt + l * L;
    for (int64_t m = 0; m < L; ++m) w.new_ip[m] += jl * row[m];
  }
  const A halted = halt_mass + w.moved[L - 1] + ret_mass * (A(1) - ret_total);
  // The return address of a CALL on line l is line l+1 (no mass if l is the last line).
  const A e_call = std::max(w.e[machine::kCall], A(0));
  const A call_div = std::max(e_call, norm_eps);
  w.ret_item[0] = A(0);
  for (int64_t l = 1; l < L; ++l) w.ret_item[l] = c.ip[l - 1] * f.op[(l - 1) * O + machine::kCall] / call_div;

  // 5. Memory: LOAD reads it, STORE writes it (address from a, value from b), and the halting mixture
  //    accumulates it, in one pass (LOAD and the address are known before the write).
  read_write_accumulate(c.mem, c.acc_mem, w.chi.data(), w.e[machine::kStore], w.y.data(), halted, C, n,
                        w.load.data());

  // 3. ALU and the value written: w = Σ value-op weights (clamped at 0), c = e / w.
  A wsum = A(0);
  for (int64_t k = 0; k < O; ++k)
    if (machine::is_value_op(static_cast<int>(k))) wsum += w.e[k];
  const A gate = std::max(wsum, A(0));
  const A wdiv = std::max(gate, norm_eps);
  for (int64_t k = 0; k < O; ++k) w.coef[k] = w.e[k] / wdiv;
  A alu_max = A(0);
  for (int k = 0; k < alu::kNumOps; ++k) alu_max = std::max(alu_max, std::abs(w.e[machine::kAluFirst + k]));
  A* value = w.value.data();
  if (alu_max > A(alu::kSkipRel)) {
    mix_row<A, A>(w.alu, w.x.data(), w.y.data(), w.coef.data() + machine::kAluFirst, value);
  } else {
    std::fill(value, value + n, A(0));  // a line that is no ALU op (interpreter._AluMixSkippingRows)
  }
  const A cc = w.coef[machine::kConst], cm = w.coef[machine::kMov], cl = w.coef[machine::kLoad],
          cp = w.coef[machine::kPop];
  for (int64_t j = 0; j < n; ++j) value[j] = value[j] + cc * w.z[j] + cm * w.x[j] + cl * w.load[j] + cp * w.pop[j];

  // 4. Registers (and their halting mixture), 6. both stacks.
  write_rows(c.reg, w.delta.data(), value, gate, K, n);
  for (int64_t i = 0; i < K * n; ++i) c.acc_reg[i] = halting::accumulate(c.acc_reg[i], halted, c.reg[i]);
  const auto d_faults =
      update_stack(c.dstk, c.dsp, w.e[machine::kPush], w.e[machine::kPop], w.x.data(), S, n, w.ptr.data());
  const auto r_faults = update_stack(c.rstk, c.rsp, e_call, w.e[machine::kRet], w.ret_item.data(), S, L, w.ptr.data());
  std::copy(w.new_ip.begin(), w.new_ip.end(), c.ip);
  *c.faults = *c.faults + (d_faults.first + d_faults.second + r_faults.first);
  *c.expected = halting::expected_steps(*c.expected, static_cast<A>(t), halted);
}

// Runs steps first+1 .. first+count on every sample of `carry` in place; rho (B, count) gets each sample's
// running mass before each step.
template <typename A>
void run_chunk(const Fields<A>& f, const Sizes& z, std::vector<at::Tensor>& carry, int64_t first, int64_t count,
               A norm_eps, A* rho) {
  const int64_t B = carry[0].size(0);
  std::vector<A*> ptr;
  for (auto& t : carry) ptr.push_back(t.data_ptr<A>());
  const int64_t stride[11] = {z.L, z.K * z.n, z.C * z.n, z.S * z.n, z.S, z.S * z.L, z.S, z.K * z.n, z.C * z.n, 1, 1};
  at::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    Workspace<A> w(z);
    for (int64_t b = b0; b < b1; ++b) {
      A* p[11];
      for (int i = 0; i < 11; ++i) p[i] = ptr[i] + b * stride[i];
      const Carry<A> c{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]};
      for (int64_t s = 0; s < count; ++s) {
        A mass = A(0);
        for (int64_t l = 0; l < z.L; ++l) mass += c.ip[l];
        if (rho) rho[b * count + s] = mass;
        step_sample(f, z, c, w, first + s + 1, norm_eps);
      }
    }
  });
}

}  // namespace

std::vector<at::Tensor> machine_run_fwd_cpu(const at::Tensor& op, const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& d, const at::Tensor& imm, const at::Tensor& tgt,
                                            at::TensorList carry_in, int64_t first, int64_t count, double halt_eps,
                                            double norm_eps) {
  TORCH_CHECK(carry_in.size() == 11, "machine_run_fwd: the carry has 11 tensors, got ", carry_in.size());
  const at::Tensor& ip = carry_in[0];
  const at::Tensor& reg = carry_in[1];
  const at::Tensor& mem = carry_in[2];
  TORCH_CHECK(ip.dim() == 2 && reg.dim() == 3 && mem.dim() == 3, "machine_run_fwd: ip (B,L), reg (B,K,n), mem (B,C,n)");
  TORCH_CHECK(count >= 0 && first >= 0, "machine_run_fwd: first and count must be >= 0");
  const Sizes z{ip.size(1), op.size(1), reg.size(1), reg.size(2), mem.size(1), carry_in[4].size(1)};
  TORCH_CHECK(op.size(0) == z.L && a.sizes() == b.sizes() && a.sizes() == d.sizes() && a.size(1) == z.K &&
                  imm.size(1) == z.n && tgt.size(0) == z.L && tgt.size(1) == z.L && z.O == control::kNumOps,
              "machine_run_fwd: field shapes do not match the carry");
  std::vector<const at::Tensor*> all{&op, &a, &b, &d, &imm, &tgt};
  for (const auto& t : carry_in) all.push_back(&t);
  for (const auto* t : all) {
    TORCH_CHECK(t->device().is_cpu() && t->scalar_type() == ip.scalar_type(),
                "machine_run_fwd: every tensor must be on the CPU with the carry's dtype");
  }
  TORCH_CHECK(ip.scalar_type() == at::kFloat || ip.scalar_type() == at::kDouble,
              "machine_run_fwd: the machine state is float32 or float64");
  const int64_t B = ip.size(0);
  std::vector<at::Tensor> fields_c{op.contiguous(), a.contiguous(), b.contiguous(), d.contiguous(), imm.contiguous(),
                                   tgt.contiguous()};
  std::vector<at::Tensor> out;
  for (const auto& t : carry_in) out.push_back(t.contiguous().clone());
  int64_t done = count;
  AT_DISPATCH_FLOATING_TYPES(ip.scalar_type(), "machine_run_fwd_cpu", [&] {
    using A = scalar_t;
    const Fields<A> f{fields_c[0].data_ptr<A>(), fields_c[1].data_ptr<A>(), fields_c[2].data_ptr<A>(),
                      fields_c[3].data_ptr<A>(), fields_c[4].data_ptr<A>(), fields_c[5].data_ptr<A>()};
    std::vector<A> rho(B * count);
    run_chunk(f, z, out, first, count, static_cast<A>(norm_eps), rho.data());
    // The batch stops before the first step at which every sample's running mass is below halt_eps.
    for (int64_t s = 0; s < count && done == count; ++s) {
      A mx = A(0);
      for (int64_t i = 0; i < B; ++i) mx = std::max(mx, rho[i * count + s]);
      if (mx < static_cast<A>(halt_eps)) done = s;
    }
    if (done < count) {
      for (size_t i = 0; i < out.size(); ++i) out[i] = carry_in[i].contiguous().clone();
      run_chunk<A>(f, z, out, first, done, static_cast<A>(norm_eps), nullptr);
    }
  });
  out.push_back(at::scalar_tensor(done, at::kLong));
  return out;
}

}  // namespace ncl
