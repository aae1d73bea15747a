"""Timing harness shared by ``ncl bench`` and the pytest-benchmark suites in ``benchmarks/``.

Every figure is a ratio measured in one run: the fused backend against the eager reference and against
``torch.compile(reference)``, on the same random inputs, median of ``repeats`` timed calls after warm-up. The
fastest and slowest calls are reported too: on a shared machine the spread between them is the sign that other
work took the cores (:func:`spread_warning`).
"""

from __future__ import annotations

import contextlib
import statistics
import sys
import time
from typing import Callable, Iterator

import torch

from ncl_kernels import _oplib, dispatch
from ncl_kernels.alu import NUM_OPS
from ncl_kernels.alu import reference as alu_reference
from ncl_kernels.memory import reference

#: (B, N, D, H): the size every issue quotes, and a large one.
MEMORY_SIZES = [(64, 128, 128, 2), (64, 1024, 256, 4)]
MEMORY_OPS = ("soft_read", "soft_write", "content_address")
#: ``max / min`` of the timed calls above which a figure is flagged: repeated calls of a fixed computation on an
#: idle machine stay well within this; on the shared 2-core machines a spread past it came with a loaded CPU.
LOADED_SPREAD = 1.5
#: (B, n) of the table ALU benchmark (docs/design.md §3: B = 32, n = 128), and its two kinds of weights.
ALU_SIZES = [(32, 128)]
ALU_COEFFS = ("dense", "sharp")


def memory_inputs(op: str, B: int, N: int, D: int, H: int, device, dtype=torch.float32, seed: int = 0):
    """Random inputs (never zeros) for ``op`` at (B, N, D, H), as leaf tensors that require grad."""
    g = torch.Generator().manual_seed(seed)
    bank = torch.randn(B, N, D, generator=g)
    if op == "soft_read":
        xs = [bank, torch.softmax(torch.randn(B, H, N, generator=g), -1)]
    elif op == "soft_write":
        xs = [bank, torch.softmax(torch.randn(B, N, generator=g), -1), torch.randn(B, D, generator=g),
              torch.rand(B, generator=g)]
    elif op == "content_address":
        xs = [bank, torch.randn(B, H, D, generator=g), torch.rand(B, H, generator=g) * 5]
    else:
        raise ValueError(f"op must be one of {MEMORY_OPS}, got {op!r}")
    return [x.to(device=device, dtype=dtype).requires_grad_() for x in xs]


def alu_inputs(B: int, n: int, coeffs: str, device, dtype=torch.float32, seed: int = 0):
    """Soft operands ``x, y`` (B, n) and op weights (B, 16) for ``alu_mix``, as leaves that require grad.

    ``coeffs="dense"``: a random distribution over the ops (every op contributes); ``"sharp"``: what a
    β-sharp program gives, one op per row at ~1 and the others at 1e-13 (skipped by the fused kernels).
    """
    g = torch.Generator().manual_seed(seed)
    x = torch.softmax(torch.randn(B, n, generator=g), -1)
    y = torch.softmax(torch.randn(B, n, generator=g), -1)
    if coeffs == "dense":
        e = torch.softmax(torch.randn(B, NUM_OPS, generator=g), -1)
    elif coeffs == "sharp":
        e = torch.full((B, NUM_OPS), 1e-13)
        e[torch.arange(B), torch.randint(0, NUM_OPS, (B,), generator=g)] = 1.0
    else:
        raise ValueError(f"coeffs must be one of {ALU_COEFFS}, got {coeffs!r}")
    return [t.to(device=device, dtype=dtype).requires_grad_() for t in (x, y, e)]


def _reference(op: str) -> Callable:
    if op == "alu_mix":
        return alu_reference.alu_mix
    return getattr(reference, op)


