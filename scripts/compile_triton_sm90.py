#!/usr/bin/env python
"""Compile every Triton kernel of ncl_kernels for sm_90a, with no GPU, and report its resource usage.

Usage::

    python scripts/compile_triton_sm90.py            # from the repository root (or with it on PYTHONPATH)

For every module of the op registry (``ncl_kernels._oplib.TRITON_MODULES``: each registered op's Triton module,
and the whole-run machine kernel's), each entry of its ``COMPILE_TARGETS`` (see
``ncl_kernels._triton_targets.compile_target`` for the format) is compiled ahead of time with
``triton.compile(ASTSource(fn, signature, constexprs), target=GPUTarget("cuda", 90, 32))``. This needs
Triton's CUDA backend (bundled ptxas) but no driver and no GPU, so it catches kernels that the CPU
interpreter accepts but the real compiler rejects, and shows register pressure and spills.

The table lists registers per thread, spill stores/loads (bytes, from ``ptxas -v`` on the generated PTX),
local memory and shared memory per program. The exit status is non-zero if any kernel fails to compile.
"""

from __future__ import annotations

import os

# The interpreter replaces @triton.jit functions by Python stand-ins that cannot be compiled; this must be
# off before triton (or any kernel module) is imported.
os.environ.pop("TRITON_INTERPRET", None)

import importlib  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from pathlib import Path  # noqa: E402


ARCH = 90
ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def _nvidia_tool(name: str) -> str | None:
    """A CUDA tool bundled with Triton's NVIDIA backend (``ptxas``, ``cuobjdump``), else one on PATH."""
    import triton

    bundled = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / name
    if bundled.exists():
        return str(bundled)
    for directory in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/local/cuda/bin"]:
        candidate = Path(directory) / name
        if candidate.exists():
            return str(candidate)
    return None


def _ptxas_usage(ptx: str, arch: str) -> dict:
    """Registers, spills and shared memory reported by ``ptxas -v`` for the kernel's PTX."""
    ptxas = _nvidia_tool("ptxas")
    if ptxas is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "k.ptx"
        src.write_text(ptx)
        proc = subprocess.run([ptxas, "-v", f"-arch={arch}", str(src), "-o", str(Path(tmp) / "k.cubin")],
                              capture_output=True, text=True)
    text = proc.stdout + proc.stderr
    usage = {}
    m = re.search(r"Used (\d+) registers", text)
    if m:
        usage["regs"] = int(m.group(1))
    m = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", text)
    if m:
        usage["spill_st"], usage["spill_ld"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"(\d+) bytes smem", text)
    if m:
        usage["smem"] = int(m.group(1))
    return usage


def _cuobjdump_usage(cubin: bytes) -> dict:
    """``REG``, ``LOCAL`` and ``SHARED`` from ``cuobjdump --dump-resource-usage`` on the compiled cubin."""
    tool = _nvidia_tool("cuobjdump")
    if tool is None:
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "k.cubin"
        path.write_bytes(cubin)
        proc = subprocess.run([tool, "--dump-resource-usage", str(path)], capture_output=True, text=True)
    usage = {}
    for key in ("REG", "LOCAL", "SHARED", "STACK"):
        m = re.search(rf"\b{key}:(\d+)", proc.stdout)
        if m:
            usage[key.lower()] = int(m.group(1))
    return usage


def _make_source(triton, fn, signature: dict, constexprs: dict, divisible: list[str]):
    """``ASTSource`` for this Triton version.

    Triton >= 3.3 (including the 3.6 on the GPU machine and the 3.8 here) wants every argument in the
    signature, constexprs typed ``"constexpr"``, and alignment hints as ``attrs`` keyed by argument-index
    tuples. Older versions took the constexprs out of the signature and keyed both by index.
    """
    from triton.compiler import ASTSource

    names = list(fn.arg_names)
    attrs = {(names.index(n),): [["tt.divisibility", 16]] for n in divisible}
    try:
        return ASTSource(fn, signature, constexprs=constexprs, attrs=attrs)
    except (TypeError, ValueError, AssertionError):
        # Pre-3.3 spelling: no "constexpr" entries, everything keyed by argument index.
        sig = {names.index(k): v for k, v in signature.items() if v != "constexpr"}
        consts = {names.index(k): v for k, v in constexprs.items()}
        return ASTSource(fn, sig, constants=consts)


def main() -> int:
    import triton
    from triton.backends.compiler import GPUTarget

    target = GPUTarget("cuda", ARCH, 32)
    arch = f"sm_{ARCH}a"
    print(f"triton {triton.__version__}, target {arch}")
    rows, failures = [], []
    start = time.perf_counter()
    import ncl_kernels.machine  # noqa: F401  (registers the whole-run kernel's module beside the ops')
    from ncl_kernels._oplib import TRITON_MODULES

    for module_name in TRITON_MODULES:
        try:
            module = importlib.import_module(module_name)
            targets = module.COMPILE_TARGETS
        except Exception:
            failures.append(module_name)
            print(f"FAILED to import {module_name}:\n{traceback.format_exc()}", file=sys.stderr)
            continue
        for entry in targets:
            # "ncl_kernels.alu.triton" -> "alu", "ncl_kernels.memory.triton.soft_read" -> "memory.soft_read"
            family = module_name.removeprefix("ncl_kernels.").replace(".triton", "")
            label = f"{family}.{entry['name']}"
            t0 = time.perf_counter()
            try:
                src = _make_source(triton, entry["fn"], entry["signature"], entry["constexprs"],
                                   entry.get("divisible", []))
                kernel = triton.compile(src, target=target, options={"num_warps": entry.get("num_warps", 4)})
            except Exception:
                failures.append(label)
                print(f"FAILED {label}:\n{traceback.format_exc()}", file=sys.stderr)
                continue
            usage = _cuobjdump_usage(kernel.asm["cubin"])
            usage.update(_ptxas_usage(kernel.asm["ptx"], arch))
            usage.setdefault("smem", getattr(kernel.metadata, "shared", None))
            usage["warps"] = entry.get("num_warps", 4)
            usage["seconds"] = time.perf_counter() - t0
            rows.append((label, usage))

    def cell(usage, key):
        value = usage.get(key)
        return "?" if value is None else str(value)

    header = ("kernel", "warps", "regs", "spill st/ld (B)", "local (B)", "smem (B)", "compile (s)")
    table = [header]
    for label, u in rows:
        table.append((label, cell(u, "warps"), cell(u, "regs"),
                      f"{cell(u, 'spill_st')}/{cell(u, 'spill_ld')}", cell(u, "local"), cell(u, "smem"),
                      f"{u['seconds']:.1f}"))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    for i, r in enumerate(table):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
        if i == 0:
            print("  ".join("-" * w for w in widths))
    spilling = [label for label, u in rows if u.get("spill_st", 0) or u.get("spill_ld", 0)]
    print(f"{len(rows)} kernels compiled, {len(failures)} failed, {len(spilling)} spilling, "
          f"{time.perf_counter() - start:.1f} s")
    if spilling:
        print("spilling: " + ", ".join(spilling))
    if failures:
        print("failed: " + ", ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
