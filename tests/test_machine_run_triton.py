"""The Triton whole-run machine kernel (``ncl_kernels.machine.triton.machine_run_fwd``) against the CPU op
``torch.ops.ncl.machine_run_fwd`` (``csrc/cpu/machine.cpp``), which is its spec, on the same inputs.

- random soft programs on random soft states (every carry tensor non-zero, the stack pointers' mass at the
  top and bottom too, so faults accrue) and on a run's own states, several steps from ``first > 0``; also with
  a tiny tile budget, so that every row-block loop (memory, both stacks, the ALU tiles) runs several blocks;
- the address fold ``chi[j mod C]`` with ``n != C`` (``n > C`` and ``n < C``);
- a sharp program on one-hot inputs whose samples halt at different steps: the early exit ``done``, the
  rerun of a chunk that stops early, a run split in two chunks, and the discrete VM's result;
- the edge cases: ``count = 0``, an empty batch, inputs left untouched, fp64 rejected.

On CPU the kernel runs under ``TRITON_INTERPRET=1`` (set before Triton is imported, as ``conftest.py`` does),
so every size is tiny.
"""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

pytest.importorskip("triton")

import ncl  # noqa: E402
from ncl_kernels.machine import NORM_EPS  # noqa: E402
from ncl_kernels.isa import OP  # noqa: E402
from ncl_kernels.isa import one_hot  # noqa: E402
from ncl_kernels import dispatch  # noqa: E402
from ncl_kernels.machine import triton as T  # noqa: E402
from ncl_kernels.testing import assert_close  # noqa: E402
from test_machine_fused import LOOP, _soft_inputs, _soft_program  # noqa: E402
from test_machine_run_kernel import _carry  # noqa: E402

if not torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
    pytest.skip("Triton needs a GPU or TRITON_INTERPRET=1", allow_module_level=True)

pytestmark = [
    pytest.mark.skipif(dispatch.unavailable_reason("cpp") is not None,
                       reason=f"the CPU op is the reference: {dispatch.unavailable_reason('cpp')}"),
    # The interpreter runs on numpy: a RuntimeWarning is an inf/NaN computed somewhere, padding lanes included.
    pytest.mark.filterwarnings("error::RuntimeWarning"),
]

DEVICE = "cuda" if torch.cuda.is_available() and os.environ.get("TRITON_INTERPRET", "0") in ("", "0") else "cpu"
NAMES = ("ip", "reg", "mem", "dstk", "dsp", "rstk", "rsp", "acc_reg", "acc_mem", "expected", "faults")


def _triton(fields, carry, first, count, halt_eps):
    out = T.machine_run_fwd(*(f.to(DEVICE) for f in fields), [t.to(DEVICE) for t in carry], first, count, halt_eps,
                            NORM_EPS)
    return [t.cpu() for t in out[:-1]], int(out[-1])


def _cpu(fields, carry, first, count, halt_eps):
    out = torch.ops.ncl.machine_run_fwd(*fields, list(carry), first, count, halt_eps, NORM_EPS)
    return list(out[:-1]), int(out[-1])


def _assert_carries_match(actual, expected, what):
    for name, a, e in zip(NAMES, actual, expected):
        assert_close(a, e, torch.float32, f"{what}: {name}")


def _random_carry(B, L, K, n, C, S, seed):
    """A soft state with every tensor non-zero: ip's mass below 1 (partly halted), soft stack pointers."""
    g = torch.Generator().manual_seed(seed)

    def soft(*shape):
        return torch.softmax(2 * torch.randn(*shape, generator=g), -1)

    return [0.9 * soft(B, L), soft(B, K, n), soft(B, C, n), soft(B, S, n), soft(B, S), soft(B, S, L), soft(B, S),
            0.5 * torch.rand(B, K, n, generator=g), 0.5 * torch.rand(B, C, n, generator=g),
            3 * torch.rand(B, generator=g), 0.1 * torch.rand(B, generator=g)]


def test_opcodes_match_the_opcode_table():
    names = ("HALT", "CONST", "MOV", "LOAD", "STORE", "PUSH", "POP", "JMP", "JZ", "JNZ", "CALL", "RET")
    assert {name: getattr(T, name) for name in names} == {name: OP[name] for name in names}
    assert T.ALU_FIRST == OP["ADD"] and T.NUM_OPCODES == len(OP)


# (B, L, K, n, C, S): n > C (several x_j fold onto one cell), n == C, n < C (cells with no address mass), and
# a long program (the kernel streams the lines in blocks: several blocks even with the default tiles).
SIZES = [(3, 5, 3, 8, 4, 4), (2, 7, 4, 16, 4, 6), (2, 6, 3, 8, 16, 5), (2, 150, 3, 8, 4, 4)]


