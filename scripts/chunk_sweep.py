"""Time the checkpointed run's forward+backward on the ``cpp`` kernel for several checkpoint intervals ``k`` and
program lengths ``L``: the measurements behind :func:`ncl.machine.run.checkpoint_chunk`.

The program is ``ncl bench machine``'s loop (9 lines) with ``HALT`` lines appended up to ``L``: a sharp run never
reaches them; a soft one (:data:`ncl.machine.bench_eager.SOFT_SHARPNESS`) spreads its ip over every line, as a
soft program of that length would. Inputs, batch and steps are the bench's (B = 32, n = C = 128, 64 steps, every
sample running all of them, but for the soft runs of the longest programs: ``sweep``). Each round times every
``k`` in turn (``calls`` calls after one warm-up), so the machine's drift between minutes falls on all of them; a
row reports the median and quartiles over all rounds.

    python scripts/chunk_sweep.py --lines 9 69 129 509 --chunks 16 32 64 --json out.json --plot out.png

Used for "The checkpoint interval on the CPU kernel" in benchmarks/RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import ncl  # noqa: F401 (first: it sets the OpenMP wait policy before torch loads, as the ncl command does)
import torch

from ncl.machine import bench, bench_eager
from ncl.machine.run import checkpoint_chunk
from ncl.storage import write_json
from ncl_kernels.machine import MachineConfig


#: Steps a run: the bench's.
STEPS = 64


def padded_loop(lines: int) -> str:
    """The bench's loop with ``HALT`` lines appended, ``lines`` lines in all (at least the loop's 9)."""
    base = len([line for line in bench.LOOP.splitlines() if line.strip()])
    if lines < base:
        raise ValueError(f"lines must be at least {base}, got {lines}")
    return bench.LOOP + "".join(f"pad{i}:  HALT\n" for i in range(lines - base))


def sweep(lines: list[int], chunks: list[int], rounds: int, calls: int, batch: int = 32,
          steps: int = STEPS) -> list[dict]:
    """One row per (L, inputs, k): ``{"lines", "inputs", "chunk", "steps", "median_ms", "q1_ms", "q3_ms",
    "min_ms"}``. ``steps``: the run's (the same for every k); a soft run's ip reaches the padding's ``HALT`` lines,
    and at L = 129 its batch halts a step or two before ``steps``."""
    config = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
    rows = []
    for length in lines:
        for inputs in bench_eager.INPUTS:
            program, regs, mem, _ = bench_eager.case_for(inputs, padded_loop(length), config,
                                                         bench.machine_inputs(batch, steps), batch)
            times: dict[int, list[float]] = {k: [] for k in chunks}
            ran: dict[int, int] = {}

            def call(k: int) -> None:
                program.zero_grad(set_to_none=True)
                out = program.run(regs, mem, max_steps=steps, backend="cpp", chunk=k)
                bench_eager.loss(out).backward()
                ran[k] = out.steps

            for _ in range(rounds):
                for k in chunks:
                    call(k)
                    for _ in range(calls):
                        t = time.perf_counter()
                        call(k)
                        times[k].append(1e3 * (time.perf_counter() - t))
            for k in chunks:
                q1, median, q3 = (statistics.quantiles(times[k], n=4, method="inclusive") if len(times[k]) > 1
                                  else [times[k][0]] * 3)
                rows.append({"lines": program.length, "inputs": inputs, "chunk": k, "steps": ran[k],
                             "median_ms": median, "q1_ms": q1, "q3_ms": q3, "min_ms": min(times[k])})
            print(f"L={program.length} {inputs}: " + ", ".join(
                f"k={r['chunk']} {r['median_ms']:.1f} ms" for r in rows[-len(chunks):]), file=sys.stderr, flush=True)
    return rows


def plot(rows: list[dict], path: str) -> None:
    """Each k's median time over k = the smallest one's, against L, one panel per kind of inputs (PNG)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(bench_eager.INPUTS), figsize=(10, 4), sharey=True)
    for ax, inputs in zip(axes, bench_eager.INPUTS):
        mine = [r for r in rows if r["inputs"] == inputs]
        base_k = min(r["chunk"] for r in mine)
        base = {r["lines"]: r["median_ms"] for r in mine if r["chunk"] == base_k}
        for k in sorted({r["chunk"] for r in mine}):
            points = sorted((r["lines"], r["median_ms"] / base[r["lines"]]) for r in mine if r["chunk"] == k)
            ax.plot(*zip(*points), marker="o", label=f"k = {k}")
        ax.axhline(1.0, color="grey", linewidth=0.5)
        ax.set_xscale("log")
        ax.set_xlabel("program lines L")
        ax.set_title(f"{inputs} inputs")
    axes[0].set_ylabel(f"fwd+bwd time / time at k = {min(r['chunk'] for r in rows)}")
    axes[-1].legend()
    fig.suptitle("Checkpointed run on the cpp kernel, B = 32, n = C = 128, 64 steps")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--lines", type=int, nargs="+", default=[9, 40, 69, 129, 509])
    p.add_argument("--chunks", type=int, nargs="+", default=[16, 32, 64])
    p.add_argument("--rounds", type=int, default=4)
    p.add_argument("--calls", type=int, default=4, help="timed calls per k and round")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", help="write the rows here")
    p.add_argument("--plot", help="write a PNG here")
    args = p.parse_args(argv)
    if min(args.chunks) < 1 or args.rounds < 1 or args.calls < 1:
        p.error("--chunks, --rounds and --calls must be >= 1")
    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    rows = sweep(args.lines, args.chunks, args.rounds, args.calls, args.batch)
    result = {"threads": args.threads, "rounds": args.rounds, "calls": args.calls,
              "sizes": {"B": args.batch, "n": bench.N, "C": bench.CELLS, "K": bench.REGISTERS, "S": bench.STACK,
                        "steps": STEPS},
              "default_chunk": {str(r["lines"]): checkpoint_chunk("cpp", r["lines"]) for r in rows}, "rows": rows}
    if args.json:
        write_json(args.json, result, indent=1)
    if args.plot:
        plot(rows, args.plot)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