def implementations(op: str, backend: str) -> dict[str, Callable]:
    """``eager``, ``compiled`` (torch.compile of the reference) and ``fused`` callables of ``op``."""
    ref = _reference(op)
    public = _oplib.OPS[op].fn
    return {
        "eager": ref,
        "compiled": torch.compile(ref, dynamic=False),
        "fused": lambda *xs: public(*xs, backend=backend),
    }


def step(fn: Callable, xs, mode: str) -> Callable[[], None]:
    """A closure running ``fn`` forward (``mode="fwd"``) or forward and backward (``"fwdbwd"``)."""
    if mode == "fwd":
        def run():
            with torch.no_grad():
                fn(*xs)
    elif mode == "fwdbwd":
        def run():
            out = fn(*xs)
            torch.autograd.grad(out, xs, torch.ones_like(out))
    else:
        raise ValueError(f"mode must be 'fwd' or 'fwdbwd', got {mode!r}")
    return run


@contextlib.contextmanager
def num_threads(threads: int | None) -> Iterator[None]:
    """``torch.set_num_threads(threads)`` inside the block, the previous count restored after; None: unchanged."""
    previous = torch.get_num_threads()
    if threads is not None:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def time_ms(run: Callable[[], None], device, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall time of ``run`` in milliseconds (CUDA events on a GPU)."""
    return time_stats(run, device, repeats, warmup)["median"]


def _time_once(run: Callable[[], None], cuda: bool) -> float:
    """Wall time of one call of ``run`` in milliseconds (CUDA events on a GPU)."""
    if cuda:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run()
        end.record()
        torch.cuda.synchronize()
        return start.elapsed_time(end)
    t0 = time.perf_counter()
    run()
    return (time.perf_counter() - t0) * 1e3


def stats_of(samples: list[float]) -> dict[str, float]:
    """``{"min", "median", "max"}`` of ``samples``."""
    return {"min": min(samples), "median": statistics.median(samples), "max": max(samples)}


def time_stats(run: Callable[[], None], device, repeats: int = 20, warmup: int = 3,
               tick: Callable[[], object] = lambda: None) -> dict[str, float]:
    """``{"min", "median", "max"}`` wall time of ``repeats`` calls of ``run`` in milliseconds (CUDA events on a
    GPU), after ``warmup`` untimed calls; ``tick()`` after every call (a progress bar's update)."""
    for _ in range(warmup):
        run()
        tick()
    samples = []
    cuda = torch.device(device).type == "cuda"
    for _ in range(repeats):
        samples.append(_time_once(run, cuda))
        tick()
    return stats_of(samples)


def interleaved_samples(runs: dict[str, Callable[[], None]], device, repeats: int,
                        context: Callable[[str], contextlib.AbstractContextManager] | None = None,
                        tick: Callable[[], object] = lambda: None) -> dict[str, list[float]]:
    """``{name: [ms of round 1, ..., round repeats]}``: ``repeats`` rounds, each calling every run once in order
    (inside ``context(name)``, outside the timing), so that a machine whose speed drifts during the measurement
    (a shared VM) moves every run of a round alike and the per-round ratios cancel it; ``tick()`` after every call.
    The runs are warmed up by the caller."""
    cuda = torch.device(device).type == "cuda"
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            with context(name) if context else contextlib.nullcontext():
                samples[name].append(_time_once(run, cuda))
            tick()
    return samples


def spread_warning(label: str, stats: dict[str, float], hint: str = "rerun on an idle machine or with more "
                   "--repeats") -> str | None:
    """A warning when ``stats`` (:func:`time_stats`) spread more than :data:`LOADED_SPREAD`, else None."""
    if stats["min"] > 0 and stats["max"] / stats["min"] > LOADED_SPREAD:
        return (f"{label}: the slowest call took {stats['max'] / stats['min']:.1f}x the fastest "
                f"({stats['min']:.4g} to {stats['max']:.4g} ms): the machine looks loaded, so the figures are "
                f"unreliable ({hint})")
    return None


def peak_mem_mb(run: Callable[[], None], device) -> float | None:
    if torch.device(device).type != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    run()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() / 2**20


def run_memory_suite(sizes=None, backend: str | None = None, repeats: int = 20, compiled: bool = True,
                     warnings: list[str] | None = None) -> list[dict]:
    """Time every memory op at every size; one row per (op, size, mode) with both ratios, the median time of
    each implementation (``ms_fused``, ...) and its fastest and slowest call (``ms_fused_min``, ``ms_fused_max``).

    ``compiled=False`` skips ``torch.compile(reference)`` (its compilation dominates a short run; ``ms_compiled``
    and ``speedup_compiled`` are then None). A figure whose calls spread past :data:`LOADED_SPREAD` adds a line
    to ``warnings`` when a list is given.
    """
    from tqdm import tqdm  # here: only the benchmark CLI shows progress, and tqdm's import is not free

    device = "cuda" if torch.cuda.is_available() else "cpu"
    backend = backend or dispatch.select(torch.device(device), torch.float32)
    parsed = [tuple(int(v) for v in s.split(",")) if isinstance(s, str) else tuple(s) for s in (sizes or MEMORY_SIZES)]
    rows = []
    jobs = [(op, size, mode) for op in MEMORY_OPS for size in parsed for mode in ("fwd", "fwdbwd")]
    for op, size, mode in tqdm(jobs, desc="bench memory", unit="case", file=sys.stderr):
        xs = memory_inputs(op, *size, device=device)
        impls = implementations(op, backend)
        if not compiled:
            del impls["compiled"]
        stats = {name: time_stats(step(fn, xs, mode), device, repeats) for name, fn in impls.items()}
        ms = {name: s["median"] for name, s in stats.items()}
        row = {"op": op, "B,N,D,H": list(size), "mode": mode, "device": device, "backend": backend,
               **{f"ms_{k}": round(v, 4) for k, v in ms.items()}, "ms_compiled": None,
               "speedup_eager": round(ms["eager"] / ms["fused"], 2), "speedup_compiled": None}
        if compiled:
            row["ms_compiled"] = round(ms["compiled"], 4)
            row["speedup_compiled"] = round(ms["compiled"] / ms["fused"], 2)
        for name, s in stats.items():
            row[f"ms_{name}_min"], row[f"ms_{name}_max"] = round(s["min"], 4), round(s["max"], 4)
            warning = spread_warning(f"{op} {','.join(map(str, size))} {mode} {name}", s)
            if warning and warnings is not None:
                warnings.append(warning)
        if device == "cuda":
            row["peak_mem_fused_mb"] = peak_mem_mb(step(impls["fused"], xs, mode), device)
            row["peak_mem_eager_mb"] = peak_mem_mb(step(impls["eager"], xs, mode), device)
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    """A Markdown table of :func:`run_memory_suite` rows: median ms with the fastest and slowest call."""
    head = ("| op | B,N,D,H | mode | backend | fused ms (min–max) | eager ms (min–max) | compiled ms (min–max) "
            "| × eager | × compiled |")
    lines = [head, "|" + "---|" * 9]

    def ms(r: dict, name: str) -> str:
        if r.get(f"ms_{name}") is None:
            return "n/a"
        return f"{r[f'ms_{name}']:.3f} ({r[f'ms_{name}_min']:.3f}–{r[f'ms_{name}_max']:.3f})"

    for r in rows:
        compiled = "n/a" if r["speedup_compiled"] is None else f"{r['speedup_compiled']:.2f}"
        lines.append(f"| {r['op']} | {','.join(map(str, r['B,N,D,H']))} | {r['mode']} | {r['backend']} | "
                     f"{ms(r, 'fused')} | {ms(r, 'eager')} | {ms(r, 'compiled')} | "
                     f"{r['speedup_eager']:.2f} | {compiled} |")
    return "\n".join(lines)
