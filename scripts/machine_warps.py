"""Time the Triton whole-run machine kernels at each warp count (``NCL_TRITON_WARPS``), small batches first.

    python scripts/machine_warps.py [--batch 8 32 128] [--warps 0 8 16] [--json OUT.json]

One Triton program runs one sample, so a batch below the GPU's SM count (132 on an H100 or H200) leaves SMs idle
and each sample's step is latency-bound: more warps per program put more threads on each step's tiles, fewer
registers on each thread (:func:`ncl_kernels.machine.triton.launch_warps`). This measures the choice instead of
guessing it: the run of ``ncl bench machine`` (its loop program, n = C = 128, K = 8, S = 32, 64 steps, the
fused path checkpointed as there), forward and forward+backward, at each batch and warp count; ``0`` is the
kernels' own defaults (4 warps forward, 8 backward). Median and min–max of ``--repeats`` calls, in ms.
``scripts/gpu_check.sh`` runs it; on a CPU it runs under the Triton interpreter (``--device cpu``), which only
checks that every setting runs and agrees, not its speed.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def measure(batch: int, warps: int, steps: int, repeats: int, device: str) -> dict:
    """``{"fwd": stats, "fwdbwd": stats, "answer": float, "grad": float}`` for one batch and warp count (0: the
    defaults); ``answer`` (the registers' expected values, summed) and ``grad`` (the norm of the loss's gradient
    to the memory; the program's is ~1e-12 on these sharp inputs, too small to tell settings apart) let the
    settings be checked to agree."""
    import torch  # (after argparse: --help needs no torch)

    from ncl.machine import bench_eager
    from ncl.machine.assembler import assemble
    from ncl.machine.bench import CELLS, LOOP, N, REGISTERS, STACK, machine_inputs
    from ncl_kernels.benchmarking import time_stats
    from ncl_kernels.machine import MachineConfig

    if warps:
        os.environ["NCL_TRITON_WARPS"] = str(warps)
    else:
        os.environ.pop("NCL_TRITON_WARPS", None)
    config = MachineConfig(n=N, cells=CELLS, registers=REGISTERS, stack=STACK)
    program = assemble(LOOP, config).to(device)
    regs, mem = machine_inputs(batch, steps, torch.float32, device)

    def forward():
        with torch.no_grad():
            return program.run(regs, mem, max_steps=steps, backend="triton")

    def both():
        program.zero_grad(set_to_none=True)
        out = program.run(regs, mem, max_steps=steps, backend="triton")
        bench_eager.loss(out).backward()
        return out

    dev = torch.device(device)
    answer = float((forward().regs * torch.arange(N, device=dev)).sum())
    leaf = mem.clone().requires_grad_(True)
    bench_eager.loss(program.run(regs, leaf, max_steps=steps, backend="triton")).backward()
    grad = float(leaf.grad.norm())
    return {"fwd": time_stats(forward, dev, repeats, warmup=1), "fwdbwd": time_stats(both, dev, repeats, warmup=1),
            "answer": answer, "grad": grad}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 32, 128])
    ap.add_argument("--warps", type=int, nargs="+", default=[0, 8, 16],
                    help="warp counts to time (0: the kernels' defaults)")
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--json", default=None, metavar="OUT.json")
    args = ap.parse_args(argv)
    if args.device == "cuda":
        import torch  # (after argparse: --help needs no torch)

        if not torch.cuda.is_available():
            ap.error("no CUDA device (on a CPU: --device cpu, under TRITON_INTERPRET=1)")
    rows = []
    for batch in args.batch:
        for warps in args.warps:
            r = measure(batch, warps, args.steps, args.repeats, args.device)
            rows.append({"batch": batch, "warps": warps or "default", **r})
            print(f"B={batch:4d} warps={warps or 'default':>7}  fwd {r['fwd']['median']:8.3f} ms "
                  f"({r['fwd']['min']:.3f}-{r['fwd']['max']:.3f})  fwd+bwd {r['fwdbwd']['median']:8.3f} ms "
                  f"({r['fwdbwd']['min']:.3f}-{r['fwdbwd']['max']:.3f})", flush=True)
    for batch in args.batch:
        for key in ("answer", "grad"):
            values = [r[key] for r in rows if r["batch"] == batch]
            if max(values) - min(values) > 1e-4 * max(1.0, max(map(abs, values))):
                print(f"B={batch}: the warp counts disagree on the run's {key}: {values}", file=sys.stderr)
                return 1
    if args.json:
        Path(args.json).write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
