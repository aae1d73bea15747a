// The whole-run machine kernel on CPU: up to `count` steps of docs/design.md §3 per call, each sample's state kept in
// its own loop (one at::parallel_for over the batch per call), no autograd. It computes exactly what
// ncl_kernels.machine.step.step and ncl_kernels.machine.reference.advance_steps compute on the cpp backend, with
// the same per-element math (ncl/alu.h through alu_row.h, ncl/control.h, ncl/memory.h, ncl/stack.h, ncl/halting.h);
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
#include "isa.h"
#include "machine_step.h"

namespace ncl {
namespace {

using namespace machine_cpu;

// Runs steps first+1 .. first+count on every sample of `in`, into `carry` (same shapes, contiguous): each sample's
// thread copies its carry in, then steps it in place, so the copy is made while the sample's state goes into cache
// anyway (a clone of the whole carry first was a pass over memory of its own, on one thread). rho (B, count) gets
// each sample's running mass before each step. With `tape` set, the rows the backward's tape pass reads instead of
// computing them: each step's ALU mixture row and LOAD read (B, count, n each; step_sample; 0 for a frozen step,
// whose weights are all 0), and per sample 1 if every memory row its steps wrote is one the backward's walk back
// inverts (UndoLog::invertible), else 0 (B). With finish_t >= 0 each sample's running mass is read out after its
// steps, at step finish_t (read_out_running).
template <typename A> struct TapeRows {
  A *alu, *load, *invertible;
};
template <typename A>
void run_chunk(const Fields<A>& f, const Sizes& z, const std::vector<at::Tensor>& in, std::vector<at::Tensor>& carry,
               int64_t first, int64_t count, A norm_eps, A* rho, const TapeRows<A>* tape, int64_t finish_t) {
  const int64_t B = carry[0].size(0);
  std::vector<A*> ptr;
  std::vector<const A*> src;
  for (auto& t : carry) ptr.push_back(t.data_ptr<A>());
  for (auto& t : in) src.push_back(t.data_ptr<A>());
  const CarryStrides stride(z);
  isa::parallel_for(0, B, 1, [&](int64_t b0, int64_t b1) {
    Workspace<A> w(z);
    for (int64_t b = b0; b < b1; ++b) {
      A* p[11];
      for (int i = 0; i < 11; ++i) {
        p[i] = ptr[i] + b * stride[i];
        std::copy_n(src[i] + b * stride[i], stride[i], p[i]);
      }
      const Carry<A> c{p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7], p[8], p[9], p[10]};
      bool invertible = true;
      for (int64_t s = 0; s < count; ++s) {
        bool frozen;
        const A mass = running_mass(c.ip, z.L, frozen);
        const int64_t row = (b * count + s) * z.n;
        if (frozen) {  // and so are all its later steps: they are the identity (running_mass, machine_step.h)
          if (rho) std::fill(rho + b * count + s, rho + (b + 1) * count, A(0));
          if (tape)
            for (A* rows : {tape->alu, tape->load}) std::fill(rows + row, rows + (b + 1) * count * z.n, A(0));
          break;
        }
        if (rho) rho[b * count + s] = mass;
        step_sample<A>(f, z, c, w, first + s + 1, norm_eps, nullptr, tape ? tape->alu + row : nullptr, nullptr,
                       tape ? tape->load + row : nullptr);
        invertible = invertible && w.memory_invertible;
      }
      if (tape) tape->invertible[b] = invertible ? A(1) : A(0);
      if (finish_t >= 0) read_out_running(c, z, static_cast<A>(finish_t));
    }
  });
}

}  // namespace

std::vector<at::Tensor> machine_run_fwd_cpu(const at::Tensor& op, const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& d, const at::Tensor& imm, const at::Tensor& tgt,
                                            at::TensorList carry_in, int64_t first, int64_t count, double halt_eps,
                                            double norm_eps, bool keep_tape, int64_t run_steps) {
  TORCH_CHECK(carry_in.size() == 11, "machine_run_fwd: the carry has 11 tensors, got ", carry_in.size());
  const at::Tensor& ip = carry_in[0];
  const at::Tensor& reg = carry_in[1];
  const at::Tensor& mem = carry_in[2];
  TORCH_CHECK(ip.dim() == 2 && reg.dim() == 3 && mem.dim() == 3, "machine_run_fwd: ip (B,L), reg (B,K,n), mem (B,C,n)");
  TORCH_CHECK(count >= 0 && first >= 0, "machine_run_fwd: first and count must be >= 0");
  TORCH_CHECK(run_steps == -1 || run_steps >= first + count,
              "machine_run_fwd: run_steps must be -1 (no finish) or at least first + count");
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
  std::vector<at::Tensor> in, out;
  for (const auto& t : carry_in) {
    in.push_back(t.contiguous());
    out.push_back(at::empty_like(in.back(), at::MemoryFormat::Contiguous));
  }
  int64_t done = count;
  std::vector<at::Tensor> tape;  // ALU rows, LOAD rows, invertible (TapeRows)
  if (keep_tape)
    tape = {at::empty({B, count, z.n}, ip.options()), at::empty({B, count, z.n}, ip.options()),
            at::empty({B}, ip.options())};
  AT_DISPATCH_FLOATING_TYPES(ip.scalar_type(), "machine_run_fwd_cpu", [&] {
    using A = scalar_t;
    const auto lines = all_line_ops(fields_c[0].data_ptr<A>(), z.L, z.O);
    const Fields<A> f{fields_c[0].data_ptr<A>(), fields_c[1].data_ptr<A>(), fields_c[2].data_ptr<A>(),
                      fields_c[3].data_ptr<A>(), fields_c[4].data_ptr<A>(), fields_c[5].data_ptr<A>(),
                      lines.data()};
    std::vector<A> rho(B * count);
    const TapeRows<A> rows = keep_tape ? TapeRows<A>{tape[0].data_ptr<A>(), tape[1].data_ptr<A>(),
                                                     tape[2].data_ptr<A>()}
                                       : TapeRows<A>{};
    // The run ends after this call's last step if that is its limit; if the batch halts earlier, the pass below
    // runs again to there and reads it out instead.
    const bool at_limit = run_steps >= 0 && first + count == run_steps;
    run_chunk(f, z, in, out, first, count, static_cast<A>(norm_eps), rho.data(), keep_tape ? &rows : nullptr,
              at_limit ? first + count : -1);
    // The batch stops before the first step at which every sample's running mass is below halt_eps.
    for (int64_t s = 0; s < count && done == count; ++s) {
      A mx = A(0);
      for (int64_t i = 0; i < B; ++i) mx = std::max(mx, rho[i * count + s]);
      if (mx < static_cast<A>(halt_eps)) done = s;
    }
    if (done < count)  // same states, same rows: the first `done` rows of the first pass are this pass's
      run_chunk<A>(f, z, in, out, first, done, static_cast<A>(norm_eps), nullptr, nullptr,
                   run_steps >= 0 ? first + done : -1);
  });
  out.push_back(at::scalar_tensor(done, at::kLong));
  // Rows past `done` belong to steps the batch did not take; `invertible` covers them too (a superset of the steps
  // run, so a 1 holds for the run's).
  out.insert(out.end(), tape.begin(), tape.end());
  return out;
}

}  // namespace ncl
