// The only translation unit that includes torch/extension.h: the per-device kernels of the ncl:: ops, and the
// Python module ncl_kernels._C. The ops' schemas are stated once, in Python (ncl_kernels/_oplib.py defines
// them from each op's OpSpec, and ncl_kernels/machine/ the whole-run ops): this file only implements them.
#include <torch/extension.h>
#include <torch/library.h>

#include "ncl/alu.h"
#include "ncl/machine.h"
#include "ncl/memory.h"
#include "cpu/isa.h"
#include "ops.h"

#define NCL_IMPL_MEMORY_OPS(m, SUFFIX)                                   \
  m.impl("soft_read_fwd", &ncl::soft_read_fwd_##SUFFIX);                 \
  m.impl("soft_read_bwd", &ncl::soft_read_bwd_##SUFFIX);                 \
  m.impl("soft_write_fwd", &ncl::soft_write_fwd_##SUFFIX);               \
  m.impl("soft_write_bwd", &ncl::soft_write_bwd_##SUFFIX);               \
  m.impl("content_address_fwd", &ncl::content_address_fwd_##SUFFIX);     \
  m.impl("content_address_bwd", &ncl::content_address_bwd_##SUFFIX);

#define NCL_IMPL_ALU_OPS(m, SUFFIX)                      \
  m.impl("alu_mix_fwd", &ncl::alu_mix_fwd_##SUFFIX);     \
  m.impl("alu_mix_bwd", &ncl::alu_mix_bwd_##SUFFIX);

#define NCL_IMPL_ALU_CIRCUIT_OPS(m, SUFFIX)                              \
  m.impl("alu_circuit_mix_fwd", &ncl::alu_circuit_mix_fwd_##SUFFIX);     \
  m.impl("alu_circuit_mix_bwd", &ncl::alu_circuit_mix_bwd_##SUFFIX);

#define NCL_IMPL_STACK_OPS(m, SUFFIX)                         \
  m.impl("stack_update_fwd", &ncl::stack_update_fwd_##SUFFIX);   \
  m.impl("stack_update_bwd", &ncl::stack_update_bwd_##SUFFIX);

#define NCL_IMPL_CONTROL_OPS(m, SUFFIX)                 \
  m.impl("control_fwd", &ncl::control_fwd_##SUFFIX);     \
  m.impl("control_bwd", &ncl::control_bwd_##SUFFIX);

#define NCL_IMPL_HALTING_OPS(m, SUFFIX)                                       \
  m.impl("halting_accumulate_fwd", &ncl::halting_accumulate_fwd_##SUFFIX);     \
  m.impl("halting_accumulate_bwd", &ncl::halting_accumulate_bwd_##SUFFIX);

TORCH_LIBRARY_IMPL(ncl, CPU, m) {
  m.impl("machine_run_fwd", &ncl::machine_run_fwd_cpu);
  m.impl("machine_run_bwd", &ncl::machine_run_bwd_cpu);
  NCL_IMPL_MEMORY_OPS(m, cpu)
  NCL_IMPL_ALU_OPS(m, cpu)
  NCL_IMPL_ALU_CIRCUIT_OPS(m, cpu)
  NCL_IMPL_STACK_OPS(m, cpu)
  NCL_IMPL_CONTROL_OPS(m, cpu)
  NCL_IMPL_HALTING_OPS(m, cpu)
}

#ifdef NCL_WITH_CUDA
TORCH_LIBRARY_IMPL(ncl, CUDA, m) {
  NCL_IMPL_MEMORY_OPS(m, cuda)
  NCL_IMPL_ALU_OPS(m, cuda)
  NCL_IMPL_ALU_CIRCUIT_OPS(m, cuda)
  NCL_IMPL_STACK_OPS(m, cuda)
  NCL_IMPL_CONTROL_OPS(m, cuda)
  NCL_IMPL_HALTING_OPS(m, cuda)
}
#endif

PYBIND11_MODULE(TORCH_EXTENSION_NAME, mod) {
  mod.doc() = "ncl fused kernels; the ops are registered as torch.ops.ncl.*";
  mod.def("cuda_compiled", [] {
#ifdef NCL_WITH_CUDA
    return true;
#else
    return false;
#endif
  }, "True when the CUDA kernels were compiled into this build.");
  mod.attr("NORM_EPS") = ncl::kNormEps;
  mod.attr("ALU_SKIP_REL") = ncl::alu::kSkipRel;
  mod.attr("ALU_SUPPORT_REL") = ncl::alu::support_threshold<float>(1);
  using namespace pybind11::literals;
  mod.attr("MACHINE_OPCODES") = pybind11::dict(
      "CONST"_a = ncl::machine::kConst, "MOV"_a = ncl::machine::kMov, "ADD"_a = ncl::machine::kAluFirst,
      "LOAD"_a = ncl::machine::kLoad, "STORE"_a = ncl::machine::kStore, "PUSH"_a = ncl::machine::kPush,
      "POP"_a = ncl::machine::kPop, "CALL"_a = ncl::machine::kCall, "RET"_a = ncl::machine::kRet);
  mod.def("machine_tape_entry_size", &ncl::machine_tape_entry_size, "L"_a, "K"_a, "n"_a, "C"_a, "S"_a,
          "Elements of one step of one sample on ncl::machine_run_bwd's tape (csrc/cpu/machine_bwd.cpp).");
  mod.def("cpu_isa", [] { return std::string(ncl::isa::best_isa()); },
          "The vector ISA the CPU kernels run with now: 'avx2+fma' or 'baseline' (csrc/cpu/isa.h).");
  mod.def("alu_op_names", &ncl::alu_op_names, "The table ALU's op names in kernel order (csrc/include/ncl/alu.h).");
}
