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

``--ceiling`` also measures what the machine's cores give to work that shares nothing: ``t`` independent
single-thread processes, each timing the same compute-bound float32 matmuls (256 x 256, in cache), started
together; their throughput over one process's is ``t * time(1) / mean(time(t))``, the median over rounds, in
``"ceiling"``. A kernel's speedup near it is the hardware's limit, not the kernel's: two vCPUs that are one
core's SMT siblings (a cloud VM's usual pair) share its FMA units.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
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


# One process of the ceiling: waits for the shared start time, then times `calls` matmuls on one thread (s, stdout).
CEILING_CHILD = r"""
import sys, time
import torch
torch.set_num_threads(1)
start, calls = float(sys.argv[1]), int(sys.argv[2])
a, b = torch.randn(256, 256), torch.randn(256, 256)
for _ in range(20):
    a @ b
time.sleep(max(0.0, start - time.time()))
t = time.perf_counter()
for _ in range(calls):
    a @ b
print(time.perf_counter() - t)
"""


def process_ceiling(counts, rounds: int, calls: int = 2000, lead_s: float = 4.0) -> dict[str, float]:
    """``{str(t): throughput of t independent processes over one's}`` for each t in ``counts`` past the first one,
    the median over ``rounds`` (each round times every count, one after the other). The processes start their timed
    matmuls at one wall-clock time, ``lead_s`` after launch (importing torch takes a second or two)."""
    times: dict[int, list[float]] = {t: [] for t in (1, *counts)}
    for _ in range(rounds):
        for t in times:
            start = time.time() + lead_s
            procs = [subprocess.Popen([sys.executable, "-c", CEILING_CHILD, str(start), str(calls)],
                                      stdout=subprocess.PIPE, text=True) for _ in range(t)]
            outs = [p.communicate()[0] for p in procs]
            if any(p.returncode for p in procs):
                raise RuntimeError(f"a ceiling process failed: {outs}")
            times[t].append(statistics.mean(float(o) for o in outs))
    return {str(t): round(statistics.median(t * one / many for one, many in zip(times[1], times[t])), 3)
            for t in counts if t != 1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", default="sharp,soft", help="input kinds, comma-separated (sharp, soft)")
    parser.add_argument("--threads", default="1,2", help="thread counts, comma-separated; speedups are over the first")
    parser.add_argument("--rounds", type=int, default=9, help="interleaved rounds (each times every thread count)")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--json", help="write the result here")
    parser.add_argument("--ceiling", action="store_true",
                        help="also measure independent single-thread processes' throughput scaling (see above)")
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
    if args.ceiling:
        result["ceiling"] = process_ceiling([t for t in threads if t > 1], args.rounds)
        print(f"independent processes' throughput over one's: {result['ceiling']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)


if __name__ == "__main__":
    main()
