"""A program for the differentiable computer: per-line logits, as a trainable ``nn.Module``."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ncl.machine import vm
from ncl.machine.instructions import Instruction, format_assembly
from ncl.machine.run import DEFAULT_MAX_STEPS, RunResult, check_run_options, machine_run
from ncl.machine.values import check_distribution
from ncl_kernels.isa import NUM_OPS, one_hot
from ncl_kernels.machine import MachineConfig, ProgramFields

_FIELDS = ("op", "a", "b", "d", "imm", "tgt")
#: How :meth:`Program.execute` runs a program: the differentiable machine, or the discrete VM.
ENGINES = ("soft", "vm")


class ExecResult(NamedTuple):
    """The integer result of :meth:`Program.execute`.

    ``value``: r0; ``regs``: every register; ``mem``: every cell; ``steps``: steps run; ``halted``: the
    halted probability (1.0 or 0.0 on the VM).
    """

    value: int
    regs: list[int]
    mem: list[int]
    steps: int
    halted: float


class Program(nn.Module):
    r"""``L`` lines of logits: ``op (L, O)``, ``a, b, d (L, K)``, ``imm (L, n)``, ``tgt (L, L)``.

    The softmax of each block gives the line's fields (:meth:`fields`). :func:`~ncl.machine.assemble` sets
    the logits to ``β·one_hot``; ``Program(config, L)`` starts from uniform fields (zero logits), for
    learning a program from scratch.

    Args:
        config: machine sizes.
        length: ``L``, the number of lines (``>= 1``).
        labels: label name -> line index, kept for disassembly.

    Example::

        >>> import torch
        >>> from ncl.machine import MachineConfig, assemble
        >>> from ncl_kernels.isa import one_hot
        >>> config = MachineConfig(n=16, cells=4, registers=4, stack=4)
        >>> program = assemble("ADD r0, r1, r2\nHALT", config)    # sharp logits: sharpness * one_hot
        >>> program.execute(3, 4).value                  # r1=3, r2=4 on the differentiable machine
        7
        >>> program.execute(9, 9, engine="vm").value     # the discrete VM: 18 wraps around Z_16
        2
        >>> regs = one_hot(torch.tensor([[0, 3, 4, 0]]), 16)                # (B, K, n) distributions
        >>> mem = one_hot(torch.zeros(1, 4, dtype=torch.long), 16)         # (B, C, n)
        >>> out = program.run(regs, mem)                 # batched, adaptive halting
        >>> out.r0.argmax(-1).tolist(), out.steps
        ([7], 2)
        >>> out.r0[:, 7].sum().backward()                # gradients reach the fields' logits (and inputs)
        >>> program.op_logits.grad.shape == program.op_logits.shape
        True
    """

    def __init__(self, config: MachineConfig, length: int, labels: dict[str, int] | None = None):
        super().__init__()
        if not isinstance(config, MachineConfig):
            raise ValueError(f"config must be a MachineConfig, got {type(config).__name__}")
        if not isinstance(length, int) or length < 1:
            raise ValueError(f"length must be an int >= 1, got {length!r}")
        self.config = config
        self.labels = dict(labels or {})
        sizes = {"op": NUM_OPS, "a": config.registers, "b": config.registers, "d": config.registers,
                 "imm": config.n, "tgt": length}
        for name in _FIELDS:
            self.register_parameter(f"{name}_logits", nn.Parameter(torch.zeros(length, sizes[name])))

    @classmethod
    def from_instructions(cls, code: list[Instruction], config: MachineConfig | None = None,
                          labels: dict[str, int] | None = None) -> "Program":
        """A sharp program: each field's logits are ``β·one_hot`` of the instruction's field.

        Args:
            code: the instructions (unused fields are 0 in an :class:`Instruction`).
            config: machine sizes (default :class:`MachineConfig`).
            labels: label name -> line index.
        """
        config = config or MachineConfig()
        program = cls(config, len(code), labels)
        with torch.no_grad():
            for name in _FIELDS:
                logits = getattr(program, f"{name}_logits")
                index = torch.tensor([getattr(ins, name) for ins in code])
                if index.min() < 0 or index.max() >= logits.shape[1]:
                    raise ValueError(f"code: field {name} must lie in 0..{logits.shape[1] - 1}")
                logits.copy_(config.sharpness * one_hot(index, logits.shape[1]))
        return program

    @property
    def length(self) -> int:
        """``L``, the number of lines."""
        return self.op_logits.shape[0]

    def fields(self, dtype: torch.dtype | None = None) -> ProgramFields:
        """The softmax of each logit block (shapes in :class:`~ncl_kernels.machine.state.ProgramFields`).

        Args:
            dtype: compute the softmax in this dtype (default: the logits'). :meth:`run` asks for the state's,
                so that a half-precision or fp32 program's rows sum to 1 to the state's precision.
        """
        return ProgramFields(*(torch.softmax(getattr(self, f"{name}_logits").to(dtype), dim=-1) for name in _FIELDS))

    def instructions(self) -> list[Instruction]:
        """The hard program: the argmax of every field, one :class:`Instruction` per line."""
        with torch.no_grad():
            columns = [getattr(self, f"{name}_logits").argmax(-1).tolist() for name in _FIELDS]
        return [Instruction(*row) for row in zip(*columns)]

    def disassemble(self) -> str:
        """Assembly text of the hard program; ``assemble(p.disassemble(), p.config)`` rebuilds ``p``'s logits."""
        return format_assembly(self.instructions(), self.labels)

    def run(self, regs: torch.Tensor, mem: torch.Tensor, ip: torch.Tensor | None = None,
            max_steps: int | None = None, *, grad_mode: str = "checkpoint", chunk: int | None = None,
            backend: str | None = None) -> RunResult:
        r"""The batched soft run (docs/design.md §3), with adaptive depth.

        The state is float64 if any input or the program is float64, else float32; the fields are the softmax
        of the logits in that dtype, and an input in a lower precision (fp16/bf16, or fp32 in a float64 run) is
        upcast and its rows renormalised, so every row sums to 1 to the state's precision. Every step runs on the
        fused kernel ops (``cpp`` on CPU, ``cuda``/``triton`` on a GPU); ``backend="reference"`` or
        ``NCL_BACKEND=reference`` runs the spec. See :mod:`ncl.machine.run` for the backward choices.

        Args:
            regs: ``(B, K, n)`` register distributions.
            mem: ``(B, C, n)`` memory distributions.
            ip: ``(B, L)`` start distribution over lines; line 0 if ``None``.
            max_steps: at most this many steps (default
                :data:`~ncl.machine.run.DEFAULT_MAX_STEPS`); it stops earlier once every sample's
                running mass is below ``config.halt_eps``.
            grad_mode: ``"checkpoint"`` (default: recompute each chunk of ``chunk`` steps in the backward,
                memory O(B·state·(T/k + k))), ``"full"`` (plain BPTT, memory O(B·state·T)) or
                ``"truncated"`` (gradient through the last ``chunk`` steps only). The values never depend on
                it, and ``"checkpoint"`` gives the gradients of ``"full"``.
            chunk: ``k``, steps per chunk (default: :func:`ncl.machine.run.checkpoint_chunk` for
                ``"checkpoint"``, :data:`ncl.machine.run.DEFAULT_CHUNK` for ``"truncated"``).
            backend: force ``"reference" | "cpp" | "triton" | "cuda"`` for every kernel op; default: dispatch.

        Returns:
            a :class:`~ncl.machine.run.RunResult`: ``r0 (B, n)``, ``regs (B, K, n)``,
            ``mem (B, C, n)``, ``unhalted (B,)``, ``expected_steps (B,)``, ``steps`` (int),
            ``overflow (B,)``.
        """
        cfg = self.config
        check_distribution("regs", regs, (-1, cfg.registers, cfg.n))
        batch = regs.shape[0]
        check_distribution("mem", mem, (batch, cfg.cells, cfg.n))
        device = self.op_logits.device
        if ip is None:
            ip = one_hot(torch.zeros(batch, dtype=torch.long), self.length, regs.dtype, device)
        check_distribution("ip", ip, (batch, self.length))
        for name, t in (("regs", regs), ("mem", mem), ("ip", ip)):
            if t.device != device:
                raise ValueError(f"{name} is on {t.device} but the program is on {device}")
        max_steps = _max_steps(max_steps)
        check_run_options(grad_mode, chunk)
        float64 = torch.float64 in (regs.dtype, mem.dtype, ip.dtype, self.op_logits.dtype)
        dtype = torch.float64 if float64 else torch.float32
        ip, regs, mem = (_upcast(t, dtype) for t in (ip, regs, mem))
        return machine_run(self.fields(dtype), cfg, ip, regs, mem, max_steps,
                           grad_mode=grad_mode, chunk=chunk, backend=backend)

    def execute(self, *args: int, regs: list[int] | None = None, mem: list[int] | None = None,
                engine: str = "soft", max_steps: int | None = None) -> ExecResult:
        """Run on integers: ``args`` fill r1, r2, … (after ``regs`` fills r0, r1, …); the rest are 0.

        Args:
            args: integer arguments in ``0..n-1``.
            regs: initial registers ``r0, r1, …``.
            mem: initial memory cells.
            engine: ``"soft"`` (the differentiable machine on one-hot inputs, read back by argmax) or
                ``"vm"`` (:mod:`ncl.machine.vm`). The soft run's kernel backend is dispatched as usual
                (``NCL_BACKEND``).
            max_steps: as in :meth:`run`.

        Returns:
            an :class:`ExecResult`.
        """
        cfg = self.config
        if engine not in ENGINES:
            raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
        if len(args) >= cfg.registers:
            raise ValueError(f"args: {len(args)} arguments do not fit in r1..r{cfg.registers - 1}")
        state = vm.initial_state(cfg, regs, mem)  # validates and pads both lists
        for i, value in enumerate(args, start=1):
            if not isinstance(value, int) or not 0 <= value < cfg.n:
                raise ValueError(f"args[{i - 1}] must be an int in 0..{cfg.n - 1}, got {value!r}")
            state.regs[i] = value
        max_steps = _max_steps(max_steps)
        if engine == "vm":
            final = vm.run(self, cfg, state.regs, state.mem, max_steps=max_steps)
            return ExecResult(final.regs[0], final.regs, final.mem, final.steps, float(final.halted))
        device, dtype = self.op_logits.device, self.op_logits.dtype
        with torch.no_grad():
            result = self.run(one_hot([state.regs], cfg.n, dtype, device), one_hot([state.mem], cfg.n, dtype, device),
                              max_steps=max_steps)
        out_regs = result.regs[0].argmax(-1).tolist()
        return ExecResult(out_regs[0], out_regs, result.mem[0].argmax(-1).tolist(), result.steps,
                          float(1 - result.unhalted[0]))

    def extra_repr(self) -> str:
        return f"lines={self.length}, {self.config}"


def _upcast(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``x`` in the state's ``dtype``; rows of a lower-precision input are renormalised after the upcast.

    A bf16 row sums to 1 only within ~4e-3, and the machine does not restore a row's mass: its bilinear ops
    (binary ALU ops, LOAD, POP) multiply masses, so that error would be carried, or amplified, through the run
    (docs/machine.md, "Long runs and determinism"). Inputs already in ``dtype`` are used as given.
    """
    if x.dtype == dtype:
        return x
    x = x.to(dtype)
    return x / x.sum(-1, keepdim=True)


def _max_steps(max_steps: int | None) -> int:
    if max_steps is None:
        return DEFAULT_MAX_STEPS
    if not isinstance(max_steps, int) or isinstance(max_steps, bool) or max_steps < 0:
        raise ValueError(f"max_steps must be an int >= 0, got {max_steps!r}")
    return max_steps
