"""The ``ncl`` command.

* ``ncl info``: versions, devices, and every kernel backend with the reason it is unavailable.
* ``ncl demo``: the memory ops on every available backend, checked against the reference.
* ``ncl bench memory``: fused vs eager reference vs ``torch.compile(reference)``, as JSON.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys


def _info(args: argparse.Namespace) -> int:
    import torch

    import ncl
    import ncl_kernels

    report = {
        "ncl": ncl.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "backends": ncl_kernels.info(),
    }
    try:
        import triton

        report["triton"] = triton.__version__
    except Exception:
        report["triton"] = None
    if args.json:
        print(json.dumps(report, indent=1))
        return 0
    for key, value in report.items():
        if key != "backends":
            print(f"{key:>13}: {value}")
    print("     backends:")
    for name, status in report["backends"].items():
        print(f"  {name:>11}: {status}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    import torch

    import ncl_kernels
    from ncl_kernels import dispatch

    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    B, N, D, H = 4, 16, 32, 2
    bank = torch.randn(B, N, D, device=device)
    keys = bank[:, :H] + 0.1 * torch.randn(B, H, D, device=device)  # noisy copies of rows 0 and 1
    strength = torch.full((B, H), 20.0, device=device)
    ok = True
    backends = [b for b in dispatch.BACKENDS if dispatch._call_reason(b, bank.device, bank.dtype) is None]
    print(f"device {device}; backends that can run here: {', '.join(backends)}")
    ref = None
    for backend in backends:
        w = ncl_kernels.content_address(bank, keys, strength, backend=backend)  # (B, H, N)
        read = ncl_kernels.soft_read(bank, w, backend=backend)  # (B, H, D)
        written = ncl_kernels.soft_write(bank, w[:, 0], read[:, 1], strength[:, 0] / 20, backend=backend)
        result = (w, read, written)
        if ref is None:
            ref = result
        err = max((a - b).abs().max().item() for a, b in zip(result, ref))
        found = (w.argmax(-1) == torch.arange(H, device=device)).float().mean().item()
        print(f"  {backend:>9}: keys found their rows {found:.0%}; max |diff| vs reference {err:.2e}")
        ok &= err < 1e-4 and found == 1.0
    print("demo OK" if ok else "demo FAILED")
    return 0 if ok else 1


def _bench(args: argparse.Namespace) -> int:
    from ncl_kernels import benchmarking

    rows = benchmarking.run_memory_suite(sizes=args.size, backend=args.backend, repeats=args.repeats)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(benchmarking.format_table(rows))
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ncl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, devices and kernel backends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)
    p = sub.add_parser("demo", help="run the memory ops on every backend and check them")
    p.set_defaults(func=_demo)
    p = sub.add_parser("bench", help="fused vs eager vs torch.compile timings")
    p.add_argument("suite", choices=["memory"])
    p.add_argument("--backend", default=None, help="fused backend (default: the fastest here)")
    p.add_argument("--size", action="append", default=None, metavar="B,N,D,H",
                   help="sizes to time (repeatable); default 64,128,128,2 and 64,1024,256,4")
    p.add_argument("--repeats", type=int, default=20)
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bench)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
