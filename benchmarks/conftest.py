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


def bench_memory_op(benchmark, op: str, size, mode: str, impl: str) -> None:
    """Time ``impl`` ("eager", "compiled" or "fused:<backend>") of ``op`` at ``size`` in ``mode``."""
    backend = impl.split(":")[1] if impl.startswith("fused") else "reference"
    fn = benchmarking.implementations(op, backend)[impl.split(":")[0]]
    xs = benchmarking.memory_inputs(op, *size, device=DEVICE)
    run = benchmarking.step(fn, xs, mode)
    for _ in range(3):  # warm-up, and torch.compile's compilation, outside the timing
        run()
    benchmark.group = f"{op} {','.join(map(str, size))} {mode}"
    benchmark.extra_info.update(op=op, size=list(size), mode=mode, impl=impl, device=DEVICE)
    if DEVICE == "cuda":
        benchmark.pedantic(lambda: (run(), torch.cuda.synchronize()), rounds=50, warmup_rounds=2)
    else:
        benchmark(run)


def memory_params():
    impls = ["eager", "compiled"] + [f"fused:{b}" for b in fused_backends()]
    return [pytest.param(size, mode, impl, id=f"{','.join(map(str, size))}-{mode}-{impl}")
            for size in benchmarking.MEMORY_SIZES for mode in ("fwd", "fwdbwd") for impl in impls]


def pytest_sessionfinish(session, exitstatus):
    bs = getattr(session.config, "_benchmarksession", None)
    if bs is None or not getattr(bs, "benchmarks", None):
        return
    groups: dict[str, dict[str, float]] = {}
    for b in bs.benchmarks:
        groups.setdefault(b.group, {})[b.extra_info["impl"]] = b.stats.median * 1e3
    rows = []
    for group, ms in sorted(groups.items()):
        for impl, t in ms.items():
            if impl.startswith("fused") and "eager" in ms and "compiled" in ms:
                rows.append({"group": group, "impl": impl, "ms": round(t, 4),
                             "speedup_eager": round(ms["eager"] / t, 2),
                             "speedup_compiled": round(ms["compiled"] / t, 2)})
    if not rows:
        return
    name = torch.cuda.get_device_name(0).replace(" ", "_") if DEVICE == "cuda" else "cpu"
    out = pathlib.Path(os.environ.get("NCL_BENCH_OUT", pathlib.Path(__file__).parent / "results"))
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(rows, indent=1))
    print("\nratios (fused vs eager reference and torch.compile(reference), medians of this run):")
    for r in rows:
        print(f"  {r['group']:<40} {r['impl']:<14} {r['ms']:9.3f} ms  x{r['speedup_eager']:<6} eager  "
              f"x{r['speedup_compiled']:<6} compiled")
