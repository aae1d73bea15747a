r"""``ncl bench machine``: the fused machine run against the eager reference and ``torch.compile(reference step)``.

Three implementations of one run of ``steps`` steps (``Program.run``), on the same inputs, in one process:

* **fused**: ``Program.run`` on the fused path with its default backward (``grad_mode="checkpoint"``, chunks
  of :func:`~ncl.machine.run.checkpoint_chunk` steps: 64 on CPU for this 9-line program, 16 on a GPU). The
  forward is a whole-run kernel (:mod:`ncl_kernels.machine`:
  C++ on CPU, Triton on a GPU); the backward recomputes one chunk at a time with the kernel's own backward
  (C++ on CPU, :mod:`ncl_kernels.machine.triton_bwd` on a GPU). ``fwdbwd`` also reports the
  fused run with plain BPTT (step ops, every step's activations kept);
* **eager**: the same run with ``backend="reference"`` and plain BPTT (``grad_mode="full"``): the spec;
* **compiled**: ``torch.compile`` of the reference *step* function (one step, ``dynamic=False``), called by the
  same Python run loop with plain BPTT. Compiling the whole loop would unroll ``steps`` data-dependent
  iterations (the early-exit test is a host sync each step), so the step is what is compiled. The table
  ALU's cached table lookup is kept out of the graph (:func:`_tables_outside_the_graph`): one graph break
  per step.

Times are medians of ``repeats`` calls after a warm-up call (which also compiles). ``speedup_eager`` is
``ms_eager / ms_fused`` and ``speedup_compiled`` is ``ms_compiled / ms_fused``. Each mode's ``spread_ms`` holds
every implementation's fastest, median and slowest call, and ``warnings`` says when the spread, or a forward
timed slower than its forward+backward, shows that the machine was loaded
(:func:`ncl_kernels.benchmarking.spread_warning`).

The ``"sharp"`` and ``"soft"`` sections time the fused run against the best eager PyTorch
(:mod:`ncl_kernels.machine.eager`) and ``torch.compile`` of it, on sharp and on dense inputs
(:mod:`ncl.machine.bench_eager`).

Memory. On a GPU, ``torch.cuda.max_memory_allocated`` over the call. On CPU the allocator keeps no peak, so
the forward+backward figure is the size of the tensors autograd saves for the backward, counted by a
``torch.autograd.graph.saved_tensors_hooks`` hook (unique storages). For a checkpointed run the figure is its
peak: the carries kept at the chunk starts plus one chunk's recomputation. On the whole-run kernel's path
(``ncl_kernels.machine``) the hook sees the kept carries during the forward, and the recomputation is each
thread's C++ tape of ``k`` steps of one sample (added, analytic: a full state's rows a step, which soft steps
reach; the tape's undo log keeps only the rows a step overwrites, so on sharp steps it is an upper bound);
under ``torch.utils.checkpoint`` the hook sees neither, so one carry per chunk and ``k`` × the per-step size of
a full-BPTT fused run are added. The forward-only figure on CPU is the carry (machine state plus halting
accumulators), which is what a no-grad run holds between steps; it is analytic.
"""

from __future__ import annotations

import contextlib
import functools
import os
import sys
from typing import Callable

import torch

from ncl.machine import bench_eager
from ncl.machine.assembler import assemble
from ncl.machine.run import machine_run
from ncl_kernels import _ext, dispatch
from ncl_kernels.benchmarking import num_threads, spread_warning, time_stats
from ncl_kernels.isa import one_hot
from ncl_kernels.machine import MachineConfig, kernel_for, step
from ncl_kernels.alu import reference as alu_reference

#: The sizes of the issue: n=128, C=128, K=8, S=32.
N, CELLS, REGISTERS, STACK = 128, 128, 8, 32

#: A loop-heavy program: 7 steps per pass, with a memory read and write, an ADD and a MUL each pass. With
#: ``r1 >= steps / 7 + 1`` no sample halts within ``steps`` steps, so every run executes exactly ``steps``.
LOOP = """
        CONST r0, 0
loop:   JZ r1, done
        LOAD r3, [r1]
        ADD r0, r0, r3
        MUL r4, r3, r1
        STORE [r1], r4
        DEC r1, r1
        JMP loop
done:   HALT
"""


