"""Whole-run machine kernels: ``count`` machine steps (DESIGN §3) per call, each sample's state updated in one
program. :mod:`ncl_kernels.machine.triton` is the Triton counterpart of the CPU op ``ncl::machine_run_fwd``
(``csrc/cpu/machine.cpp``)."""
