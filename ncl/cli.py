"""The ``ncl`` command (:data:`DESCRIPTION` is what ``ncl --help`` says).

* ``ncl info``: versions, devices, and every kernel backend with the reason it is unavailable.
* ``ncl demo``: the memory ops on every available backend, checked against the reference.
* ``ncl bench memory``: fused vs eager reference vs ``torch.compile(reference)``, as JSON.
* ``ncl bench machine [--backend B] [--batch 32] [--steps 64] [--alu table|circuit] --json``: the fused
  machine run vs the eager reference vs ``torch.compile`` of the reference step, forward and forward+backward.
* ``ncl bench train [--task sort] --json``: one optimizer step of the augmented model and of the plain LLaMA,
  with the augmented step's breakdown (LLaMA, heads, machine forward, machine backward, optimizer).
* ``ncl train --task TASK --out DIR``: train the augmented model (or ``--model llama``, the baseline) on an
  algorithmic task; DDP under ``torchrun --nproc_per_node N -m ncl.cli train ...``.
* ``ncl eval DIR [--json] [--compare OTHER_DIR]``: exact match per split, machine steps, PNG plots.
* ``ncl convert DIR [--unsafe-pickle]``: an older run directory's pickle ``checkpoint.pt`` to safetensors and JSON
  (the one command that unpickles: ``ncl.training.convert``).
* ``ncl report DIR``: the results tables from every ``eval.json`` under DIR; ``ncl trace DIR PROMPT``: the
  library calls a trained model runs on one prompt.

The training subcommands live in :mod:`ncl.cli_train`.

Each command imports what it needs (torch, the kernels, the model stack) inside its function, for start-up time:
``ncl --help`` and argument errors load none of it.

Errors: a bad argument, a bad ``NCL_BACKEND`` in the environment, or an expected failure of a command (a
``ValueError`` such as a damaged checkpoint, a missing file or directory, an unknown name, a backend that cannot
run here) print one line, ``ncl <command>: error: ...``, on stderr and exit with status 2, without a traceback
(tests/test_cli_errors.py). Anything else is a bug and raises.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

import ncl
from ncl import cli_train
from ncl.cli_types import BACKENDS, backend_name, memory_size, positive_int
from ncl.tasks import names as task_names


def _info(args: argparse.Namespace) -> int:
    import torch  # start-up time (module docstring)

    import ncl_kernels  # start-up time
    from ncl_kernels import _ext  # start-up time

    report = {
        "ncl": ncl.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cuda_devices": [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())],
        "backends": ncl_kernels.info(),
    }
    ext = _ext.load()[0]
    # Which copy of the CPU kernels runs (csrc/cpu/isa.h), and on how many threads.
    report["cpu_kernels"] = f"{ext.cpu_isa()}, {torch.get_num_threads()} threads" if ext is not None else None
    try:
        import triton  # an optional dependency (the [triton] extra)

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
    import torch  # start-up time (module docstring)

    import ncl_kernels  # start-up time
    from ncl_kernels import dispatch  # start-up time

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


#: ``ncl bench``'s defaults, and ``--quick``'s: a first look in about a minute on 2 cores (one memory size, small
#: machine runs, few repeats, no torch.compile, whose compilation alone takes minutes). Options given win.
BENCH_DEFAULTS = {"memory_repeats": 20, "machine_repeats": 3, "train_repeats": 5, "batch": 32, "steps": 64}
BENCH_QUICK = {"memory_repeats": 5, "machine_repeats": 3, "train_repeats": 2, "batch": 8, "steps": 16}


def _bench_setting(args: argparse.Namespace, name: str):
    value = getattr(args, name.split("_")[-1])
    return value if value is not None else (BENCH_QUICK if args.quick else BENCH_DEFAULTS)[name]


def _warn(prog: str, warnings: list[str]) -> None:
    for warning in warnings:
        print(f"{prog}: warning: {warning}", file=sys.stderr)


def _bench(args: argparse.Namespace) -> int:
    if args.flush_denormal:
        import torch  # start-up time (module docstring)

        torch.set_flush_denormal(True)
    if args.suite == "machine":
        return _bench_machine(args)
    if args.suite == "train":
        return _bench_train(args)
    from ncl_kernels import benchmarking  # start-up time (module docstring)

    warnings: list[str] = []
    sizes = args.size or (benchmarking.MEMORY_SIZES[:1] if args.quick else None)
    rows = benchmarking.run_memory_suite(sizes=sizes, backend=args.backend, warnings=warnings,
                                         repeats=_bench_setting(args, "memory_repeats"),
                                         compiled=not (args.no_compiled or args.quick))
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(benchmarking.format_table(rows))
    _warn("ncl bench memory", warnings)
    return 0


def _bench_train(args: argparse.Namespace) -> int:
    import torch  # start-up time (module docstring)

    from ncl.training.bench import bench_train, format_train_bench  # torch too (line above)

    if args.threads:
        torch.set_num_threads(args.threads)
    result = bench_train(task=args.task, repeats=_bench_setting(args, "train_repeats"), progress=True)
    print(json.dumps(result) if args.json else format_train_bench(result))
    return 0


def _bench_machine(args: argparse.Namespace) -> int:
    from ncl.machine.bench import format_result, machine_bench  # start-up time (module docstring)

    result = machine_bench(backend=args.backend, batch=_bench_setting(args, "batch"),
                           steps=_bench_setting(args, "steps"), alu=args.alu,
                           repeats=_bench_setting(args, "machine_repeats"),
                           compiled=not (args.no_compiled or args.quick), threads=args.threads,
                           baseline_threads=args.baseline_threads, progress=True)
    # The CPU kernels flush subnormals either way (docs/kernels.md); this says whether the baselines did too.
    result["baselines_subnormals"] = "flushed" if args.flush_denormal else "kept"
    print(json.dumps(result) if args.json else format_result(result))
    _warn("ncl bench machine", result["warnings"])
    return 0



#: Commands that run the kernel ops, and so read ``NCL_BACKEND``.
_KERNEL_COMMANDS = ("demo", "bench", "train", "eval")


#: ``ncl --help``'s description.
DESCRIPTION = """\
ncl: a LLaMA3 transformer with a differentiable computer (soft memory, registers, stacks, a library of compiled
programs, per-step halting) on fused C++, CUDA and Triton kernels.

  ncl info                         check the install: versions, devices, which kernel backends can run
  ncl demo                         run the memory ops on every backend against the reference
  ncl bench machine --quick        a first timing of the fused machine run (about a minute)
  ncl train --task TASK --out DIR  train the augmented model (or --model llama) on an algorithmic task
  ncl eval DIR                     exact match per split, machine steps, plots

