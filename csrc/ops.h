// Host entry points of every kernel, one set per device. Registered in bindings.cpp.
#pragma once

#include <ATen/ATen.h>
#include <ATen/Dispatch.h>
#include <optional>
#include <string>
#include <tuple>
#include <vector>

// The dtypes every CPU kernel is instantiated for (float64 included: docs/design.md §2).
#define NCL_DISPATCH_FLOATS(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

namespace ncl {

#define NCL_MEMORY_OPS(SUFFIX)                                                                          \
  at::Tensor soft_read_fwd_##SUFFIX(const at::Tensor& bank, const at::Tensor& weights);                \
  std::tuple<at::Tensor, at::Tensor> soft_read_bwd_##SUFFIX(const at::Tensor& grad, const at::Tensor& bank, \
                                                            const at::Tensor& weights);               \
  at::Tensor soft_write_fwd_##SUFFIX(const at::Tensor& bank, const at::Tensor& weights,                \
                                     const at::Tensor& values, const at::Tensor& gate);               \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> soft_write_bwd_##SUFFIX(                  \
      const at::Tensor& grad, const at::Tensor& bank, const at::Tensor& weights,                       \
      const at::Tensor& values, const at::Tensor& gate);                                               \
  at::Tensor content_address_fwd_##SUFFIX(const at::Tensor& bank, const at::Tensor& keys,              \
                                          const at::Tensor& strength);                                 \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> content_address_bwd_##SUFFIX(                         \
      const at::Tensor& grad, const at::Tensor& out, const at::Tensor& bank, const at::Tensor& keys,   \
      const at::Tensor& strength);

NCL_MEMORY_OPS(cpu)
#ifdef NCL_WITH_CUDA
NCL_MEMORY_OPS(cuda)
#endif

#undef NCL_MEMORY_OPS

#define NCL_ALU_OPS(SUFFIX)                                                                             \
  at::Tensor alu_mix_fwd_##SUFFIX(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs); \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> alu_mix_bwd_##SUFFIX(                                 \
      const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs);

NCL_ALU_OPS(cpu)
#ifdef NCL_WITH_CUDA
NCL_ALU_OPS(cuda)
#endif

#undef NCL_ALU_OPS

#define NCL_ALU_CIRCUIT_OPS(SUFFIX)                                                                     \
  at::Tensor alu_circuit_mix_fwd_##SUFFIX(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs, \
                                          const at::Tensor& gates, const at::Tensor& outputs);         \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> alu_circuit_mix_bwd_##SUFFIX(                         \
      const at::Tensor& grad, const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs,      \
      const at::Tensor& gates, const at::Tensor& outputs);

NCL_ALU_CIRCUIT_OPS(cpu)
#ifdef NCL_WITH_CUDA
NCL_ALU_CIRCUIT_OPS(cuda)
#endif

#undef NCL_ALU_CIRCUIT_OPS

// Kernel-side checks of alu_circuit_mix's inputs (csrc/cpu/alu_circuit.cpp); returns m = log2(n). The
// netlist's wiring is checked only for CPU tensors (it would need a device-to-host copy on CUDA).
int check_alu_circuit_inputs(const at::Tensor& x, const at::Tensor& y, const at::Tensor& coeffs,
                             const at::Tensor& gates, const at::Tensor& outputs, const char* op);

#define NCL_STACK_OPS(SUFFIX)                                                                           \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor> stack_update_fwd_##SUFFIX(                \
      const at::Tensor& slots, const at::Tensor& ptr, const at::Tensor& push, const at::Tensor& pop,   \
      const at::Tensor& item);                                                                         \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> stack_update_bwd_##SUFFIX(    \
      const at::Tensor& grad_slots, const at::Tensor& grad_ptr, const at::Tensor& grad_overflow,       \
      const at::Tensor& grad_underflow, const at::Tensor& slots, const at::Tensor& ptr,                \
      const at::Tensor& push, const at::Tensor& pop, const at::Tensor& item);

NCL_STACK_OPS(cpu)
#ifdef NCL_WITH_CUDA
NCL_STACK_OPS(cuda)
#endif

#undef NCL_STACK_OPS

#define NCL_CONTROL_OPS(SUFFIX)                                                                         \
  std::tuple<at::Tensor, at::Tensor> control_fwd_##SUFFIX(const at::Tensor& ip, const at::Tensor& op,   \
                                                          const at::Tensor& chi0, const at::Tensor& tgt, \
                                                          const at::Tensor& rstk, const at::Tensor& rsp); \
  std::tuple<at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor, at::Tensor> control_bwd_##SUFFIX( \
      const at::Tensor& grad_ip, const at::Tensor& grad_halted, const at::Tensor& ip, const at::Tensor& op, \
      const at::Tensor& chi0, const at::Tensor& tgt, const at::Tensor& rstk, const at::Tensor& rsp);

