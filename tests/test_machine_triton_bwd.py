"""The Triton whole-run backward (``ncl_kernels.machine.triton_bwd.machine_run_bwd``) against the CPU op
``torch.ops.ncl.machine_run_bwd`` (``csrc/cpu/machine_bwd.cpp``), which is its spec, on the same inputs.

- random soft programs on random soft states, every carry tensor and every output gradient random and non-zero,
  several steps from ``first > 0``, ``n > C`` and ``n < C``; also with a tiny tile budget, so that every
  row-block loop (memory, both stacks, the program's lines, the ALU tiles) runs several blocks;
- a sharp program (ALU, memory, both stacks, CALL/RET) whose samples halt at different steps inside the chunk,
  so that the later steps of one sample are frozen (a zero ip) while the other still runs;
- ``field_grads`` False: empty field gradients and the same carry gradients;
- ``count = 0``, an empty batch, the inputs left untouched, and the ValueErrors of bad inputs;
- :class:`~ncl_kernels.machine.CheckpointedRun` on the Triton kernels against the reference path
  (:func:`~ncl_kernels.machine._recomputed_chunk_grads`, the step ops under autograd) and the cpp kernels.

The fields' gradients are summed with atomics (another fp32 order than the CPU op's); the tolerance is the
project's fp32 one (``ncl_kernels.testing``). On CPU the kernel runs under ``TRITON_INTERPRET=1`` (set before
Triton is imported), so every size is tiny.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

import ncl  # noqa: E402
from ncl_kernels import dispatch  # noqa: E402
from ncl_kernels import machine as machine_op  # noqa: E402
from ncl_kernels.isa import one_hot  # noqa: E402
from ncl_kernels.machine import NORM_EPS  # noqa: E402
from ncl_kernels.machine import triton as T  # noqa: E402
from ncl_kernels.machine import triton_bwd as TB  # noqa: E402
from ncl_kernels.testing import assert_close  # noqa: E402
from test_machine_fused import LOOP, _soft_inputs, _soft_program  # noqa: E402
from test_machine_run_kernel import _carry  # noqa: E402
from test_machine_run_triton import _random_carry  # noqa: E402

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
    pytest.skip("Triton needs a GPU or TRITON_INTERPRET=1", allow_module_level=True)

pytestmark = [
    pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None,
                       reason=f"the CPU op is the reference: {dispatch.unavailable_reason('cpp')}"),
    # The interpreter runs on numpy: a RuntimeWarning is an inf/NaN computed somewhere, padding lanes included.
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0") else "cpu"
NAMES = ("op", "a", "b", "d", "imm", "tgt", "ip", "reg", "mem", "dstk", "dsp", "rstk", "rsp", "acc_reg", "acc_mem",
         "expected", "faults")


def _triton(fields, carry, grads, first, count, field_grads=True):
    out = TB.machine_run_bwd(*(f.to(DEVICE) for f in fields), [t.to(DEVICE) for t in carry],
                             [g.to(DEVICE) for g in grads], first, count, NORM_EPS, field_grads)
    return [t.cpu() for t in out]


def _cpu(fields, carry, grads, first, count, field_grads=True):
    return list(torch.ops.ncl.machine_run_bwd(*fields, list(carry), list(grads), first, count, NORM_EPS,
                                              field_grads))


def _random_grads(carry, seed):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(t.shape, generator=g) for t in carry]


def _assert_grads_match(actual, expected, what, fields=True):
    assert len(actual) == len(expected) == 17
    for name, a, e in zip(NAMES, actual, expected):
        if not fields and name in NAMES[:6]:
            continue
        assert a.shape == e.shape, (what, name)
        assert_close(a, e, torch.float32, f"{what}: grad {name}")


# (B, L, K, n, C, S): n > C (several x_j fold onto one cell) and n < C (cells with no address mass).
SIZES = [(3, 5, 3, 8, 4, 4), (2, 6, 2, 8, 16, 3)]


@pytest.mark.parametrize("tiles", ["default", "small"])
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_soft_program_on_random_states(size, tiles, monkeypatch):
    """Steps 3..6 of a soft program (every op on every line) from a random state, random output gradients."""
    if tiles == "small":
        monkeypatch.setattr(T, "TILE_BUDGET", 32)  # row blocks of 2-4 rows, line blocks of 1-2 lines
        monkeypatch.setattr(TB, "BWD_TILE_BUDGET", 16)  # ALU backward tiles of 2 columns
    B, L, K, n, C, S = size
    config = ncl.MachineConfig(n=n, cells=C, registers=K, stack=S)
    fields = [f.detach() for f in _soft_program(config, lines=L, dtype=torch.float32, seed=sum(size)).fields()]
    carry = _random_carry(*size, seed=sum(size))
    grads = _random_grads(carry, seed=sum(size) + 1)
    assert all(float(t.abs().min()) > 0 for t in carry[:1] + carry[4:7])  # soft: no exact zeros
    expected = _cpu(fields, carry, grads, 2, 4)
    actual = _triton(fields, carry, grads, 2, 4)
    _assert_grads_match(actual, expected, f"{size} {tiles}")
    for name, before, after in zip(NAMES[6:13], grads, expected[6:13]):  # the steps changed every gradient
        assert not torch.allclose(before, after), name
    for name, g in zip(NAMES, expected[:6]):
        assert float(g.abs().max()) > 0, name


def test_without_field_gradients():
    """``field_grads=False``: the six come back empty, the carry's gradients are the same (bitwise: the flag
    only drops the fields' atomics)."""
    size = (2, 5, 3, 8, 4, 4)
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    fields = [f.detach() for f in _soft_program(config, lines=5, dtype=torch.float32, seed=3).fields()]
    carry = _random_carry(*size, seed=3)
    grads = _random_grads(carry, seed=4)
    without = _triton(fields, carry, grads, 1, 3, field_grads=False)
    assert [t.numel() for t in without[:6]] == [0] * 6
    _assert_grads_match(without, _cpu(fields, carry, grads, 1, 3, field_grads=False), "no field grads",
                        fields=False)
    with_fields = _triton(fields, carry, grads, 1, 3)
    for name, a, b in zip(NAMES[6:], without[6:], with_fields[6:]):
        assert torch.equal(a, b), name


