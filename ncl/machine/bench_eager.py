r"""The fused machine run against the best eager PyTorch, on sharp and on soft inputs: the ``"sharp"`` and
``"soft"`` sections of ``ncl bench machine --json`` (:func:`ncl.machine.bench.machine_bench`).

Three implementations of one run of ``steps`` steps of :data:`~ncl.machine.bench.LOOP`, on the same inputs, in
one process:

* **fused**: ``Program.run`` on the fused backend with its default backward (``grad_mode="checkpoint"``), as
  the top-level ``fwd``/``fwdbwd`` figures of the benchmark;
* **best_eager**: :func:`ncl_kernels.machine.eager.run`, the fastest plain-PyTorch formulation of the run
  (exact against the reference; structured ALU, packed fields, one-pass writes), with plain autograd through
  every step (full BPTT), then the same readout (:func:`ncl.machine.run.finish`);
* **best_eager_compiled**: the same run loop with ``torch.compile(ncl_kernels.machine.eager.step_packed,
  dynamic=False)`` as its step. ``None`` when not measured, with the reason in ``best_eager_compiled_error``
  (not asked for, or the compilation failed here, e.g. no C++ compiler).

Inputs (:data:`INPUTS`): **sharp** is the assembled program (β = ``config.sharpness``) on one-hot registers
and memory, what a compiled program sees; the fused kernels skip ALU ops of negligible weight and sum the
pair ops over the operands' supports, so this is their best case. **soft** is dense everywhere: registers and
memory are the softmax of random logits and the program's logits are ``SOFT_SHARPNESS · one_hot`` (every op's
weight at least :math:`e^{-4}` of the line's largest), so no kernel skips anything. The eager paths cost the
same on both.

After one warm-up call of each (which also compiles), the three are timed in ``repeats`` interleaved rounds, each
round calling every one once (:func:`ncl_kernels.benchmarking.interleaved_samples`). Each figure is the median of
its ``repeats`` calls, with the fastest and slowest call in ``spread_ms``; ``speedup_best_eager = ms_best_eager /
ms_fused`` and ``speedup_best_eager_compiled = ms_best_eager_compiled / ms_fused``; ``speedup_per_round`` holds the
median, fastest and slowest of the rounds' own ratios, which a machine whose speed drifts during the benchmark (a
shared VM) moves less than the medians' ratio.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import torch

from ncl.machine.assembler import assemble
from ncl.machine.run import RunResult, checkpoint_chunk, finish
from ncl_kernels.benchmarking import interleaved_samples, num_threads, spread_warning, stats_of
from ncl_kernels.isa import one_hot
from ncl_kernels.machine import MachineConfig, eager, kernel_for

#: The two kinds of inputs (module docstring).
INPUTS = ("sharp", "soft")
#: β of the soft program's logits: every other op keeps e^-4 ≈ 0.018 of the line's weight.
SOFT_SHARPNESS = 4.0
#: The implementations of each section, in the order they are timed.
KINDS = ("fused", "best_eager", "best_eager_compiled")
NOT_ASKED = "not measured: compiled=False (--no-compiled or --quick)"


def soft_inputs(batch: int, config: MachineConfig, dtype=torch.float32, device="cpu", seed: int = 0):
    """Dense registers ``(B, K, n)`` and memory ``(B, C, n)``: the softmax of standard normal logits."""
    g = torch.Generator().manual_seed(seed)
    regs = torch.softmax(torch.randn(batch, config.registers, config.n, generator=g), -1)
    mem = torch.softmax(torch.randn(batch, config.cells, config.n, generator=g), -1)
    return regs.to(device=device, dtype=dtype), mem.to(device=device, dtype=dtype)


def loss(out: RunResult) -> torch.Tensor:
    """The machine benchmarks' loss (here and :mod:`ncl.machine.bench`): the readout and the ponder cost, so every
    part of the run gets a gradient."""
    return out.r0.logsumexp(-1).sum() + out.expected_steps.sum()


def case_for(name: str, source: str, config: MachineConfig, sharp_inputs, batch: int, dtype=torch.float32,
         device="cpu"):
    """``(program, regs, mem, what)`` of one of :data:`INPUTS`: ``source`` assembled at ``config.sharpness`` on
    ``sharp_inputs`` (one-hot ``(regs, mem)``), or at :data:`SOFT_SHARPNESS` on :func:`soft_inputs`."""
    if name == "sharp":
        return (assemble(source, config).to(device), *sharp_inputs,
                f"assembled program (beta={config.sharpness:g}), one-hot registers and memory")
    if name == "soft":
        return (assemble(source, dataclasses.replace(config, sharpness=SOFT_SHARPNESS)).to(device),
                *soft_inputs(batch, config, dtype, device),
                f"program logits beta={SOFT_SHARPNESS:g} * one_hot, registers and memory softmax(randn)")
    raise ValueError(f"name must be one of {INPUTS}, got {name!r}")


def fused_chunk(config: MachineConfig, like: torch.Tensor, fused_backend: str, lines: int) -> int:
    """The checkpoint interval ``Program.run`` takes by default for a ``lines``-line program on ``fused_backend``
    with a state of ``like``'s dtype and device (:func:`ncl.machine.run.checkpoint_chunk`), to name in results."""
    return checkpoint_chunk(kernel_for(config, like, fused_backend, None), lines)