'ncl COMMAND --help' shows a command's options and their defaults. NCL_BACKEND=reference|cpp|triton|cuda forces
a kernel backend. Errors are one line on stderr with exit status 2."""


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Shows every option's default: argparse's where it is set, else the one its help text states."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if "default" in text or action.default is argparse.SUPPRESS or action.nargs == 0:
            return text  # the text states it, or a flag (off unless given)
        return f"{text} (default: {'none' if action.default is None else '%(default)s'})".lstrip()


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block): ``ncl train: error: argument --lr: ...``,
    and whose help shows the defaults (its subcommands' parsers are of this class too)."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ncl", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, devices and kernel backends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)
    p = sub.add_parser("demo", help="run the memory ops on every backend and check them")
    p.set_defaults(func=_demo)
    p = sub.add_parser("bench", help="fused vs eager vs torch.compile timings")
    p.add_argument("suite", choices=["memory", "machine", "train"],
                   help="the memory ops, the machine's whole run, or one optimizer step of the augmented and the "
                        "plain model with a breakdown")
    p.add_argument("--backend", type=backend_name, default=None,
                   help=f"fused backend, one of {', '.join(BACKENDS)} (default: the fastest here)")
    p.add_argument("--size", type=memory_size, action="append", default=None, metavar="B,N,D,H",
                   help="memory: sizes to time (repeatable) (default: 64,128,128,2 and 64,1024,256,4; --quick: "
                        "the first)")
    p.add_argument("--repeats", type=positive_int, default=None,
                   help=f"timed calls per figure (default: memory {BENCH_DEFAULTS['memory_repeats']}, machine "
                        f"{BENCH_DEFAULTS['machine_repeats']}, train {BENCH_DEFAULTS['train_repeats']}; --quick: "
                        f"memory {BENCH_QUICK['memory_repeats']}, machine {BENCH_QUICK['machine_repeats']}, train "
                        f"{BENCH_QUICK['train_repeats']})")
    p.add_argument("--batch", type=positive_int, default=None,
                   help=f"machine: batch size (default: {BENCH_DEFAULTS['batch']}; --quick: {BENCH_QUICK['batch']})")
    p.add_argument("--steps", type=positive_int, default=None,
                   help=f"machine: steps per run (default: {BENCH_DEFAULTS['steps']}; --quick: "
                        f"{BENCH_QUICK['steps']})")
    p.add_argument("--alu", choices=["table", "circuit"], default="table", help="machine: ALU")
    p.add_argument("--task", choices=task_names(), default="sort", help="train: the task whose batch is timed")
    p.add_argument("--no-compiled", action="store_true", help="skip torch.compile(reference): its compilation "
                                                               "takes minutes")
    p.add_argument("--quick", action="store_true",
                   help="a first look in about a minute: one memory size, a small machine run, few repeats, no "
                        "torch.compile")
    p.add_argument("--threads", type=positive_int, default=None,
                   help="machine, train: CPU threads (default: torch's)")
    p.add_argument("--baseline-threads", type=positive_int, default=None,
                   help="machine: CPU threads for the eager and compiled baselines, while the fused runs use "
                        "--threads (default: the same), so that each side runs at its own fastest count")
    p.add_argument("--flush-denormal", action="store_true",
                   help="torch.set_flush_denormal(True) for the whole run, so the eager and compiled baselines "
                        "flush subnormal numbers as the CPU kernels always do (they cost Intel cores a microcode "
                        "assist each)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bench)
    cli_train.add_commands(sub)
    return parser


def _expected_errors() -> tuple[type[BaseException], ...]:
    """The exceptions that are a user's mistake, not a bug: reported in one line, exit status 2."""
    errors = [ValueError, KeyError, FileNotFoundError, FileExistsError, NotADirectoryError, IsADirectoryError,
              PermissionError]
    dispatch = sys.modules.get("ncl_kernels.dispatch")  # loaded only if the command ran the kernels
    if dispatch is not None:
        errors.append(dispatch.BackendUnavailable)
    return tuple(errors)


def _message(err: BaseException) -> str:
    if isinstance(err, KeyError) and len(err.args) == 1:  # str(KeyError) is the repr of its argument
        key = err.args[0]
        return _one_line(key) if isinstance(key, str) and " " in key else f"unknown name {key!r}"
    return _one_line(err) or type(err).__name__


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    prog = f"{parser.prog} {args.command}"
    backend = os.environ.get("NCL_BACKEND")
    if args.command in _KERNEL_COMMANDS and backend and backend not in BACKENDS:
        print(f"{prog}: error: NCL_BACKEND={backend!r} in the environment is not a backend; expected one of "
              f"{', '.join(BACKENDS)} (or unset it)", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except _expected_errors() as err:
        print(f"{prog}: error: {_message(err)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