NCL_CONTROL_OPS(cpu)
#ifdef NCL_WITH_CUDA
NCL_CONTROL_OPS(cuda)
#endif

#undef NCL_CONTROL_OPS

#define NCL_HALTING_OPS(SUFFIX)                                                                         \
  std::tuple<at::Tensor, at::Tensor, at::Tensor> halting_accumulate_fwd_##SUFFIX(                      \
      const at::Tensor& acc_reg, const at::Tensor& acc_mem, const at::Tensor& expected,                \
      const at::Tensor& reg, const at::Tensor& mem, const at::Tensor& h, double t);                    \
  std::tuple<at::Tensor, at::Tensor, at::Tensor>                                                        \
      halting_accumulate_bwd_##SUFFIX(const at::Tensor& grad_acc_reg, const at::Tensor& grad_acc_mem,  \
                                      const at::Tensor& grad_expected, const at::Tensor& acc_reg,      \
                                      const at::Tensor& acc_mem, const at::Tensor& expected,           \
                                      const at::Tensor& reg, const at::Tensor& mem, const at::Tensor& h, \
                                      double t);

NCL_HALTING_OPS(cpu)
#ifdef NCL_WITH_CUDA
NCL_HALTING_OPS(cuda)
#endif

#undef NCL_HALTING_OPS

// The whole-run machine kernel (CPU only; csrc/cpu/machine.cpp). carry = ip reg mem dstk dsp rstk rsp acc_reg
// acc_mem expected faults; returns the carry after the steps run, then `done` (a 0-dim int64 tensor), then, with
// keep_tape, what the backward's tape pass reads for these steps: each step's ALU mixture row and LOAD read (B, count,
// n each; the first `done` are the run's), and per sample 1 if the backward can invert every memory write (B).
// With run_steps >= 0 (the run's step limit), a call in which the run ends (the batch halts in it, done < count, or
// first + count == run_steps) also reads out the mass still running after its last step, as the run's finish does
// (machine_cpu::read_out_running): the accumulators it returns are the run's readouts.
std::vector<at::Tensor> machine_run_fwd_cpu(const at::Tensor& op, const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& d, const at::Tensor& imm, const at::Tensor& tgt,
                                            at::TensorList carry, int64_t first, int64_t count, double halt_eps,
                                            double norm_eps, bool keep_tape, int64_t run_steps);
// Its backward over `count` steps: the fields' gradients (6; empty tensors unless field_grads), then the gradient
// of the carry entering them (11), the accumulators' last four as empty tensors (they equal grad's). `alu`, when
// given, is the forward's first keep_tape output for these steps; `load` and `invertible` its other two, with
// `mem_after` the memory leaving the steps (B, C, n), all three or none. With `finish` the forward read the run out
// after these steps (run_steps above): grad is the gradient of what it returned, and that readout's adjoint comes
// first.
std::vector<at::Tensor> machine_run_bwd_cpu(const at::Tensor& op, const at::Tensor& a, const at::Tensor& b,
                                            const at::Tensor& d, const at::Tensor& imm, const at::Tensor& tgt,
                                            at::TensorList carry, at::TensorList grad, int64_t first, int64_t count,
                                            double norm_eps, bool field_grads, const std::optional<at::Tensor>& alu,
                                            const std::optional<at::Tensor>& load,
                                            const std::optional<at::Tensor>& invertible,
                                            const std::optional<at::Tensor>& mem_after, bool finish);
// Elements one step of one sample takes on that backward's tape (the state before it and its intermediates).
int64_t machine_tape_entry_size(int64_t L, int64_t K, int64_t n, int64_t C, int64_t S);

// The table ALU's op names in kernel order (ncl/alu.h), for the test against ncl_kernels.isa.ALU_OPS.
std::vector<std::string> alu_op_names();

// Kernel-side guard (the Python layer raises ValueError first; this catches direct torch.ops calls).
inline void check_kernel_inputs(std::initializer_list<const at::Tensor*> ts, const char* op) {
  const at::Tensor& first = **ts.begin();
  for (const at::Tensor* t : ts) {
    TORCH_CHECK(t->is_contiguous(), op, ": inputs must be contiguous");
    TORCH_CHECK(t->scalar_type() == first.scalar_type(), op, ": inputs must share one dtype");
    TORCH_CHECK(t->device() == first.device(), op, ": inputs must be on one device");
  }
}

}  // namespace ncl
