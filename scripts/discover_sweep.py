#!/usr/bin/env python
"""How many answers the interface search needs (``ncl train --discover N``), task by task: no training.

Usage::

    python scripts/discover_sweep.py [--tasks long_add,sort] [--sizes 1,2,4,8,32] [--seeds 0,1,2] [--count 200]

For each single task, seed and N, the search (:class:`ncl.training.discover.Discovered`) runs on the first N
examples of the training stream of a run with that seed, as ``ncl train`` would; the hypothesis it keeps is then
scored on ``count`` examples of each evaluation split: the share whose answer it prints. The answers of those
splits are read only to score. Prints a markdown table: per task and N, the mean share in distribution
(``test``) and on the largest split, the worst seed's, and the search's mean seconds.
"""

from __future__ import annotations

import argparse
import random
import statistics

from ncl import tasks
from ncl.training import TrainConfig, build_model, tokenizer
from ncl.training.discover import Discovered

#: Tape cells when scoring: more than any split's longest input needs (the evaluation sizes its machine per split).
SCORE_CELLS = 1024


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--tasks", default=",".join(n for n in tasks.all_names() if not getattr(tasks.get(n), "calls", 0)))
    p.add_argument("--sizes", default="1,2,4,8,32")
    p.add_argument("--seeds", default="0,1,2")
    p.add_argument("--count", type=int, default=200)
    args = p.parse_args()
    tok = tokenizer()
    print("| task | N | in distribution (worst seed) | largest split (worst seed) | search (s) |")
    print("| --- | --- | --- | --- | --- |")
    for name in args.tasks.split(","):
        task = tasks.get(name)
        last = task.eval_splits[-1]
        evals = {s: [task.sample(s, random.Random(f"sweep/{s}/{i}")) for i in range(args.count)]
                 for s in ("test", last)}
        model = build_model(TrainConfig(task=name, labels=0.0, discover=1, layers=1, split=1))
        for n in map(int, args.sizes.split(",")):
            shares, seconds = {"test": [], last: []}, []
            for seed in map(int, args.seeds.split(",")):
                cfg = TrainConfig(task=name, labels=0.0, discover=n, seed=seed)
                found = Discovered.for_model(task, cfg, tok, model)
                seconds.append(found.seconds)
                found.cells = SCORE_CELLS  # the tape the evaluation's machine gets: as long as a split needs
                for split, examples in evals.items():
                    shares[split].append(100 * sum(found.explains(e) for e in examples) / len(examples))
            cells = [f"{statistics.mean(v):.1f} ({min(v):.1f})" for v in shares.values()]
            print(f"| {name} | {n} | {cells[0]} | {last}: {cells[1]} | {statistics.mean(seconds):.1f} |", flush=True)


if __name__ == "__main__":
    main()
