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
from dataclasses import replace

import ncl
from ncl.cli_types import (BACKENDS, backend_name, memory_size, non_negative_float, non_negative_int, positive_float,
                           positive_int)
from ncl.tasks import all_names as task_names


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
                           compiled=not (args.no_compiled or args.quick), threads=args.threads, progress=True)
    print(json.dumps(result) if args.json else format_result(result))
    _warn("ncl bench machine", result["warnings"])
    return 0


def _train(args: argparse.Namespace) -> int:
    if args.data is not None:
        return _train_on_data(args)
    if args.task is None:
        print("ncl train: error: --task or --data is required", file=sys.stderr)
        return 2
    from ncl.training import TrainConfig, train  # start-up time (module docstring)

    cfg = TrainConfig()
    for name in ("task", "model", "preset", "layers", "hidden", "split", "steps", "batch_size", "lr", "aux",
                 "numbers", "seed", "log_every", "checkpoint_every", "time_limit", "schedule", "threads",
                 "train_max_steps"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    computer = {name: getattr(args, name) for name in ("mode", "top_k", "reader", "writer", "answer_grad")}
    if computer["answer_grad"] is None and cfg.aux == 0:  # answers only: their gradient must reach the heads
        computer["answer_grad"] = True
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


def _train_on_data(args: argparse.Namespace) -> int:
    from ncl.training.user_run import train_on_data  # start-up time (module docstring)

    given = {k: getattr(args, k) for k in ("steps", "batch_size", "lr", "aux", "seed", "split")
             if getattr(args, k) is not None}
    try:
        result = train_on_data(args.data, args.out, library=args.library, eval_data=args.eval_data, base=args.base,
                               time_limit=args.time_limit or 840.0, max_steps=args.train_max_steps or 256, **given)
    except (ValueError, FileNotFoundError) as err:
        print(f"ncl train: error: {err}", file=sys.stderr)
        return 2
    print(json.dumps(result))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from ncl.training import comparison_table, evaluate_file, run_eval, summary  # start-up time (module docstring)
    from ncl.training.user_run import evaluate_saved, is_saved_model  # start-up time (module docstring)

    if args.data is not None and is_saved_model(args.run):  # a model of ncl train --data
        try:
            result = evaluate_saved(args.run, args.data)
        except (ValueError, FileNotFoundError) as err:
            print(f"ncl eval: error: {err}", file=sys.stderr)
            return 2
        print(json.dumps(result) if args.json else f"exact match {result['accuracy']:.3f} ({result['count']} "
                                                     f"examples of {result['data']})")
        return 0
    try:
        if args.data is not None:
            if args.compare is not None:
                raise ValueError("--data and --compare: evaluate one run on a file at a time")
            results, plots = [evaluate_file(args.run, args.data, threads=args.threads or 0)], []
        else:
            results, plots = run_eval(args.run, compare=args.compare, count=args.count, threads=args.threads or 0,
                                      reuse=args.reuse)
    except (ValueError, FileNotFoundError) as err:
        print(f"ncl eval: error: {err}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps(summary(results[0]) if len(results) == 1 else [summary(r) for r in results]))
        return 0
    for result in results:
        print(f"task {result['task']}, model {result['model']} (seed {result.get('seed')}), trained "
              f"{result['train_steps']} steps in {result['train_time_s']} s")
        for split, r in result["splits"].items():
            extra = "" if r["mean_steps"] is None else \
                f"  mean steps {r['mean_steps']:.1f}  unhalted {r['unhalted']:.2e}"
            print(f"  {split:>7}: exact match {r['accuracy']:.3f} ({r['count']} examples){extra}")
    if len(results) > 1:
        print(comparison_table(results))
    if plots:
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


#: Commands that run the kernel ops, and so read ``NCL_BACKEND``.
_KERNEL_COMMANDS = ("demo", "bench", "train", "eval")


#: ``TrainConfig``'s defaults of the options ``ncl train`` leaves unset (None: ``--resume`` keeps the run's saved
#: value), spelled here for ``--help`` so that it need not import torch (tested equal); 0 means the value shown.
TRAIN_DEFAULTS = {"model": "augmented", "preset": "tiny", "steps": 1500, "batch_size": 16, "lr": 0.002, "aux": 1.0,
                  "mode": "mixture", "top_k": 2, "reader": "cells", "writer": "cells", "numbers": "tokens",
                  "layers": 4, "hidden": 0, "split": 2, "seed": 0, "log_every": 10, "checkpoint_every": 100,
                  "time_limit": 840.0, "schedule": "steps", "train_max_steps": 0}
_ZERO_MEANS = {"hidden": "the preset's width", "train_max_steps": "chosen from the task"}


def _show_train_defaults(parser: argparse.ArgumentParser) -> None:
    for action in parser._actions:
        if action.dest in TRAIN_DEFAULTS and action.default is None:
            value = TRAIN_DEFAULTS[action.dest]
            shown = _ZERO_MEANS.get(action.dest, value) if value == 0 and not isinstance(value, str) else value
            action.help = f"{action.help or ''} (default: {shown})".lstrip()


def _add_train_eval(sub) -> None:
    p = sub.add_parser("train", help="train on a task (the augmented model, or the llama or tool-use baseline)",
                       description="Train on an algorithmic task. An option left out takes the default shown; "
                                   "with --resume, the value saved in the run.")
    p.add_argument("--task", choices=task_names(), help="a built-in task (or --data)")
    p.add_argument("--data", default=None, metavar="FILE.jsonl",
                   help='train on your own {"prompt", "answer"[, "program", "args"]} lines instead of a task')
    p.add_argument("--eval-data", default=None, metavar="FILE.jsonl", help="with --data: evaluated after training")
    p.add_argument("--library", default=None, metavar="FILE.py", help="with --data: your functions, compiled")
    p.add_argument("--base", default=None, metavar="DIR", help="with --data: a local Hugging Face LLaMA checkpoint")
    p.add_argument("--model", choices=["augmented", "llama", "tooluse"], default=None,
                   help="the LLaMA3 with the computer, the plain LLaMA, or the LLaMA writing a call that the VM runs")
    p.add_argument("--preset", default=None, help="ncl.llama preset")
    p.add_argument("--out", required=True, help="run directory (latest.json, checkpoint-<step>/, metrics.jsonl)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out")
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps")
    p.add_argument("--batch-size", type=positive_int, default=None, help="examples per optimizer step")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate (linear warm-up, then cosine decay to 10%%)")
    p.add_argument("--aux", type=non_negative_float, default=None,
                   help="auxiliary supervision weight (0: answers only)")
    grad = p.add_mutually_exclusive_group()
    grad.add_argument("--answer-grad", dest="answer_grad", action="store_const", const=True, default=None,
                      help="the answer's straight-through gradient reaches the computer's heads too (through the "
                           "hard gates, values and program weights); the default with --aux 0, where nothing else "
                           "trains them")
    grad.add_argument("--labels-only", dest="answer_grad", action="store_const", const=False, default=None,
                      help="the heads train on the auxiliary labels alone: the default when --aux > 0")
    p.add_argument("--mode", choices=["mixture", "superposition"], default=None, help="program choice mode")
    p.add_argument("--top-k", type=positive_int, default=None, help="programs run per sample in mixture mode")
    p.add_argument("--reader", choices=["cells", "mlp", "digits"], default=None,
                   help="how the prompt reaches the tape: one cell per digit, or one value per number")
    p.add_argument("--writer", choices=["cells", "embed", "digits"], default=None,
                   help="what the readouts carry: one answer cell per token, value embeddings, or value digits")
    p.add_argument("--numbers", choices=["auto", "learned", "tokens"], default=None,
                   help="digits from token ids and answers copied from the readout ('tokens'), learned heads "
                        "('learned'), or 'tokens' only where the training data lacks a digit ('auto')")
    p.add_argument("--layers", type=positive_int, default=None, help="transformer layers")
    p.add_argument("--hidden", type=positive_int, default=None, help="hidden size")
    p.add_argument("--split", type=non_negative_int, default=None, help="layers before the computer")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--log-every", type=positive_int, default=None, help="optimizer steps between log lines")
    p.add_argument("--checkpoint-every", type=positive_int, default=None, help="optimizer steps between checkpoints")
    p.add_argument("--time-limit", type=positive_float, default=None,
                   help="stop (and checkpoint) after this many seconds")
    p.add_argument("--schedule", choices=["steps", "time"], default=None,
                   help="what the learning rate decays over: --steps, or the --time-limit (which then ends the run: "
                        "the same wall-clock budget for models with slow and fast steps)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--train-max-steps", type=positive_int, default=None, help="machine step limit in training")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=_train)
    _show_train_defaults(p)
    p = sub.add_parser("eval", help="exact match per split of a trained run, with plots",
                       description="Exact match of a run's greedy answers on every evaluation split of its task "
                                   "(written to RUN/eval.json), or on a JSON-lines file with --data.")
    p.add_argument("run", help="run directory")
    p.add_argument("--json", action="store_true")
    p.add_argument("--compare", default=None, help="another run of the same task: a side-by-side table and plot")
    p.add_argument("--data", default=None, metavar="FILE.jsonl",
                   help='evaluate on these {"prompt": ..., "answer": ...} lines instead of the splits')
    p.add_argument("--count", type=positive_int, default=500, help="examples per split (default: 500)")
    p.add_argument("--threads", type=positive_int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--reuse", action="store_true", help="use a run's eval.json when it exists")
    p.set_defaults(func=_eval)
    p = sub.add_parser("convert", help="convert an older run directory's pickle checkpoint.pt to safetensors and "
                                       "JSON (the one command that unpickles)")
    p.add_argument("run", help="run directory holding checkpoint.pt")
    p.add_argument("--unsafe-pickle", action="store_true",
                   help="if the file does not load with torch's restricted unpickler, unpickle it fully: this runs "
                        "any code it holds, so only for a file from someone you trust")
    p.set_defaults(func=_convert)
    p = sub.add_parser("report", help="the results tables (and figure) from the eval.json files under a directory",
                       description="Print the results table (mean and minimum exact match over seeds per task, "
                                   "split and model) and the budgets table from every eval.json under DIR.")
    p.add_argument("dir", help="directory holding run directories with eval.json (e.g. results/)")
    p.add_argument("--plot", default=None, metavar="PNG", help="also draw the results figure here")
    p.add_argument("--write", default=None, metavar="FILE.md",
                   help="also put the tables into FILE.md between its report markers (e.g. README.md)")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ncl.training import report  # start-up time (module docstring)

    try:
        text = report.report(args.dir)
        if args.plot:
            report.plot(args.dir, args.plot)
        if args.write:
            report.write_into(args.write, args.dir)
    except ValueError as err:
        print(f"ncl report: error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0


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