@pytest.mark.slow
@pytest.mark.parametrize("tiles", ["default", "small"])
@pytest.mark.parametrize("size", SIZES, ids=str)
def test_soft_program_on_random_states(size, tiles, monkeypatch):
    """Every carry tensor random and non-zero; steps 3..6 of a soft program (every op on every line)."""
    if tiles == "small":
        monkeypatch.setattr(T, "TILE_BUDGET", 32)  # row blocks of 2-4 rows, ALU tiles of 2-4 rows
    B, L, K, n, C, S = size
    config = ncl.MachineConfig(n=n, cells=C, registers=K, stack=S)
    fields = [f.detach() for f in _soft_program(config, lines=L, dtype=torch.float32, seed=sum(size)).fields()]
    carry = _random_carry(*size, seed=sum(size))
    expected, done_cpu = _cpu(fields, carry, 2, 4, config.halt_eps)
    actual, done = _triton(fields, carry, 2, 4, config.halt_eps)
    assert done == done_cpu == 4
    _assert_carries_match(actual, expected, f"{size} {tiles}")
    for name, before, after in zip(NAMES, carry, expected):  # the comparison is not of unchanged tensors
        assert not torch.allclose(before, after), name
    assert bool((expected[10] > carry[10] + 1e-3).all())  # pointer mass at the ends: faults accrue


@pytest.mark.parametrize("n,C", [(8, 4), (16, 4)])
def test_soft_program_on_a_runs_own_states(n, C):
    """From the initial state of ``Program.run`` (as tests/test_machine_fused.py builds it) the CPU op runs two
    steps, so the accumulators and stacks hold mass; then four more steps on both."""
    config = ncl.MachineConfig(n=n, cells=C, registers=3, stack=4)
    for seed in range(2):
        program = _soft_program(config, lines=5, dtype=torch.float32, seed=seed)
        regs, mem = (t.detach() for t in _soft_inputs(config, batch=3, dtype=torch.float32, seed=seed))
        fields = [f.detach() for f in program.fields()]
        with torch.no_grad():
            carry, _ = _cpu(fields, _carry(program, regs, mem).flat(), 0, 2, config.halt_eps)
        assert all(float(t.abs().max()) > 0 for t in carry)
        expected, done_cpu = _cpu(fields, carry, 2, 4, config.halt_eps)
        actual, done = _triton(fields, carry, 2, 4, config.halt_eps)
        assert done == done_cpu == 4
        _assert_carries_match(actual, expected, f"n={n} C={C} seed {seed}")


@pytest.mark.slow
def test_sharp_program_halts_early_and_reruns_the_chunk():
    """LOOP (ALU, memory, both stacks, CALL/RET) on one-hot inputs; the samples halt at different steps."""
    config = ncl.MachineConfig(n=16, cells=16, registers=4, stack=6)
    program = ncl.assemble(LOOP, config)
    values = torch.tensor([[0, 1, 0, 0], [0, 0, 3, 2]])
    mem_values = torch.arange(2 * 16).reshape(2, 16) % 16
    regs, mem = one_hot(values, config.n, torch.float32), one_hot(mem_values, config.n, torch.float32)
    vm = [program.execute(regs=v.tolist(), mem=m.tolist(), engine="vm") for v, m in zip(values, mem_values)]
    steps = [r.steps for r in vm]
    assert len(set(steps)) == 2 and max(steps) < 16
    fields = [f.detach() for f in program.fields()]
    with torch.no_grad():
        carry = list(_carry(program, regs, mem).flat())
    expected, done_cpu = _cpu(fields, carry, 0, 16, config.halt_eps)
    actual, done = _triton(fields, carry, 0, 16, config.halt_eps)
    assert done == done_cpu == max(steps)  # stopped when the last sample halted, not at 16
    _assert_carries_match(actual, expected, "sharp, 16 steps asked")
    # The chunk that stopped early is the run of exactly `done` steps.
    exact, done_exact = _triton(fields, carry, 0, done, config.halt_eps)
    assert done_exact == done
    _assert_carries_match(actual, exact, "sharp, the rerun")
    # The same run in two chunks: steps 1..5, then 6.. (the second stops early too).
    part, done_part = _triton(fields, carry, 0, 5, config.halt_eps)
    rest, done_rest = _triton(fields, part, 5, 16, config.halt_eps)
    assert (done_part, done_rest) == (5, done - 5)
    _assert_carries_match(rest, expected, "sharp, two chunks")
    # And it is the discrete VM's run.
    torch.testing.assert_close(actual[9], torch.tensor([float(s) for s in steps]), rtol=0, atol=1e-4)
    for b, r in enumerate(vm):
        assert actual[1][b].argmax(-1).tolist() == r.regs
        assert actual[2][b].argmax(-1).tolist() == r.mem