def test_sharp_program_whose_samples_halt_inside_the_chunk():
    """LOOP (ALU, memory, both stacks, CALL/RET) on one-hot inputs, steps 2..7: the first sample runs on, the
    second halts at step 3, and the third has halted before the chunk, its ip exactly 0: every one of its steps
    is frozen (the CPU op's frozen_step_backward path), and its ip's gradient still flows through them.

    The fields are exactly one-hot (the assembled program's argmax), so the run has no e^-β leaks. With them, a
    sample that halts runs on at ρ ~ 1e-10 on leak-level values, its fields' gradients are renormalised by 1/ρ,
    and the C++ kernel's fp32 skips of negligible weights (docs/machine.md) change those values: the two kernels
    then differ by O(1) under the random gradients this test puts on every output."""
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config)
    values = torch.tensor([[0, 1, 0, 0], [0, 0, 3, 2], [0, 2, 0, 0]])
    mem_values = torch.arange(3 * 16).reshape(3, 16) % 16
    regs, mem = one_hot(values, config.n, torch.float32), one_hot(mem_values, config.n, torch.float32)
    steps = [program.execute(regs=v.tolist(), mem=m.tolist(), engine="vm").steps
             for v, m in zip(values, mem_values)]
    assert steps[0] > 7 and steps[1] == 3
    fields = [one_hot(f.detach().argmax(-1), f.shape[-1], torch.float32) for f in program.fields()]
    first, count = 1, 6
    with torch.no_grad():
        start = list(_carry(program, regs, mem).flat())
        carry = list(torch.ops.ncl.machine_run_fwd(*fields, start, 0, first, config.halt_eps, NORM_EPS)[:11])
        carry[0][2] = 0.0  # a halted sample
        after = torch.ops.ncl.machine_run_fwd(*fields, carry, first, count, config.halt_eps, NORM_EPS)
    mass_before, mass_after = carry[0].sum(1), after[0].sum(1)
    assert float(mass_before[1]) > 0.5 and float(mass_after[1]) < 1e-6  # halts inside the chunk
    assert float(mass_after[0]) > 0.5 and float(after[0][2].abs().max()) == 0  # runs on; stays frozen
    grads = _random_grads(carry, seed=11)
    expected = _cpu(fields, carry, grads, first, count)
    actual = _triton(fields, carry, grads, first, count)
    _assert_grads_match(actual, expected, "sharp")
    assert float(expected[6][2].abs().max()) > 0


def test_edge_cases():
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    fields = [f.detach() for f in _soft_program(config, lines=5, dtype=torch.float32, seed=7).fields()]
    carry = _random_carry(2, 5, 3, 8, 4, 4, seed=7)
    grads = _random_grads(carry, seed=8)
    kept = [t.clone() for t in (*fields, *carry, *grads)]
    # No step: the gradient passes through, the fields' is zero.
    out = _triton(fields, carry, grads, 3, 0)
    _assert_grads_match(out, _cpu(fields, carry, grads, 3, 0), "count = 0")
    # The inputs are left alone.
    _triton(fields, carry, grads, 0, 2)
    for a, b in zip((*fields, *carry, *grads), kept):
        assert torch.equal(a, b)
    # An empty batch.
    empty, empty_g = [t[:0] for t in carry], [g[:0] for g in grads]
    _assert_grads_match(_triton(fields, empty, empty_g, 0, 2), _cpu(fields, empty, empty_g, 0, 2), "B = 0")


