"""How the CPU whole-run kernel scales with threads: ``ncl::machine_run_fwd`` + ``ncl::machine_run_bwd`` time per
call of ``ncl bench machine``'s run (checkpointed, forward+backward), at each thread count, interleaved.

The kernel's time is the torch profiler's self time of the two ops, so the Python and autograd code around them
(which does not scale) is left out; the wall time of the same call is reported beside it. Each round times every
thread count once, one after the other, so that a machine whose speed drifts (a shared VM) moves all of them
alike; the figures are the median and the spread over rounds. Subnormals are flushed, as ``--flush-denormal``.
``ncl`` is imported before torch, so OpenMP's wait policy is the one ``ncl`` sets (``OMP_WAIT_POLICY=PASSIVE``
unless the environment names one): set it to compare (benchmarks/RESULTS.md, "CPU kernels, third pass").

    python scripts/kernel_threads.py --threads 1,2 --rounds 9 --json out.json

Prints one line per input kind and thread count, then the speedup of each thread count over the first; with
``--json``, writes ``{"threads": [...], "sharp": {"1": {"kernel_ms": {...}, "wall_ms": {...}}, ...},
"speedup": {"sharp": {"2": ..}, ...}}`` (speedups of the kernel's median).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import ncl  # noqa: F401  (before torch: its OMP_WAIT_POLICY default takes effect, as in the ncl command)
import torch
from torch.profiler import ProfilerActivity, profile

from ncl.machine import bench, bench_eager
from ncl_kernels.machine import MachineConfig

KERNEL_OPS = ("ncl::machine_run_fwd", "ncl::machine_run_bwd")


def _case(kind: str, batch: int, steps: int):
    config = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK, alu="table")
    return bench_eager.case_for(kind, bench.LOOP, config, bench.machine_inputs(batch, steps), batch)[:3]


def _call(program, regs, mem, steps: int) -> None:
    program.zero_grad(set_to_none=True)
    out = program.run(regs, mem, max_steps=steps, backend="cpp")
    bench_eager.loss(out).backward()


def _spread(values: list[float]) -> dict[str, float]:
    return {"median": round(statistics.median(values), 3), "min": round(min(values), 3),
            "max": round(max(values), 3)}


def measure(kinds, threads, rounds: int, batch: int, steps: int) -> dict:
    """``{kind: {str(t): {"kernel_ms": spread, "wall_ms": spread}}}`` and the kernel's speedups over threads[0]."""
    torch.set_flush_denormal(True)
    result: dict = {"threads": list(threads), "rounds": rounds, "batch": batch, "steps": steps,
                    "what": "self time of " + " + ".join(KERNEL_OPS) + " per checkpointed fwd+bwd call"}
    for kind in kinds:
        program, regs, mem = _case(kind, batch, steps)
        kernel = {t: [] for t in threads}
        wall = {t: [] for t in threads}
        for t in threads:  # warm-up: the pair tables, the thread pool
            torch.set_num_threads(t)
            _call(program, regs, mem, steps)
        for _ in range(rounds):
            for t in threads:
                torch.set_num_threads(t)
                start = time.perf_counter()
                _call(program, regs, mem, steps)
                wall[t].append((time.perf_counter() - start) * 1e3)
                with profile(activities=[ProfilerActivity.CPU]) as prof:
                    _call(program, regs, mem, steps)
                kernel[t].append(sum(e.self_cpu_time_total for e in prof.key_averages() if e.key in KERNEL_OPS) / 1e3)
        result[kind] = {str(t): {"kernel_ms": _spread(kernel[t]), "wall_ms": _spread(wall[t])} for t in threads}
        base = statistics.median(kernel[threads[0]])
        result.setdefault("speedup", {})[kind] = {str(t): round(base / statistics.median(kernel[t]), 3)
                                                  for t in threads[1:]}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", default="sharp,soft", help="input kinds, comma-separated (sharp, soft)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated; speedups are over the first")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (each times every thread count)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--json", help="write the result here")
    args = parser.parse_args()
    kinds = [k for k in args.inputs.split(",") if k]
    threads = [int(t) for t in args.threads.split(",")]
    if any(k not in ("sharp", "soft") for k in kinds):
        raise ValueError(f"--inputs must name sharp and/or soft, got {args.inputs!r}")
    if not threads or min(threads) < 1 or args.rounds < 1 or args.batch < 1 or args.steps < 1:
        raise ValueError("--threads, --rounds, --batch and --steps must be positive")
    result = measure(kinds, threads, args.rounds, args.batch, args.steps)
    for kind in kinds:
        for t in threads:
            k, w = result[kind][str(t)]["kernel_ms"], result[kind][str(t)]["wall_ms"]
            print(f"{kind} {t} threads: kernel {k['median']:.1f} ms ({k['min']:.1f}-{k['max']:.1f}), "
                  f"wall {w['median']:.1f} ms ({w['min']:.1f}-{w['max']:.1f})")
        print(f"{kind} kernel speedup over {threads[0]} thread(s): {result['speedup'][kind]}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