def test_edge_cases():
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    fields = [f.detach() for f in _soft_program(config, lines=5, dtype=torch.float32, seed=7).fields()]
    carry = _random_carry(2, 5, 3, 8, 4, 4, seed=7)
    kept = [t.clone() for t in carry]
    # No step: the carry comes back as new tensors with the same values.
    out, done = _triton(fields, carry, 0, 0, config.halt_eps)
    assert done == 0
    _assert_carries_match(out, carry, "count = 0")
    # The inputs are left alone.
    _triton(fields, carry, 0, 2, config.halt_eps)
    for name, a, b in zip(NAMES, carry, kept):
        assert torch.equal(a, b), name
    # An empty batch stops before its first step, as on the CPU (its running-mass maximum is 0).
    empty = [t[:0] for t in carry]
    assert _triton(fields, empty, 0, 3, config.halt_eps)[1] == _cpu(fields, empty, 0, 3, config.halt_eps)[1] == 0
    with pytest.raises(ValueError, match="float32"):
        T.machine_run_fwd(*(f.double() for f in fields), [t.double() for t in carry], 0, 1, config.halt_eps,
                          NORM_EPS)
    with pytest.raises(ValueError, match="11 tensors"):
        T.machine_run_fwd(*fields, carry[:10], 0, 1, config.halt_eps, NORM_EPS)


def test_the_warp_count_comes_from_the_environment(monkeypatch):
    """``NCL_TRITON_WARPS`` sets the warps of both whole-run kernels (scripts/machine_warps.py times them); the
    run at 16 warps equals the CPU op's (on a GPU another layout of each tile; the interpreter ignores it)."""
    monkeypatch.delenv("NCL_TRITON_WARPS", raising=False)
    assert T.launch_warps(4) == 4 and T.launch_warps(8) == 8
    monkeypatch.setenv("NCL_TRITON_WARPS", "16")
    assert T.launch_warps(4) == 16
    config = ncl.MachineConfig(n=8, cells=4, registers=3, stack=4)
    fields = [f.detach() for f in _soft_program(config, lines=5, dtype=torch.float32, seed=5).fields()]
    carry = _random_carry(2, 5, 3, 8, 4, 4, seed=5)
    actual, done = _triton(fields, carry, 0, 3, config.halt_eps)
    expected, done_cpu = _cpu(fields, carry, 0, 3, config.halt_eps)
    assert done == done_cpu == 3
    _assert_carries_match(actual, expected, "16 warps")
    for bad in ("3", "32", "eight", "-4"):
        monkeypatch.setenv("NCL_TRITON_WARPS", bad)
        with pytest.raises(ValueError, match="NCL_TRITON_WARPS must be one of"):
            _triton(fields, carry, 0, 1, config.halt_eps)


def test_compile_target_describes_the_kernel():
    """scripts/compile_triton_sm90.py compiles the kernel from this description: every argument typed."""
    # the benchmark sizes and the library image's length, and the latter at 16 warps
    assert [e.get("num_warps", 4) for e in T.COMPILE_TARGETS] == [T.NUM_WARPS, T.NUM_WARPS, 16]
    for entry in T.COMPILE_TARGETS:
        assert entry["fn"] is T._machine_run_kernel
        assert list(entry["signature"]) == list(entry["fn"].arg_names)
        assert entry["signature"]["norm_eps"] == "fp32"
        assert all(entry["signature"][name] == "constexpr" for name in entry["constexprs"])


@pytest.mark.slow
def test_the_library_image_at_the_default_sizes():
    """The compiled library image (277 lines; n = C = 128, K = 8, S = 32): two samples entering gcd and fib,
    8 steps. The program is far wider than one tile, so the fields' and jumps' passes run many line blocks."""
    config = ncl.MachineConfig()
    program = ncl.library.image(config)
    assert program.length > 200
    g = torch.Generator().manual_seed(0)
    regs = one_hot(torch.randint(0, 10, (2, config.registers), generator=g), config.n, torch.float32)
    mem = one_hot(torch.randint(0, 10, (2, config.cells), generator=g), config.n, torch.float32)
    fields = [f.detach() for f in program.fields()]
    with torch.no_grad():
        carry = list(_carry(program, regs, mem).flat())
    carry[0] = torch.zeros_like(carry[0])
    carry[0][0, program.entries["gcd"]] = carry[0][1, program.entries["fib"]] = 1.0
    expected, done_cpu = _cpu(fields, carry, 0, 8, config.halt_eps)
    actual, done = _triton(fields, carry, 0, 8, config.halt_eps)
    assert done == done_cpu == 8
    assert not torch.equal(expected[0], carry[0])  # the ip moved
    _assert_carries_match(actual, expected, "library image")
