"""Where a fused machine run's time goes: its whole-run kernels against everything around them, one profiled call.

    python scripts/machine_profile.py [--device cuda] [--backend cuda] [--inputs sharp,soft] [--json OUT.json]

The run of ``ncl bench machine`` (its loop program, n = C = 128, K = 8, S = 32, 64 steps, checkpointed), forward
and forward+backward, on sharp and soft inputs (:mod:`ncl.machine.bench_eager`). Each is called ``--repeats`` times
unprofiled (the wall time, median and spread), then once under the torch profiler, which gives, for that call:

* ``wall_ms``: the profiled call's own wall time (synchronised on a GPU);
* ``kernel_ms``: on a GPU, the device time of every kernel the call launched; on a CPU, the self time of the
  whole-run ops (``ncl::machine_run_fwd``/``_bwd``), the kernels there;
* ``machine_kernel_ms`` and ``launches``: the whole-run kernels' part of it, and how many device kernels ran;
* ``host_ms`` = ``wall_ms - kernel_ms``: the call's time with no kernel running (Python, autograd, launches,
  syncs, the small torch ops' gaps), profiler overhead included; and the events that took the most time.

On the H200 (benchmarks/RESULTS.md, "The first GPU run") the forward took 0.21 ms a step at 32 samples, and
whether that is the kernel's own latency or the host's share decides what to make faster next: a layout that puts
more of the card on a small batch, or fewer launches and syncs around it. ``scripts/gpu_check.sh`` runs this.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

#: The CPU whole-run ops, and the part of a kernel's name that marks a whole-run kernel on either device.
CPU_KERNEL_OPS = ("ncl::machine_run_fwd", "ncl::machine_run_bwd")
WHOLE_RUN = "machine_run"


def _events(prof, cuda: bool) -> list[tuple[str, float, int]]:
    """``(name, ms, count)`` of the profiled call's kernels: device kernels on a GPU, every op's self time on a
    CPU; the largest first."""
    from torch.autograd import DeviceType

    rows = []
    for e in prof.key_averages():
        if cuda and e.device_type == DeviceType.CUDA:
            rows.append((e.key, e.self_device_time_total / 1e3, e.count))
        elif not cuda and e.self_cpu_time_total > 0:
            rows.append((e.key, e.self_cpu_time_total / 1e3, e.count))
    return sorted(rows, key=lambda r: -r[1])


def profile_call(call, device: str, top: int) -> dict:
    """The profiled figures of one ``call()`` (module docstring)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    cuda = torch.device(device).type == "cuda"
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    if cuda:
        torch.cuda.synchronize()
    with profile(activities=activities) as prof:
        start = time.perf_counter()
        call()
        if cuda:
            torch.cuda.synchronize()
        wall = (time.perf_counter() - start) * 1e3
    events = _events(prof, cuda)
    kernels = events if cuda else [e for e in events if e[0] in CPU_KERNEL_OPS]
    kernel_ms = sum(ms for _, ms, _ in kernels)
    return {"wall_ms": round(wall, 3), "kernel_ms": round(kernel_ms, 3),
            "machine_kernel_ms": round(sum(ms for name, ms, _ in kernels if WHOLE_RUN in name), 3),
            "launches": sum(count for _, _, count in kernels), "host_ms": round(wall - kernel_ms, 3),
            "top": [{"name": name, "ms": round(ms, 3), "count": count} for name, ms, count in events[:top]]}


def measure(kind: str, backend: str, device: str, batch: int, steps: int, repeats: int, top: int) -> dict:
    """``{"fwd": {...}, "fwdbwd": {...}}`` for one kind of inputs: each the unprofiled wall time's
    ``{"min", "median", "max"}`` as ``"wall"`` and :func:`profile_call`'s figures."""
    import torch

    from ncl.machine import bench, bench_eager
    from ncl_kernels.benchmarking import time_stats
    from ncl_kernels.machine import MachineConfig

    config = MachineConfig(n=bench.N, cells=bench.CELLS, registers=bench.REGISTERS, stack=bench.STACK)
    sharp = bench.machine_inputs(batch, steps, torch.float32, device)
    program, regs, mem = bench_eager.case_for(kind, bench.LOOP, config, sharp, batch, torch.float32, device)[:3]

    def forward():
        with torch.no_grad():
            program.run(regs, mem, max_steps=steps, backend=backend)

    def both():
        program.zero_grad(set_to_none=True)
        bench_eager.loss(program.run(regs, mem, max_steps=steps, backend=backend)).backward()

    return {mode: {"wall": time_stats(call, device, repeats, warmup=1), **profile_call(call, device, top)}
            for mode, call in (("fwd", forward), ("fwdbwd", both))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--backend", default=None, help="the dispatch backend (default: cuda on a GPU, cpp on a CPU)")
    ap.add_argument("--inputs", default="sharp,soft", help="input kinds, comma-separated (sharp, soft)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--top", type=int, default=12, help="events listed, the largest first")
    ap.add_argument("--json", default=None, metavar="OUT.json")
    args = ap.parse_args(argv)
    kinds = [k for k in args.inputs.split(",") if k]
    if not kinds or any(k not in ("sharp", "soft") for k in kinds):
        ap.error(f"--inputs must name sharp and/or soft, got {args.inputs!r}")
    if min(args.batch, args.steps, args.repeats, args.top) < 1:
        ap.error("--batch, --steps, --repeats and --top must be positive")
    import torch  # (after argparse: --help needs no torch)

    if args.device == "cuda" and not torch.cuda.is_available():
        ap.error("no CUDA device (on a CPU: --device cpu)")
    backend = args.backend or ("cuda" if args.device == "cuda" else "cpp")
    result = {"device": args.device, "backend": backend, "batch": args.batch, "steps": args.steps,
              "gpu": torch.cuda.get_device_name() if args.device == "cuda" else None}
    for kind in kinds:
        result[kind] = measure(kind, backend, args.device, args.batch, args.steps, args.repeats, args.top)
        for mode, r in result[kind].items():
            print(f"{kind} {mode}: wall {r['wall']['median']:.2f} ms ({r['wall']['min']:.2f}-{r['wall']['max']:.2f}); "
                  f"profiled call {r['wall_ms']:.2f} ms = kernels {r['kernel_ms']:.2f} (whole-run "
                  f"{r['machine_kernel_ms']:.2f}, {r['launches']} launches) + host {r['host_ms']:.2f}", flush=True)
            for e in r["top"][:5]:
                print(f"    {e['ms']:9.3f} ms  x{e['count']:<5d} {e['name'][:90]}")
    if args.json:
        from ncl.storage import write_json

        write_json(Path(args.json), result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
