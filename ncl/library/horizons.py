"""How far each library function stays exact on the soft machine: ``python -m ncl.library.horizons``.

For each function and a ladder of growing inputs it prints the VM's step count and whether the soft run (one
sample, one-hot inputs, sharp program) stays within 1e-4 of the VM up to the halt, in fp32 and fp64; otherwise the
step where it leaves (``ncl.machine.horizon``). docs/library.md quotes its output.
"""

from __future__ import annotations

import argparse

import torch

from ncl.library import get
from ncl.machine import MachineConfig

#: name -> inputs of growing size: (args, tape). Tapes are descending runs, the worst case for the sorts.
LADDERS = {
    "add": [((20, 30), None)],
    "divmod": [((29, 4), None)],
    "gcd": [((21, 13), None), ((31, 19), None)],
    "mul_mod": [((15, 13, 16), None)],
    "pow_mod": [((7, 1, 4), None), ((7, 2, 4), None), ((7, 7, 13), None)],
    "factorial": [((k,), None) for k in (4, 8, 12, 15)],
    "fib": [((k,), None) for k in (3, 4, 5, 6)],
    "fib_iter": [((k,), None) for k in (10, 20, 31)],
    "sum_to": [((k,), None) for k in (5, 10, 14)],
    "insertion_sort": [((0, k), list(range(k, 0, -1))) for k in (3, 4, 5, 6)],
    "bubble_sort": [((0, k), list(range(k, 0, -1))) for k in (3, 4, 5, 6)],
    "reverse": [((0, k), list(range(k))) for k in (8, 16)],
    "sum": [((0, k), list(range(k))) for k in (8, 16)],
    "max": [((0, k), list(range(k))) for k in (8, 16)],
    "count": [((0, k, 1), [1] * k) for k in (8, 16)],
    "binary_search": [((0, k, 3), list(range(k))) for k in (8, 16)],
    "copy": [((0, 8, k), list(range(k))) for k in (4, 8)],
}


def _cell(horizon) -> str:
    return "exact" if horizon.halted else f"leaves at {horizon.steps}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32)
    parser.add_argument("--cells", type=int, default=16)
    parser.add_argument("--stack", type=int, default=16)
    parser.add_argument("--sharpness", type=float, default=30.0)
    opts = parser.parse_args()
    config = MachineConfig(n=opts.n, cells=opts.cells, stack=opts.stack, sharpness=opts.sharpness)
    print(f"{config}")
    print("| function | args | VM steps | fp32 | fp64 |\n| --- | --- | --- | --- | --- |")
    for name, ladder in LADDERS.items():
        compiled = get(name, config)
        for args, tape in ladder:
            steps = compiled.trace(*args, mem=tape).steps
            cells = [_cell(compiled.horizon(*args, mem=tape, dtype=dtype)) for dtype in (torch.float32, torch.float64)]
            shown = ", ".join(map(str, args)) + (" (descending)" if name.endswith("sort") else "")
            print(f"| {name} | {shown} | {steps} | {cells[0]} | {cells[1]} |", flush=True)


if __name__ == "__main__":
    main()