def best_eager_sections(source: str, config: MachineConfig, sharp_inputs, batch: int, steps: int, repeats: int,
                        device: torch.device, fused_backend: str, chunk: int | None = None, compiled: bool = True,
                        baseline_threads: int | None = None, tick: Callable[[], object] = lambda: None,
                        label: Callable[[str], object] = lambda text: None) -> dict:
    """Time fused, best eager and compiled best eager, forward and forward+backward, on both :data:`INPUTS`.

    Args:
        source: the program's assembly (assembled at ``config.sharpness`` and at :data:`SOFT_SHARPNESS`).
        config: machine sizes.
        sharp_inputs: one-hot ``(regs, mem)`` on which every sample runs all ``steps``.
        batch, steps, repeats, chunk: as :func:`ncl.machine.bench.machine_bench`.
        device: where everything runs.
        fused_backend: the fused backend's name.
        compiled: also time ``torch.compile`` of the best-eager step.
        baseline_threads: CPU threads for the best eager and its compiled form (default: unchanged).
        tick: called after every timed or warm-up call (a progress bar's update).
        label: called with what is being timed.

    Returns:
        ``{"sharp": {"inputs", "fwd", "fwdbwd"}, "soft": {...}, "best_eager_what", "best_eager_compiled_error",
        "warnings"}``; each mode holds ``ms_fused, ms_best_eager, ms_best_eager_compiled, speedup_best_eager,
        speedup_best_eager_compiled`` and ``spread_ms`` (``{kind: {"min", "median", "max"}}``).
    """
    dtype = torch.float32
    cases = {name: case_for(name, source, config, sharp_inputs, batch, dtype, device) for name in INPUTS}
    if chunk is None:
        chunk = fused_chunk(config, cases["sharp"][1], fused_backend, cases["sharp"][0].length)
    step_fn, error = None, None if compiled else NOT_ASKED
    if compiled:
        try:
            step_fn = torch.compile(eager.step_packed, dynamic=False)
        except Exception as exc:  # noqa: BLE001 (torch.compile unsupported here: reported, not fatal)
            error = _failed(exc)

    def run(kind: str, program, regs, mem) -> RunResult:
        if kind == "fused":
            return program.run(regs, mem, max_steps=steps, backend=fused_backend, chunk=chunk)
        ip = one_hot(torch.zeros(batch, dtype=torch.long), program.length, dtype, device)
        carry, done = eager.run(program.fields(dtype), program.config, ip, regs, mem, steps,
                                step_fn=step_fn if kind == "best_eager_compiled" else None)
        return finish(carry, done)

    def threads_for(kind: str):
        return num_threads(None if kind == "fused" else baseline_threads)

    def call(kind: str, grad: bool, case) -> None:
        program, regs, mem, _ = case
        program.zero_grad(set_to_none=True)
        with torch.set_grad_enabled(grad):
            out = run(kind, program, regs, mem)
            if grad:
                loss(out).backward()
        if out.steps != steps:
            raise RuntimeError(f"best_eager_sections: the run stopped after {out.steps} of {steps} steps")

    result: dict = {"best_eager_what": "ncl_kernels.machine.eager.run (exact against the reference), full BPTT; "
                                       "compiled: torch.compile(eager.step_packed, dynamic=False) in its run loop",
                    "fused_grad_mode": f"checkpoint (k={chunk})"}
    warnings: list[str] = []
    for name, case in cases.items():
        section: dict = {"inputs": case[3]}
        for mode, grad in (("fwd", False), ("fwdbwd", True)):
            runs: dict[str, Callable[[], None]] = {}
            for kind in KINDS:  # one warm-up call each (the compiled step compiles in its own)
                if kind == "best_eager_compiled" and error is not None:
                    continue
                label(f"{name} {mode} {kind} warm-up{' (compiles)' if kind.endswith('compiled') else ''}")
                try:
                    with threads_for(kind):
                        call(kind, grad, case)
                except Exception as exc:  # noqa: BLE001 (a compiler missing or failing here is reported, not fatal)
                    if kind != "best_eager_compiled":
                        raise
                    error = _failed(exc)
                    continue
                tick()
                runs[kind] = functools.partial(call, kind, grad, case)
            label(f"{name} {mode}: {repeats} rounds, each kind once")
            samples = interleaved_samples(runs, device, repeats, threads_for, tick)
            for kind, ms in samples.items():
                warnings.append(spread_warning(f"{name} {mode} {kind}", stats_of(ms), "rerun on an idle machine, "
                                               "with more --repeats, or with --threads 1"))
            section[mode] = _figures(samples)
        result[name] = section
    if error is not None:  # a failure in a later section leaves no compiled figure anywhere
        for name in cases:
            for mode in ("fwd", "fwdbwd"):
                result[name][mode].update(ms_best_eager_compiled=None, speedup_best_eager_compiled=None)
                result[name][mode]["spread_ms"]["best_eager_compiled"] = None
                result[name][mode]["speedup_per_round"]["best_eager_compiled"] = None
    result["best_eager_compiled_error"] = error
    result["warnings"] = [w for w in warnings if w]
    return result


