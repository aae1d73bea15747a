"""The ``ncl`` command.

* ``ncl info``: versions, devices, and every kernel backend with the reason it is unavailable.
* ``ncl demo``: the memory ops on every available backend, checked against the reference.
* ``ncl bench memory``: fused vs eager reference vs ``torch.compile(reference)``, as JSON.
* ``ncl bench machine [--backend B] [--batch 32] [--steps 64] [--alu table|circuit] --json``: the fused
  machine run vs the eager reference vs ``torch.compile`` of the reference step, forward and forward+backward.
* ``ncl train --task TASK --out DIR``: train the augmented model (or ``--model llama``, the baseline) on an
  algorithmic task; DDP under ``torchrun --nproc_per_node N -m ncl.cli train ...``.
* ``ncl eval DIR [--json] [--compare OTHER_DIR]``: exact match per split, machine steps, PNG plots.
* ``ncl convert DIR [--unsafe-pickle]``: an older run directory's pickle ``checkpoint.pt`` to safetensors and JSON
  (the one command that unpickles: ``ncl.training.convert``).

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
import math
import os
import platform
import sys
from dataclasses import replace

import ncl
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


def _bench(args: argparse.Namespace) -> int:
    if args.suite == "machine":
        return _bench_machine(args)
    from ncl_kernels import benchmarking  # start-up time (module docstring)

    repeats = 20 if args.repeats is None else args.repeats
    rows = benchmarking.run_memory_suite(sizes=args.size, backend=args.backend, repeats=repeats)
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(benchmarking.format_table(rows))
    return 0


def _bench_machine(args: argparse.Namespace) -> int:
    from ncl.machine.bench import machine_bench  # start-up time (module docstring)

    try:
        result = machine_bench(backend=args.backend, batch=args.batch, steps=args.steps, alu=args.alu,
                               repeats=3 if args.repeats is None else args.repeats, compiled=not args.no_compiled,
                               threads=args.threads)
    except ValueError as err:
        print(f"ncl bench machine: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"machine run, backend {result['backend']} on {result['device']} ({result['threads']} threads), "
          f"alu {result['alu']}, {result['sizes']}")
    for mode in ("fwd", "fwdbwd"):
        r = result[mode]
        compiled = "n/a" if r["ms_compiled"] is None else f"{r['ms_compiled']:.1f} ms ({r['speedup_compiled']:.2f}x)"
        print(f"  {mode:>6}: fused {r['ms_fused']:.1f} ms, eager {r['ms_eager']:.1f} ms ({r['speedup_eager']:.2f}x), "
              f"compiled {compiled}; memory fused {r['peak_mem_fused_mb']:.1f} MB, eager {r['peak_mem_eager_mb']:.1f} MB")
    return 0


def _train(args: argparse.Namespace) -> int:
    from ncl.training import TrainConfig, train  # start-up time (module docstring)

    cfg = TrainConfig()
    for name in ("task", "model", "preset", "layers", "hidden", "split", "steps", "batch_size", "lr", "aux",
                 "numbers", "seed", "log_every", "checkpoint_every", "time_limit", "threads", "train_max_steps"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    computer = {name: getattr(args, name) for name in ("mode", "top_k", "reader", "writer")}
    try:
        cfg.computer = replace(cfg.computer, **{k: v for k, v in computer.items() if v is not None})
        cfg.validate()
        last = train(cfg, args.out, resume=args.resume, progress=not args.quiet)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"ncl train: error: {err}", file=sys.stderr)
        return 2
    if last:
        print(json.dumps(last))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ncl.training import run_eval, summary  # start-up time (module docstring)

    try:
        result, plots = run_eval(args.run, compare=args.compare, count=args.count, ood_count=args.ood_count,
                                 threads=args.threads or 0, reuse=args.reuse)
    except (ValueError, FileNotFoundError) as err:
        print(f"ncl eval: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary(result)))
        return 0
    print(f"task {result['task']}, model {result['model']}, trained {result['train_steps']} steps "
          f"in {result['train_time_s']} s")
    for split, r in result["splits"].items():
        extra = "" if r["mean_steps"] is None else f"  mean steps {r['mean_steps']:.1f}  unhalted {r['unhalted']:.2e}"
        print(f"  {split:>7}: exact match {r['accuracy']:.3f} ({r['count']} examples){extra}")
    print("plots: " + ", ".join(plots))
    return 0


def _convert(args: argparse.Namespace) -> int:
    from ncl.training.convert import convert_run_dir  # start-up time (module docstring)

    try:
        new = convert_run_dir(args.run, unsafe_pickle=args.unsafe_pickle)
    except (ValueError, FileNotFoundError, FileExistsError) as err:
        print(f"ncl convert: error: {err}", file=sys.stderr)
        return 2
    print(f"converted {args.run}: checkpoint {new} (safetensors and JSON, read back equal); the old checkpoint.pt "
          f"is left in place and no longer read")
    return 0


#: ``ncl_kernels.dispatch.BACKENDS``, spelled here so that argument errors need not import torch (tested equal).
BACKENDS = ("reference", "cpp", "triton", "cuda")
#: Commands that run the kernel ops, and so read ``NCL_BACKEND``.
_KERNEL_COMMANDS = ("demo", "bench", "train", "eval")


def _int_at_least(low: int):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < low:
            raise argparse.ArgumentTypeError(f"must be >= {low} (an integer), got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1)
_non_negative_int = _int_at_least(0)


def _float_above(low: float, inclusive: bool = False):
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < low or (value == low and not inclusive):
            raise argparse.ArgumentTypeError(f"must be {'>=' if inclusive else '>'} {low:g} (a finite number), "
                                             f"got {text!r}")
        return value

    return parse


_positive_float = _float_above(0.0)
_non_negative_float = _float_above(0.0, inclusive=True)


def _memory_size(text: str) -> tuple[int, int, int, int]:
    parts = text.split(",")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) != 4 or min(size) < 1:
        raise argparse.ArgumentTypeError(f"must be B,N,D,H: four integers >= 1 separated by commas, got {text!r}")
    return size


def _backend(text: str) -> str:
    if text not in BACKENDS:
        raise argparse.ArgumentTypeError(f"must be one of {', '.join(BACKENDS)}, got {text!r}")
    return text


def _add_train_eval(sub) -> None:
    p = sub.add_parser("train", help="train on an algorithmic task (augmented model or the llama baseline)")
    p.add_argument("--task", required=True, choices=task_names())
    p.add_argument("--model", choices=["augmented", "llama"], default=None, help="default augmented")
    p.add_argument("--preset", default=None, help="ncl.llama preset (default tiny)")
    p.add_argument("--out", required=True, help="run directory (latest.json, checkpoint-<step>/, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--steps", type=_positive_int, default=None, help="optimizer steps (default 1500)")
    p.add_argument("--batch-size", type=_positive_int, default=None)
    p.add_argument("--lr", type=_positive_float, default=None)
    p.add_argument("--aux", type=_non_negative_float, default=None,
                   help="auxiliary supervision weight (0: answers only)")
    p.add_argument("--mode", choices=["mixture", "superposition"], default=None, help="program choice mode")
    p.add_argument("--top-k", type=_positive_int, default=None)
    p.add_argument("--reader", choices=["mlp", "digits"], default=None,
                   help="how tape values are read from digits (default digits)")
    p.add_argument("--writer", choices=["embed", "digits"], default=None,
                   help="what the readouts carry: value embeddings, or also the digit to write (default digits)")
    p.add_argument("--numbers", choices=["auto", "learned", "tokens"], default=None,
                   help="digits from token ids and answers copied from the readout ('tokens'), learned heads "
                        "('learned'), or 'tokens' only where the training data lacks a digit ('auto', default)")
    p.add_argument("--layers", type=_positive_int, default=None)
    p.add_argument("--hidden", type=_positive_int, default=None)
    p.add_argument("--split", type=_non_negative_int, default=None, help="layers before the computer")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--log-every", type=_positive_int, default=None)
    p.add_argument("--checkpoint-every", type=_positive_int, default=None)
    p.add_argument("--time-limit", type=_positive_float, default=None,
                   help="stop (and checkpoint) after this many seconds")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--train-max-steps", type=_positive_int, default=None, help="machine step limit in training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
    p = sub.add_parser("eval", help="exact match per split of a trained run, with plots")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true")
    p.add_argument("--compare", default=None, help="another run of the same task, drawn on the same plot")
    p.add_argument("--count", type=_positive_int, default=200, help="examples per split")
    p.add_argument("--ood-count", type=_positive_int, default=None, help="examples per OOD split (default --count)")
    p.add_argument("--threads", type=_positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--reuse", action="store_true", help="use a run's eval.json when it exists")
    p.set_defaults(func=_eval)
    p = sub.add_parser("convert", help="convert an older run directory's pickle checkpoint.pt to safetensors and "
                                       "JSON (the one command that unpickles)")
    p.add_argument("run", help="run directory holding checkpoint.pt")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="if the file does not load with torch's restricted unpickler, unpickle it fully: this runs "
                        "any code it holds, so only for a file from someone you trust")
    p.set_defaults(func=_convert)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are one line (no usage block): ``ncl train: error: argument --lr: ...``."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {_one_line(message)} (see '{self.prog} --help')\n")


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="ncl", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("info", help="versions, devices and kernel backends")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_info)
    p = sub.add_parser("demo", help="run the memory ops on every backend and check them")
    p.set_defaults(func=_demo)
    p = sub.add_parser("bench", help="fused vs eager vs torch.compile timings")
    p.add_argument("suite", choices=["memory", "machine"])
    p.add_argument("--backend", type=_backend, default=None,
                   help=f"fused backend, one of {', '.join(BACKENDS)} (default: the fastest here)")
    p.add_argument("--size", type=_memory_size, action="append", default=None, metavar="B,N,D,H",
                   help="memory: sizes to time (repeatable); default 64,128,128,2 and 64,1024,256,4")
    p.add_argument("--repeats", type=_positive_int, default=None,
                   help="timed calls per figure (memory 20, machine 3)")
    p.add_argument("--batch", type=_positive_int, default=32, help="machine: batch size")
    p.add_argument("--steps", type=_positive_int, default=64, help="machine: steps per run")
    p.add_argument("--alu", choices=["table", "circuit"], default="table", help="machine: ALU")
    p.add_argument("--no-compiled", action="store_true", help="machine: skip torch.compile(reference step)")
    p.add_argument("--threads", type=_positive_int, default=None, help="machine: CPU threads (default: torch's)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=_bench)
    _add_train_eval(sub)
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