def machine_inputs(batch: int, steps: int, dtype=torch.float32, device="cpu", seed: int = 0):
    """One-hot registers ``(B, K, n)`` and memory ``(B, C, n)``; ``r1`` large enough to run ``steps`` steps."""
    g = torch.Generator().manual_seed(seed)
    regs = torch.randint(0, N, (batch, REGISTERS), generator=g)
    low = min(N - 1, steps // 7 + 2)
    regs[:, 1] = torch.randint(low, N, (batch,), generator=g)
    mem = torch.randint(0, N, (batch, CELLS), generator=g)
    return one_hot(regs, N, dtype, device), one_hot(mem, N, dtype, device)


_DISABLED_TABLES: list[Callable] = []


@contextlib.contextmanager
def _tables_outside_the_graph():
    """Keep Dynamo from tracing the table ALU's table builder.

    ``ncl_kernels.alu.reference.tables`` is an ``lru_cache`` of integer tables built by Python loops
    (13·n² calls at n=128). Dynamo ignores the cache and traces the loops, which takes minutes per
    compilation. Inside this context the builder is wrapped in ``torch.compiler.disable``: the compiled step
    breaks the graph there and gets the cached tables as graph inputs. The values are the same.
    """
    original = alu_reference.tables
    # One wrapper for the whole process: a new one per call would fail Dynamo's guard on the global and
    # recompile the step every run.
    if not _DISABLED_TABLES:
        _DISABLED_TABLES.append(torch.compiler.disable(original))
    alu_reference.tables = _DISABLED_TABLES[0]
    try:
        yield
    finally:
        alu_reference.tables = original


class _SavedBytes(torch.autograd.graph.saved_tensors_hooks):
    """Counts the bytes of the distinct storages autograd saves for the backward while active."""

    def __init__(self):
        self.seen: dict[int, int] = {}

        def pack(t: torch.Tensor):
            storage = t.untyped_storage()
            self.seen.setdefault(storage.data_ptr(), storage.nbytes())
            return t

        super().__init__(pack, lambda t: t)

    def __enter__(self) -> "_SavedBytes":
        super().__enter__()
        return self

    @property
    def mb(self) -> float:
        return sum(self.seen.values()) / 2**20


def _carry_mb(batch: int, lines: int, dtype: torch.dtype) -> float:
    """Bytes of the carry: ip, reg, mem, dstk, dsp, rstk, rsp, acc_reg, acc_mem, expected, faults."""
    elements = batch * (lines + 2 * REGISTERS * N + 2 * CELLS * N + STACK * N + STACK + STACK * lines + STACK + 2)
    return elements * torch.finfo(dtype).bits / 8 / 2**20


def machine_bench(backend: str | None = None, batch: int = 32, steps: int = 64, alu: str = "table",
                  repeats: int = 3, chunk: int | None = None, device: str | torch.device | None = None,
                  compiled: bool = True, threads: int | None = None, baseline_threads: int | None = None,
                  progress: bool = False) -> dict:
    """Time the fused, eager and compiled runs, forward and forward+backward.

    Args:
        backend: the fused backend (default: :func:`ncl_kernels.dispatch.select` for the device).
        batch: ``B``.
        steps: steps per run (every sample keeps running for all of them).
        alu: ``"table"`` or ``"circuit"``.
        repeats: timed calls per figure (the median is reported).
        chunk: ``k`` of the fused run's checkpointed backward (default: ``Program.run``'s,
            :func:`~ncl.machine.run.checkpoint_chunk`).
        device: default CUDA when available, else CPU.
        compiled: also time ``torch.compile`` of the reference step (``ms_compiled`` is ``None`` if not).
        threads: CPU threads for the whole measurement (``torch.set_num_threads``, restored after); default:
            unchanged. On a shared, loaded CPU, one thread avoids OpenMP threads waiting on descheduled peers,
            which was measured to slow tiny matrix products by 50x and swamps every figure.
        baseline_threads: CPU threads for every baseline (eager, compiled, best eager and its compiled form) while
            the fused runs keep ``threads``; default: ``threads``. Each side at its own fastest count: on a 2-core CPU
            the best eager step is faster on one thread than on two, the fused run faster on two
            (benchmarks/RESULTS.md).
        progress: show a progress bar (tqdm, on stderr) with the call being timed.

    Returns:
        ``{"backend", "device", "sizes", "compiled_what", "mem_method", "fwd": {...}, "fwdbwd": {...}}`` where each
        mode holds ``ms_fused, ms_eager, ms_compiled, speedup_eager, speedup_compiled, peak_mem_fused_mb,
        peak_mem_eager_mb``; ``fwdbwd`` adds ``ms_fused_full_bptt``, ``speedup_eager_full_bptt`` and
        ``peak_mem_fused_full_bptt_mb`` (the fused run with ``grad_mode="full"``, like for like with eager); each
        mode also holds ``spread_ms``: ``{implementation: {"min", "median", "max"}}``; ``warnings`` lists the signs
        of a loaded machine (empty when there were none). Beside them, ``"sharp"`` and ``"soft"`` hold the fused
        run against the best eager and its ``torch.compile`` on each kind of inputs
        (:func:`ncl.machine.bench_eager.best_eager_sections`), with ``best_eager_what`` and
        ``best_eager_compiled_error`` (why ``ms_best_eager_compiled`` is None, else None).
    """
    for name, value in (("batch", batch), ("steps", steps), ("repeats", repeats),
                        ("chunk", 1 if chunk is None else chunk), ("threads", 1 if threads is None else threads),
                        ("baseline_threads", 1 if baseline_threads is None else baseline_threads)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    with num_threads(threads):
        return _machine_bench(backend, batch, steps, alu, repeats, chunk, device, compiled, baseline_threads,
                              progress)


def _machine_bench(backend, batch, steps, alu, repeats, chunk, device, compiled, baseline_threads,
                   progress) -> dict:
    from tqdm import tqdm  # here: its import is not free, and only a benchmark shows progress

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = torch.float32
    fused_backend = dispatch.select(device, dtype, backend)
    config = MachineConfig(n=N, cells=CELLS, registers=REGISTERS, stack=STACK, alu=alu)
    program = assemble(LOOP, config).to(device)
    regs, mem = machine_inputs(batch, steps, dtype, device)
    ip = one_hot(torch.zeros(batch, dtype=torch.long), program.length, dtype, device)
    if chunk is None:
        chunk = bench_eager.fused_chunk(config, ip, fused_backend, program.length)

    compiled_step = None
    if compiled:
        compiled_step = torch.compile(functools.partial(step, backend="reference"), dynamic=False)

    def run(kind: str, grad: bool):
        if kind == "compiled":
            fields = program.fields()
            with _tables_outside_the_graph():
                return machine_run(fields, config, ip, regs, mem, steps, grad_mode="full", backend="reference",
                                   step_fn=lambda s, f, c, backend: compiled_step(s, f, c))
        if kind == "eager":
            return program.run(regs, mem, max_steps=steps, backend="reference", grad_mode="full")
        if kind == "fused_full":
            return program.run(regs, mem, max_steps=steps, backend=fused_backend, grad_mode="full")
        return program.run(regs, mem, max_steps=steps, backend=fused_backend, chunk=chunk)

    def call(kind: str, grad: bool):
        if not grad:
            with torch.no_grad():
                out = run(kind, grad)
        else:
            program.zero_grad(set_to_none=True)
            out = run(kind, grad)
            bench_eager.loss(out).backward()
        if out.steps != steps:
            raise RuntimeError(f"machine_bench: the run stopped after {out.steps} of {steps} steps")
        return out

    kinds = ["fused", "eager"] + (["compiled"] if compiled else [])
    fused_threads = torch.get_num_threads()
    result = {"backend": fused_backend, "device": str(device), "alu": alu, "threads": fused_threads,
              "baseline_threads": fused_threads if baseline_threads is None else baseline_threads,
              "repeats": repeats,
              "sizes": {"B": batch, "n": N, "C": CELLS, "K": REGISTERS, "S": STACK, "steps": steps, "chunk": chunk},
              "compiled_what": "torch.compile(reference step, dynamic=False) in the Python run loop, full BPTT",
              "fused_grad_mode": f"checkpoint (k={chunk})", "eager_grad_mode": "full"}
    if device.type == "cpu":
        result["cpu_isa"] = _ext.load()[0].cpu_isa()  # which copy of the CPU kernels ran (csrc/cpu/isa.h)
    if device.type == "cuda":
        result["mem_method"] = "torch.cuda.max_memory_allocated over one call"
    else:
        result["mem_method"] = ("CPU: fwd = carry size (analytic); fwdbwd = saved-tensor bytes counted by "
                                "saved_tensors_hooks; checkpoint on the kernel: what the forward saves (the carry "
                                "at each chunk start) + each thread's backward tape of k steps of one sample "
                                "(analytic, at most: the undo log keeps the rows a step overwrites); checkpoint "
                                "on step ops: outside chunks + one carry per chunk + k steps of the per-step size "
                                "measured on a full-BPTT fused run")
    # One tick per call (the warm-up included) and one per memory measurement; then the best-eager sections'.
    sections = len(bench_eager.INPUTS) * 2 * (len(bench_eager.KINDS) - (not compiled))
    bar = tqdm(total=(2 * len(kinds) + 1 + sections) * (1 + repeats) + 2, desc="bench machine", unit="call",
               file=sys.stderr, disable=not progress)
    warnings = []
    for mode, grad in (("fwd", False), ("fwdbwd", True)):
        ms, spread = {}, {}
        # The fused run with plain BPTT too: like for like with eager and compiled, which keep every step.
        for kind in kinds + (["fused_full"] if grad else []):
            bar.set_postfix_str(f"{mode} {kind}{' (the warm-up call compiles)' if kind == 'compiled' else ''}")
            with num_threads(None if kind.startswith("fused") else baseline_threads):
                spread[kind] = time_stats(lambda: call(kind, grad), device, repeats, warmup=1, tick=bar.update)
            ms[kind] = spread[kind]["median"]
            warnings.append(spread_warning(f"{mode} {kind}", spread[kind], "rerun on an idle machine, with more "
                                           "--repeats, or with --threads 1"))
        bar.set_postfix_str(f"{mode} memory")
        kernel_path = kernel_for(config, ip, fused_backend, None) == "cpp"  # the C++ tape
        mem_mb = _peak_memory(call, grad, device, batch, program.length, dtype, steps, chunk, kernel_path,
                              lambda kind: run(kind, True))
        bar.update()
        figures = {"ms_fused": ms["fused"], "ms_eager": ms["eager"], "ms_compiled": ms.get("compiled"),
                   "speedup_eager": ms["eager"] / ms["fused"],
                   "speedup_compiled": ms["compiled"] / ms["fused"] if "compiled" in ms else None,
                   "peak_mem_fused_mb": mem_mb["fused"], "peak_mem_eager_mb": mem_mb["eager"]}
        if grad:
            figures["ms_fused_full_bptt"] = ms["fused_full"]
            figures["speedup_eager_full_bptt"] = ms["eager"] / ms["fused_full"]
            figures["peak_mem_fused_full_bptt_mb"] = mem_mb["fused_full"]
        result[mode] = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in figures.items()}
        result[mode]["spread_ms"] = {k: {q: round(v, 3) for q, v in s.items()} for k, s in spread.items()}
    versus_best = bench_eager.best_eager_sections(LOOP, config, (regs, mem), batch, steps, repeats, device,
                                                  fused_backend, chunk, compiled, baseline_threads,
                                                  tick=bar.update, label=bar.set_postfix_str)
    warnings.extend(versus_best.pop("warnings"))
    result.update(versus_best)
    bar.close()
    for kind in kinds:
        # A forward alone cannot take longer than the same forward followed by a backward on an idle machine.
        fwd, fwdbwd = result["fwd"]["spread_ms"][kind]["median"], result["fwdbwd"]["spread_ms"][kind]["median"]
        if fwd > fwdbwd:
            warnings.append(f"{kind}: the forward alone ({fwd:.4g} ms) timed slower than forward+backward "
                            f"({fwdbwd:.4g} ms): the machine looks loaded, so the figures are unreliable")
    result["warnings"] = [w for w in warnings if w]
    return result


def format_result(result: dict) -> str:
    """What ``ncl bench machine`` prints of a :func:`machine_bench` result: median ms (fastest-slowest call) of
    each implementation, the speedups and the memory, per mode."""
    threads = f"{result['threads']} threads"
    if result["baseline_threads"] != result["threads"]:
        threads += f", the baselines on {result['baseline_threads']}"
    lines = [f"machine run, backend {result['backend']} on {result['device']} ({threads}), "
             f"alu {result['alu']}, {result['sizes']}; median ms of {result['repeats']} calls (fastest-slowest)"]
    for mode in ("fwd", "fwdbwd"):
        r = result[mode]

        def ms(kind: str) -> str:
            s = r["spread_ms"][kind]
            return f"{s['median']:.1f} ms ({s['min']:.1f}-{s['max']:.1f})"

        compiled = "n/a" if r["ms_compiled"] is None else f"{ms('compiled')}, {r['speedup_compiled']:.2f}x"
        lines.append(f"  {mode:>6}: fused {ms('fused')}, eager {ms('eager')}, {r['speedup_eager']:.2f}x; compiled "
                     f"{compiled}; memory fused {r['peak_mem_fused_mb']:.1f} MB, eager "
                     f"{r['peak_mem_eager_mb']:.1f} MB")
    return "\n".join(lines + bench_eager.format_sections(result))


def _tape_entry_mb(lines: int, dtype: torch.dtype) -> float:
    """The most one step of one sample can take on the kernel backward's tape (its size comes from the kernel's
    own layout: the step's record and every state row; the undo log keeps only the rows a step overwrites)."""
    elements = _ext.load()[0].machine_tape_entry_size(lines, REGISTERS, N, CELLS, STACK)
    return elements * torch.finfo(dtype).bits / 8 / 2**20


def _peak_memory(call, grad: bool, device: torch.device, batch: int, lines: int, dtype: torch.dtype,
                 steps: int, chunk: int, kernel_path: bool, call_forward) -> dict[str, float]:
    kinds = ("fused", "eager", "fused_full") if grad else ("fused", "eager")
    if device.type == "cuda":
        out = {}
        for kind in kinds:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats(device)
            base = torch.cuda.memory_allocated(device)
            call(kind, grad)
            torch.cuda.synchronize()
            out[kind] = (torch.cuda.max_memory_allocated(device) - base) / 2**20
        return out
    carry = _carry_mb(batch, lines, dtype)
    if not grad:
        return {"fused": carry, "eager": carry}
    saved = {}
    for kind in kinds:
        with _SavedBytes() as counter:
            call(kind, grad)
        saved[kind] = counter.mb
    per_step = saved["fused_full"] / steps
    chunks = -(-steps // chunk)
    # The checkpointed run's peak is its kept carries plus one chunk's recomputation. On the kernel path
    # (ncl_kernels.machine.CheckpointedRun) the hook sees the carries the forward keeps; the backward's recomputation
    # is a C++ tape of k steps of one sample per thread (machine_bwd.cpp), not seen by the hook. Under
    # torch.utils.checkpoint the hook sees neither the carries nor the recomputed chunk: add both.
    if kernel_path:
        with _SavedBytes() as counter:
            out = call_forward("fused")
        bench_eager.loss(out).backward()
        saved["fused"] = counter.mb + torch.get_num_threads() * min(chunk, steps) * _tape_entry_mb(lines, dtype)
    else:
        saved["fused"] = saved["fused"] + chunks * carry + min(chunk, steps) * per_step
    return saved


def plot_sweep(rows: list[dict], path, device: str = "cpu") -> bool:
    """Plot the fused/eager speedup of the machine sweep (``benchmarks/test_machine_fused.py``) against the
    batch, one line per step count and mode; returns False when ``rows`` hold no sweep group.

    ``rows``: the benchmark session's ratio rows, ``group`` of the form ``"machine sweep B=8 steps=64 fwd"``.
    """
    points: dict[tuple[int, str], list[tuple[int, float]]] = {}
    for row in rows:
        words = row["group"].split()
        if words[:2] != ["machine", "sweep"]:
            continue
        batch, steps, mode = int(words[2][2:]), int(words[3][6:]), words[4]
        points.setdefault((steps, mode), []).append((batch, row["speedup_eager"]))
    if not points:
        return False
    # matplotlib only when a sweep is plotted: it costs about a second to import.
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # after use("Agg"): the backend is chosen before pyplot loads

    fig, ax = plt.subplots(figsize=(6, 4))
    for (steps, mode), xy in sorted(points.items()):
        xy.sort()
        ax.plot([x for x, _ in xy], [y for _, y in xy], marker="o",
                label=f"{'fwd+bwd' if mode == 'fwdbwd' else 'fwd'}, {steps} steps")
    ax.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("batch B")
    ax.set_ylabel("speedup over the eager reference")
    ax.set_title(f"machine run, fused vs eager ({device}; n=C=128, K=8, S=32)")
    ax.legend()
    fig.tight_layout()
    tmp = f"{path}.tmp.png"
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)  # a reader never sees half a file
    return True
