#!/usr/bin/env python
"""Where a ``mix`` model loses held-out wording: its exact match per template, trained and held out.

Usage::

    python scripts/paraphrase_by_template.py RUN [RUN ...] [--count 20] [--json OUT.json] [--held-out]
        [--decode heads|contracts|both]
    python scripts/paraphrase_by_template.py --from-json OUT.json [--held-out]

For each run (a ``mix`` or ``mix_nested`` run directory of ``ncl train``), each task and each of its templates
(:data:`ncl.tasks.phrasing.TEMPLATES`; composed problems: each wrapper of :data:`ncl.tasks.compose.WRAPPERS`),
``count`` test problems are asked with that wording as written (no perturbation) and answered greedily. Prints
a markdown table, a row per template, a column per run: the share exact and, where it is below 1, the program
the first call ran most often on the problems answered wrong. The answers are read only to score. ``OUT.json``
holds the same as ``{run: [{"part", "template", "held_out", "accuracy", "programs": {name: count},
"programs_wrong": {name: count}}]}`` (the first call's programs, on every problem and on the wrong ones).
``--decode contracts`` chooses each call under the library's input contracts (:mod:`ncl.computer.contracts`),
its column named ``RUN (contracts)``; ``both`` gives each run both columns.
"""

from __future__ import annotations

import argparse
import collections
import json
import random

import torch

from ncl import tasks
from ncl.storage import write_json
from ncl.tasks import compose
from ncl.tasks.mix import single_call
from ncl.tasks.phrasing import TEMPLATES, TRAINED
from ncl.training.checkpoints import load_model
from ncl.training.data import tokenizer
from ncl.training.evaluation import DECODES, answer_budget, decode_answers, decoding
from ncl.training.factory import budget_length, machine_budget, segment_length


@torch.no_grad()
def answers(model, task, prompts: list[str]) -> tuple[list[str], list[str]]:
    """The greedy answers to ``prompts`` and the program each one's first call ran."""
    tok = tokenizer()
    ids, mask = tok.encode_batch(prompts, add_bos=True, padding_side="left")
    limit = machine_budget(budget_length(task, max(segment_length(p) for p in prompts)), task.n)[1]
    tokens, comp = model.generate(ids, mask, answer_budget(ids.shape[1]), tok.eos_token_id, max_steps=limit)
    names = model.computer.program_names
    return decode_answers(tok, tokens), [names[int(p)] for p in comp.heads.prompt.chain.program[:, 0]]


def by_template(run: str, count: int, seed: int = 7, decode: str = "heads") -> list[dict]:
    """One row per template of ``run``'s task (module docstring), its calls chosen as ``decode`` says."""
    model, cfg, _ = load_model(run)
    decoding(model, decode)
    task = tasks.get(cfg.task)
    if not getattr(task, "tasks", None):
        raise ValueError(f"{run} is a {cfg.task!r} run; this script reads a mix model's")
    rng = random.Random(seed)
    rows = []
    parts = [(name, t, i >= TRAINED, lambda name=name, t=t: single_call(name, task.tasks[name].sample("test", rng), t))
             for name, ts in TEMPLATES.items() if name in task.tasks for i, t in enumerate(ts)]
    parts += [(compose.NAME, w, held, lambda w=w: compose.make(rng, rng.randint(1, 2), (w,)))
              for held, ws in enumerate(compose.WRAPPERS) for w in ws]
    for part, template, held, make in parts:
        problems = [make() for _ in range(count)]
        texts, programs = answers(model, task, [e.prompt for e in problems])
        right = [a.strip() == e.answer.strip() for a, e in zip(texts, problems)]
        wrong = [p for p, r in zip(programs, right) if not r]
        rows.append({"part": part, "template": template, "held_out": bool(held), "accuracy": sum(right) / count,
                     "programs": dict(collections.Counter(programs).most_common()),
                     "programs_wrong": dict(collections.Counter(wrong).most_common())})
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("runs", nargs="*")
    p.add_argument("--count", type=int, default=20, help="problems per template (default: 20)")
    p.add_argument("--json", default=None, metavar="OUT.json")
    p.add_argument("--held-out", action="store_true", help="print the held-out templates' rows only")
    p.add_argument("--decode", choices=[*DECODES, "both"], default="heads",
                   help="each head's argmax (default), the calls under the library's contracts, or both")
    p.add_argument("--from-json", default=None, metavar="IN.json",
                   help="print the table of an earlier --json (its runs' names as the columns), running nothing")
    args = p.parse_args(argv)
    if bool(args.runs) == bool(args.from_json):
        p.error("give run directories, or --from-json")
    if args.from_json:
        with open(args.from_json) as f:
            results = json.load(f)
    else:
        torch.set_num_threads(1)
        decodes = DECODES if args.decode == "both" else (args.decode,)
        results = {run + ("" if d == "heads" else f" ({d})"): by_template(run, args.count, decode=d)
                   for run in args.runs for d in decodes}
    runs = list(results)
    print("| part | template | held out | " + " | ".join(runs) + " |")
    print("| --- | --- | --- |" + " --- |" * len(runs))
    first = results[runs[0]]
    for i, row in enumerate(first):
        if args.held_out and not row["held_out"]:
            continue
        cells = []
        for run in runs:
            r = results[run][i]
            top = next(iter(r["programs_wrong"]), "")
            cells.append(f"{r['accuracy']:.2f}" + (f" ({top})" if top else ""))
        template = row["template"].replace("|", "\\|")
        print(f"| {row['part']} | `{template}` | {'yes' if row['held_out'] else ''} | " + " | ".join(cells) + " |")
    for run in runs:
        held = [r["accuracy"] for r in results[run] if r["held_out"] and r["part"] != compose.NAME]
        trained = [r["accuracy"] for r in results[run] if not r["held_out"]]
        print(f"\n{run}: held-out templates of the single tasks, mean {sum(held) / len(held):.3f}; trained "
              f"templates and wrappers, mean {sum(trained) / len(trained):.3f}")
    if args.json:
        write_json(args.json, results, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