def test_bad_inputs_raise_value_errors():
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    fields = [f.detach() for f in _soft_program(config, lines=5, dtype=torch.float32, seed=7).fields()]
    carry = _random_carry(2, 5, 3, 8, 4, 4, seed=7)
    grads = _random_grads(carry, seed=8)
    bwd = TB.machine_run_bwd
    with pytest.raises(ValueError, match="machine_run_bwd.*float32"):
        bwd(*(f.double() for f in fields), [t.double() for t in carry], [g.double() for g in grads], 0, 1, NORM_EPS)
    with pytest.raises(ValueError, match="machine_run_bwd: the carry has 11 tensors"):
        bwd(*fields, carry[:10], grads, 0, 1, NORM_EPS)
    with pytest.raises(ValueError, match="machine_run_bwd: grad has 11 tensors"):
        bwd(*fields, carry, grads[:10], 0, 1, NORM_EPS)
    with pytest.raises(ValueError, match=r"machine_run_bwd: grad\[3\]"):
        bwd(*fields, carry, grads[:3] + [grads[3][:, :1]] + grads[4:], 0, 1, NORM_EPS)
    with pytest.raises(ValueError, match=r"machine_run_bwd: grad\[9\]"):
        bwd(*fields, carry, grads[:9] + [grads[9].double()] + grads[10:], 0, 1, NORM_EPS)
    with pytest.raises(ValueError, match="machine_run_bwd: field shapes"):
        bwd(fields[0][:, :10], *fields[1:], carry, grads, 0, 1, NORM_EPS)
    with pytest.raises(ValueError, match="machine_run_bwd: first and count"):
        bwd(*fields, carry, grads, 0, -1, NORM_EPS)


def test_checkpointed_run_uses_the_kernel_and_matches_the_step_ops(monkeypatch):
    """CheckpointedRun's ``triton`` backward is this kernel: per chunk it matches the reference path (the
    chunk run again with the triton step ops under autograd), and a whole checkpointed run's gradients match
    the cpp kernels'."""
    if dispatch.unavailable_reason("triton") is not None:
        pytest.skip(f"triton backend: {dispatch.unavailable_reason('triton')}")
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    program = _soft_program(config, lines=5, dtype=torch.float32, seed=8)
    fields = [f.detach() for f in program.fields()]
    carry = _random_carry(2, 5, 3, 8, 4, 4, seed=8)
    grads = _random_grads(carry, seed=9)
    kernel = _triton(fields, carry, grads, 1, 3)
    assert [t.numel() for t in kernel[13:]] == [0] * 4  # the accumulators' pass through, checked against autograd:
    kernel = [*kernel[:6], *machine_op.pass_accumulator_grads(kernel[6:], grads)]
    reference = machine_op._recomputed_chunk_grads([f.to(DEVICE) for f in fields], [t.to(DEVICE) for t in carry],
                                                   [g.to(DEVICE) for g in grads], 1, 3, config, "triton")
    _assert_grads_match(kernel, [t.cpu() for t in reference], "kernel against the step ops")

    calls = []
    original = TB.machine_run_bwd

    def counting(*args, **kwargs):
        calls.append(args[8:10])
        return original(*args, **kwargs)

    monkeypatch.setattr(TB, "machine_run_bwd", counting)
    regs, mem = _soft_inputs(config, batch=2, dtype=torch.float32, seed=8)

    def run(backend, device):
        p = program.to(device)
        p.zero_grad(set_to_none=True)
        r, m = (t.detach().to(device).requires_grad_() for t in (regs, mem))
        out = p.run(r, m, max_steps=6, backend=backend, grad_mode="checkpoint", chunk=4)
        w = torch.linspace(0.5, 1.5, config.n, device=device)
        ((out.regs * w).sum() + (out.mem * w).sum() + out.expected_steps.sum() + out.unhalted.sum()
         + out.overflow.sum()).backward()
        # Copies (.cpu() of a CPU tensor is the tensor itself): Module.to moves .grad in place, and the next run
        # moves the program to the GPU.
        return {**{name: q.grad.to("cpu", copy=True) for name, q in p.named_parameters()},
                "regs": r.grad.to("cpu", copy=True), "mem": m.grad.to("cpu", copy=True)}

    cpp = run("cpp", "cpu")
    tri = run("triton", DEVICE)
    assert calls == [(4, 2), (0, 4)]  # one call per chunk, last chunk first
    for name in cpp:
        assert float(cpp[name].abs().max()) > 0, name
        assert_close(tri[name], cpp[name], torch.float32, f"checkpointed triton against cpp: grad {name}")


def test_compile_targets_describe_the_kernel():
    """scripts/compile_triton_sm90.py compiles the kernel from this description: every argument typed."""
    from ncl_kernels._oplib import TRITON_MODULES

    assert "ncl_kernels.machine.triton_bwd" in TRITON_MODULES
    assert len(TB.COMPILE_TARGETS) == 2
    for entry in TB.COMPILE_TARGETS:
        assert entry["fn"] is TB._machine_run_bwd_kernel
        assert list(entry["signature"]) == list(entry["fn"].arg_names)
        assert entry["signature"]["norm_eps"] == "fp32"
        assert all(entry["signature"][name] == "constexpr" for name in entry["constexprs"])
