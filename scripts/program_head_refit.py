#!/usr/bin/env python
"""Refit a ``mix`` model's program head alone on frozen encoder features: which program held-out wording gets.

Usage::

    python scripts/program_head_refit.py [--examples 24000] [--seeds 8] [--norm both|on|off] [--count 30]
        [--steps 1500] [--json OUT.json]

With ``--word-view hybrid`` and every label, a chain's program head is a function of the frozen pretrained
encoder's word pieces alone (:mod:`ncl.computer.word_encoder`): the mean over the step's pieces of
``project(piece)``, through the computer's LayerNorm with ``program_norm`` (on by default, off for ``mix``), plus
the step's operand-count embedding, through the program layer; the labels' cross-entropy is its only loss (the
answer's gradient does not reach it). So it can be refitted here in seconds, seed after seed, without the LLaMA
or the machine. The encoder's piece states are computed once for ``examples`` training examples of ``mix`` (the
stream ``ncl train`` draws, seed 0) and for ``count`` test problems per template of every task (trained and held
out) and five times as many ``compose_3`` and ``compose_4`` problems; each seed then fits the head (AdamW at
``TrainConfig``'s learning rate, warmup and cosine schedule, 16 examples a step, ``steps`` steps over the examples
in its own order; no gradient clipping, which ``ncl train`` applies to the whole model's norm, not to this head's)
and scores the program it picks for each call, the first argmax, against the gold one.

Prints, per variant (``norm``: the LayerNorm on each projected piece, its weight and bias learnt here from the
program loss alone, where in the model every head trains them; ``no norm``: ``program_norm=False``), the
held-out single-task templates' mean program accuracy over seeds (and the worst seed's), the trained
templates', the composed problems' per call, and each held-out template that a seed got below 90 % with how
many seeds did. Approximations: a composed step's operand count is the number of prompt operands its call takes
(the model counts the operand ends in the step), and the composed problems' step spans are the generator's.
"""

from __future__ import annotations

import argparse
import collections
import random
from statistics import mean

import torch
from torch import nn
from tqdm import tqdm

from ncl import storage, tasks
from ncl.computer.call_heads import COUNTS
from ncl.computer.word_encoder import WIDTH, char_vocab, piece_states
from ncl.llama import LlamaConfig
from ncl.tasks import compose
from ncl.tasks.mix import single_call
from ncl.tasks.phrasing import TEMPLATES, TRAINED
from ncl.training import TrainConfig
from ncl.training.data import tokenizer
from ncl.training.loop import learning_rate


@torch.no_grad()
def features(examples: list, programs: dict[str, int], batch: int = 64) -> list[list[tuple]]:
    """Per example, per call: ``(pieces (m,E), count, program index)``, the encoder's states of the pieces that
    start at a word token of the call's step (not a number's digit, nor the character after one, which the tape
    holds), as the model's program head pools them. Call k's step is where its labels put it: from the token after
    call k − 1's step end to the end of its step phrase, the last step's to the last token the heads read (the
    space before the answer cue's ``=``)."""
    tok, vocab = tokenizer(), char_vocab()
    out = []
    for b in tqdm(range(0, len(examples), batch), desc="encoder", leave=False):
        chunk = examples[b:b + batch]
        ids, mask = tok.encode_batch([e.prompt for e in chunk], add_bos=True, padding_side="left")
        T = ids.shape[1]
        states, has = piece_states(ids, mask, T - 1, vocab)  # the heads read the prompt before its cue's '='
        for r, e in enumerate(chunk):
            first = [None] * T  # each token's first character in the prompt (None: padding, BOS)
            c = 0
            for t in range(T):
                if mask[r, t] and vocab[ids[r, t]]:
                    first[t], c = c, c + len(vocab[ids[r, t]])
            token_of = {ch: t for t in range(T) if first[t] is not None
                        for ch in range(first[t], first[t] + len(vocab[ids[r, t]]))}
            ends = [token_of[end] for _, end in e.spans]
            ends[ends.index(max(ends))] = T - 2  # the last step ends where the heads stop reading
            calls = []
            for call, start, end in zip(e.calls, [-1] + ends[:-1], ends):  # (the step after the one before)
                keep = [t for t in range(start + 1, end + 1) if has[r, t] and not e.prompt[first[t]].isdigit()
                        and not (first[t] and e.prompt[first[t] - 1].isdigit())]
                if keep:
                    count = min(sum(a < len(e.operands) for a in call.args), COUNTS - 1)
                    calls.append((states[r, keep], count, programs[call.program]))
            out.append(calls)
    return out


