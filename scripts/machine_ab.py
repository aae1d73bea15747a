"""Interleaved A/B timing of two builds of the CPU kernels on the ``ncl bench machine`` run.

Each build is a folder holding ``ncl`` and ``ncl_kernels`` with its compiled extension (a copy of a checkout
after ``python setup.py build_ext --inplace``). Every round times the fused run of ``ncl bench machine``
(B = 32, 64 steps, the sharp or soft inputs of :mod:`ncl.machine.bench_eager`) in a fresh process of each build,
the two alternating, so that the machine's drift between minutes (±20 % on the 2-core machines) falls on both;
the figure of merit is the median over rounds of B's time over A's. Each build runs with its own default checkpoint
interval (``Program.run``'s ``chunk``): the run a user of that build gets.

    python scripts/machine_ab.py --a /tmp/build-before --b . --rounds 6 --inputs soft

With ``--ops`` a round times the kernel ops alone instead, in each build's process: ``ncl::machine_run_fwd`` (with
its tape) and ``ncl::machine_run_bwd`` on one chunk of that run (steps 17-32, from the state the run reaches), and
the ``alu_mix`` op forward and backward on 2,048 dense rows (softmax operands, every op weighted, n = 128). Each
process reports the fastest of its calls and the summary the fastest over rounds: a changed op's own time, with
less of the Python around the run, and the minimum, as the machine's noise only ever adds time.

Used for the "CPU kernels" passes in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

# What every child process starts with: the arguments (inputs, calls, threads) and the bench's machine.
_SETUP = r"""
import json, statistics, sys, time
import ncl  # noqa: F401 (first: it sets the OpenMP wait policy before torch loads, as the ncl command does)
import torch
import ncl_kernels
from ncl.machine import bench, bench_eager
from ncl_kernels.machine import MachineConfig

inputs, calls, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
torch.set_num_threads(threads)
torch.set_flush_denormal(True)
config = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
program, regs, mem, _ = bench_eager.case_for(inputs, bench.LOOP, config, bench.machine_inputs(32, 64), 32)
"""

# One process of one build: the fused run's median forward and forward+backward, in ms, as JSON on stdout.
CHILD = _SETUP + r"""

def run():
    return program.run(regs, mem, max_steps=64, backend="cpp")  # each build's default chunk


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
print(json.dumps({"fwd": 1e3 * statistics.median(fwd), "fwdbwd": 1e3 * statistics.median(both),
                  "package": ncl_kernels.__file__}))
"""

# One process of one build, --ops: the fastest of `calls` calls of each kernel op, in ms, as JSON on stdout.
CHILD_OPS = _SETUP + r"""
from ncl_kernels import _ext, alu_mix
from ncl_kernels.isa import one_hot
from ncl_kernels.machine import NORM_EPS, initial_carry

_ext.load()  # registers the ncl ops' kernels
fields = [f.detach() for f in program.fields()]
carry = list(initial_carry(one_hot(torch.zeros(32, dtype=torch.long), program.length, torch.float32), regs, mem,
                           config.stack).flat())
chunk = 16  # one kernel call's steps, the same for every build
run_fwd, run_bwd = torch.ops.ncl.machine_run_fwd, torch.ops.ncl.machine_run_bwd
carry = list(run_fwd(*fields, carry, 0, chunk, config.halt_eps, NORM_EPS)[:len(carry)])
kept = run_fwd(*fields, carry, chunk, chunk, config.halt_eps, NORM_EPS, True)
gen = torch.Generator().manual_seed(0)
grads = [torch.randn(t.shape, generator=gen) for t in carry]
x, y = (torch.softmax(torch.randn(2048, config.n, generator=gen), -1).requires_grad_() for _ in range(2))
coeffs = torch.full((2048, 16), 1 / 16).requires_grad_()
g_out = torch.randn(2048, config.n, generator=gen)
calls_of = {
    "fwd": lambda: run_fwd(*fields, carry, chunk, chunk, config.halt_eps, NORM_EPS, True),
    "bwd": lambda: run_bwd(*fields, carry, grads, chunk, chunk, NORM_EPS, False, *kept[len(carry) + 1:],
                           kept[2]),
}
best = {}


def timed(name, call):
    t = time.perf_counter()
    result = call()
    best[name] = min(best.get(name, float("inf")), 1e3 * (time.perf_counter() - t))
    return result


for _ in range(calls):
    for name, call in calls_of.items():
        timed(name, call)
    out = timed("alu_fwd", lambda: alu_mix(x, y, coeffs, backend="cpp"))
    timed("alu_bwd", lambda: out.backward(g_out))
print(json.dumps({**best, "package": ncl_kernels.__file__}))
"""
OPS = ("fwd", "bwd", "alu_fwd", "alu_bwd")


def time_build(path: str, inputs: str, calls: int, threads: int, child: str = CHILD) -> dict:
    """The fused run's median ms (``{"fwd", "fwdbwd", "package"}``; with ``child=CHILD_OPS`` the ops' fastest,
    :data:`OPS`) in a fresh process importing ncl from ``path``.

    The process runs in ``path``: ``python -c`` puts its working directory first on ``sys.path``, ahead of
    ``PYTHONPATH``, so run from a checkout it would time that checkout's build whichever folder was named."""
    path = os.path.abspath(path)
    env = dict(os.environ, PYTHONPATH=path)
    out = subprocess.run([sys.executable, "-c", child, inputs, str(calls), str(threads)], env=env, cwd=path,
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
    p.add_argument("--ops", action="store_true", help="time the kernel ops alone (fastest calls), not the run")
    args = p.parse_args(argv)
    for name in ("a", "b"):
        if not os.path.isdir(os.path.join(getattr(args, name), "ncl_kernels")):
            p.error(f"--{name} {getattr(args, name)!r} holds no ncl_kernels folder")
    if args.ops:
        return ops_main(args)
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


def ops_main(args) -> int:
    """--ops: each build's fastest call of each op over all rounds (and each round's), and B's over A's."""
    rows = []
    for r in range(args.rounds):
        rows.append({side: time_build(path, args.inputs, args.calls, args.threads, CHILD_OPS)
                     for side, path in (("a", args.a), ("b", args.b))})
        print(f"round {r + 1}: " + ", ".join(f"{op} A {rows[-1]['a'][op]:.2f} B {rows[-1]['b'][op]:.2f} ms"
                                             for op in OPS), file=sys.stderr, flush=True)
    fastest = {side: {op: min(row[side][op] for row in rows) for op in OPS} for side in ("a", "b")}
    summary = {"inputs": args.inputs, "threads": args.threads, "rounds": rows, "fastest_ms": fastest,
               "ratio_fastest": {op: fastest["b"][op] / fastest["a"][op] for op in OPS}}
    print(json.dumps(summary, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
