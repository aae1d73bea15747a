"""pytest-benchmark setup: each test times one implementation of one op; at the end of the session the
fused/eager and fused/compiled ratios of every group (measured in this run) are printed and written to
``benchmarks/results/<device>.json``."""

from __future__ import annotations

import json
import os
import pathlib

import pytest
import torch

from ncl_kernels import benchmarking, dispatch

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def fused_backends() -> list[str]:
    """cpp on CPU; triton and cuda on a GPU (whichever can run)."""
    names = ["cuda", "triton"] if DEVICE == "cuda" else ["cpp"]
    return [n for n in names if dispatch._call_reason(n, torch.device(DEVICE), torch.float32) is None]


def implementation(impl: str, reference_fn, public_fn, *extra):
    """The callable behind ``impl``: "eager" (the reference), "compiled" (torch.compile of it) or
    "fused:<backend>" (the public op on that backend). ``extra`` are trailing non-tensor arguments."""
    if impl == "eager":
        fn = reference_fn
    elif impl == "compiled":
        fn = torch.compile(reference_fn, dynamic=False)
    else:
        backend = impl.split(":")[1]
        return lambda *xs: public_fn(*xs, *extra, backend=backend)
    return lambda *xs: fn(*xs, *extra)


def impl_names() -> list[str]:
    return ["eager", "compiled"] + [f"fused:{b}" for b in fused_backends()]


def measure(benchmark, op: str, group: str, mode: str, impl: str, fn, xs, **info) -> None:
    """Time ``fn(*xs)`` forward (``mode="fwd"``) or forward and backward with every output in the loss."""
    outs = fn(*xs)
    upstream = [torch.ones_like(o) for o in (outs if isinstance(outs, tuple) else (outs,))]

    def run():
        if mode == "fwd":
            with torch.no_grad():
                fn(*xs)
        else:
            torch.autograd.grad(fn(*xs), xs, upstream)

    for _ in range(3):  # warm-up, and torch.compile's compilation, outside the timing
        run()
    benchmark.group = f"{op} {group} {mode}"
    benchmark.extra_info.update(op=op, mode=mode, impl=impl, device=DEVICE, **info)
    if DEVICE == "cuda":
        benchmark.pedantic(lambda: (run(), torch.cuda.synchronize()), rounds=50, warmup_rounds=2)
    else:
        benchmark(run)


def bench_memory_op(benchmark, op: str, size, mode: str, impl: str) -> None:
    """Time ``impl`` ("eager", "compiled" or "fused:<backend>") of ``op`` at ``size`` in ``mode``."""
    import ncl_kernels
    from ncl_kernels.memory import reference

    fn = implementation(impl, getattr(reference, op), getattr(ncl_kernels, op))
    xs = benchmarking.memory_inputs(op, *size, device=DEVICE)
    measure(benchmark, op, ",".join(map(str, size)), mode, impl, fn, xs, size=list(size))


def memory_params():
    return [pytest.param(size, mode, impl, id=f"{','.join(map(str, size))}-{mode}-{impl}")
            for size in benchmarking.MEMORY_SIZES for mode in ("fwd", "fwdbwd") for impl in impl_names()]


def pytest_sessionfinish(session, exitstatus):
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return
    groups: dict[str, dict[str, float]] = {}
    for b in bs.benchmarks:
        if "impl" in b.extra_info:  # the op benchmarks; the LLaMA ones print their own ratios
            groups.setdefault(b.group, {})[b.extra_info["impl"]] = b.stats.median * 1e3
    rows = []
    for group, ms in sorted(groups.items()):
        for impl, t in ms.items():
            if impl.startswith("fused") and "eager" in ms:  # a sweep group times no compiled reference
                rows.append({"group": group, "impl": impl, "ms": round(t, 4),
                             "eager_ms": round(ms["eager"], 4),
                             "speedup_eager": round(ms["eager"] / t, 2),
                             "speedup_compiled": round(ms["compiled"] / t, 2) if "compiled" in ms else None})
    if not rows:
        return
    name = torch.cuda.get_device_name(0).replace(" ", "_") if DEVICE == "cuda" else "cpu"
    out = pathlib.Path(os.environ.get("NCL_BENCH_OUT", pathlib.Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print("\nratios (fused vs eager reference and torch.compile(reference), medians of this run):")
    for r in rows:
        compiled = "-" if r["speedup_compiled"] is None else r["speedup_compiled"]
        print(f"  {r['group']:<40} {r['impl']:<14} {r['ms']:9.3f} ms  x{r['speedup_eager']:<6} eager  "
              f"x{compiled:<6} compiled")
    from ncl.machine.bench import plot_sweep

    if plot_sweep(rows, out / f"machine_sweep_{name}.png", device=name):
        print(f"machine sweep plot: {out / f'machine_sweep_{name}.png'}")