def fit(train: list, evals: dict, seed: int, norm: bool, cfg: TrainConfig, d: int, P: int) -> dict:
    """Fit the head on ``train`` (per example, its calls) with ``seed``; the share of calls right per eval set."""
    torch.manual_seed(seed)
    project, layer_norm = nn.Linear(WIDTH, d), nn.LayerNorm(d) if norm else nn.Identity()
    count, program = nn.Embedding(COUNTS, d), nn.Linear(d, P)
    params = [p for m in (project, layer_norm, count, program) for p in m.parameters()]
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)

    def logits(calls):
        pooled = torch.stack([layer_norm(project(s)).mean(0) for s, _, _ in calls])
        return program(pooled + count(torch.tensor([c for _, c, _ in calls])))

    order = torch.randperm(len(train), generator=torch.Generator().manual_seed(seed)).tolist()
    for step in range(cfg.steps):
        calls = [c for i in order[step * cfg.batch_size % len(train):][:cfg.batch_size] for c in train[i]]
        for group in opt.param_groups:
            group["lr"] = learning_rate(cfg, step)
        loss = nn.functional.cross_entropy(logits(calls), torch.tensor([y for _, _, y in calls]))
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return {name: [bool(r) for r in logits(calls).argmax(-1).eq(torch.tensor([y for _, _, y in calls]))]
                for name, calls in evals.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=24000, help="training examples encoded (default: 24000)")
    p.add_argument("--seeds", type=int, default=8)
    p.add_argument("--norm", choices=["both", "on", "off"], default="both")
    p.add_argument("--count", type=int, default=30, help="test problems per template (default: 30)")
    p.add_argument("--steps", type=int, default=TrainConfig.steps, help="optimizer steps per fit (default: ncl "
                   "train's)")
    p.add_argument("--json", default=None, metavar="OUT.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    mix, cfg, n = tasks.get("mix"), TrainConfig(task="mix", steps=args.steps), args.count
    rng = random.Random(0)
    train_examples = [mix.sample("train", rng) for _ in range(args.examples)]
    rng = random.Random(7)
    templates = [(name, t, i >= TRAINED) for name, ts in TEMPLATES.items() if name in mix.tasks
                 for i, t in enumerate(ts)]
    asked = [single_call(name, mix.tasks[name].sample("test", rng), t) for name, t, _ in templates for _ in range(n)]
    composed = {s: [compose.sample(s, rng) for _ in range(5 * n)] for s in ("compose_3", "compose_4")}
    names = sorted({c.program for e in train_examples + asked for c in e.calls})
    programs = {name: i for i, name in enumerate(names)}
    train = features(train_examples, programs)
    evals = {"templates": [c for e in features(asked, programs) for c in e]}
    evals.update({s: [c for e in features(es, programs) for c in e] for s, es in composed.items()})
    d = LlamaConfig.preset(cfg.preset).hidden_size
    results = {}
    for norm in {"both": (True, False), "on": (True,), "off": (False,)}[args.norm]:
        name = "norm" if norm else "no norm"
        runs = [fit(train, evals, s, norm, cfg, d, len(names)) for s in tqdm(range(args.seeds), desc=name)]
        per_template = [[mean(r["templates"][i * n:(i + 1) * n]) for i in range(len(templates))] for r in runs]
        held, trained = ([mean(a for a, (_, _, h) in zip(row, templates) if h == side) for row in per_template]
                         for side in (True, False))
        below = collections.Counter(t for row in per_template for a, (_, t, h) in zip(row, templates) if h and a < 0.9)
        results[name] = {"held_out": held, "trained": trained, "below_90": dict(below.most_common()),
                         **{s: [mean(r[s]) for r in runs] for s in composed}}
        print(f"{name}: held-out templates {mean(held):.3f} (worst seed {min(held):.3f}), trained {mean(trained):.3f}, "
              + ", ".join(f"{s} per call {mean(results[name][s]):.4f}" for s in composed))
        for t, k in below.most_common():
            print(f"  below 90 % on {k} of {args.seeds} seeds: {t}")
    if args.json:
        storage.write_json(args.json, {"examples": args.examples, "seeds": args.seeds, "count": n,
                                       "steps": args.steps, "results": results}, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
