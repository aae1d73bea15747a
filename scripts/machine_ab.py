"""Interleaved A/B timing of two builds of the CPU kernels on the ``ncl bench machine`` run.

Each build is a folder holding ``ncl`` and ``ncl_kernels`` with its compiled extension (a copy of a checkout
after ``python setup.py build_ext --inplace``). Every round times the fused run of ``ncl bench machine``
(B = 32, 64 steps, the sharp or soft inputs of :mod:`ncl.machine.bench_eager`) in a fresh process of each build,
the two alternating, so that the machine's drift between minutes (±20 % on the 2-core machines) falls on both;
the figure of merit is the median over rounds of B's time over A's.

    python scripts/machine_ab.py --a /tmp/build-before --b . --rounds 6 --inputs soft

Used for the "CPU kernels" passes in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# One process of one build: the fused run's median forward and forward+backward, in ms, as JSON on stdout.
CHILD = r"""
import json, statistics, sys, time
import ncl  # noqa: F401 (first: it sets the OpenMP wait policy before torch loads, as the ncl command does)
import torch
from ncl.machine import bench, bench_eager
from ncl_kernels.machine import MachineConfig

inputs, calls, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.set_flush_denormal(True)
config = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
program, regs, mem, _ = bench_eager.case_for(inputs, bench.LOOP, config, bench.machine_inputs(32, 64), 32)


def run():
    return program.run(regs, mem, max_steps=64, backend="cpp", chunk=bench.DEFAULT_CHUNK)


def fwdbwd():
    program.zero_grad(set_to_none=True)
    bench_eager.loss(run()).backward()


fwdbwd()
fwd, both = [], []
for _ in range(calls):
    t = time.perf_counter()
    with torch.no_grad():
        run()
    fwd.append(time.perf_counter() - t)
    t = time.perf_counter()
    fwdbwd()
    both.append(time.perf_counter() - t)
import ncl_kernels
print(json.dumps({"fwd": 1e3 * statistics.median(fwd), "fwdbwd": 1e3 * statistics.median(both),
                  "package": ncl_kernels.__file__}))
"""


def time_build(path: str, inputs: str, calls: int, threads: int) -> dict:
    """The fused run's median ms (``{"fwd", "fwdbwd", "package"}``) in a fresh process importing ncl from ``path``.

    The process runs in ``path``: ``python -c`` puts its working directory first on ``sys.path``, ahead of
    ``PYTHONPATH``, so run from a checkout it would time that checkout's build whichever folder was named."""
    path = os.path.abspath(path)
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run([sys.executable, "-c", CHILD, inputs, str(calls), str(threads)], env=env, cwd=path,
                         check=True, capture_output=True, text=True).stdout
    result = json.loads(out.strip().splitlines()[-1])
    if os.path.commonpath([path, os.path.abspath(result["package"])]) != path:
        raise RuntimeError(f"the build in {path} imported ncl_kernels from {result['package']}")
    return result


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--a", required=True, help="the build before (a folder with ncl and ncl_kernels)")
    p.add_argument("--b", required=True, help="the build after")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--calls", type=int, default=8, help="timed calls per process")
    p.add_argument("--inputs", choices=("sharp", "soft"), default="soft")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    for name in ("a", "b"):
        if not os.path.isdir(os.path.join(getattr(args, name), "ncl_kernels")):
            p.error(f"--{name} {getattr(args, name)!r} holds no ncl_kernels folder")
    rows = []
    for r in range(args.rounds):
        a, b = (time_build(path, args.inputs, args.calls, args.threads) for path in (args.a, args.b))
        rows.append({"a": a, "b": b, "ratio": b["fwdbwd"] / a["fwdbwd"]})
        print(f"round {r + 1}: A {a['fwdbwd']:.1f} ms, B {b['fwdbwd']:.1f} ms, B/A {rows[-1]['ratio']:.3f}",
              file=sys.stderr, flush=True)
    ratios = [row["ratio"] for row in rows]
    summary = {"inputs": args.inputs, "threads": args.threads, "rounds": rows,
               "median_ratio_fwdbwd": statistics.median(ratios), "min_ratio": min(ratios), "max_ratio": max(ratios),
               "median_ms_fwdbwd": {k: statistics.median(row[k]["fwdbwd"] for row in rows) for k in ("a", "b")},
               "median_ms_fwd": {k: statistics.median(row[k]["fwd"] for row in rows) for k in ("a", "b")}}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