def _failed(exc: Exception) -> str:
    """``best_eager_compiled_error`` for a compilation that raised ``exc``: its type and first line."""
    lines = str(exc).strip().splitlines()
    return f"torch.compile failed: {type(exc).__name__}: {lines[0][:300] if lines else ''}"


def _figures(samples: dict[str, list[float]]) -> dict:
    """A mode's figures from its interleaved rounds (``{kind: [ms a round]}``, the compiled kind absent if it
    failed): the medians and their ratios, each kind's spread, and ``speedup_per_round``, the ratios of each
    round's own calls (median and range), which a machine drifting between rounds moves less than the medians."""
    spread = {k: stats_of(samples[k]) if k in samples else None for k in KINDS}
    fused, best, compiled = (spread[k] for k in KINDS)
    figures = {"ms_fused": fused["median"], "ms_best_eager": best["median"],
               "ms_best_eager_compiled": compiled["median"] if compiled else None,
               "speedup_best_eager": best["median"] / fused["median"],
               "speedup_best_eager_compiled": compiled["median"] / fused["median"] if compiled else None}
    out = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in figures.items()}
    out["spread_ms"] = {k: ({q: round(v, 3) for q, v in s.items()} if s else None) for k, s in spread.items()}
    out["speedup_per_round"] = {
        k: {q: round(v, 3) for q, v in stats_of([b / f for b, f in zip(samples[k], samples["fused"])]).items()}
        if k in samples else None for k in KINDS[1:]}
    return out


def format_sections(result: dict) -> list[str]:
    """The text lines of ``ncl bench machine`` for the sections: median ms (fastest-slowest call) of each
    implementation and the speedups of the fused run, per input kind and mode."""
    lines = ["  fused vs best eager (ncl_kernels.machine.eager) and torch.compile of its step:"]
    for name in INPUTS:
        for mode in ("fwd", "fwdbwd"):
            r = result[name][mode]

            def ms(kind: str) -> str:
                s = r["spread_ms"][kind]
                return f"{s['median']:.1f} ms ({s['min']:.1f}-{s['max']:.1f})"

            def ratio(kind: str) -> str:
                q = r["speedup_per_round"][kind]
                return f"{r['speedup_' + kind]:.2f}x (rounds {q['median']:.2f}x, {q['min']:.2f}-{q['max']:.2f})"

            compiled = "n/a" if r["ms_best_eager_compiled"] is None else \
                f"{ms('best_eager_compiled')}, {ratio('best_eager_compiled')}"
            lines.append(f"  {name:>5} {mode:>6}: fused {ms('fused')}, best eager {ms('best_eager')}, "
                         f"{ratio('best_eager')}; compiled {compiled}")
    if result["best_eager_compiled_error"]:
        lines.append(f"  compiled best eager: {result['best_eager_compiled_error']}")
    return lines
